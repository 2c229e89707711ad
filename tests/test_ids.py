"""Pooled random ids (neuronetz_gateway.ids)."""

from __future__ import annotations

import re
import subprocess
import sys

from neuronetz_gateway.ids import random_hex


def test_ids_are_32_hex_characters_and_never_repeat() -> None:
    made = [random_hex() for _ in range(10_000)]  # spans many pooled blocks
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in made)
    assert len(set(made)) == len(made)


# Run in a fresh interpreter: the test process has threads by now, and fork() in a
# threaded process may deadlock the child (Python warns about it).
_FORK_BOTH = """
import os, sys
from neuronetz_gateway.ids import random_hex

random_hex()  # the parent holds a partly used pool
read_end, write_end = os.pipe()
child = os.fork()
if child == 0:
    os.close(read_end)
    os.write(write_end, "".join(random_hex() for _ in range(4)).encode())
    os._exit(0)
os.close(write_end)
with os.fdopen(read_end) as pipe:
    from_child = pipe.read()
os.waitpid(child, 0)
sys.stdout.write(from_child + " " + "".join(random_hex() for _ in range(4)))
"""


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", _FORK_BOTH], capture_output=True, text=True, timeout=60, check=True
    )
    from_child, from_parent = completed.stdout.split(" ")
    assert len(from_child) == len(from_parent) == 128
    assert not {from_child[i : i + 32] for i in range(0, 128, 32)} & {
        from_parent[i : i + 32] for i in range(0, 128, 32)
    }
