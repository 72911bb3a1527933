"""Scalar numba ports of the `detmath` functions the samplers need: log, sincos_turns, ndtri.

Each follows its NumPy block function in `detmath` step for step (the docstrings there are the spec): the same
constants, the same operations in the same order. Where NumPy computes a branch only for the lanes that take
it, these compute every branch and select, which changes no bits (each lane's result is the same expression)
and keeps the callers' loops free of jumps, so LLVM vectorises them.
"""

from __future__ import annotations

import math

import numpy as np

from service.engine.random import detmath as d
from service.engine.random.compiled.base import bits_f64, f64_bits, inline, jit

_INF = math.inf
_MANTISSA = np.uint64((1 << 52) - 1)
_EXPONENT_OF_ONE = np.uint64(1023 << 52)
_SHIFT_EXPONENT = np.uint64(52)
_TWO_POW_54 = 2.0**54
_TWO_POW_52 = 2.0**52
_EXPONENT_OF_TWO_POW_52 = np.uint64(0x433 << 52)


@inline
def _horner(z: float, coeffs: tuple[float, ...]) -> float:
    """detmath._horner: p = c[n-1]; p = c[i] + z*p for i = n-2 .. 0."""
    n = len(coeffs)
    p = coeffs[n - 2] + z * coeffs[n - 1]
    for i in range(n - 3, -1, -1):
        p = coeffs[i] + z * p
    return p


@inline
def small_int_f64(n: np.uint64) -> float:
    """float64(n) for n < 2^52, exactly: the encoding of 2^52 + n, minus 2^52 (vectorises, unlike int->float)."""
    return bits_f64(n | _EXPONENT_OF_TWO_POW_52) - _TWO_POW_52


@inline
def _log_reduced(u: float, dk: float) -> float:
    """detmath._log_block after frexp: log(2^dk * u) for u in [1, 2) (2 * frexp's mantissa), dk its exponent."""
    halve = u >= d._LOG_HALVE_AT
    f = (u * 0.5 if halve else u) - 1.0
    dk = dk + 1.0 if halve else dk
    small = (u < d._LOG_SMALL_LO) | (u >= d._LOG_SMALL_HI)
    hfsq_form = (u >= d._LOG_HFSQ_LO) & (u < d._LOG_HFSQ_HI)

    k_hi = dk * d._LN2_HI
    k_lo = dk * d._LN2_LO
    r_small = (f * f) * (0.5 - d._THIRD * f)
    res_small = k_hi - ((r_small - k_lo) - f)
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * _horner(w, (d._LG2, d._LG4, d._LG6))
    t2 = z * _horner(w, (d._LG1, d._LG3, d._LG5, d._LG7))
    r = t2 + t1
    hfsq = (0.5 * f) * f
    res_hfsq = k_hi - ((hfsq - (s * (hfsq + r) + k_lo)) - f)
    res_plain = k_hi - ((s * (f - r) - k_lo) - f)
    return res_small if small else (res_hfsq if hfsq_form else res_plain)


@inline
def log_normal(x: float) -> float:
    """detmath.log for a positive, finite, normal (not subnormal) x: Box-Muller's u1 in [2^-53, 1]."""
    bits = f64_bits(x)
    u = bits_f64((bits & _MANTISSA) | _EXPONENT_OF_ONE)
    return _log_reduced(u, small_int_f64(bits >> _SHIFT_EXPONENT) - 1023.0)


@inline
def log(x: float) -> float:
    """detmath.log for any float64."""
    ok = (x > 0.0) & (x < _INF)
    xs = x if ok else 1.0
    # frexp by the encoding: subnormals are first scaled into the normal range (exact).
    subnormal = (f64_bits(xs) >> _SHIFT_EXPONENT) == 0
    bits = f64_bits(xs * _TWO_POW_54 if subnormal else xs)
    u = bits_f64((bits & _MANTISSA) | _EXPONENT_OF_ONE)
    dk = small_int_f64(bits >> _SHIFT_EXPONENT) - (1023.0 + 54.0 if subnormal else 1023.0)
    res = _log_reduced(u, dk)
    special = -_INF if x == 0.0 else (_INF if x == _INF else math.nan)
    return res if ok else special


@inline
def sincos_turns(t: float) -> tuple[float, float]:
    """detmath.sincos_turns for one t in [0, 1): (sin(2 pi t), cos(2 pi t)). (Other t are not needed here.)"""
    y = t * 4.0
    q = np.rint(y)  # 0 .. 4; 4 is quadrant 0
    x = (y - q) * d._PIO2
    z = x * x
    w = z * z
    rs = (d._S2 + z * (d._S3 + z * d._S4)) + (z * w) * (d._S5 + z * d._S6)
    v = z * x
    s = x + v * (d._S1 + z * rs)
    rc = z * (d._C1 + z * (d._C2 + z * d._C3)) + (w * w) * (d._C4 + z * (d._C5 + z * d._C6))
    hz = 0.5 * z
    g = 1.0 - hz
    c = g + (((1.0 - g) - hz) + z * rc)
    swap = (q == 1.0) | (q == 3.0)
    a = c if swap else s
    b = s if swap else c
    sin = 0.0 - a if (q == 2.0) | (q == 3.0) else a
    cos = 0.0 - b if (q == 1.0) | (q == 2.0) else b
    return sin, cos


@inline
def ndtri_central(p: float) -> float:
    """detmath.ndtri where |p - 0.5| <= 0.425 (`is_central`); any other p gives a value to discard."""
    q = p - 0.5
    r = 0.180625 - q * q
    return (q * _horner(r, d._AS241_A)) / _horner(r, d._AS241_B)


@inline
def is_central(p: float) -> bool:
    return abs(p - 0.5) <= 0.425


@jit
def ndtri(p: float) -> float:
    """detmath.ndtri for one float64. Compiled on its own, not inlined: callers use it off their vector loops."""
    ok = (p > 0.0) & (p < 1.0)
    ps = p if ok else 0.5
    q = ps - 0.5
    lower = q < 0.0
    rt = math.sqrt(0.0 - log(ps if lower else 1.0 - ps))
    rn = rt - 1.6
    near = _horner(rn, d._AS241_C) / _horner(rn, d._AS241_D)
    rf = rt - 5.0
    far = _horner(rf, d._AS241_E) / _horner(rf, d._AS241_F)
    val = near if rt <= 5.0 else far
    tail = -val if lower else val

    out = ndtri_central(ps) if is_central(ps) else tail
    special = -_INF if p == 0.0 else (_INF if p == 1.0 else math.nan)
    return out if ok else special
