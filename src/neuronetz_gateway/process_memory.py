"""Keeping Argon2's working memory from staying resident (docs/PERFORMANCE.md, memory).

glibc serves a large allocation with a mapping of its own and unmaps it on free, but
every such free raises its threshold for "large" to the size just freed (up to 32 MiB).
After one Argon2 hash (19 MiB of working memory by default), the next one comes from
the heap of the thread that runs it and stays resident when freed: 19 MiB for the
start-up's decoy hash, and 19 MiB more for every thread that ever verified a key.
Setting the threshold explicitly turns that adjustment off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc's mallopt parameter (malloc.h).
M_MMAP_THRESHOLD = -3
# Allocations this large get their own mapping, returned to the system when freed. Far
# above what a request allocates (bodies are parsed by orjson in place), far below
# Argon2's working memory.
LARGE_ALLOCATION_BYTES = 1024 * 1024


def return_large_allocations() -> bool:
    """Fix glibc's mmap threshold at `LARGE_ALLOCATION_BYTES` for this process.

    True when it took effect; False on a C library without `mallopt` (musl, macOS),
    where this problem does not arise in the same way and nothing is changed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, LARGE_ALLOCATION_BYTES))
