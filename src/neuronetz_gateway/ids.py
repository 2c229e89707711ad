"""Random 128-bit identifiers in hex, cut from a pooled block of OS randomness.

Each request takes two (its request id and its limiter admission id). `os.urandom` is
a system call, and system calls are dear on virtual machines: reading 4 KiB at a time
makes it one call per 256 ids. The ids stay unpredictable (they are the kernel's random
bytes, handed out once each). After a fork the child drops the pool it inherited, so a
parent and its children never hand out the same bytes. Event-loop use only (not
thread-safe), like everything else on the hot path.
"""

from __future__ import annotations

import os

ID_BYTES = 16
_BLOCK_BYTES = 4096

_pool = b""
_offset = 0


def random_hex() -> str:
    """32 lowercase hex characters of fresh randomness."""
    global _pool, _offset
    start = _offset
    if start + ID_BYTES > len(_pool):
        _pool, start = os.urandom(_BLOCK_BYTES), 0
    _offset = start + ID_BYTES
    return _pool[start : start + ID_BYTES].hex()


def _drop_pool() -> None:
    global _pool, _offset
    _pool, _offset = b"", 0


os.register_at_fork(after_in_child=_drop_pool)
