"""service/malloc.py: glibc keeps a stream's chunk-sized churn instead of faulting it in afresh at every chunk."""

from __future__ import annotations

import platform
import resource

import numpy as np
import pytest

from service import malloc

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


def faults_over(cycles: int, nbytes: int) -> int:
    """Minor page faults while a fresh array of `nbytes` is filled and dropped `cycles` times (a stream's chunks)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(cycles):
        np.empty(nbytes, dtype=np.uint8).fill(1)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@glibc
def test_chunk_sized_buffers_are_reused_not_faulted_in_again():
    assert malloc.tune()
    faults_over(3, 2 << 20)  # the heap grows once
    pages = 100 * (2 << 20) // 4096
    # Trimmed at every free (glibc's 128 KiB default once the mmap threshold is set) this is every page again.
    assert faults_over(100, 2 << 20) < pages // 10
