"""From raw 64-bit words to uniform and normal variates, using only correctly rounded float64 operations.

Element i of a tensor is drawn from stream word(s) of block i // 4 only, so any slice can be generated alone:

* uniform [0, 1):      u = (w_i >> 11) * 2^-53
* uniform (0, 1):      u = ((w_i >> 12) + 0.5) * 2^-52            (never 0 or 1: safe for inverse CDFs)
* standard normal:     Box-Muller on the pair (w_{2k}, w_{2k+1}), k = i // 2:
                       u1 = ((w_{2k} >> 11) + 1) * 2^-53 in (0, 1],  t = (w_{2k+1} >> 11) * 2^-53 in [0, 1),
                       r = sqrt(-2 log u1);  element 2k = r cos(2 pi t),  element 2k + 1 = r sin(2 pi t)
* truncated normal:    inverse CDF of the open uniform (see distributions.TruncatedNormal).

log, sin, cos and the normal CDF come from `detmath`, never from the platform's libm, so the bits are the same
on every machine and in every language that follows docs/reproducibility.md.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from service.engine.random import detmath

_TWO_POW_M53 = 2.0**-53
_TWO_POW_M52 = 2.0**-52
_MANTISSA_SHIFT = np.uint64(11)
_OPEN_SHIFT = np.uint64(12)


def _top53(words: NDArray[np.uint64]) -> NDArray[np.float64]:
    return (words >> _MANTISSA_SHIFT).astype(np.float64)


def uniform01(words: NDArray[np.uint64]) -> NDArray[np.float64]:
    """Uniform on [0, 1) with 53 random bits, one word per element."""
    return _top53(words) * _TWO_POW_M53


def uniform_open(words: NDArray[np.uint64]) -> NDArray[np.float64]:
    """Uniform on (0, 1): the midpoints of the 2^52 cells of [0, 1), one word per element.

    52 bits, not 53: below 2^52 every k + 0.5 is a float64, so no midpoint rounds onto 0 or 1.
    """
    return ((words >> _OPEN_SHIFT).astype(np.float64) + 0.5) * _TWO_POW_M52


def standard_normal(words: NDArray[np.uint64]) -> NDArray[np.float64]:
    """N(0, 1) by Box-Muller, two elements per pair of words; `words` must have even length."""
    pairs = words.reshape(-1, 2)
    u1 = (_top53(pairs[:, 0]) + 1.0) * _TWO_POW_M53
    turns = _top53(pairs[:, 1]) * _TWO_POW_M53
    radius = np.sqrt(-2.0 * detmath.log(u1))
    sin, cos = detmath.sincos_turns(turns)
    out = np.empty((pairs.shape[0], 2), dtype=np.float64)
    np.multiply(radius, cos, out=out[:, 0])
    np.multiply(radius, sin, out=out[:, 1])
    return out.reshape(-1)
