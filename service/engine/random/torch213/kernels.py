"""The numba kernels of torch-2.13: PyTorch's MT19937 and the scalar transforms of its CPU kernels.

The generator state is a uint32[625]: MT19937's 624 words and, last, the index of the next word to temper
(624: twist first), the layout of ATen's `mt19937` engine. Every transform is written as ATen compiles it for
AVX2 (GCC, `-mavx2 -mfma`, default `-ffp-contract=fast`): where GCC fuses a multiply-add, `fma` here does too,
and where ATen calls the C library (float64 `log`/`sin`/`cos`/`log1p`), these kernels call the process's own libm
by symbol, never LLVM's or NumPy's versions, so that both sides use the same glibc code.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from service.engine.random.compiled.base import fma, inline, jit

N = 624
_M = 397
STATE_WORDS = N + 1  # the words, then the index of the next one
_TWO_PI = 2.0 * math.pi
_F32_24 = np.float32(2.0**-24)
_F64_53 = 2.0**-53
_MASK53 = np.uint64((1 << 53) - 1)


def _libm(name: str) -> Any:
    """C's `double name(double)`, called by symbol: the JIT links it to the process's libm (glibc's on the Linux
    builds torch ships), the library torch's own kernels call."""

    @intrinsic
    def call(typingctx: Any, x: Any) -> Any:
        if x != types.float64:
            return None

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            function_type = ir.FunctionType(ir.DoubleType(), [ir.DoubleType()])
            return builder.call(cgutils.get_or_insert_function(builder.module, function_type, name), args)

        return types.float64(types.float64), codegen

    return call


c_log = _libm("log")
c_log1p = _libm("log1p")
c_sin = _libm("sin")
c_cos = _libm("cos")


def seed_state(seed: int) -> np.ndarray:
    """torch.manual_seed(seed)'s MT19937 state: only the low 32 bits of the seed count."""
    state = np.empty(STATE_WORDS, dtype=np.uint32)
    _seed(state, np.uint32(seed & 0xFFFFFFFF))
    return state


@jit
def _seed(state: np.ndarray, seed: np.uint32) -> None:
    state[0] = seed
    for j in range(1, N):
        previous = state[j - 1]
        state[j] = np.uint32(1812433253) * (previous ^ (previous >> np.uint32(30))) + np.uint32(j)
    state[N] = N


@inline
def _twist(state: np.ndarray) -> None:
    upper, lower, matrix = np.uint32(0x80000000), np.uint32(0x7FFFFFFF), np.uint32(0x9908B0DF)
    one = np.uint32(1)
    for k in range(N):
        y = (state[k] & upper) | (state[(k + 1) % N] & lower)
        state[k] = state[(k + _M) % N] ^ (y >> one) ^ (matrix if y & one else np.uint32(0))
    state[N] = 0


@inline
def _temper(y: np.uint32) -> np.uint32:
    y ^= y >> np.uint32(11)
    y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
    y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
    return y ^ (y >> np.uint32(18))


@jit
def words(state: np.ndarray, out: np.ndarray) -> None:
    """out[:] = the next out.size words (generator->random())."""
    done = 0
    while done < out.size:
        if state[N] >= N:
            _twist(state)
        start = np.int64(state[N])
        count = min(N - start, out.size - done)
        for k in range(count):
            out[done + k] = _temper(state[start + k])
        state[N] = start + count
        done += count


@jit
def skip(state: np.ndarray, count: np.int64) -> None:
    """Advance by `count` words without tempering them."""
    while count > 0:
        if state[N] >= N:
            _twist(state)
        step = min(N - np.int64(state[N]), count)
        state[N] += step
        count -= step


@jit
def uniform32(state: np.ndarray, out: np.ndarray, low: np.float32, width: np.float32) -> None:
    """out[i] = fmaf((w & 0xFFFFFF) * 2^-24, width, low), one word each (uniform_real<float>), no clamp."""
    done = 0
    while done < out.size:
        if state[N] >= N:
            _twist(state)
        start = np.int64(state[N])
        count = min(N - start, out.size - done)
        for k in range(count):
            u = np.float32(_temper(state[start + k]) & np.uint32(0xFFFFFF)) * _F32_24
            out[done + k] = fma(u, width, low)
        state[N] = start + count
        done += count


