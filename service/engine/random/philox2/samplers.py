"""philox-v2's transforms: a scheme's distribution, made for one output dtype, into values that stay in its interval
AFTER rounding to that dtype (docs/philox-v2.md sections 3 and 4).

philox-v1 computes a float64 value and rounds it afterwards, so U[a, b) can return b (or more) once rounded to a
coarser dtype. Here the bounds are moved first, in float64, to the rounding boundaries of the output dtype:

* `first_at_least(v, D)`: the least float64 x whose rounding to D is >= v (> v when strict). Rounding is monotone,
  so R_D(x) >= v exactly when x >= first_at_least(v, D).
* Uniform(a, b): x is uniform on [lo, hi) with lo = first_at_least(a) (strictly above a = -b when symmetric) and
  hi = first_at_least(b): exactly the continuous U[a, b) conditioned on a <= R_D(x) < b, which is what a
  "uniform on [a, b) in dtype D" is; nothing is rejected, so nothing is biased. The one float64 rounding that can
  still reach hi (lo + width * u rounded up) is clamped to top = the float64 just below hi, a value whose own
  rounding is the largest D value below b: the arithmetic's own resolution, not a bias of the law.
* TruncatedNormal(mean, std, a, b): the truncation interval becomes [first_at_least(a), last_at_most(b)], the
  float64 values that round into [a, b]; the inverse CDF and the clip then use it (philox-v1's formula otherwise).

For float64 output the cuts are the bounds themselves (symmetric: the float64 just above -b).

Each sampler is a `Distribution` for the engine's chunked, threaded `generate`: `fill_runs` runs the numba kernel
(`philox2.kernels`), `sample`/`sample_runs` the NumPy reference the kernels are tested against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from service.engine import parallel
from service.engine.dtypes import DTYPES, DType, round_to
from service.engine.errors import InitError
from service.engine.random import detmath
from service.engine.random.philox2 import ziggurat
from service.engine.random.philox2.stream import Stream
from service.engine.schemes import distributions as d
from service.engine.schemes.distributions import F64, Distribution, Moments, run_indices

if parallel.JIT_AVAILABLE:
    from service.engine.random.philox2 import kernels

_FLOAT64 = DTYPES["float64"]
_MAGNITUDE = (1 << 63) - 1
_LOW32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_S11 = np.uint64(11)
_S12 = np.uint64(12)


def _order(x: float) -> int:
    """The float64's rank among float64 values (-0.0 and 0.0 share 0): monotone, so bisection can search it."""
    bits = int(np.float64(x).view(np.int64))
    return bits if bits >= 0 else -(bits & _MAGNITUDE)


def _from_order(k: int) -> float:
    bits = k if k >= 0 else (-k) | (1 << 63)
    return float(np.uint64(bits).view(np.float64))


def _rounded(x: float, dtype: DType) -> float:
    with np.errstate(over="ignore"):
        return float(round_to(np.array([x]), dtype)[0])


def first_at_least(bound: float, dtype: DType, strict: bool = False) -> float:
    """The least finite float64 x with R_D(x) >= bound (> bound if strict); inf when there is none."""
    return _first_at_least(bound, math.copysign(1.0, bound), dtype, strict)


@lru_cache(maxsize=4096)
def _first_at_least(bound: float, sign: float, dtype: DType, strict: bool) -> float:
    """`first_at_least`, cached; `sign` keys the cache only: -0.0 == 0.0 would share an entry and give one zero's
    answer for the other."""
    if dtype == _FLOAT64:
        return math.nextafter(bound, math.inf) if strict else bound

    def holds(x: float) -> bool:
        rounded = _rounded(x, dtype)
        return rounded > bound if strict else rounded >= bound

    low, high = _order(-np.finfo(np.float64).max), _order(np.finfo(np.float64).max)
    if holds(_from_order(low)):
        return _from_order(low)
    if not holds(_from_order(high)):
        return math.inf
    while high - low > 1:  # invariant: not holds(low), holds(high)
        middle = (low + high) // 2
        if holds(_from_order(middle)):
            high = middle
        else:
            low = middle
    return _from_order(high)


