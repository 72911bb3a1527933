"""torch 2.13's float32 Box-Muller on AVX2 (`NormalFill16<float>`), bit for bit, on any CPU.

ATen's `normal_fill_16_AVX2` (aten/src/ATen/native/cpu/DistributionTemplates.h) turns each block of 16 uniforms in
[0, 1) into 16 normals with the Cephes float32 polynomials of `log256_ps` and `sincos256_ps` (avx_mathfun.h). GCC
compiled torch's kernels with `-mfma` and its default `-ffp-contract=fast`, so it fused some of the intrinsics'
separate multiplies and adds into FMAs: which ones is a fact of the binary, not of the source. They were read off
the disassembly of `NormalFill16<float, true>::operator()` in torch 2.13.0's libtorch_cpu.so (x86-64 wheel) and
confirmed exhaustively against torch (tests/engine/test_torch_normal_avx2.py):

* log: the nine-term polynomial is a chain of eight FMAs, y = fma(y, x, p_k); then y = x * y (a plain multiply),
  y = fma(y, z, e * q1), y = fma(-z, 0.5, y), x = x + y, x = fma(e, q2, x);
* sincos: the three-part reduction x = fma(y, -DP_k, x) for k = 1, 2, 3; each polynomial is two FMAs,
  p = fma(p, z, c_k), then one plain multiply p = z * p, then cos = fma(z, p, -z * 0.5) + 1 and
  sin = fma(x, p, x);
* everything else is a single IEEE operation, as in the source: theta = f32(2 pi) * u2, radius =
  sqrt(-2 * log(1 - u)), and the output fma(radius * cos, std, mean) that the source spells itself.

Unfusing any one of the log polynomial's FMAs, of y * z + e * q1, of the last reduction step or of any cos/sin
polynomial FMA changes the bits of some inputs (from 2 to 299,535 of the 2^24); the fusions of -z * 0.5,
e * q2, y * DP1 and y * DP2 are kept as compiled but change nothing, as those products are exact.

Here each of those is one correctly rounded float32 operation (`fma` is LLVM's llvm.fma.f32, never a contraction
left to the compiler: `jit` keeps fastmath off), so the bits are torch's on x86-64 and aarch64 alike. The lanes of
a block are independent, so a plain loop over them vectorises.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from service.engine.random.compiled.base import bits_f32, f32_bits, fma, inline, jit

_F = np.float32
_ONE = _F(1.0)
_MINUS_ONE = _F(-1.0)  # the binary adds -1 where the source subtracts 1: the same IEEE result
_HALF = _F(0.5)
_MINUS_TWO = _F(-2.0)
_ZERO = _F(0.0)
_TWO_PI = _F(2.0 * np.pi)  # `_mm256_set1_ps(2.0f * c10::pi<double>)`: the double 2 pi rounded to float32

# log256_ps
_MIN_NORM_POS = _F(np.finfo(np.float32).tiny)
_EXPONENT_FIELD = 0x7F800000
_HALF_BITS = 0x3F000000
_SQRTHF = _F(0.707106781186547524)
_LOG_P = tuple(
    _F(c)
    for c in (
        7.0376836292e-2,
        -1.1514610310e-1,
        1.1676998740e-1,
        -1.2420140846e-1,
        1.4249322787e-1,
        -1.6668057665e-1,
        2.0000714765e-1,
        -2.4999993993e-1,
        3.3333331174e-1,
    )
)
_LOG_Q1 = _F(-2.12194440e-4)
_LOG_Q2 = _F(0.693359375)
_ALL_BITS = 0xFFFFFFFF  # or'd into the result of log(x <= 0): a NaN, as `_mm256_or_ps(x, invalid_mask)`

# sincos256_ps
_SIGN_BIT = 0x80000000
_FOPI = _F(1.27323954473516)  # 4 / pi
_MINUS_DP1 = _F(-0.78515625)
_MINUS_DP2 = _F(-2.4187564849853515625e-4)
_MINUS_DP3 = _F(-3.77489497744594108e-8)
_SINCOF = (_F(-1.9515295891e-4), _F(8.3321608736e-3), _F(-1.6666654611e-1))
_COSCOF = (_F(2.443315711809948e-005), _F(-1.388731625493765e-003), _F(4.166664568298827e-002))


@inline
def log256(x: np.float32) -> np.float32:
    """One lane of `log256_ps` as compiled: the natural log of x > 0 (NaN for x <= 0)."""
    invalid = x <= _ZERO
    x = x if x > _MIN_NORM_POS else _MIN_NORM_POS  # _mm256_max_ps(x, min_norm_pos)
    bits = f32_bits(x)
    e = np.float32((bits >> 23) - 0x7F) + _ONE
    x = bits_f32((bits & ~_EXPONENT_FIELD) | _HALF_BITS)  # the mantissa, in [0.5, 1)
    small = x < _SQRTHF
    tmp = x if small else _ZERO  # `and` with the mask: x or +0.0
    x = x + _MINUS_ONE
    e = e - (_ONE if small else _ZERO)
    x = x + tmp

    z = x * x
    y = fma(_LOG_P[0], x, _LOG_P[1])
    y = fma(y, x, _LOG_P[2])
    y = fma(y, x, _LOG_P[3])
    y = fma(y, x, _LOG_P[4])
    y = fma(y, x, _LOG_P[5])
    y = fma(y, x, _LOG_P[6])
    y = fma(y, x, _LOG_P[7])
    y = fma(y, x, _LOG_P[8])
    y = x * y
    y = fma(y, z, e * _LOG_Q1)
    y = fma(-z, _HALF, y)
    x = x + y
    x = fma(e, _LOG_Q2, x)
    return bits_f32(f32_bits(x) | (_ALL_BITS if invalid else 0))


@inline
def sincos256(x: np.float32) -> tuple[np.float32, np.float32]:
    """One lane of `sincos256_ps` as compiled: (sin x, cos x), accurate for |x| < 8192."""
    bits = f32_bits(x)
    sign_sin = bits & _SIGN_BIT
    x = bits_f32(bits & ~_SIGN_BIT)
    j = np.int64(x * _FOPI)  # _mm256_cvttps_epi32: truncation
    j = (j + 1) & ~1
    y = np.float32(j)
    sign_sin ^= (j & 4) << 29
    sign_cos = (~(j - 2) & 4) << 29
    use_cos_poly_for_sin = (j & 2) == 0

    x = fma(y, _MINUS_DP1, x)
    x = fma(_MINUS_DP2, y, x)
    x = fma(y, _MINUS_DP3, x)

    z = x * x
    tmp = z * _HALF
    yc = fma(_COSCOF[0], z, _COSCOF[1])
    yc = fma(yc, z, _COSCOF[2])
    yc = z * yc
    yc = fma(z, yc, -tmp) + _ONE
    ys = fma(_SINCOF[0], z, _SINCOF[1])
    ys = fma(ys, z, _SINCOF[2])
    ys = z * ys
    ys = fma(x, ys, x)

    # the selection as the source does it, with `and`/`andnot` masks and a subtraction of what was taken
    ysin2 = ys if use_cos_poly_for_sin else _ZERO
    ysin1 = _ZERO if use_cos_poly_for_sin else yc
    ys = ys - ysin2
    yc = yc - ysin1
    sin = bits_f32(f32_bits(ysin1 + ysin2) ^ sign_sin)
    cos = bits_f32(f32_bits(yc + ys) ^ sign_cos)
    return sin, cos


@jit
def _normal_fill(data: NDArray[np.float32], mean: np.float32, std: np.float32) -> None:
    # rows of 16 with a constant 8-lane inner loop: LLVM vectorises that into torch's own 8-wide shape, where a
    # flat loop over `data[block + lane]` stays scalar (4-5x slower)
    blocks = data.reshape(data.size // 16, 16)
    for b in range(blocks.shape[0]):
        block = blocks[b]
        for lane in range(8):
            radius = np.sqrt(_MINUS_TWO * log256(_ONE - block[lane]))
            sin, cos = sincos256(_TWO_PI * block[lane + 8])
            block[lane] = fma(radius * cos, std, mean)
            block[lane + 8] = fma(radius * sin, std, mean)


def normal_fill_avx2(data: NDArray[np.float32], mean: float, std: float) -> None:
    """Turn the uniforms in [0, 1) of `data` (contiguous float32, a multiple of 16 long) into torch 2.13's
    normals in place, as `normal_fill_16_AVX2` does each block of 16; mean and std are rounded to float32 first,
    as torch does.

    One thread, without the GIL: blocks are independent, so a caller may hand slices starting at multiples of 16
    to its own worker threads (the engine's pool) and get the same bits."""
    if data.dtype != np.float32 or not data.flags.c_contiguous or data.size % 16:
        raise ValueError(f"need a contiguous float32 array of a multiple of 16 elements, got {data.dtype} {data.shape}")
    _normal_fill(data.reshape(-1), np.float32(mean), np.float32(std))
