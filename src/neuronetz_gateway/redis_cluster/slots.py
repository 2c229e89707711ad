"""Which of Redis Cluster's 16384 slots a key lives in (the cluster specification).

The slot is CRC16 (XMODEM, which is `binascii.crc_hqx` with 0) of the key modulo 16384,
where a key holding a non-empty hash tag `{...}` (the first `{` and the first `}` after
it) is hashed by the tag alone. Keys sharing a tag share a slot, so one script may touch
all of them: the limiter's keys carry `{<tenant id>}` (docs/REFERENCE.md §4.5).
"""

from __future__ import annotations

import binascii

SLOT_COUNT = 16384


def hash_tag(key: bytes) -> bytes:
    """The part of `key` that is hashed: its hash tag, or the whole key without one."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def key_slot(key: bytes | str) -> int:
    """The cluster slot of `key`."""
    data = key.encode() if isinstance(key, str) else key
    return binascii.crc_hqx(hash_tag(data), 0) % SLOT_COUNT
