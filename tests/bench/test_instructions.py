"""bench.instructions: reading callgrind's and strace's summaries, and the table."""

from __future__ import annotations

import pytest

from bench.instructions import Counted, callgrind_total, render, strace_total

CALLGRIND_DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
cmd:  /usr/bin/python3 -m neuronetz_gateway serve
part: 1

events: Ir

summary: 525723025

fl= (1) ???
fn= (1) 0x0000000000001000
16 3
totals: 525723025
"""

STRACE_SUMMARY = """% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 45.10    0.050000          18      2645           write
 30.00    0.030000          11      2690           epoll_pwait
 24.90    0.020000          12      1590       203 read
------ ----------- ----------- --------- --------- ----------------
100.00    0.100000          14      6925       203 total
"""


def test_the_instruction_count_is_the_dumps_total() -> None:
    assert callgrind_total(CALLGRIND_DUMP) == 525_723_025


def test_a_dump_without_totals_is_refused() -> None:
    with pytest.raises(ValueError, match="no totals"):
        callgrind_total("events: Ir\n")


def test_the_syscall_count_is_the_summarys_total_calls_not_its_errors() -> None:
    assert strace_total(STRACE_SUMMARY) == 6925


def test_a_summary_without_a_total_is_refused() -> None:
    with pytest.raises(ValueError, match="no total"):
        strace_total("% time     seconds  usecs/call     calls    errors syscall\n")


def test_the_table_gives_per_request_counts_and_ratios_to_the_bare_proxy() -> None:
    table = render(
        [
            Counted("bare", "/api/chat", instructions=500_000.0),
            Counted("bare", "/api/chat", syscalls=8.0),
            Counted("gateway", "/api/chat", instructions=2_000_000.0),
            Counted("gateway", "/api/chat", syscalls=14.0),
        ]
    )
    bare, gateway = table.splitlines()[1:]
    assert bare.split()[1:] == ["bare", "500.0", "1.00", "8.0", "1.00"]
    assert gateway.split()[1:] == ["gateway", "2000.0", "4.00", "14.0", "1.75"]
