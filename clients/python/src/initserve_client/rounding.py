"""Rounding to the output dtype: philox-v1's section 8 (docs/reproducibility.md), which philox-v2 calls R_D
(docs/philox-v2.md section 2), and philox-v2's cuts (section 6): the float64 interval that rounds into an interval
of the dtype."""

from __future__ import annotations

import numpy as np

from initserve_client.decode import DTYPES

_SIGN = 1 << 63
_LARGEST = float(np.finfo(np.float64).max)


def to_dtype(values: np.ndarray, dtype: str) -> np.ndarray:
    """Section 8: float32 rounded to nearest even; float16 and bfloat16 through float32 (rounded twice)."""
    if dtype == "float64":
        return values.astype(np.float64)
    with np.errstate(over="ignore"):  # beyond the dtype's range: inf, as IEEE rounds it (the cuts probe there)
        single = values.astype(np.float32)
    if dtype == "float32":
        return single
    if dtype == "float16":
        with np.errstate(over="ignore"):
            return single.astype(np.float16)
    b32 = single.view(np.uint32)
    rounded = (b32 + np.uint32(0x7FFF) + ((b32 >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    return rounded.astype(np.uint16).view(DTYPES["bfloat16"])


def _rounded(x: float, dtype: str) -> float:
    """R_D(x) as a float64 (exact: every dtype's values are float64 values)."""
    return float(to_dtype(np.array([x]), dtype).astype(np.float64)[0])


def _rank(x: float) -> int:
    """The float64 values in their order as integers (section 6): bits(x) for x >= 0, -(bits(x) & (2^63 - 1)) below."""
    bits = int(np.float64(x).view(np.uint64))
    return bits if bits < _SIGN else -(bits & (_SIGN - 1))


def _unranked(rank: int) -> float:
    return float(np.uint64(rank if rank >= 0 else -rank | _SIGN).view(np.float64))


def succ(x: float) -> float:
    return float(np.nextafter(x, np.inf))


def pred(x: float) -> float:
    return float(np.nextafter(x, -np.inf))


def first_at_least(v: float, dtype: str, strict: bool = False) -> float:
    """The least float64 x with R_D(x) >= v (strict: > v), by bisection over the finite float64 values in their
    order, as the specification's reference does (R_D is monotone). For float64: v, or succ(v)."""
    if dtype == "float64":
        return succ(v) if strict else v

    def holds(x: float) -> bool:
        rounded = _rounded(x, dtype)
        return rounded > v if strict else rounded >= v

    below, above = _rank(-_LARGEST), _rank(_LARGEST)
    if holds(_unranked(below)):
        return -_LARGEST
    if not holds(_unranked(above)):  # no finite x: v is beyond the dtype, which admission refuses first
        return np.inf
    while above - below > 1:  # invariant: holds(above), not holds(below)
        middle = (below + above) // 2
        if holds(_unranked(middle)):
            above = middle
        else:
            below = middle
    return _unranked(above)


def last_at_most(v: float, dtype: str) -> float:
    """The greatest float64 x with R_D(x) <= v."""
    return pred(first_at_least(v, dtype, strict=True))
