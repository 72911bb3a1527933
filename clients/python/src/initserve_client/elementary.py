"""The contract's elementary functions (docs/reproducibility.md section 4) on float64 arrays, never the platform's
libm (whose last bits differ between CPUs and libraries): each is the spec's pseudo-code, operation for operation, in
NumPy array operations (one correctly rounded IEEE operation each, no fused multiply-add). Branches are masks: the
common path runs on every element, the rarer ones on their subsets, and the results are merged.
"""

from __future__ import annotations

import numpy as np

from initserve_client.contract import HW, F, P

_SIGN = np.uint64(1 << 63)
_EXPONENT_SHIFT = np.uint64(52)
_MANTISSA = np.uint64((1 << 52) - 1)
_ONE_BITS = np.uint64(0x3FF0000000000000)
_HIGH_WORD = np.uint64(0x7FFFFFFF)
_LOW_WORD = np.uint64(0xFFFFFFFF)
_32 = np.uint64(32)
_2_54 = 2.0**54


def _bits(x: np.ndarray) -> np.ndarray:
    return x.view(np.uint64)


def _float(b: np.ndarray) -> np.ndarray:
    return b.view(np.float64)


def _hw(x: np.ndarray) -> np.ndarray:
    """The high word without the sign (fdlibm's `ix`), as int64 for comparisons with the HW thresholds."""
    return ((_bits(x) >> _32) & _HIGH_WORD).astype(np.int64)


def _clear_low(x: np.ndarray) -> np.ndarray:
    return _float(_bits(x) & ~_LOW_WORD)


def horner(z: np.ndarray, coefficients: tuple[float, ...]) -> np.ndarray:
    """c0 + z*(c1 + z*(... + z*cn)), innermost first: two roundings a step."""
    p = z * coefficients[-1] + coefficients[-2]
    for c in reversed(coefficients[:-2]):
        p = c + z * p
    return p


def _pow2(k: np.ndarray) -> np.ndarray:
    """2^k as float64 for integer k in [-1022, 1023] (built from its exponent bits: exact)."""
    return _float(((k + 1023).astype(np.uint64)) << _EXPONENT_SHIFT)


def ldexp(y: np.ndarray, k: np.ndarray) -> np.ndarray:
    """y * 2^k rounded once; where 2^k is not a float64, in two steps whose first is exact (section 0)."""
    first = np.where(k < -1022, k + 1000, np.minimum(k, 1023))
    second = np.where(k < -1022, -1000, np.maximum(k - 1023, 0))
    return (y * _pow2(first)) * _pow2(second)


def _as_array(x: np.ndarray | float) -> np.ndarray:
    """float64, contiguous (for bit views), at least 1-D (for masked assignment): a scalar becomes shape (1,)."""
    return np.atleast_1d(np.ascontiguousarray(x, dtype=np.float64))


def exp(x: np.ndarray | float) -> np.ndarray:
    """fdlibm's __ieee754_exp (section 4.1)."""
    x = _as_array(x)
    ix = _hw(x)
    with np.errstate(all="ignore"):
        finite = np.isfinite(x)
        t = np.where((ix > HW["EXP_REDUCE"]) & finite, np.trunc(x * F["INVLN2"] + np.copysign(0.5, x)), 0.0)
        t = np.clip(t, -2000.0, 2000.0)  # only beyond the thresholds, whose results are overridden below
        hi = x - t * F["LN2_HI"]
        lo = t * F["LN2_LO"]
        r = hi - lo
        tt = r * r
        c = r - tt * horner(tt, P["EXP_P"])
        y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
        result = ldexp(y, t.astype(np.int64))
        tiny = ix < HW["EXP_TINY"]
        result[tiny] = 1.0 + x[tiny]
    result[x > F["EXP_O_THRESHOLD"]] = np.inf
    result[x < F["EXP_U_THRESHOLD"]] = 0.0
    result[np.isnan(x)] = np.nan
    return result