@jit
def uniform64(state: np.ndarray, out: np.ndarray, low: float, width: float) -> None:
    """out[i] = fma((random64 & (2^53 - 1)) * 2^-53, width, low), random64 = w0 << 32 | w1 (uniform_real<double>)."""
    pair = np.empty(2, dtype=np.uint32)
    for i in range(out.size):
        words(state, pair)
        bits = (np.uint64(pair[0]) << np.uint64(32)) | np.uint64(pair[1])
        out[i] = fma(np.float64(bits & _MASK53) * _F64_53, width, low)


@jit
def clamp32(out: np.ndarray, high: np.float32, low: np.float32) -> None:
    """uniform_'s 2.13 clamp: a value that rounded up to the upper bound becomes the lower one."""
    for i in range(out.size):
        if out[i] == high:
            out[i] = low


@jit
def clamp64(out: np.ndarray, high: float, low: float) -> None:
    for i in range(out.size):
        if out[i] == high:
            out[i] = low


@jit
def normal_fill64(data: np.ndarray, mean: float, std: float) -> None:
    """NormalFill16<double> on every full block of 16 uniforms: Box-Muller with libm's log, cos and sin."""
    for block in range(0, data.size - 15, 16):
        for j in range(8):
            u1 = 1.0 - data[block + j]
            u2 = data[block + j + 8]
            radius = math.sqrt(-2.0 * c_log(u1))
            theta = _TWO_PI * u2
            data[block + j] = fma(radius * c_cos(theta), std, mean)
            data[block + j + 8] = fma(radius * c_sin(theta), std, mean)


@jit
def normal_scalar(state: np.ndarray, cache: np.ndarray, out: np.ndarray, mean: float, std: float) -> None:
    """normal_distribution<double> per element (torch's path below 16 elements): Box-Muller on two random64
    uniforms, r sin(theta) cached for the next element. cache = [has a sample (0/1), the sample]."""
    pair = np.empty(2, dtype=np.float64)
    for i in range(out.size):
        if cache[0] != 0.0:
            z = cache[1]
            cache[0] = 0.0
        else:
            uniform64(state, pair, 0.0, 1.0)
            radius = math.sqrt(-2.0 * c_log1p(-pair[1]))
            theta = _TWO_PI * pair[0]
            cache[1] = radius * c_sin(theta)
            cache[0] = 1.0
            z = radius * c_cos(theta)
        out[i] = fma(z, std, mean)


@jit
def randperm_prefixes(state: np.ndarray, n: np.int64, out: np.ndarray) -> None:
    """out[:, j] = the first out.shape[0] entries of the j-th of out.shape[1] successive torch.randperm(n) (CPU,
    n < 2^32 / 20): Fisher-Yates with z = random() % (n - i) swapping entries i and i + z, n - 1 words each."""
    perm = np.empty(n, dtype=np.int64)
    word = np.empty(1, dtype=np.uint32)
    for column in range(out.shape[1]):
        for i in range(n):
            perm[i] = i
        for i in range(n - 1):
            words(state, word)
            z = np.int64(word[0]) % (n - i)
            perm[i], perm[i + z] = perm[i + z], perm[i]
        for i in range(out.shape[0]):
            out[i, column] = perm[i]


def serving_signatures() -> list[tuple[str, Any, tuple[Any, ...]]]:
    """(name, kernel, argument types) of every kernel torch-2.13 calls, for compiling them without running them."""
    from numba import typeof

    from service.engine.random.torch213 import normal_avx2

    state, f32, f64 = np.zeros(STATE_WORDS, np.uint32), np.zeros(1, np.float32), np.zeros(1, np.float64)
    one32, one64 = np.float32(1), 1.0
    calls = (
        (_seed, (state, np.uint32(0))),
        (skip, (state, np.int64(0))),
        (uniform32, (state, f32, one32, one32)),
        (uniform64, (state, f64, one64, one64)),
        (clamp32, (f32, one32, one32)),
        (clamp64, (f64, one64, one64)),
        (normal_fill64, (f64, one64, one64)),
        (normal_scalar, (state, f64, f64, one64, one64)),
        (randperm_prefixes, (state, np.int64(0), np.zeros((1, 1), np.int64))),
        (normal_avx2._normal_fill, (f32, one32, one32)),
    )
    return [(f"torch-2.13 {kernel.__name__}", kernel, tuple(typeof(arg) for arg in args)) for kernel, args in calls]
