"""Deterministic transcendental functions: the same bits on every machine and in every language.

NumPy's ``np.log``/``np.exp``/``np.sin``/``np.cos`` dispatch at run time to SIMD code (SVML, AVX512, NEON,
...) that differs between CPUs, so their last bits differ between machines. initserve promises bit-identical
tensors, so every function here is built ONLY from operations IEEE 754 requires to be correctly rounded or
exact:

* ``+ - * /`` and ``sqrt`` on float64, each one separate, correctly rounded operation (round to nearest, ties
  to even). A NumPy ufunc call never fuses, so ``a * b + c`` written as two ufuncs is two roundings; a port to
  Go/Rust/Java/JS/C must likewise NOT contract it into a fused multiply-add (C: ``-ffp-contract=off``);
* exact operations: negation, ``abs``, ``copysign``, comparisons, selection (``np.where``), ``frexp``,
  ``ldexp`` (exact, or one rounding when the result is subnormal), ``rint`` (ties to even), ``trunc``,
  conversions of small integers to float64, and integer / bit operations on the IEEE 754 encoding.

Each step is written as one explicit float64 operation in a fixed order, so the code can be ported line by
line. Parentheses give the order; ``a + b * c`` means ``a + (b * c)``. Polynomials are evaluated by
``_horner`` (``c0 + z * (c1 + z * (c2 + ... + z * cn))``, innermost first) unless a formula is spelled out.
The default floating-point environment is assumed (round to nearest even, no flush-to-zero), as in NumPy.

The algorithms and coefficients are those of fdlibm (Sun Microsystems, 1993), as carried by FreeBSD msun and
musl, and of Wichura's AS 241 (Applied Statistics 37, 1988) as carried by R's nmath/qnorm.c. ``log``, ``exp``
and ``erfc`` return the same bits as fdlibm's ``__ieee754_log``, ``__ieee754_exp`` and ``erfc`` (with the
fdlibm ``exp`` inside ``erfc``); ``sincos_turns`` uses fdlibm's ``__kernel_sin``/``__kernel_cos`` after an
exact reduction. Errors: log, exp < 1 ulp; sin, cos of 2*pi*t within ~2e-16 absolute; ndtr, erfc, ndtri a few
ulp relative (see each function).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

F64 = NDArray[np.float64]

__all__ = ["erfc", "exp", "log", "ndtr", "ndtri", "sincos_turns"]

# ---------------------------------------------------------------------------------------------------------
# Shared constants. Hex comments give the IEEE 754 encoding (high word, low word) quoted by fdlibm; the
# decimal literals round to exactly those bits (checked by tests/engine/test_detmath.py).
# ---------------------------------------------------------------------------------------------------------

# fdlibm-derived musl src/math/log.c and exp.c (origin: FreeBSD msun e_log.c, e_exp.c; Sun fdlibm).
_LN2_HI = 6.93147180369123816490e-01  # 0x3fe62e42 0xfee00000  (k * _LN2_HI is exact for |k| < 2000)
_LN2_LO = 1.90821492927058770002e-10  # 0x3dea39ef 0x35793c76

# log: musl src/math/log.c, fdlibm-derived version (origin: FreeBSD /usr/src/lib/msun/src/e_log.c).
_LG1 = 6.666666666666735130e-01  # 0x3FE55555 0x55555593
_LG2 = 3.999999999940941908e-01  # 0x3FD99999 0x9997FA04
_LG3 = 2.857142874366239149e-01  # 0x3FD24924 0x94229359
_LG4 = 2.222219843214978396e-01  # 0x3FCC71C5 0x1D8E78AF
_LG5 = 1.818357216161805012e-01  # 0x3FC74664 0x96CB03DE
_LG6 = 1.531383769920937332e-01  # 0x3FC39A09 0xD078C69F
_LG7 = 1.479819860511658591e-01  # 0x3FC2F112 0xDF3E5244
_THIRD = 0.33333333333333333  # 0x3FD55555 0x55555555, the literal in e_log.c's |f| < 2^-20 path
# Thresholds of e_log.c on the significand u in [1, 2) of x = u * 2^e, u = 1 + hx * 2^-20 + (low word),
# (all exact: 1 + n / 2^20 with n < 2^20)
_LOG_HALVE_AT = 1.0 + 0x6A09C / 1048576.0  # u >= this (~1.41421127): use u/2, k = e+1 (hx + 0x95f64 carries)
_LOG_SMALL_LO = 1.0 + 1.0 / 1048576.0  # u < this (hx == 0) ...
_LOG_SMALL_HI = 1.0 + 0xFFFFE / 1048576.0  # ... or u >= this (hx >= 0xffffe): the |f| < 2^-20 path
_LOG_HFSQ_LO = 1.0 + 0x6147A / 1048576.0  # this <= u < _LOG_HFSQ_HI (0x6147a <= hx <= 0x6b851): the
_LOG_HFSQ_HI = 1.0 + 0x6B852 / 1048576.0  # "hfsq" form, otherwise the "s*(f-R)" form

# exp: musl src/math/exp.c, fdlibm-derived version (origin: FreeBSD /usr/src/lib/msun/src/e_exp.c).
_EXP_O_THRESHOLD = 7.09782712893383973096e02  # 0x40862E42 0xFEFA39EF: above, exp overflows
_EXP_U_THRESHOLD = -7.45133219101941108420e02  # 0xc0874910 0xD52D3051: below, exp underflows to 0
_INVLN2 = 1.44269504088896338700e00  # 0x3ff71547 0x652b82fe
_P1 = 1.66666666666666019037e-01  # 0x3FC55555 0x5555553E
_P2 = -2.77777777770155933842e-03  # 0xBF66C16C 0x16BEBD93
_P3 = 6.61375632143793436117e-05  # 0x3F11566A 0xAF25DE2C
_P4 = -1.65339022054652515390e-06  # 0xBEBBBD41 0xC5D26BF1
_P5 = 4.13813679705723846039e-08  # 0x3E663769 0x72BEA4D0

# sin/cos kernels: musl src/math/__sin.c, __cos.c (origin: FreeBSD msun k_sin.c, k_cos.c).
_S1 = -1.66666666666666324348e-01  # 0xBFC55555 0x55555549
_S2 = 8.33333333332248946124e-03  # 0x3F811111 0x1110F8A6
_S3 = -1.98412698298579493134e-04  # 0xBF2A01A0 0x19C161D5
_S4 = 2.75573137070700676789e-06  # 0x3EC71DE3 0x57B1FE7D
_S5 = -2.50507602534068634195e-08  # 0xBE5AE5E6 0x8A2B9CEB
_S6 = 1.58969099521155010221e-10  # 0x3DE5D93A 0x5ACFD57C
_C1 = 4.16666666666666019037e-02  # 0x3FA55555 0x5555554C
_C2 = -1.38888888888741095749e-03  # 0xBF56C16C 0x16C15177
_C3 = 2.48015872894767294178e-05  # 0x3EFA01A0 0x19CB1590
_C4 = -2.75573143513906633035e-07  # 0xBE927E4F 0x809C52AD
_C5 = 2.08757232129817482790e-09  # 0x3E21EE9E 0xBDB4B1C4
_C6 = -1.13596475577881948265e-11  # 0xBDA8FAE9 0xBE8838D4
_PIO2 = 1.5707963267948966  # 0x3FF921FB 0x54442D18, pi/2 rounded to nearest
_TWO_POW_50 = 1125899906842624.0  # sincos_turns handles |t| < 2^50

# erf/erfc: musl src/math/erf.c (origin: FreeBSD /usr/src/lib/msun/src/s_erf.c).
_ERX = 8.45062911510467529297e-01  # 0x3FEB0AC1 0x60000000, erf(1) rounded to 24 bits
_ONE_MINUS_ERX = 1.0 - _ERX  # exact (fdlibm computes z = 1.0 - erx at run time: same bits)
# erf on [0, 0.84375]: erf(x) = x + x * pp(x^2) / qq(x^2)
_PP = (
    1.28379167095512558561e-01,  # pp0 0x3FC06EBA 0x8214DB68
    -3.25042107247001499370e-01,  # pp1 0xBFD4CD7D 0x691CB913
    -2.84817495755985104766e-02,  # pp2 0xBF9D2A51 0xDBD7194F
    -5.77027029648944159157e-03,  # pp3 0xBF77A291 0x236668E4
    -2.37630166566501626084e-05,  # pp4 0xBEF8EAD6 0x120016AC
)
_QQ = (
    1.0,
    3.97917223959155352819e-01,  # qq1 0x3FD97779 0xCDDADC09
    6.50222499887672944485e-02,  # qq2 0x3FB0A54C 0x5536CEBA
    5.08130628187576562776e-03,  # qq3 0x3F74D022 0xC4D36B0F
    1.32494738004321644526e-04,  # qq4 0x3F215DC9 0x221C1A10
    -3.96022827877536812320e-06,  # qq5 0xBED09C43 0x42A26120
)
# erf on [0.84375, 1.25]: erf(1 + s) = erx + pa(s) / qa(s)
_PA = (
    -2.36211856075265944077e-03,  # pa0 0xBF6359B8 0xBEF77538
    4.14856118683748331666e-01,  # pa1 0x3FDA8D00 0xAD92B34D
    -3.72207876035701323847e-01,  # pa2 0xBFD7D240 0xFBB8C3F1
    3.18346619901161753674e-01,  # pa3 0x3FD45FCA 0x805120E4
    -1.10894694282396677476e-01,  # pa4 0xBFBC6398 0x3D3E28EC
    3.54783043256182359371e-02,  # pa5 0x3FA22A36 0x599795EB
    -2.16637559486879084300e-03,  # pa6 0xBF61BF38 0x0A96073F
)
_QA = (
    1.0,
    1.06420880400844228286e-01,  # qa1 0x3FBB3E66 0x18EEE323
    5.40397917702171048937e-01,  # qa2 0x3FE14AF0 0x92EB6F33
    7.18286544141962662868e-02,  # qa3 0x3FB2635C 0xD99FE9A7
    1.26171219808761642112e-01,  # qa4 0x3FC02660 0xE763351F
    1.36370839120290507362e-02,  # qa5 0x3F8BEDC2 0x6B51DD1C
    1.19844998467991074170e-02,  # qa6 0x3F888B54 0x5735151D
)
# erfc on [1.25, 1/0.35]: erfc(x) = exp(-x*x - 0.5625 + ra(s) / sa(s)) / x, s = 1 / x^2
_RA = (
    -9.86494403484714822705e-03,  # ra0 0xBF843412 0x600D6435
    -6.93858572707181764372e-01,  # ra1 0xBFE63416 0xE4BA7360
    -1.05586262253232909814e01,  # ra2 0xC0251E04 0x41B0E726
    -6.23753324503260060396e01,  # ra3 0xC04F300A 0xE4CBA38D
    -1.62396669462573470355e02,  # ra4 0xC0644CB1 0x84282266
    -1.84605092906711035994e02,  # ra5 0xC067135C 0xEBCCABB2
    -8.12874355063065934246e01,  # ra6 0xC0545265 0x57E4D2F2
    -9.81432934416914548592e00,  # ra7 0xC023A0EF 0xC69AC25C
)
_SA = (
    1.0,
    1.96512716674392571292e01,  # sa1 0x4033A6B9 0xBD707687
    1.37657754143519042600e02,  # sa2 0x4061350C 0x526AE721
    4.34565877475229228821e02,  # sa3 0x407B290D 0xD58A1A71
    6.45387271733267880336e02,  # sa4 0x40842B19 0x21EC2868
    4.29008140027567833386e02,  # sa5 0x407AD021 0x57700314
    1.08635005541779435134e02,  # sa6 0x405B28A3 0xEE48AE2C
    6.57024977031928170135e00,  # sa7 0x401A47EF 0x8E484A93
    -6.04244152148580987438e-02,  # sa8 0xBFAEEFF2 0xEE749A62
)
# erfc on [1/0.35, 28]: same form with rb(s) / sb(s)
_RB = (
    -9.86494292470009928597e-03,  # rb0 0xBF843412 0x39E86F4A
    -7.99283237680523006574e-01,  # rb1 0xBFE993BA 0x70C285DE
    -1.77579549177547519889e01,  # rb2 0xC031C209 0x555F995A
    -1.60636384855821916062e02,  # rb3 0xC064145D 0x43C5ED98
    -6.37566443368389627722e02,  # rb4 0xC083EC88 0x1375F228
    -1.02509513161107724954e03,  # rb5 0xC0900461 0x6A2E5992
    -4.83519191608651397019e02,  # rb6 0xC07E384E 0x9BDC383F
)
_SB = (
    1.0,
    3.03380607434824582924e01,  # sb1 0x403E568B 0x261D5190
    3.25792512996573918826e02,  # sb2 0x40745CAE 0x221B9F0A
    1.53672958608443695994e03,  # sb3 0x409802EB 0x189D5118
    3.19985821950859553908e03,  # sb4 0x40A8FFB7 0x688C246A
    2.55305040643316442583e03,  # sb5 0x40A3F219 0xCEDF3BE6
    4.74528541206955367215e02,  # sb6 0x407DA874 0xE79FE763
    -2.24409524465858183362e01,  # sb7 0xC03670E2 0x42712D62
)
_SQRT1_2 = 0.7071067811865476  # 0x3FE6A09E 0x667F3BCD, 1/sqrt(2) rounded to nearest

# ndtri: Wichura, AS 241 PPND16, Appl. Statist. 37 (1988) 477-484; digits as in R src/nmath/qnorm.c
# (also J. Burkardt's normal_01_cdf_inv). Coefficients in increasing powers; denominators have b0 = 1.
_AS241_A = (  # central region, numerator in r = 0.180625 - q^2
    3.387132872796366608,
    133.14166789178437745,
    1971.5909503065514427,
    13731.693765509461125,
    45921.953931549871457,
    67265.770927008700853,
    33430.575583588128105,
    2509.0809287301226727,
)
_AS241_B = (
    1.0,
    42.313330701600911252,
    687.1870074920579083,
    5394.1960214247511077,
    21213.794301586595867,
    39307.89580009271061,
    28729.085735721942674,
    5226.495278852854561,
)
_AS241_C = (  # intermediate tail, r = sqrt(-log(min(p, 1-p))) <= 5, in (r - 1.6)
    1.42343711074968357734,
    4.6303378461565452959,
    5.7694972214606914055,
    3.64784832476320460504,
    1.27045825245236838258,
    0.24178072517745061177,
    0.0227238449892691845833,
    7.7454501427834140764e-4,
)
_AS241_D = (
    1.0,
    2.05319162663775882187,
    1.6763848301838038494,
    0.68976733498510000455,
    0.14810397642748007459,
    0.0151986665636164571966,
    5.475938084995344946e-4,
    1.05075007164441684324e-9,
)
_AS241_E = (  # far tail, r > 5, in (r - 5)
    6.6579046435011037772,
    5.4637849111641143699,
    1.7848265399172913358,
    0.29656057182850489123,
    0.026532189526576123093,
    0.0012426609473880784386,
    2.71155556874348757815e-5,
    2.01033439929228813265e-7,
)
_AS241_F = (
    1.0,
    0.59983220655588793769,
    0.13692988092273580531,
    0.0148753612908506148525,
    7.868691311456132591e-4,
    1.8463183175100546818e-5,
    1.4215117583164458887e-7,
    2.04426310338993978564e-15,
)

# Thresholds on the high word of |x| (bits 62..32 of its encoding), as fdlibm writes them.
_EXP_TINY_HW = 0x3E300000  # |x| < 2^-28: exp(x) = 1 + x
_EXP_REDUCE_HW = 0x3FD62E42  # |x| > ~0.5 ln2: reduce by k ln2
_ERFC_TINY_HW = 0x3C700000  # |v| < 2^-56: erfc(v) = 1 - v
_ERFC_QUARTER_HW = 0x3FD00000  # |v| < 0.25
_ERFC_ERF_HW = 0x3FEB0000  # |v| < 0.84375: the pp/qq rational function
_ERFC_ERX_HW = 0x3FF40000  # |v| < 1.25: the pa/qa rational function around 1
_ERFC_NEAR_TAIL_HW = 0x4006DB6D  # |v| < 1/0.35: ra/sa, else rb/sb
_ERFC_NEG_SIX_HW = 0x40180000  # |v| >= 6: erfc(v) = 2 for negative v
_ERFC_FAR_HW = 0x403C0000  # |v| >= 28: 0 or 2

# Element-wise functions run on slices of this many elements: the temporaries then stay in cache.
_BLOCK = 1 << 16
_HIGH_MASK = np.uint64(0xFFFFFFFF00000000)


def _f64(x: ArrayLike) -> F64:
    return np.asarray(x, dtype=np.float64)


def _map(block: Callable[[F64], F64], x: ArrayLike) -> F64:
    """Apply an element-wise ``block`` function to x in slices of _BLOCK elements (same bits, cache-sized)."""
    a = _f64(x)
    flat = a.reshape(-1)
    if flat.size <= _BLOCK:
        return block(flat).reshape(a.shape)
    out = np.empty(flat.size, dtype=np.float64)
    for i in range(0, flat.size, _BLOCK):
        out[i : i + _BLOCK] = block(flat[i : i + _BLOCK])
    return out.reshape(a.shape)


def _map2(block: Callable[[F64], tuple[F64, F64]], x: ArrayLike) -> tuple[F64, F64]:
    """``_map`` for a block function with two outputs."""
    a = _f64(x)
    flat = a.reshape(-1)
    if flat.size <= _BLOCK:
        y1, y2 = block(flat)
        return y1.reshape(a.shape), y2.reshape(a.shape)
    out1 = np.empty(flat.size, dtype=np.float64)
    out2 = np.empty(flat.size, dtype=np.float64)
    for i in range(0, flat.size, _BLOCK):
        out1[i : i + _BLOCK], out2[i : i + _BLOCK] = block(flat[i : i + _BLOCK])
    return out1.reshape(a.shape), out2.reshape(a.shape)


def _horner(z: F64, coeffs: tuple[float, ...]) -> F64:
    """c0 + z*(c1 + z*(c2 + ... + z*cn)): p = cn; for i = n-1 .. 0: p = ci + z*p (two roundings per step)."""
    p = coeffs[-2] + z * coeffs[-1]
    for c in coeffs[-3::-1]:
        p = c + z * p
    return p


def _abs_high_word(x: F64) -> NDArray[np.int64]:
    """Bits 62..32 of the encoding of x (fdlibm's ``hx & 0x7fffffff``), as a non-negative integer."""
    return (x.view(np.int64) >> 32) & 0x7FFFFFFF


def _clear_low_word(x: F64) -> F64:
    """x with the low 32 bits of its encoding set to 0 (fdlibm's ``SET_LOW_WORD(z, 0)``): exact truncation."""
    return (x.view(np.uint64) & _HIGH_MASK).view(np.float64)


# ---------------------------------------------------------------------------------------------------------
# log
# ---------------------------------------------------------------------------------------------------------


def log(x: ArrayLike) -> F64:
    """Natural logarithm, fdlibm ``__ieee754_log`` (FreeBSD msun e_log.c, fdlibm-era musl log.c).

    Error < 1 ulp. Defined for finite x > 0, subnormals included; log(+-0) = -inf, log(+inf) = +inf, and
    x < 0 or NaN give NaN (fdlibm's special values, returned without floating-point warnings).

    1. Reduction: ``m, e = frexp(x)`` (exact, also for subnormals), ``u = 2*m`` in [1, 2), ``k = e - 1``.
       If ``u >= 1 + 0x6a09c*2^-20`` (~1.41421127, fdlibm's test ``(hx + 0x95f64) & 0x100000``):
       ``u = u*0.5``, ``k = k + 1``. Then ``f = u - 1`` (exact), x = 2^k (1 + f), 1+f in [~0.7071, ~1.4142).
       ``dk = float(k)``. The branch thresholds below are on the *unhalved* u (fdlibm's hx).
    2. If u < 1 + 2^-20 or u >= 1 + 0xffffe*2^-20 (|f| < 2^-20):
       ``R = (f*f) * (0.5 - 0.33333333333333333*f)``; ``log = dk*ln2_hi - ((R - dk*ln2_lo) - f)``.
    3. Otherwise ``s = f / (2 + f)``, ``z = s*s``, ``w = z*z``,
       ``t1 = w * (Lg2 + w*(Lg4 + w*Lg6))``, ``t2 = z * (Lg1 + w*(Lg3 + w*(Lg5 + w*Lg7)))``, ``R = t2 + t1``;
       if 1 + 0x6147a*2^-20 <= u < 1 + 0x6b852*2^-20: ``hfsq = (0.5*f)*f``,
       ``log = dk*ln2_hi - ((hfsq - (s*(hfsq + R) + dk*ln2_lo)) - f)``;
       else ``log = dk*ln2_hi - ((s*(f - R) - dk*ln2_lo) - f)``.
    (fdlibm's separate k == 0 formulas give bit-identical results: with dk = 0 the ln2 terms are +0 and
    ``0 - (a - f) == f - a`` exactly in round-to-nearest.)
    """
    return _map(_log_block, x)


def _log_block(x: F64) -> F64:
    ok = (x > 0.0) & (x < np.inf)
    xs = np.where(ok, x, 1.0)
    m, e = np.frexp(xs)
    u = m * 2.0
    k = e - 1
    halve = u >= _LOG_HALVE_AT
    f = np.where(halve, u * 0.5, u) - 1.0
    dk = np.where(halve, k + 1, k).astype(np.float64)
    small = (u < _LOG_SMALL_LO) | (u >= _LOG_SMALL_HI)
    hfsq_form = (u >= _LOG_HFSQ_LO) & (u < _LOG_HFSQ_HI)

    k_hi = dk * _LN2_HI
    k_lo = dk * _LN2_LO
    # |f| < 2^-20
    r_small = (f * f) * (0.5 - _THIRD * f)
    res_small = k_hi - ((r_small - k_lo) - f)
    # general case
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * _horner(w, (_LG2, _LG4, _LG6))
    t2 = z * _horner(w, (_LG1, _LG3, _LG5, _LG7))
    r = t2 + t1
    hfsq = (0.5 * f) * f
    res_hfsq = k_hi - ((hfsq - (s * (hfsq + r) + k_lo)) - f)
    res_plain = k_hi - ((s * (f - r) - k_lo) - f)
    res = np.where(small, res_small, np.where(hfsq_form, res_hfsq, res_plain))

    special = np.where(x == 0.0, -np.inf, np.where(x == np.inf, np.inf, np.nan))
    return np.where(ok, res, special)


# ---------------------------------------------------------------------------------------------------------
# exp
# ---------------------------------------------------------------------------------------------------------


def exp(x: ArrayLike) -> F64:
    """Exponential, fdlibm ``__ieee754_exp`` (FreeBSD msun e_exp.c, fdlibm-era musl exp.c).

    Error < 1 ulp. x > 709.782712893384 (o_threshold) gives +inf, x < -745.1332191019411 (u_threshold)
    gives +0, NaN gives NaN; in between, results below 2^-1022 are the correctly scaled subnormals (the
    final ``ldexp`` rounds once), as IEEE gradual underflow and fdlibm give.

    With ``hx`` the high 32 bits of |x|'s encoding (bits 62..32):
    1. If hx < 0x3e300000 (|x| < 2^-28): ``exp = 1.0 + x``.
    2. Reduction: if hx > 0x3fd62e42 (|x| > 0.5 ln2 roughly): ``k = trunc(x*invln2 + copysign(0.5, x))``
       (C's ``(int)(invln2*x + halF[sign])``), else k = 0; ``t = float(k)``; ``hi = x - t*ln2_hi`` (the
       product is exact), ``lo = t*ln2_lo``, ``r = hi - lo``. (fdlibm's special case 0.5 ln2 < |x| < 1.5 ln2
       and its k == 0 formula give the same bits as this general form.)
    3. ``t = r*r``; ``c = r - t*(P1 + t*(P2 + t*(P3 + t*(P4 + t*P5))))``;
       ``y = 1.0 - ((lo - (r*c)/(2.0 - c)) - hi)``.
    4. ``exp = ldexp(y, k)`` = y * 2^k: exact unless the result is subnormal, then one rounding (fdlibm's
       ``y * 2^(k+1000) * 2^-1000``, whose first product is exact).
    """
    return _map(_exp_block, x)


def _exp_block(x: F64) -> F64:
    over = x > _EXP_O_THRESHOLD
    under = x < _EXP_U_THRESHOLD
    ok = ~(over | under | np.isnan(x))
    xs = np.where(ok, x, 0.0)
    hx = _abs_high_word(xs)
    tiny = hx < _EXP_TINY_HW
    kf = np.where(hx > _EXP_REDUCE_HW, np.trunc(xs * _INVLN2 + np.copysign(0.5, xs)), 0.0)
    hi = xs - kf * _LN2_HI
    lo = kf * _LN2_LO
    r = hi - lo
    t = r * r
    c = r - t * _horner(t, (_P1, _P2, _P3, _P4, _P5))
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    res = np.where(tiny, 1.0 + xs, np.ldexp(y, kf.astype(np.int32)))
    return np.where(ok, res, np.where(over, np.inf, np.where(under, 0.0, np.nan)))


# ---------------------------------------------------------------------------------------------------------
# sin and cos of 2*pi*t
# ---------------------------------------------------------------------------------------------------------


def sincos_turns(t: ArrayLike) -> tuple[F64, F64]:
    """(sin(2*pi*t), cos(2*pi*t)) for t in [0, 1) (any finite |t| < 2^50 works), absolute error < ~2.5e-16.

    The reduction is exact, so multiples of 1/4 turn give exact 0 and +-1 (zeros are +0).
    1. ``y = 4*t`` (exact), ``q = rint(y)`` (ties to even), ``r = y - q`` in [-0.5, 0.5] (exact),
       ``x = r * PIO2`` with PIO2 = 1.5707963267948966 (one rounding), so 2*pi*t = q*(pi/2) + x, |x| <= pi/4.
    2. ``z = x*x``, ``w = z*z``.
       sin kernel (fdlibm ``__kernel_sin(x, 0, 0)``, musl __sin.c):
       ``rs = (S2 + z*(S3 + z*S4)) + (z*w)*(S5 + z*S6)``, ``v = z*x``, ``s = x + v*(S1 + z*rs)``.
       cos kernel (fdlibm ``__kernel_cos(x, 0)``, musl __cos.c, whose ``- x*y`` term is exactly 0 here):
       ``rc = z*(C1 + z*(C2 + z*C3)) + (w*w)*(C4 + z*(C5 + z*C6))``, ``hz = 0.5*z``, ``g = 1.0 - hz``,
       ``c = g + (((1.0 - g) - hz) + z*rc)``.
    3. Quadrant n = q mod 4 (q is 4 for t in [0.875, 1), i.e. quadrant 0), negation written ``0.0 - v``
       (so that it never produces -0):

           n | sin(2 pi t) | cos(2 pi t)
           0 |      s      |      c
           1 |      c      |     -s
           2 |     -s      |     -c
           3 |     -c      |      s

    Non-finite t or |t| >= 2^50 give NaN.
    """
    return _map2(_sincos_turns_block, t)


def _sincos_turns_block(t: F64) -> tuple[F64, F64]:
    ok = np.abs(t) < _TWO_POW_50
    ts = np.where(ok, t, 0.0)
    y = ts * 4.0
    q = np.rint(y)
    x = (y - q) * _PIO2
    z = x * x
    w = z * z
    rs = (_S2 + z * (_S3 + z * _S4)) + (z * w) * (_S5 + z * _S6)
    v = z * x
    s = x + v * (_S1 + z * rs)
    rc = z * (_C1 + z * (_C2 + z * _C3)) + (w * w) * (_C4 + z * (_C5 + z * _C6))
    hz = 0.5 * z
    g = 1.0 - hz
    c = g + (((1.0 - g) - hz) + z * rc)
    n = q.astype(np.int64) & 3
    swap = (n & 1) == 1  # quadrants 1, 3: sin <- c, cos <- s
    a = np.where(swap, c, s)
    b = np.where(swap, s, c)
    sin = np.where(n >= 2, 0.0 - a, a)  # quadrants 2, 3
    cos = np.where((n == 1) | (n == 2), 0.0 - b, b)  # quadrants 1, 2
    return np.where(ok, sin, np.nan), np.where(ok, cos, np.nan)


# ---------------------------------------------------------------------------------------------------------
# erfc and the normal CDF
# ---------------------------------------------------------------------------------------------------------

# Builds (e_hi, e_lo) with e_hi + e_lo ~ -v*v - 0.5625 for the tail lanes, e_hi exact; see _erfc_core.
_TailExponent = Callable[[NDArray[np.bool_]], tuple[F64, F64]]


def _erfc_core(v: F64, tail_exponent: _TailExponent) -> F64:
    """fdlibm erfc(v) (musl src/math/erf.c, FreeBSD s_erf.c); the tail exponent comes from ``tail_exponent``.

    With ix the high word of |v| (bits 62..32) and ``neg`` the sign bit of v:
    * ix >= 0x7ff00000: NaN -> NaN, +inf -> 0, -inf -> 2.
    * ix < 0x3c700000 (|v| < 2^-56): ``1.0 - v``.
    * ix < 0x3feb0000 (|v| < 0.84375): ``z = v*v``, ``y = pp(z) / qq(z)``;
      if v < 0.25 (neg or ix < 0x3fd00000): ``1.0 - (v + v*y)``, else ``0.5 - (v*y + (v - 0.5))``.
    * ix < 0x3ff40000 (|v| < 1.25): ``s = |v| - 1``, ``P = pa(s)``, ``Q = qa(s)``;
      ``(1 - erx) - P/Q`` if v >= 0, else ``1.0 + (erx + P/Q)``.
    * ix < 0x403c0000 (|v| < 28): a = |v|; if neg and ix >= 0x40180000 (v <= -6): 2.0 (fdlibm's 2 - tiny).
      Else ``s = 1.0 / (a*a)``; if ix < 0x4006db6d (a < 1/0.35): ``R = ra(s)``, ``S = sa(s)``, else rb, sb;
      ``r = exp(e_hi) * exp(e_lo + R/S)`` with (e_hi, e_lo) from ``tail_exponent`` (for plain erfc:
      ``zt = a`` with the low 32 bits of its encoding cleared, ``e_hi = (-zt)*zt - 0.5625`` (exact),
      ``e_lo = (zt - a)*(zt + a)``); result ``r / a`` if v > 0, else ``2.0 - r/a``.
    * otherwise (|v| >= 28, finite): 0.0 if v > 0 (fdlibm's tiny*tiny underflow), 2.0 if v < 0.
    ``pp``, ``qq``, ... are _horner polynomials of the coefficient tuples above (qq, qa, sa, sb start with 1).
    """
    ix = _abs_high_word(v)
    neg = np.signbit(v)
    out = np.where(neg, 2.0, 0.0)  # |v| >= 28 and the infinities; also the v <= -6 lanes of the tail
    out = np.where(np.isnan(v), np.nan, out)

    m = ix < _ERFC_TINY_HW
    out[m] = 1.0 - v[m]

    m = (ix >= _ERFC_TINY_HW) & (ix < _ERFC_ERF_HW)
    if m.any():
        vm = v[m]
        z = vm * vm
        y = _horner(z, _PP) / _horner(z, _QQ)
        below_quarter = neg[m] | (ix[m] < _ERFC_QUARTER_HW)
        out[m] = np.where(below_quarter, 1.0 - (vm + vm * y), 0.5 - (vm * y + (vm - 0.5)))

    m = (ix >= _ERFC_ERF_HW) & (ix < _ERFC_ERX_HW)
    if m.any():
        vm = v[m]
        s = np.abs(vm) - 1.0
        pq = _horner(s, _PA) / _horner(s, _QA)
        out[m] = np.where(neg[m], 1.0 + (_ERX + pq), _ONE_MINUS_ERX - pq)

    m = (ix >= _ERFC_ERX_HW) & (ix < _ERFC_FAR_HW) & ~(neg & (ix >= _ERFC_NEG_SIX_HW))
    if m.any():
        a = np.abs(v[m])
        s = 1.0 / (a * a)
        near = ix[m] < _ERFC_NEAR_TAIL_HW
        ratio = np.empty_like(a)
        sn, sf = s[near], s[~near]
        ratio[near] = _horner(sn, _RA) / _horner(sn, _SA)
        ratio[~near] = _horner(sf, _RB) / _horner(sf, _SB)
        e_hi, e_lo = tail_exponent(m)
        r = _exp_block(e_hi) * _exp_block(e_lo + ratio)
        q = r / a
        out[m] = np.where(neg[m], 2.0 - q, q)
    return out


def erfc(x: ArrayLike) -> F64:
    """Complementary error function 1 - erf(x), fdlibm ``erfc`` (musl src/math/erf.c, FreeBSD s_erf.c).

    The steps are in ``_erfc_core``; the tail uses fdlibm's exp(-z*z - 0.5625) * exp((z-x)*(z+x) + R/S) with
    z = |x| truncated to its high 32 bits, so -z*z - 0.5625 is exact. Error: a few ulp relative for all
    x < 26.5 (erfc(x) >= ~1e-307); below that the result is subnormal (absolute error ~1e-323) and it is
    0 for x >= 27.3. erfc(-inf) = 2, erfc(+inf) = 0, erfc(NaN) = NaN.
    """
    return _map(_erfc_block, x)


def _erfc_block(x: F64) -> F64:
    def tail(m: NDArray[np.bool_]) -> tuple[F64, F64]:
        a = np.abs(x[m])
        zt = _clear_low_word(a)
        return (-zt) * zt - 0.5625, (zt - a) * (zt + a)

    return _erfc_core(x, tail)


def ndtr(x: ArrayLike) -> F64:
    """Standard normal CDF Phi(x) = 0.5 * erfc(-x / sqrt(2)), with relative accuracy in the lower tail.

    ``v = 0.0 - x*SQRT1_2`` (SQRT1_2 = 0.7071067811865476, one rounding), ``Phi = 0.5 * erfc(v)`` with the
    steps of ``_erfc_core``, except that in the tail (|v| >= 1.25) the exponent -v*v - 0.5625 is computed
    from x itself, so that the rounding of v does not get amplified by v^2 (~700 at x = -37):
    ``xt = |x|`` with the low 32 bits cleared, ``e_hi = (((-xt)*xt) * 0.5) - 0.5625`` (exact),
    ``e_lo = ((xt - |x|)*(xt + |x|)) * 0.5``; R/S and the final division still use a = |v|.
    Relative error vs the exact Phi: < ~1e-15 for x >= -37.5 (Phi >= ~5e-308); for x < -37.5 the result is
    subnormal (absolute error ~1e-323), 0 below about -38.5. Upper tail: Phi = 1 - erfc(|v|)/2 to ~1 ulp.
    ndtr(-inf) = 0, ndtr(+inf) = 1, ndtr(NaN) = NaN.
    """
    return _map(_ndtr_block, x)


def _ndtr_block(x: F64) -> F64:
    def tail(m: NDArray[np.bool_]) -> tuple[F64, F64]:
        a = np.abs(x[m])
        xt = _clear_low_word(a)
        return ((-xt) * xt) * 0.5 - 0.5625, ((xt - a) * (xt + a)) * 0.5

    v = 0.0 - x * _SQRT1_2
    return 0.5 * _erfc_core(v, tail)


# ---------------------------------------------------------------------------------------------------------
# ndtri
# ---------------------------------------------------------------------------------------------------------


def ndtri(p: ArrayLike) -> F64:
    """Inverse of ndtr: Wichura's AS 241 PPND16 (relative error ~1e-16), using ``log`` above.

    ndtri(0) = -inf, ndtri(1) = +inf; p < 0, p > 1 or NaN give NaN. Source: Appl. Statist. 37 (1988)
    477-484, coefficients and evaluation order as in R src/nmath/qnorm.c (Horner, highest power first).
    1. ``q = p - 0.5``.
    2. If |q| <= 0.425: ``r = 0.180625 - q*q``; ``ndtri = (q * A(r)) / B(r)``.
    3. Else: ``r = p`` if q < 0 else ``1.0 - p``; ``r = sqrt(0.0 - log(r))``;
       if r <= 5: ``r = r - 1.6``, ``val = C(r) / D(r)``; else ``r = r - 5.0``, ``val = E(r) / F(r)``;
       ``ndtri = -val`` if q < 0 else ``val``.
    A..F are _horner polynomials of _AS241_A.._AS241_F (B, D, F start with 1).
    """
    return _map(_ndtri_block, p)


def _ndtri_block(p: F64) -> F64:
    ok = (p > 0.0) & (p < 1.0)
    ps = np.where(ok, p, 0.5)
    q = ps - 0.5
    out = np.empty_like(ps)

    central = np.abs(q) <= 0.425
    qc = q[central]
    r = 0.180625 - qc * qc
    out[central] = (qc * _horner(r, _AS241_A)) / _horner(r, _AS241_B)

    tails = ~central
    if tails.any():
        qt = q[tails]
        pt = ps[tails]
        lower = qt < 0.0
        r = np.sqrt(0.0 - _log_block(np.where(lower, pt, 1.0 - pt)))
        near = r <= 5.0
        val = np.empty_like(r)
        rn = r[near] - 1.6
        val[near] = _horner(rn, _AS241_C) / _horner(rn, _AS241_D)
        rf = r[~near] - 5.0
        val[~near] = _horner(rf, _AS241_E) / _horner(rf, _AS241_F)
        out[tails] = np.where(lower, -val, val)

    special = np.where(p == 0.0, -np.inf, np.where(p == 1.0, np.inf, np.nan))
    return np.where(ok, out, special)
