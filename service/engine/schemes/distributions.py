"""The distributions every scheme reduces to: how each is sampled, beside the closed forms of its moments.

`sample(stream, shape, start, stop)` returns the float64 values of flat (row-major) elements [start, stop): the
NumPy reference. `fill(stream, shape, start, stop, out)` writes the same values, rounded to out's dtype, into
`out`; the element-wise ones do it with the numba kernels of `random.compiled.samplers` when the engine is so configured
(`parallel.config().jit`), bit for bit the same (tests/engine/test_parallel.py). `sample_runs` / `fill_runs` do
the same for many runs [s, s + length) at once (a strided region), at a cost of their elements plus
`RUN_OVERHEAD` per run, not one call per run. Element-wise distributions
draw element i from block i // 4 of the stream only, so every slice is independent of how the tensor is cut up.
Structured ones (eye, dirac: deterministic; orthogonal, sparse: need whole columns or the whole matrix) say so
with `random_access = False` where they need more than the slice.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from service.engine import parallel
from service.engine.dtypes import DTYPES
from service.engine.errors import InitError
from service.engine.random import detmath, variates
from service.engine.random.philox import SPARSE_MASK, TAIL, WORDS_PER_BLOCK, Stream

if parallel.JIT_AVAILABLE:
    from service.engine.random.compiled import samplers

F64 = NDArray[np.float64]

# Largest |z| Box-Muller can return: sqrt(-2 ln 2^-53), reached when u1 = 2^-53.
MAX_NORMAL_RADIUS = math.sqrt(-2.0 * math.log(2.0**-53))
SQRT_2PI = math.sqrt(2.0 * math.pi)  # correctly rounded: a constant of docs/reproducibility.md
# Work one more run adds beyond its elements, in elements: a run computes whole Philox blocks (up to 6 words more
# than its length) and pays a setup in the kernel; bench/engine.py measures runs of 1 element at about this cost.
RUN_OVERHEAD = 16
_SPARSE_SLAB_ELEMENTS = 1 << 20
_BFLOAT16 = DTYPES["bfloat16"].numpy
# Bytes of temporaries per element being computed, besides the output (tests/engine/test_memory.py measures them
# with tracemalloc): NumPy's reference path holds the stream words and float64 intermediates (normal's Box-Muller
# peaks near 110), the numba kernels only tile buffers of a few KiB per thread.
REFERENCE_SCRATCH_BYTES = 128
KERNEL_SCRATCH_BYTES = 8


def run_indices(starts: NDArray[np.int64], length: int) -> NDArray[np.int64]:
    """The flat indices of runs [s, s + length), one run after another."""
    return (starts[:, None] + np.arange(length, dtype=np.int64)).reshape(-1)


@dataclass(frozen=True)
class Moments:
    """Mean and variance of a distribution and its support; None bounds are unbounded."""

    mean: float
    variance: float
    lower: float | None
    upper: float | None

    @property
    def std(self) -> float:
        return math.sqrt(self.variance)


class Distribution(ABC):
    kind: ClassVar[str]
    continuous: ClassVar[bool] = False  # has a continuous CDF (KS applies)
    random_access: ClassVar[bool] = True  # a slice costs only the slice
    # The same bits on every machine: only correctly rounded operations (detmath). False where a platform library
    # computes (LAPACK's QR): equal elsewhere to rounding error only, so an ETag of it is weak.
    machine_exact: ClassVar[bool] = True

    @abstractmethod
    def sample(self, stream: Stream, shape: tuple[int, ...], start: int, stop: int) -> F64: ...

    def fill(self, stream: Stream, shape: tuple[int, ...], start: int, stop: int, out: NDArray) -> None:
        """out[:] = elements [start, stop) rounded to out's dtype (float64 or float32, length stop - start)."""
        out[...] = self.sample(stream, shape, start, stop)

    def sample_runs(self, stream: Stream, shape: tuple[int, ...], starts: NDArray[np.int64], length: int) -> F64:
        """Elements [s, s + length) for each s of `starts`, one run after another: `sample` of each, joined.
        This generic form samples the span of all the runs; the random-access kinds override it."""
        first = int(starts.min())
        span = self.sample(stream, shape, first, int(starts.max()) + length)
        return span[run_indices(starts - first, length)]

    def fill_runs(
        self, stream: Stream, shape: tuple[int, ...], starts: NDArray[np.int64], length: int, out: NDArray
    ) -> None:
        """out[:] = `sample_runs` rounded to out's dtype (float64 or float32)."""
        out[...] = self.sample_runs(stream, shape, starts, length)

    def scratch_bytes(self, elements: int) -> int:
        """Temporaries `fill` or `fill_runs` holds for `elements` elements at once (an upper bound)."""
        return REFERENCE_SCRATCH_BYTES * elements

    def setup_cost(self) -> int:
        """Work done once per tensor whatever slice of it is asked for, in elements (besides the slice's own)."""
        return 0

    @abstractmethod
    def moments(self) -> Moments: ...

    @abstractmethod
    def max_abs(self) -> float:
        """Largest |value| the sampler can return (used to refuse dtype overflow up front)."""

    def cdf(self, x: F64) -> F64:
        raise NotImplementedError(f"{self.kind} has no continuous CDF")

    def describe(self) -> dict[str, float]:
        """The numbers that define this distribution, for response metadata."""
        return {}


