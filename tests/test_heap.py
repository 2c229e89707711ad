"""The start-up heap is frozen out of the collector's sight (app.freeze_startup_heap)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from neuronetz_gateway.app import freeze_startup_heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # leave the test process as it was


def test_objects_alive_at_start_up_are_no_longer_scanned(unfrozen: None) -> None:
    gc.collect()  # garbage other tests left behind is not alive
    alive = len(gc.get_objects())
    freeze_startup_heap()
    assert gc.get_freeze_count() >= alive * 0.9
    assert len(gc.get_objects()) < alive * 0.1


def test_garbage_made_after_start_up_is_still_collected(unfrozen: None) -> None:
    freeze_startup_heap()
    first, second = Node(), Node()
    first.other, second.other = second, first  # a cycle only the collector can free
    del first, second
    assert gc.collect() >= 2
