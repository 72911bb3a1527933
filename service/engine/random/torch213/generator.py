"""PyTorch 2.13's CPU default generator and the tensor operations torch.nn.init calls on it, tensor by tensor.

`Generator` is `torch.manual_seed(seed)`'s state: MT19937 (kernels) and the cached second Box-Muller sample of
`normal_`'s scalar path. Each method consumes it exactly as the ATen CPU kernel of the same name does for a
contiguous tensor of `n` elements in `dtype` (DistributionTemplates.h, AVX2 build) and returns the values in that
dtype. `skip_*` advance over a draw whose values are not needed, without transforming them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import ml_dtypes
import numpy as np
from numpy.typing import NDArray

from service.engine.random.torch213 import kernels

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
HALVES = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))
BULK = 16  # normal_ below this many elements takes the scalar path


def to_dtype(value: float, dtype: np.dtype) -> np.generic:
    """static_cast<scalar_t>(double): c10::Half and c10::BFloat16 are built from a float, so double -> float ->
    half (two roundings)."""
    if dtype == F64:
        return np.float64(value)
    return np.array([value], dtype=F64).astype(F32).astype(dtype)[0]


def words_per_value(dtype: np.dtype) -> int:
    """uniform_real_distribution<opmath_t>: random64 (2 words) for double, random (1 word) otherwise."""
    return 2 if dtype == F64 else 1


@dataclass
class Generator:
    state: NDArray[np.uint32]
    cache: NDArray[np.float64]  # [1.0 if a normal sample is cached else 0.0, the sample]

    @classmethod
    def seeded(cls, seed: int) -> Generator:
        """torch.manual_seed(seed), seed in [0, 2^64) (2^64 - 1 is manual_seed(-1)): low 32 bits, no cached sample."""
        return cls(kernels.seed_state(seed), np.zeros(2, dtype=np.float64))

    def copy(self) -> Generator:
        return Generator(self.state.copy(), self.cache.copy())

    # ---- uniform_ ---------------------------------------------------------------------------------------------

    def _uniform32(self, n: int, a: float, b: float) -> NDArray[np.float32]:
        low, high = np.float32(a), np.float32(b)
        out = np.empty(n, dtype=F32)
        kernels.uniform32(self.state, out, low, np.float32(high - low))
        return out

    def uniform_(self, n: int, a: float, b: float, dtype: np.dtype) -> NDArray:
        """tensor.uniform_(a, b): fma(u, b - a, a) in opmath (double for double, float otherwise), then the 2.13
        clamp: a value that rounds to b in the tensor's dtype becomes a."""
        if dtype == F64:
            out64 = np.empty(n, dtype=F64)
            kernels.uniform64(self.state, out64, a, b - a)
            kernels.clamp64(out64, b, a)
            return out64
        out = self._uniform32(n, a, b)
        if dtype == F32:
            kernels.clamp32(out, np.float32(b), np.float32(a))
            return out
        rounded = out.astype(dtype)
        rounded[rounded == to_dtype(b, dtype)] = to_dtype(a, dtype)
        return rounded

    # ---- normal_ ----------------------------------------------------------------------------------------------

    def normal_(self, n: int, mean: float, std: float, dtype: np.dtype) -> NDArray:
        """tensor.normal_(mean, std): below 16 elements normal_distribution<double> per element (with the cached
        sample); else every uniform first, Box-Muller on each full block of 16, and if n % 16 != 0 the last 16
        recomputed from 16 new uniforms. float16/bfloat16 are the float values rounded (normal_fill's buffer), drawn
        a block at a time: the tail's 16 follow the last whole block."""
        if n < BULK:
            values = np.empty(n, dtype=F64)
            kernels.normal_scalar(self.state, self.cache, values, mean, std)
            return values if dtype == F64 else values.astype(F32).astype(dtype)
        if dtype == F64:
            out64 = np.empty(n, dtype=F64)
            kernels.uniform64(self.state, out64, 0.0, 1.0)
            kernels.normal_fill64(out64, mean, std)
            if n % BULK:
                tail64 = np.empty(BULK, dtype=F64)
                kernels.uniform64(self.state, tail64, 0.0, 1.0)
                kernels.normal_fill64(tail64, mean, std)
                out64[-BULK:] = tail64
            return out64
        # float32 draws every uniform into the output first; float16/bfloat16 only whole blocks into a float
        # buffer: n % 16 words fewer before the tail's 16.
        blocks = n - n % BULK
        out = self._uniform32(n if dtype == F32 else blocks, 0.0, 1.0)
        mean32, std32 = float(np.float32(mean)), float(np.float32(std))
        _normal_fill32(out[:blocks], mean32, std32)
        if dtype != F32:
            out = np.concatenate([out, np.empty(n - blocks, dtype=F32)])
        if n % BULK:
            tail = self._uniform32(BULK, 0.0, 1.0)
            _normal_fill32(tail, mean32, std32)
            out[-BULK:] = tail
        return out if dtype == F32 else out.astype(dtype)

    # ---- draws whose values are not needed --------------------------------------------------------------------

    def skip_uniform(self, n: int, dtype: np.dtype) -> None:
        kernels.skip(self.state, np.int64(n * words_per_value(dtype)))

    def skip_normal(self, n: int, dtype: np.dtype) -> None:
        if n < BULK:  # the scalar path reads and leaves the cached sample: compute it
            self.normal_(n, 0.0, 1.0, dtype)
            return
        tail = BULK if n % BULK else 0
        drawn = n if dtype in (F32, F64) else n - n % BULK  # as normal_ draws them
        kernels.skip(self.state, np.int64((drawn + tail) * words_per_value(dtype)))

    # ---- trunc_normal_ (torch 2.13's algorithm, torch/nn/init.py) ----------------------------------------------

    def trunc_normal_(self, n: int, mean: float, std: float, a: float, b: float, dtype: np.dtype) -> NDArray:
        """torch.nn.init.trunc_normal_: p = Phi(beta) - Phi(alpha) with math.erf; p > 0.3: normal_ and full-size
        normal_ redraws of the out-of-range elements; else uniform_(a, b) proposals accepted where
        log(uniform_()) <= log density - log peak, in the tensor's dtype, with full-size redraws."""

        def norm_cdf(x: float) -> float:
            return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

        p = norm_cdf((b - mean) / std) - norm_cdf((a - mean) / std)
        if p > 0.3:
            lo, hi = to_dtype(a, dtype), to_dtype(b, dtype)
            result = self.normal_(n, mean, std, dtype)
            while True:
                mask = (result < lo) | (result > hi)
                if not mask.any():
                    return result
                result = np.where(mask, self.normal_(n, mean, std, dtype), result)
        mode = max(a, min(mean, b))
        log_peak = -0.5 * ((mode - mean) / std) ** 2
        result = self.uniform_(n, a, b, dtype)
        pending = self._rejected(result, mean, std, log_peak, dtype)
        while pending.any():
            candidates = self.uniform_(n, a, b, dtype)
            result = np.where(pending, candidates, result)
            pending = pending & self._rejected(candidates, mean, std, log_peak, dtype)
        return result

    def _rejected(
        self, candidates: NDArray, mean: float, std: float, log_peak: float, dtype: np.dtype
    ) -> NDArray[np.bool_]:
        """accept_buf.uniform_().log_().gt(log density - log peak), each in-place op rounded to the dtype (its
        float16/bfloat16 ops compute in float). log_ is torch's vectorised log (MKL VML): here libm's, which
        differs from it in the last bit for ~0.1% of inputs (contract: docs/torch-rng.md)."""
        compute = F64 if dtype == F64 else F32
        x = candidates.astype(compute)
        for step in (
            lambda v: v - compute.type(mean),
            lambda v: v / compute.type(std),
            lambda v: v * v,
            lambda v: v * compute.type(-0.5),
            lambda v: v - compute.type(log_peak),
        ):
            x = step(x).astype(dtype).astype(compute)
        with np.errstate(divide="ignore"):
            log_u = np.log(self.uniform_(candidates.size, 0.0, 1.0, dtype).astype(F64))
        return log_u.astype(dtype).astype(compute) > x

    # ---- randperm (sparse_) ----------------------------------------------------------------------------------

    def randperm_prefixes(self, n: int, times: int, count: int) -> NDArray[np.int64]:
        """[count, times]: column j holds the first `count` entries of the j-th of `times` successive
        torch.randperm(n) (randperm draws from the default generator, as sparse_ calls it)."""
        out = np.empty((count, times), dtype=np.int64)
        kernels.randperm_prefixes(self.state, np.int64(n), out)
        return out

    def skip_randperms(self, n: int, times: int) -> None:
        kernels.skip(self.state, np.int64(max(n - 1, 0) * times))


def _normal_fill32(data: NDArray[np.float32], mean: float, std: float) -> None:
    """NormalFill16<float> of ATen's AVX2 build on every full block of 16 (avx_mathfun's log256_ps/sincos256_ps)."""
    if data.size:
        from service.engine.random.torch213.normal_avx2 import normal_fill_avx2

        normal_fill_avx2(data, mean, std)
