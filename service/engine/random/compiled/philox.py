"""Philox4x64-10 in numba: the stream words of `philox.Stream`, without NumPy's per-word call overhead.

Same algorithm as docs/reproducibility.md section 2 and NumPy's `Philox` (which `philox.Stream` uses and the
tests compare against): counter (b mod 2^64, b >> 64, purpose, 0), key (k0, k1), ten rounds.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from service.engine.random.compiled.base import inline, jit, mul_wide

_M0 = np.uint64(0xD2E7470EE14C6C93)
_M1 = np.uint64(0xCA5A826395121157)
_W0 = np.uint64(0x9E3779B97F4A7C15)
_W1 = np.uint64(0xBB67AE8584CAA73B)
_ZERO = np.uint64(0)


@inline
def _block(
    c0: np.uint64, c1: np.uint64, c2: np.uint64, c3: np.uint64, k0: np.uint64, k1: np.uint64
) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
    for round_ in range(10):
        if round_ > 0:
            k0 += _W0
            k1 += _W1
        hi0, lo0 = mul_wide(_M0, c0)
        hi1, lo1 = mul_wide(_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


@jit
def fill_words(k0: np.uint64, k1: np.uint64, first_block: int, n_blocks: int, out: NDArray[np.uint64]) -> None:
    """out[:4 * n_blocks] = the words of value-stream blocks [first_block, first_block + n_blocks) (< 2^63)."""
    for j in range(n_blocks):
        # Two independent blocks per step would not help: the CPU already overlaps consecutive iterations.
        w0, w1, w2, w3 = _block(np.uint64(first_block + j), _ZERO, _ZERO, _ZERO, k0, k1)
        out[4 * j] = w0
        out[4 * j + 1] = w1
        out[4 * j + 2] = w2
        out[4 * j + 3] = w3
