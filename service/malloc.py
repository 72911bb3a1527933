"""Large buffers go back to the operating system when freed (glibc only; elsewhere nothing changes).

glibc serves allocations above its mmap threshold with their own mappings, unmapped on free, but it raises that
threshold each time such a block is freed (up to 32 MiB), after which tensor-sized buffers come from the heap
arenas and stay resident after use: under load the process then kept hundreds of MiB it no longer used (the RSS
the memory budget is meant to bound). Setting the threshold fixes it at its default and turns the raising off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MMAP_THRESHOLD_BYTES = 4 << 20  # see above


def fix_mmap_threshold() -> bool:
    """True when glibc took the setting."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
