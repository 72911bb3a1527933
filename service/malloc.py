"""glibc's malloc, set for a server whose large buffers come and go at every request (glibc only; elsewhere
nothing changes).

* **Large buffers go back to the operating system when freed.** glibc serves allocations above its mmap threshold
  with their own mappings, unmapped on free, but it raises that threshold each time such a block is freed (up to
  32 MiB), after which tensor-sized buffers come from the heap arenas and stay resident after use: under load the
  process then kept hundreds of MiB it no longer used (the RSS the memory budget is meant to bound). Setting the
  threshold fixes it at its value and turns the raising off.
* **A stream's chunks are not given back and faulted in again at every chunk.** Setting the mmap threshold also
  fixes the trim threshold (the free space at the top of an arena beyond which `free` returns it) at its default,
  128 KiB: a stream's 1-2 MiB chunks, freed once sent, were then returned and their pages faulted in afresh for
  the next chunk: 260,000 page faults for a 2.2 GB bfloat16 checkpoint, about 0.5 of its 7-8 server CPU seconds
  (bench/checkpoint.py). At 8 MiB an arena keeps one stream's churn; what it keeps beyond that still goes back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 4 << 20  # see above
TRIM_THRESHOLD_BYTES = 8 << 20


def tune() -> bool:
    """True when glibc took the settings."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mmap = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        return bool(mmap and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
