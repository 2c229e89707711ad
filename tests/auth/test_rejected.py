"""The negative cache of wrong keys (auth/rejected.py), on a clock the test moves."""

from __future__ import annotations

from neuronetz_gateway.auth.rejected import RejectedKeys


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_rejected_digest_is_remembered_for_its_ttl() -> None:
    clock = Clock()
    rejected = RejectedKeys(ttl_seconds=5.0, clock=clock)
    rejected.add(b"wrong")
    assert b"wrong" in rejected
    assert b"other" not in rejected
    clock.now += 4.9
    assert b"wrong" in rejected
    clock.now += 0.2
    assert b"wrong" not in rejected


def test_when_full_expired_entries_go_first() -> None:
    clock = Clock()
    rejected = RejectedKeys(ttl_seconds=5.0, max_entries=3, clock=clock)
    rejected.add(b"old-1")
    rejected.add(b"old-2")
    clock.now += 3
    rejected.add(b"recent")
    clock.now += 3  # the two old ones have expired, "recent" has not
    rejected.add(b"new")
    assert len(rejected) == 2
    assert b"recent" in rejected
    assert b"new" in rejected


def test_when_full_of_live_entries_it_starts_over() -> None:
    rejected = RejectedKeys(max_entries=3)
    for digest in (b"a", b"b", b"c", b"d"):
        rejected.add(digest)
    assert len(rejected) == 1
    assert b"d" in rejected


def test_clear_forgets_everything() -> None:
    rejected = RejectedKeys()
    rejected.add(b"wrong")
    rejected.clear()
    assert b"wrong" not in rejected
    assert len(rejected) == 0