def generate(
    distribution: Distribution, stream: Stream, shape: tuple[int, ...], start: int, stop: int, dtype: np.dtype
) -> NDArray:
    """Elements [start, stop) in `dtype`, filled chunk by chunk on the engine's threads (`parallel`).

    float64 and float32 are rounded on the store; float16 and bfloat16 go through float32 (dtypes.round_to's
    route), a chunk at a time so that no full-size float32 copy is ever made.
    """
    out = np.empty(stop - start, dtype=dtype)

    def fill_chunk(first: int, last: int) -> None:
        _fill_rounded(
            out[first - start : last - start], lambda target: distribution.fill(stream, shape, first, last, target)
        )

    parallel.run_chunks(start, stop, fill_chunk)
    return out


def generate_runs(
    distribution: Distribution,
    stream: Stream,
    shape: tuple[int, ...],
    starts: NDArray[np.int64],
    length: int,
    dtype: np.dtype,
) -> NDArray:
    """Runs [s, s + length) for each s of `starts`, one after another, in `dtype`, shared out to the engine's
    threads by their work (a run costs length + RUN_OVERHEAD): many short runs go as parallel as one long range."""
    out = np.empty(starts.size * length, dtype=dtype)
    run_cost = length + RUN_OVERHEAD

    def fill_chunk(first: int, last: int) -> None:
        # The runs whose work begins in [first, last): every run falls in exactly one chunk.
        begin, end = -(-first // run_cost), -(-last // run_cost)
        if begin < end:
            _fill_rounded(
                out[begin * length : end * length],
                lambda target: distribution.fill_runs(stream, shape, starts[begin:end], length, target),
            )

    parallel.run_chunks(0, starts.size * run_cost, fill_chunk)
    return out


def _fill_rounded(target: NDArray, fill: Callable[[NDArray], None]) -> None:
    """fill(target) for float64 and float32; float16 and bfloat16 through a float32 array of the chunk's size."""
    if target.dtype in (np.float64, np.float32):
        fill(target)
    else:
        as_float32 = _float32_scratch(target.size)
        fill(as_float32)
        if target.dtype == _BFLOAT16 and parallel.config().jit:
            from service.engine.random.compiled.rounding import bfloat16_bits

            bfloat16_bits(as_float32.view(np.uint32), target.view(np.uint16))  # ml_dtypes' bits, 2.7x faster
        else:
            target[...] = as_float32


# Each engine thread keeps its float32 scratch for the half-precision route: a fresh one per chunk was fresh pages
# to fault in (and give back) at every chunk of a stream, 0.3-0.5 of the 7-8 CPU seconds a 2.2 GB bfloat16
# checkpoint cost the server (bench/checkpoint.py). Only the pool's threads keep one (a fixed few, where callers'
# threads come and go), of at most this many elements (4 MiB; an engine chunk is 512 KiB by default): the part of
# `scratch_bytes` that outlives a request. Other threads and larger fills take a fresh one.
_SCRATCH_KEPT_ELEMENTS = 1 << 20
_scratch = threading.local()


def _float32_scratch(size: int) -> NDArray[np.float32]:
    """A float32 array of `size` elements for this thread's use until its next call."""
    if size > _SCRATCH_KEPT_ELEMENTS or not parallel.on_engine_thread():
        return np.empty(size, dtype=np.float32)
    kept = getattr(_scratch, "float32", None)
    if kept is None or kept.size < size:
        kept = _scratch.float32 = np.empty(size, dtype=np.float32)
    return kept[:size]


class Elementwise(Distribution):
    """I.i.d. elements: element i is a function of stream block i // 4 only."""

    continuous = True

    def sample(self, stream: Stream, shape: tuple[int, ...], start: int, stop: int) -> F64:
        first = start - start % WORDS_PER_BLOCK
        last = -(-stop // WORDS_PER_BLOCK) * WORDS_PER_BLOCK
        values = self.transform(stream.words(first, last))
        return values[start - first : stop - first]

    def sample_runs(self, stream: Stream, shape: tuple[int, ...], starts: NDArray[np.int64], length: int) -> F64:
        # Each run's own whole blocks, as many for every run as the worst alignment needs (a run starting at
        # word 3 of a block), all in one vectorised Philox call.
        n_blocks = (length + 2 * (WORDS_PER_BLOCK - 1)) // WORDS_PER_BLOCK
        words = stream.blocks_at(starts // WORDS_PER_BLOCK, n_blocks)
        values = self.transform(words.reshape(-1)).reshape(starts.size, -1)
        offsets = (starts % WORDS_PER_BLOCK)[:, None] + np.arange(length)
        return np.take_along_axis(values, offsets, axis=1).reshape(-1)

    @abstractmethod
    def transform(self, words: NDArray[np.uint64]) -> F64:
        """Values of whole blocks of words (length a multiple of 4)."""

    def fill(self, stream: Stream, shape: tuple[int, ...], start: int, stop: int, out: NDArray) -> None:
        if parallel.config().jit:
            self.fill_runs(stream, shape, np.array([start], dtype=np.int64), stop - start, out)
        else:
            out[...] = self.sample(stream, shape, start, stop)

    def scratch_bytes(self, elements: int) -> int:
        # Only the chunks being filled hold temporaries: at most one per engine thread.
        engine = parallel.config()
        in_flight = min(elements, engine.threads * engine.chunk_elements)
        return (KERNEL_SCRATCH_BYTES if engine.jit else REFERENCE_SCRATCH_BYTES) * in_flight

    def fill_runs(
        self, stream: Stream, shape: tuple[int, ...], starts: NDArray[np.int64], length: int, out: NDArray
    ) -> None:
        if parallel.config().jit:
            k0, k1 = stream.key
            self.jit_fill(np.uint64(k0), np.uint64(k1), starts, length, out)
        else:
            out[...] = self.sample_runs(stream, shape, starts, length)

    @abstractmethod
    def jit_fill(self, k0: np.uint64, k1: np.uint64, starts: NDArray[np.int64], length: int, out: NDArray) -> None:
        """`fill_runs` by the numba kernel (value stream of key (k0, k1))."""


@dataclass(frozen=True)
class Uniform(Elementwise):
    """U[low, high): x = low + (high - low) * u."""

    low: float
    high: float
    kind: ClassVar[str] = "uniform"

    def transform(self, words: NDArray[np.uint64]) -> F64:
        return self.low + (self.high - self.low) * variates.uniform01(words)

    def jit_fill(self, k0: np.uint64, k1: np.uint64, starts: NDArray[np.int64], length: int, out: NDArray) -> None:
        samplers.uniform(k0, k1, starts, length, self.low, self.high - self.low, out, samplers.PHILOX)

    def moments(self) -> Moments:
        width = self.high - self.low
        return Moments((self.low + self.high) / 2, width * width / 12, self.low, self.high)

    def cdf(self, x: F64) -> F64:
        if self.high == self.low:
            return (x >= self.low).astype(np.float64)
        return np.clip((x - self.low) / (self.high - self.low), 0.0, 1.0)

    def max_abs(self) -> float:
        return max(abs(self.low), abs(self.high))

    def describe(self) -> dict[str, float]:
        if self.low == -self.high:
            return {"bound": self.high}
        return {"low": self.low, "high": self.high}


@dataclass(frozen=True)
class Normal(Elementwise):
    """N(mean, std^2), untruncated: x = mean + std * z with z from Box-Muller."""

    mean: float
    std: float
    kind: ClassVar[str] = "normal"

    def transform(self, words: NDArray[np.uint64]) -> F64:
        return self.mean + self.std * variates.standard_normal(words)

    def jit_fill(self, k0: np.uint64, k1: np.uint64, starts: NDArray[np.int64], length: int, out: NDArray) -> None:
        samplers.normal(k0, k1, starts, length, self.mean, self.std, out, samplers.PHILOX)

    def moments(self) -> Moments:
        return Moments(self.mean, self.std * self.std, None, None)

    def cdf(self, x: F64) -> F64:
        if self.std == 0:
            return (x >= self.mean).astype(np.float64)
        return detmath.ndtr((x - self.mean) / self.std)

    def max_abs(self) -> float:
        return abs(self.mean) + self.std * MAX_NORMAL_RADIUS

    def describe(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std}


@dataclass(frozen=True)
class TruncatedNormal(Elementwise):
    """N(mean, std^2) restricted to [a, b] (absolute bounds), by inverse CDF.

    With alpha = (a - mean) / s and beta = (b - mean) / s, s = |std| (torch's trunc_normal_ reads a negative std
    as its absolute value), the standardised interval is mirrored to (lo, hi) = (-beta, -alpha) when
    alpha + beta > 0, so that the CDF is evaluated in the lower tail where it keeps its relative precision. Then
    z = ndtri(Phi(lo) + u * (Phi(hi) - Phi(lo))),  negated if mirrored,  x = clip(mean + s * z, a, b), with u the
    open uniform. a == b gives a everywhere (as torch).
    """

    mean: float
    std: float
    a: float
    b: float
    kind: ClassVar[str] = "truncated_normal"
    _lo: float = field(init=False, repr=False)
    _hi: float = field(init=False, repr=False)
    _mirrored: bool = field(init=False, repr=False)
    _p_lo: float = field(init=False, repr=False)
    _mass: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not (self.std > 0 or self.std < 0):
            raise InitError("std", f"truncated normal needs std != 0, got {self.std}")
        if not self.a <= self.b:
            raise InitError("b", f"truncated normal needs a <= b, got a={self.a}, b={self.b}")
        scale = self.scale
        alpha, beta = (self.a - self.mean) / scale, (self.b - self.mean) / scale
        mirrored = alpha + beta > 0
        lo, hi = (-beta, -alpha) if mirrored else (alpha, beta)
        p_lo, p_hi = detmath.ndtr(np.array([lo, hi]))
        mass = float(p_hi - p_lo)
        if not (mass > 0 or self.degenerate):
            raise InitError(
                "b",
                f"the interval [{self.a}, {self.b}] lies too far in the tail of N({self.mean}, {self.std}^2): "
                "its probability underflows float64",
            )
        for name, value in (("_lo", lo), ("_hi", hi), ("_mirrored", mirrored), ("_p_lo", float(p_lo)), ("_mass", mass)):
            object.__setattr__(self, name, value)

    @property
    def scale(self) -> float:
        return abs(self.std)

    @property
    def degenerate(self) -> bool:
        """a == b: every value is a."""
        return self.a == self.b

    def transform(self, words: NDArray[np.uint64]) -> F64:
        if self.degenerate:
            return np.full(words.size, self.a, dtype=np.float64)
        p = self._p_lo + variates.uniform_open(words) * self._mass
        z = detmath.ndtri(p)
        if self._mirrored:
            z = -z
        return np.clip(self.mean + self.scale * z, self.a, self.b)

    def fill_runs(
        self, stream: Stream, shape: tuple[int, ...], starts: NDArray[np.int64], length: int, out: NDArray
    ) -> None:
        if self.degenerate:
            out[...] = self.a
        else:
            super().fill_runs(stream, shape, starts, length, out)

    def jit_fill(self, k0: np.uint64, k1: np.uint64, starts: NDArray[np.int64], length: int, out: NDArray) -> None:
        p_lo, mass, mirrored = self._p_lo, self._mass, self._mirrored
        samplers.truncated_normal(
            k0, k1, starts, length, p_lo, mass, mirrored, self.mean, self.scale, self.a, self.b, out, samplers.PHILOX
        )

    def moments(self) -> Moments:
        if self.degenerate:
            return Moments(self.a, 0.0, self.a, self.b)
        lo, hi, mass = self._lo, self._hi, self._mass
        pdf_lo, pdf_hi = detmath.exp(-0.5 * np.array([lo, hi]) ** 2) / SQRT_2PI
        shift = (pdf_lo - pdf_hi) / mass
        # shift * shift, not shift**2: a scalar ** calls the platform's pow, whose last bit varies, and this
        # variance decides a refusal (plan._check_finite), which must be the same on every machine.
        variance = 1.0 + (lo * pdf_lo - hi * pdf_hi) / mass - shift * shift
        mean = -shift if self._mirrored else shift
        scale = self.scale
        return Moments(self.mean + scale * float(mean), scale * scale * max(float(variance), 0.0), self.a, self.b)

    def cdf(self, x: F64) -> F64:
        if self.degenerate:
            return (x >= self.a).astype(np.float64)
        z = (np.clip(x, self.a, self.b) - self.mean) / self.scale
        if self._mirrored:
            return np.clip((self._p_lo + self._mass - detmath.ndtr(-z)) / self._mass, 0.0, 1.0)
        return np.clip((detmath.ndtr(z) - self._p_lo) / self._mass, 0.0, 1.0)

    def max_abs(self) -> float:
        return max(abs(self.a), abs(self.b))

    def describe(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std, "a": self.a, "b": self.b}


def truncated_normal(mean: float, std: float, a: float, b: float) -> TruncatedNormal:
    """N(mean, std^2) on [a, b] however far in the tail: the inverse CDF where the interval's probability is a
    float64, exponential rejection (`TailTruncatedNormal`) where it underflows."""
    try:
        return TruncatedNormal(mean, std, a, b)
    except InitError as error:
        if error.field != "b" or not a < b:
            raise
        return TailTruncatedNormal(mean, std, a, b)


@dataclass(frozen=True)
class TailTruncatedNormal(TruncatedNormal):
    """N(mean, std^2) on [a, b] where Phi(beta) - Phi(alpha) underflows float64 (the interval lies beyond ~38 std
    on one side), sampled exactly by exponential rejection in the tail's own coordinates (Robert 1995).

    With s = |std| and the interval taken to the upper tail, [lo, lo + w] = [alpha, beta] (or [-beta, -alpha],
    sign -1), the density of t = z - lo is proportional to exp(-lo * t) * exp(-t^2 / 2) on [0, w]. Attempt k of
    element i proposes t = -log(1 - u * c) / lo, c = 1 - exp(-lo * w), u = uniform01 of word i of purpose
    TAIL + 2k, and accepts if v < exp(-t^2 / 2), v = uniform01 of word i of purpose TAIL + 2k + 1: more than
    0.999 of proposals are accepted there (t is about 1 / lo). After ATTEMPTS rejections (probability < 1e-24)
    the last proposal is kept. x = clip(mean + sign * s * (lo + t), a, b). Only detmath's log and exp: the same
    bits on every machine; any element on its own (random access).
    """

    kind: ClassVar[str] = "truncated_normal"
    ATTEMPTS: ClassVar[int] = 8
    _start: float = field(init=False, repr=False)
    _width: float = field(init=False, repr=False)
    _sign: float = field(init=False, repr=False)
    _c: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not (self.std > 0 or self.std < 0) or not self.a < self.b:
            raise InitError("std", f"the tail sampler needs std != 0 and a < b, got std={self.std}, a={self.a}")
        alpha, beta = (self.a - self.mean) / self.scale, (self.b - self.mean) / self.scale
        start, sign = (alpha, 1.0) if alpha > 0 else (-beta, -1.0)
        width = beta - alpha
        c = 1.0 - float(detmath.exp(np.array([-start * width]))[0])
        for name, value in (("_start", start), ("_width", width), ("_sign", sign), ("_c", c), ("_mirrored", sign < 0)):
            object.__setattr__(self, name, value)
        for name in ("_lo", "_hi", "_p_lo", "_mass"):
            object.__setattr__(self, name, math.nan)

    def _values(self, stream: Stream, index: NDArray[np.int64]) -> F64:
        t = np.zeros(index.size, dtype=np.float64)
        pending = np.arange(index.size)
        for attempt in range(self.ATTEMPTS):
            at = index[pending]
            u, v = (self._uniform(stream, at, TAIL + 2 * attempt + side) for side in (0, 1))
            proposal = -detmath.log(1.0 - u * self._c) / self._start
            t[pending] = proposal
            accepted = v < detmath.exp(-0.5 * proposal * proposal)
            pending = pending[~accepted]
            if not pending.size:
                break
        return np.clip(self.mean + self._sign * self.scale * (self._start + t), self.a, self.b)

    @staticmethod
    def _uniform(stream: Stream, index: NDArray[np.int64], purpose: int) -> F64:
        words = stream.blocks_at(index // WORDS_PER_BLOCK, 1, purpose)
        return variates.uniform01(words[np.arange(index.size), index % WORDS_PER_BLOCK])

    def sample(self, stream: Stream, shape: tuple[int, ...], start: int, stop: int) -> F64:
        return self._values(stream, np.arange(start, stop, dtype=np.int64))

    def sample_runs(self, stream: Stream, shape: tuple[int, ...], starts: NDArray[np.int64], length: int) -> F64:
        return self._values(stream, run_indices(starts, length))

    def fill(self, stream: Stream, shape: tuple[int, ...], start: int, stop: int, out: NDArray) -> None:
        out[...] = self.sample(stream, shape, start, stop)

    def fill_runs(
        self, stream: Stream, shape: tuple[int, ...], starts: NDArray[np.int64], length: int, out: NDArray
    ) -> None:
        out[...] = self.sample_runs(stream, shape, starts, length)

    def transform(self, words: NDArray[np.uint64]) -> F64:
        raise NotImplementedError("the tail sampler reads its words by element index (sample)")

    @cached_property
    def _grid(self) -> tuple[F64, F64]:
        """t on [0, min(w, 60 / lo)] (beyond, the density is below e^-60 of its peak) and the CDF there, by the
        trapezoid rule on 4,001 points: for the moments and /stats, not for sampling."""
        t = np.linspace(0.0, min(self._width, 60.0 / self._start), 4001)
        density = detmath.exp(-self._start * t - 0.5 * t * t)
        cumulative = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(t))])
        return t, cumulative / cumulative[-1]

    def moments(self) -> Moments:
        t, _ = self._grid
        # Simpson's rule on the same 4,001 points (4,000 intervals): the moments of t to ~1e-10 of its scale.
        weights = np.ones(t.size)
        weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
        density = weights * detmath.exp(-self._start * t - 0.5 * t * t)
        mean_t = float(np.sum(density * t) / np.sum(density))
        variance_t = float(np.sum(density * (t - mean_t) * (t - mean_t)) / np.sum(density))
        mean = self.mean + self._sign * self.scale * (self._start + mean_t)
        return Moments(mean, self.scale * self.scale * variance_t, self.a, self.b)

    def cdf(self, x: F64) -> F64:
        t, cdf = self._grid
        along = self._sign * (np.clip(x, self.a, self.b) - self.mean) / self.scale - self._start
        inside = np.interp(along, t, cdf, left=0.0, right=1.0)
        return inside if self._sign > 0 else 1.0 - inside


@dataclass(frozen=True)
class Constant(Distribution):
    """Every element equals `value`."""

    value: float
    kind: ClassVar[str] = "constant"

    def sample(self, stream: Stream, shape: tuple[int, ...], start: int, stop: int) -> F64:
        return np.full(stop - start, self.value, dtype=np.float64)

    def sample_runs(self, stream: Stream, shape: tuple[int, ...], starts: NDArray[np.int64], length: int) -> F64:
        return np.full(starts.size * length, self.value, dtype=np.float64)

    def moments(self) -> Moments:
        return Moments(self.value, 0.0, self.value, self.value)

    def max_abs(self) -> float:
        return abs(self.value)

    def describe(self) -> dict[str, float]:
        return {"value": self.value}


def _fixed_values_moments(count: int, value: float, total: int) -> Moments:
    """Moments of a tensor holding `count` entries equal to `value` and zeros elsewhere."""
    if not total:  # an empty tensor
        return Moments(0.0, 0.0, min(0.0, value), max(0.0, value))
    mean = value * count / total
    variance = max(value * value * count / total - mean * mean, 0.0)
    return Moments(mean, variance, min(0.0, value), max(0.0, value))


@dataclass(frozen=True)
class Eye(Distribution):
    """gain on the main diagonal of a 2-D [rows, cols] matrix (rectangular allowed), 0 elsewhere."""

    gain: float
    rows: int
    cols: int
    kind: ClassVar[str] = "eye"

    def sample(self, stream: Stream, shape: tuple[int, ...], start: int, stop: int) -> F64:
        return self._at(np.arange(start, stop, dtype=np.int64))

    def sample_runs(self, stream: Stream, shape: tuple[int, ...], starts: NDArray[np.int64], length: int) -> F64:
        return self._at(run_indices(starts, length))

    def _at(self, index: NDArray[np.int64]) -> F64:
        return np.where(index // self.cols == index % self.cols, self.gain, 0.0)

    def moments(self) -> Moments:
        return _fixed_values_moments(min(self.rows, self.cols), self.gain, self.rows * self.cols)

    def max_abs(self) -> float:
        return abs(self.gain)

    def describe(self) -> dict[str, float]:
        return {"gain": self.gain}


@dataclass(frozen=True)
class Dirac(Distribution):
    """torch.nn.init.dirac_: 1 at [g*out_per_group + d, d, k0 // 2, ...] for d < min(out_per_group, in)."""

    groups: int
    shape: tuple[int, ...]
    kind: ClassVar[str] = "dirac"

    @property
    def _out_per_group(self) -> int:
        return self.shape[0] // self.groups

    @cached_property
    def ones(self) -> NDArray[np.int64]:
        """Flat indices of the ones, ascending (each group's follow the previous group's): listed once per tensor,
        not once per chunk."""
        diagonal = np.arange(min(self._out_per_group, self.shape[1]), dtype=np.int64)
        centre = tuple(np.full_like(diagonal, k // 2) for k in self.shape[2:])
        return np.concatenate(
            [
                np.ravel_multi_index((g * self._out_per_group + diagonal, diagonal, *centre), self.shape)
                for g in range(self.groups)
            ]
        )

    def sample(self, stream: Stream, shape: tuple[int, ...], start: int, stop: int) -> F64:
        out = np.zeros(stop - start, dtype=np.float64)
        ones = self.ones[np.searchsorted(self.ones, start) : np.searchsorted(self.ones, stop)]
        out[ones - start] = 1.0
        return out

    def sample_runs(self, stream: Stream, shape: tuple[int, ...], starts: NDArray[np.int64], length: int) -> F64:
        index = run_indices(starts, length)
        at = np.minimum(np.searchsorted(self.ones, index), self.ones.size - 1)
        return (self.ones[at] == index).astype(np.float64)

    def setup_cost(self) -> int:
        # Listing the flat indices of the ones (at most shape[0] of them), once.
        return self.shape[0]

    def moments(self) -> Moments:
        count = self.groups * min(self._out_per_group, self.shape[1])
        return _fixed_values_moments(count, 1.0, math.prod(self.shape))

    def max_abs(self) -> float:
        return 1.0

    def describe(self) -> dict[str, float]:
        return {"groups": self.groups}


@dataclass(frozen=True)
class Orthogonal(Distribution):
    """A (semi-)orthogonal [rows, cols] matrix times gain (torch.nn.init.orthogonal_ / Keras Orthogonal).

    A = the first max*min standard normals of the stream, as a row-major (max(rows, cols), min(rows, cols))
    matrix; Q, R = qr(A); Q *= sign(diag(R)); transposed if rows < cols; times gain; reshaped row-major.
    QR runs in LAPACK: bit-identical on one machine and NumPy build, equal elsewhere to rounding error only.
    """

    gain: float
    rows: int
    cols: int
    kind: ClassVar[str] = "orthogonal"
    random_access: ClassVar[bool] = False
    machine_exact: ClassVar[bool] = False

    @property
    def normals_shape(self) -> tuple[int, int]:
        """(max(rows, cols), min(rows, cols)): the matrix of standard normals QR starts from."""
        return max(self.rows, self.cols), min(self.rows, self.cols)

    def matrix(self, stream: Stream) -> F64:
        tall, short = self.normals_shape
        return self.from_normals(
            generate(Normal(0.0, 1.0), stream, (tall, short), 0, tall * short, np.dtype(np.float64))
        )

    def from_normals(self, normals: F64) -> F64:
        """The matrix made from the stream's first max*min standard normals (another rng's, too)."""
        q, r = np.linalg.qr(normals.reshape(self.normals_shape))
        # One pass instead of two: q * (sign * gain) has the bits of (q * sign) * gain, as sign is -1, 0 or 1.
        q *= np.sign(np.diag(r)) * self.gain
        if self.rows < self.cols:
            q = q.T
        return np.ascontiguousarray(q)

    def arrange(self, matrix: F64) -> F64:
        """The tensor's flat values from the gain-scaled [rows, cols] matrix: row-major as it is (torch, Keras)."""
        return matrix.reshape(-1)

    def sample(self, stream: Stream, shape: tuple[int, ...], start: int, stop: int) -> F64:
        return self.arrange(self.matrix(stream))[start:stop]

    def scratch_bytes(self, elements: int) -> int:
        # Measured peak RSS: 5.2 float64 matrices (the normals, NumPy's copy of them, LAPACK's work copies, which
        # tracemalloc does not see, and Q), whatever slice is asked for; and the normals' own temporaries.
        total = self.rows * self.cols
        return 6 * 8 * total + Normal(0.0, 1.0).scratch_bytes(total)

    def moments(self) -> Moments:
        bound = abs(self.gain)
        return Moments(0.0, self.gain * self.gain / max(self.rows, self.cols, 1), -bound, bound)

    def max_abs(self) -> float:
        return abs(self.gain)

    def describe(self) -> dict[str, float]:
        return {"gain": self.gain, "rows": self.rows, "cols": self.cols}


@dataclass(frozen=True)
class AxisOrthogonal(Orthogonal):
    """jax.nn.initializers.orthogonal(scale, column_axis): the [prod(shape) / shape[column_axis],
    shape[column_axis]] matrix, reshaped to the other axes followed by the column axis, which then moves to
    `column_axis`."""

    shape: tuple[int, ...] = ()
    column_axis: int = -1
    kind: ClassVar[str] = "orthogonal"

    def arrange(self, matrix: F64) -> F64:
        axis = self.column_axis % len(self.shape)
        rest = tuple(dim for index, dim in enumerate(self.shape) if index != axis)
        return np.moveaxis(matrix.reshape((*rest, self.shape[axis])), -1, axis).reshape(-1)

    def describe(self) -> dict[str, float]:
        return {**super().describe(), "column_axis": self.column_axis}


@dataclass(frozen=True)
class DeltaOrthogonal(AxisOrthogonal):
    """jax.nn.initializers.delta_orthogonal: zeros, and at the centre tap ((k - 1) // 2 of every kernel axis) the
    orthogonal [in, out] matrix of `AxisOrthogonal` on shape[-2:] (Xiao et al. 2018)."""

    kernel: tuple[int, ...] = ()
    kind: ClassVar[str] = "delta_orthogonal"

    def arrange(self, matrix: F64) -> F64:
        out = np.zeros((*self.kernel, *self.shape), dtype=np.float64)
        out[tuple((k - 1) // 2 for k in self.kernel)] = super().arrange(matrix).reshape(self.shape)
        return out.reshape(-1)

    def moments(self) -> Moments:
        count = max(math.prod(self.kernel), 1)
        # The centre tap's entries have mean square gain^2 / max(rows, cols); the other taps are 0.
        bound = abs(self.gain)
        return Moments(0.0, self.gain * self.gain / max(self.rows, self.cols, 1) / count, -bound, bound)

    def scratch_bytes(self, elements: int) -> int:
        return super().scratch_bytes(elements) + 8 * self.rows * self.cols * math.prod(self.kernel)

    def describe(self) -> dict[str, float]:
        return {**super().describe(), "taps": math.prod(self.kernel)}


@dataclass(frozen=True)
class Sparse(Distribution):
    """torch.nn.init.sparse_ on [rows, cols]: N(0, std^2), then ceil(sparsity * rows) zeros in every column.

    Values are the Normal(0, std) stream. In column j the zeroed rows are those whose mask words
    (stream purpose 1, word r * cols + j) are smallest, ties broken by row index.
    """

    sparsity: float
    std: float
    rows: int
    cols: int
    kind: ClassVar[str] = "sparse"
    random_access: ClassVar[bool] = False

    @property
    def zeros_per_column(self) -> int:
        return min(math.ceil(self.sparsity * self.rows), self.rows)

    def sample(self, stream: Stream, shape: tuple[int, ...], start: int, stop: int) -> F64:
        total = self.rows * self.cols
        values = generate(Normal(0.0, self.std), stream, shape, 0, total, np.dtype(np.float64))
        return self.masked(values, stream.words(0, total, purpose=SPARSE_MASK))[start:stop]

    def masked(self, values: F64, keys: NDArray[np.uint64]) -> F64:
        """The whole matrix: `values` (flat, float64) with each column's zeros where its `keys` are smallest."""
        values = values.reshape(self.rows, self.cols)
        keys = keys.reshape(self.rows, self.cols)
        # A slab of columns at a time: the sort indices (8 bytes an element) of one slab, not of the whole matrix.
        # Each column's zeros depend on its own keys only, so the bits are those of one whole-matrix argsort.
        slab = max(1, _SPARSE_SLAB_ELEMENTS // self.rows)
        for first in range(0, self.cols, slab):
            columns = slice(first, first + slab)
            zero_rows = np.argsort(keys[:, columns], axis=0, kind="stable")[: self.zeros_per_column]
            np.put_along_axis(values[:, columns], zero_rows, 0.0, axis=0)
        return values.reshape(-1)

    def scratch_bytes(self, elements: int) -> int:
        # The values and the mask keys (a float64 and a uint64 matrix), a slab's sort indices and their copy of
        # its keys, and the normals' own temporaries as they are generated.
        total = self.rows * self.cols
        return 2 * 8 * total + 2 * 8 * _SPARSE_SLAB_ELEMENTS + Normal(0.0, self.std).scratch_bytes(total)

    def moments(self) -> Moments:
        kept = 1.0 - self.zeros_per_column / self.rows if self.rows else 1.0  # no rows: an empty tensor
        return Moments(0.0, kept * self.std * self.std, None, None)

    def max_abs(self) -> float:
        return self.std * MAX_NORMAL_RADIUS

    def describe(self) -> dict[str, float]:
        return {"std": self.std, "sparsity": self.sparsity, "zeros_per_column": self.zeros_per_column}