def last_at_most(bound: float, dtype: DType) -> float:
    """The greatest float64 x with R_D(x) <= bound."""
    return math.nextafter(first_at_least(bound, dtype, strict=True), -math.inf)


def draws(stream: Stream, index: NDArray[np.int64], wide: bool) -> NDArray[np.uint64]:
    """Each element's draw: word i (32 bits), or V_i = (w[2i] << 32) | w[2i + 1] when `wide` (float64 output)."""
    if wide:
        words = stream.block_words(index // 2)
        rows, column = np.arange(index.size), 2 * (index % 2)
        return (words[rows, column] << _S32) | words[rows, column + 1]
    return stream.block_words(index // 4)[np.arange(index.size), index % 4]


@dataclass(frozen=True)
class Sampler(Distribution):
    """`source` drawn by philox-v2 for one output dtype; `wide` is float64 output (64-bit draws)."""

    source: Distribution
    wide: bool
    kind: ClassVar[str] = "philox-v2"

    def values_at(self, stream: Stream, index: NDArray[np.int64]) -> F64:
        """The NumPy reference: float64 values of the elements `index`, before rounding to the dtype."""
        raise NotImplementedError

    def kernel(self, stream: Stream, starts: NDArray[np.int64], length: int, out: NDArray) -> None:
        raise NotImplementedError

    def sample(self, stream: Stream, shape: tuple[int, ...], start: int, stop: int) -> F64:
        return self.values_at(stream, np.arange(start, stop, dtype=np.int64))

    def sample_runs(self, stream: Stream, shape: tuple[int, ...], starts: NDArray[np.int64], length: int) -> F64:
        return self.values_at(stream, run_indices(starts, length))

    def fill(self, stream: Stream, shape: tuple[int, ...], start: int, stop: int, out: NDArray) -> None:
        self.fill_runs(stream, shape, np.array([start], dtype=np.int64), stop - start, out)

    def fill_runs(
        self, stream: Stream, shape: tuple[int, ...], starts: NDArray[np.int64], length: int, out: NDArray
    ) -> None:
        if parallel.config().jit:
            self.kernel(stream, starts, length, out)
        else:
            out[...] = self.sample_runs(stream, shape, starts, length)

    def scratch_bytes(self, elements: int) -> int:
        return self.source.scratch_bytes(elements)

    def moments(self) -> Moments:
        return self.source.moments()

    def max_abs(self) -> float:
        return self.source.max_abs()


def _key(stream: Stream) -> tuple[np.uint64, ...]:
    return tuple(np.uint64(word) for word in stream.words4)


@dataclass(frozen=True)
class Uniform(Sampler):
    """min(low + width * u, top), u = word * 2^-32 or (V >> 11) * 2^-53, with the cuts of the module docstring."""

    low: float = 0.0
    width: float = 0.0
    top: float = 0.0

    def values_at(self, stream: Stream, index: NDArray[np.int64]) -> F64:
        return self.transform(draws(stream, index, self.wide))

    def transform(self, words: NDArray[np.uint64]) -> F64:
        """Values of the elements whose draws are `words`."""
        u = (words >> _S11).astype(np.float64) * 2.0**-53 if self.wide else words.astype(np.float64) * 2.0**-32
        return np.minimum(self.low + self.width * u, self.top)

    def kernel(self, stream: Stream, starts: NDArray[np.int64], length: int, out: NDArray) -> None:
        kernel = kernels.uniform64 if self.wide else kernels.uniform32
        kernel(*_key(stream), starts, length, self.low, self.width, self.top, out)


@dataclass(frozen=True)
class Normal(Sampler):
    """mean + std * z, z from the ziggurat on each element's own draw (`philox2.ziggurat`)."""

    def values_at(self, stream: Stream, index: NDArray[np.int64]) -> F64:
        source = self.source
        assert isinstance(source, d.Normal)
        return source.mean + source.std * ziggurat.standard_normal(
            stream, index, draws(stream, index, self.wide), self.wide
        )

    def kernel(self, stream: Stream, starts: NDArray[np.int64], length: int, out: NDArray) -> None:
        source = self.source
        assert isinstance(source, d.Normal)
        kernel = kernels.normal64 if self.wide else kernels.normal32
        retry = tuple(np.uint64(word) for word in stream.retry3)
        kernel(*_key(stream), *retry, starts, length, source.mean, source.std, out)

    def max_abs(self) -> float:
        source = self.source
        assert isinstance(source, d.Normal)
        return abs(source.mean) + source.std * ziggurat.MAX_Z


@dataclass(frozen=True)
class TruncatedNormal(Sampler):
    """philox-v1's inverse CDF on `inner`: the source truncated to the float64 values that round into [a, b]."""

    inner: d.TruncatedNormal = field(default_factory=lambda: d.TruncatedNormal(0.0, 1.0, -2.0, 2.0))

    def values_at(self, stream: Stream, index: NDArray[np.int64]) -> F64:
        return self.transform(draws(stream, index, self.wide))

    def transform(self, words: NDArray[np.uint64]) -> F64:
        """Values of the elements whose draws are `words`."""
        if self.wide:
            u = ((words >> _S12).astype(np.float64) + 0.5) * 2.0**-52
        else:
            u = (words.astype(np.float64) + 0.5) * 2.0**-32
        inner = self.inner
        z = detmath.ndtri(inner._p_lo + u * inner._mass)
        if inner._mirrored:
            z = -z
        x = inner.mean + inner.std * z
        # The spec's (and the kernel's) comparisons, not np.clip: they differ on a zero's sign (x = -0.0, a' = 0.0).
        x = np.where(x > inner.a, x, inner.a)
        return np.where(x < inner.b, x, inner.b)

    def kernel(self, stream: Stream, starts: NDArray[np.int64], length: int, out: NDArray) -> None:
        t = self.inner
        kernel = kernels.truncated_normal64 if self.wide else kernels.truncated_normal32
        kernel(*_key(stream), starts, length, t._p_lo, t._mass, t._mirrored, t.mean, t.std, t.a, t.b, out)


def sampler(distribution: Distribution, dtype: np.dtype) -> Distribution:
    """What philox-v2 generates `distribution` with for output `dtype` (as a NumPy dtype): a `Sampler` for the
    random element-wise kinds, the distribution itself for the rest (constants, eye, dirac: no stream).
    Raises InitError when the dtype holds no value of the distribution's interval."""
    return _sampler(distribution, dtype, _zero_signs(distribution))


def _zero_signs(distribution: Distribution) -> tuple[float, ...]:
    """The signs of the distribution's float fields: equal distributions may differ in a zero's sign (U[-0.0, 0.0)
    gives -0.0, U[0.0, 0.0) gives 0.0), which a cache keyed by the distribution alone would confuse."""
    values = (getattr(distribution, f.name) for f in fields(distribution))
    return tuple(math.copysign(1.0, v) for v in values if isinstance(v, float))


@lru_cache(maxsize=1024)
def _sampler(distribution: Distribution, dtype: np.dtype, zero_signs: tuple[float, ...]) -> Distribution:
    """`sampler`, cached by the distribution, the dtype and its zeros' signs."""
    target = next(t for t in DTYPES.values() if t.numpy == dtype)
    wide = target == _FLOAT64
    if isinstance(distribution, d.Uniform):
        low, high = distribution.low, distribution.high
        if not low < high:  # U[a, a): every element is a, as philox-v1 makes it
            return Uniform(distribution, wide, low, 0.0, low)
        lo = first_at_least(low, target, strict=low == -high)
        hi = first_at_least(high, target)
        if not lo < hi:
            raise InitError(
                "dtype", f"no {target.name} value lies in the uniform's interval [{low!r}, {high!r}) after rounding"
            )
        return Uniform(distribution, wide, lo, hi - lo, math.nextafter(hi, -math.inf))
    if isinstance(distribution, d.Normal):
        return Normal(distribution, wide)
    if isinstance(distribution, d.TruncatedNormal):
        lo, hi = first_at_least(distribution.a, target), last_at_most(distribution.b, target)
        if not lo < hi:
            raise InitError(
                "dtype",
                f"no {target.name} value lies in the truncation interval [{distribution.a!r}, {distribution.b!r}]",
            )
        inner = d.TruncatedNormal(distribution.mean, distribution.std, lo, hi)
        return TruncatedNormal(distribution, wide, inner)
    return distribution
