"""Keep large CPU tensors' memory in the process between learner updates.

A learner update on the CPU allocates hundreds of megabytes of short-lived activations
(agent inputs, GRU gates and outputs for every step of every sampled episode). glibc's
``malloc`` serves every block above its mmap threshold (at most 32 MB) with a fresh
``mmap`` and returns it with ``munmap`` on free, so each update touches every page of
those tensors for the first time again: about 300,000 page faults per QMIX update on
the paper's Predator-Prey at PyMARL2's batch of 128 episodes, a fifth of its time
(``docs/benchmarks.md``). Serving all blocks from the heap and never trimming it lets
the next update reuse the same, already mapped pages.

The cost: freed memory stays with the process until it exits (its peak resident size
is unchanged: a training process returns to that peak at every update anyway).
PyTorch's performance guide recommends a caching allocator (jemalloc, tcmalloc) for the
same reason; this needs no extra library. Only glibc on Linux is affected; elsewhere
:func:`keep_freed_memory` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_applied = False


def keep_freed_memory() -> bool:
    """Make glibc serve large blocks from the heap and keep freed memory for reuse.

    Idempotent; returns whether the setting is in effect. ``DDN_KEEP_FREED_MEMORY=0``
    turns it off (e.g. for a process that must give memory back while it runs).
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("DDN_KEEP_FREED_MEMORY") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): leave malloc alone
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # Trim threshold first: once mmap is off, freed top-of-heap memory must not be trimmed.
    _applied = bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)) and bool(mallopt(_M_MMAP_MAX, 0))
    return _applied
