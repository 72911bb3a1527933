"""philox-v2's distributions on draws (docs/philox-v2.md sections 5 and 7): a draw is an element's 32-bit word
(narrow output: float32, float16, bfloat16) or 64-bit word (wide: float64), as uint64 arrays. The ziggurat's tables
are read from the shipped copy of docs/vectors/philox-v2.json."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from initserve_client import elementary
from initserve_client.contract import document, float_of

_ZIGGURAT = document("philox-v2")["constants"]["ziggurat"]
X = np.array([float_of(bits) for bits in _ZIGGURAT["X"]])
F = np.array([float_of(bits) for bits in _ZIGGURAT["F"]])
_R = float(X[1])  # the base strip's edge r: beyond it, the tail
_STRIP = np.uint64(_ZIGGURAT["layers"] - 1)  # j = W mod 256
_8, _9, _11, _12 = (np.uint64(n) for n in (8, 9, 11, 12))
# x = (m + 0.5) * (X[j] * 2^-bits): each table entry scaled once (exact: a power of two), per draw width
_X_NARROW = X * 2.0**-23
_X_WIDE = X * 2.0**-52

# the retry words R_i[k] of elements (flat indices) at positions k, as uint64
RetryWords = Callable[[np.ndarray, np.ndarray], np.ndarray]


def uniform(draw: np.ndarray, wide: bool, lo: float, width: float, top: float) -> np.ndarray:
    """Section 7's Uniform on [lo, hi) (the cuts), clamped to top = pred(hi): lo + width * u, u in [0, 1)."""
    u = (draw >> _11).astype(np.float64) * 2.0**-53 if wide else draw.astype(np.float64) * 2.0**-32
    x = lo + width * u
    return np.where(x > top, top, x)


def open_unit(draw: np.ndarray, wide: bool) -> np.ndarray:
    """The truncated normal's u in (0, 1): the midpoints of 2^32 (narrow) or 2^52 (wide) cells."""
    if wide:
        return ((draw >> _12).astype(np.float64) + 0.5) * 2.0**-52
    return (draw.astype(np.float64) + 0.5) * 2.0**-32


def _open_unit_wide(word: np.ndarray) -> np.ndarray:
    """U(W) of section 7 on retry words: ((W >> 12) + 0.5) * 2^-52."""
    return ((word >> _12).astype(np.float64) + 0.5) * 2.0**-52


def _try(word: np.ndarray, wide: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A try from words: (strip j, x, negative)."""
    j = (word & _STRIP).astype(np.intp)
    negative = ((word >> _8) & np.uint64(1)).astype(bool)
    if wide:
        x = ((word >> _12).astype(np.float64) + 0.5) * _X_WIDE[j]
    else:
        x = ((word >> _9).astype(np.float64) + 0.5) * _X_NARROW[j]
    return j, x, negative


def _tail(element: np.ndarray, k: np.ndarray, retry: RetryWords) -> tuple[np.ndarray, np.ndarray]:
    """Marsaglia's tail beyond r from the retry words at k, k + 1, ... of each element: (x, the next k)."""
    x = np.empty(element.size)
    k = k.copy()
    active = np.arange(element.size)
    while active.size:
        a = -elementary.log(_open_unit_wide(retry(element[active], k[active]))) / _R
        b = -elementary.log(_open_unit_wide(retry(element[active], k[active] + np.uint64(1))))
        k[active] += np.uint64(2)
        done = b + b > a * a
        x[active[done]] = _R + a[done]
        active = active[~done]
    return x, k


def standard_normal(draw: np.ndarray, wide: bool, element: np.ndarray, retry: RetryWords) -> np.ndarray:
    """Section 7's ziggurat: each element's try from its draw; the tries off the fast path (about 1.5%) go on, all
    at once, from their elements' retry words."""
    j, x, negative = _try(draw, wide)
    pending = np.nonzero(~(x < X[j + 1]))[0]
    k = np.zeros(pending.size, dtype=np.uint64)  # the next retry word of each pending element
    while pending.size:
        pj, px = j[pending], x[pending]
        fast = px < X[pj + 1]  # a retried try on the fast path
        tail = ~fast & (pj == 0)
        if tail.any():
            x[pending[tail]], k[tail] = _tail(element[pending[tail]], k[tail], retry)
        wedge = np.nonzero(~fast & ~tail)[0]
        at, ww = pending[wedge], pj[wedge]
        y = F[ww] + _open_unit_wide(retry(element[at], k[wedge])) * (F[ww + 1] - F[ww])
        under = -2.0 * elementary.log(y) > px[wedge] * px[wedge]
        rejected = wedge[~under]
        if rejected.size:
            again = pending[rejected]
            j[again], x[again], negative[again] = _try(retry(element[again], k[rejected] + np.uint64(1)), True)
            k[rejected] += np.uint64(2)
        pending, k = pending[rejected], k[rejected]
    return np.where(negative, -x, x)


# MAX_Z, the tail bound's |z| (section 7: r + (53.0 * 0.6931471805599453) / r), read as published
LARGEST_Z = float_of(_ZIGGURAT["MAX_Z"])
