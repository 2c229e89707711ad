"""`return_large_allocations`: Argon2's working memory goes back to the system.

Each case runs in a fresh interpreter (the allocator's state is per process): a hash in
the main thread and verifications in two pool threads, as the gateway's start-up decoy
and its verifier pool do, then the resident size is read from /proc.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import sys
from concurrent.futures import ThreadPoolExecutor
from neuronetz_gateway.auth.keys import KeyHasher
from neuronetz_gateway.process_memory import return_large_allocations

def rss_kib():
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0])

applied = return_large_allocations() if sys.argv[1] == "fixed" else None
hasher = KeyHasher()
stored = hasher.hash("secret")
before = rss_kib()
assert hasher.verify(stored, "secret")
with ThreadPoolExecutor(2) as pool:
    for _ in range(4):
        assert all(pool.map(lambda _: hasher.verify(stored, "secret"), range(2)))
print(applied, rss_kib() - before)
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")


def grown_kib(mode: str) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True
    )
    applied, grown = done.stdout.split()
    return applied, int(grown)


def test_argon2_memory_does_not_stay_resident_after_verifications() -> None:
    applied, grown = grown_kib("fixed")
    assert applied == "True"
    assert grown < 8 * 1024  # one 19 MiB working area would be far beyond this


def test_without_it_every_verifying_thread_keeps_its_working_memory() -> None:
    # The control: what the setting prevents (if glibc ever stops doing this, the
    # setting can go, and this test says so).
    _, grown = grown_kib("default")
    assert grown > 38 * 1024
