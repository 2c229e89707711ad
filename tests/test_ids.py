"""Pooled random ids (neuronetz_gateway.ids)."""

from __future__ import annotations

import os
import re

from neuronetz_gateway.ids import random_hex


def test_ids_are_32_hex_characters_and_never_repeat() -> None:
    made = [random_hex() for _ in range(10_000)]  # spans many pooled blocks
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in made)
    assert len(set(made)) == len(made)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    random_hex()  # the parent holds a partly used pool
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.close(read_end)
        os.write(write_end, "".join(random_hex() for _ in range(4)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        from_child = pipe.read()
    os.waitpid(child, 0)
    from_parent = "".join(random_hex() for _ in range(4))
    assert len(from_child) == 128
    assert from_child != from_parent
    assert not {from_child[i : i + 32] for i in range(0, 128, 32)} & {
        from_parent[i : i + 32] for i in range(0, 128, 32)
    }