def log(x: np.ndarray | float) -> np.ndarray:
    """fdlibm's __ieee754_log (section 4.2)."""
    x = _as_array(x)
    b = _bits(x)
    e = (b >> _EXPONENT_SHIFT).astype(np.int64)
    subnormal = e == 0
    if subnormal.any():  # scale into the normal range, exactly
        scaled = _bits(x[subnormal] * _2_54)
        b = b.copy()
        b[subnormal] = scaled
        e[subnormal] = (scaled >> _EXPONENT_SHIFT).astype(np.int64) - 54
    u = _float((b & _MANTISSA) | _ONE_BITS)
    halve = u >= F["LOG_HALVE_AT"]
    f = np.where(halve, u * 0.5 - 1.0, u - 1.0)
    dk = (e - 1023 + halve).astype(np.float64)
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * horner(w, P["LG_EVEN"])
    t2 = z * horner(w, P["LG_ODD"])
    big_r = t2 + t1
    result = dk * F["LN2_HI"] - ((s * (f - big_r) - dk * F["LN2_LO"]) - f)
    hfsq_path = np.nonzero((u >= F["LOG_HFSQ_LO"]) & (u < F["LOG_HFSQ_HI"]))
    if hfsq_path[0].size:
        fh, dh, sh, rh = f[hfsq_path], dk[hfsq_path], s[hfsq_path], big_r[hfsq_path]
        hfsq = (0.5 * fh) * fh
        result[hfsq_path] = dh * F["LN2_HI"] - ((hfsq - (sh * (hfsq + rh) + dh * F["LN2_LO"])) - fh)
    small = np.nonzero((u < F["LOG_SMALL_LO"]) | (u >= F["LOG_SMALL_HI"]))  # |f| < 2^-20
    if small[0].size:
        fs, ds = f[small], dk[small]
        rs = (fs * fs) * (0.5 - F["THIRD"] * fs)
        result[small] = ds * F["LN2_HI"] - ((rs - ds * F["LN2_LO"]) - fs)
    special = ~(x > 0.0) | (x == np.inf)
    if special.any():
        result[np.isnan(x) | (x < 0.0)] = np.nan
        result[x == 0.0] = -np.inf
        result[x == np.inf] = np.inf
    return result


def kernel_sin(x: np.ndarray) -> np.ndarray:
    """FreeBSD msun's __kernel_sin(x, 0, 0), |x| <= pi/4 (section 4.3)."""
    s1, s2, s3, s4, s5, s6 = P["SIN_S"]
    z = x * x
    w = z * z
    r = (s2 + z * (s3 + z * s4)) + (z * w) * (s5 + z * s6)
    v = z * x
    return x + v * (s1 + z * r)


def kernel_cos(x: np.ndarray) -> np.ndarray:
    """FreeBSD msun's __kernel_cos(x, 0), |x| <= pi/4 (section 4.3)."""
    c1, c2, c3, c4, c5, c6 = P["COS_C"]
    z = x * x
    w = z * z
    r = z * (c1 + z * (c2 + z * c3)) + (w * w) * (c4 + z * (c5 + z * c6))
    hz = 0.5 * z
    g = 1.0 - hz
    return g + (((1.0 - g) - hz) + z * r)


def sincos_turns(t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """(sin(2 pi t), cos(2 pi t)) for t in [0, 1) (section 4.4): an exact reduction to quarter turns."""
    t = _as_array(t)
    y = t * 4.0
    q = np.rint(y)  # IEEE round half to even
    x = (y - q) * F["PIO2"]
    s, c = kernel_sin(x), kernel_cos(x)
    n = q.astype(np.int64) & 3
    minus_s, minus_c = 0.0 - s, 0.0 - c
    return np.choose(n, (s, c, minus_s, minus_c)), np.choose(n, (c, minus_s, minus_c, s))


def erfc_core(v: np.ndarray, e_hi: np.ndarray, e_lo: np.ndarray) -> np.ndarray:
    """fdlibm's erfc with its tail exponent (e_hi, e_lo) supplied elementwise by the caller (section 4.5)."""
    ix = _hw(v)
    neg = (_bits(v) & _SIGN) != 0
    result = np.empty_like(v)
    with np.errstate(all="ignore"):
        far = ix >= HW["ERFC_FAR"]
        result[far] = np.where(neg[far], 2.0, 0.0)
        tiny = ix < HW["ERFC_TINY"]
        result[tiny] = 1.0 - v[tiny]
        erf_range = ~tiny & (ix < HW["ERFC_ERF"])
        if erf_range.any():
            ve = v[erf_range]
            z = ve * ve
            y = horner(z, P["ERF_PP"]) / horner(z, P["ERF_QQ"])
            below_quarter = neg[erf_range] | (ix[erf_range] < HW["ERFC_QUARTER"])
            result[erf_range] = np.where(below_quarter, 1.0 - (ve + ve * y), 0.5 - (ve * y + (ve - 0.5)))
        erx_range = (ix >= HW["ERFC_ERF"]) & (ix < HW["ERFC_ERX"])
        if erx_range.any():
            s = np.abs(v[erx_range]) - 1.0
            pq = horner(s, P["ERF_PA"]) / horner(s, P["ERF_QA"])
            result[erx_range] = np.where(neg[erx_range], 1.0 + (F["ERX"] + pq), F["ONE_MINUS_ERX"] - pq)
        rest = (ix >= HW["ERFC_ERX"]) & ~far
        two = rest & neg & (ix >= HW["ERFC_NEG_SIX"])
        result[two] = 2.0
        tail = rest & ~two
        if tail.any():
            a = np.abs(v[tail])
            s = 1.0 / (a * a)
            near = ix[tail] < HW["ERFC_NEAR_TAIL"]
            ratio = np.where(
                near,
                horner(s, P["ERFC_RA"]) / horner(s, P["ERFC_SA"]),
                horner(s, P["ERFC_RB"]) / horner(s, P["ERFC_SB"]),
            )
            r = exp(e_hi[tail]) * exp(e_lo[tail] + ratio)
            qq = r / a
            result[tail] = np.where(neg[tail], 2.0 - qq, qq)
    result[np.isnan(v)] = np.nan
    return result


def erfc(x: np.ndarray | float) -> np.ndarray:
    """Section 4.6."""
    x = _as_array(x)
    a = np.abs(x)
    zt = _clear_low(a)
    with np.errstate(all="ignore"):
        return erfc_core(x, (-zt) * zt - 0.5625, (zt - a) * (zt + a))


def ndtr(x: np.ndarray | float) -> np.ndarray:
    """The standard normal CDF (section 4.7): the tail exponent built from x itself, not from -x/sqrt(2)."""
    x = _as_array(x)
    v = 0.0 - x * F["SQRT1_2"]
    a = np.abs(x)
    xt = _clear_low(a)
    with np.errstate(all="ignore"):
        return 0.5 * erfc_core(v, ((-xt) * xt) * 0.5 - 0.5625, ((xt - a) * (xt + a)) * 0.5)


def ndtri(p: np.ndarray | float) -> np.ndarray:
    """The inverse of ndtr (section 4.8): Wichura's AS 241, as (q * A(r)) / B(r)."""
    p = _as_array(p)
    q = p - 0.5
    result = np.empty_like(p)
    central = np.abs(q) <= 0.425
    qc = q[central]
    r = 0.180625 - qc * qc
    result[central] = (qc * horner(r, P["AS241_A"])) / horner(r, P["AS241_B"])
    tails = np.nonzero(~central)
    if tails[0].size:
        qt = q[tails]
        with np.errstate(all="ignore"):
            r = np.sqrt(0.0 - log(np.where(qt < 0.0, p[tails], 1.0 - p[tails])))
            val = np.where(
                r <= 5.0,
                horner(r - 1.6, P["AS241_C"]) / horner(r - 1.6, P["AS241_D"]),
                horner(r - 5.0, P["AS241_E"]) / horner(r - 5.0, P["AS241_F"]),
            )
        result[tails] = np.where(qt < 0.0, -val, val)
    result[p == 0.0] = -np.inf
    result[p == 1.0] = np.inf
    result[np.isnan(p) | (p < 0.0) | (p > 1.0)] = np.nan
    return result
