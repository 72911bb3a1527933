"""From a request to a plan: the scheme resolved, its fans and gain fixed, and the tensor generated on demand."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service import __version__
from service.engine.dtypes import DTYPES, DType, round_to
from service.engine.errors import InitError
from service.engine.random.registry import DEFAULT_RNG, get_rng
from service.engine.random.rng import Draw, Rng, TensorStream
from service.engine.schemes.distributions import Distribution, run_indices
from service.engine.schemes.fans import Fans, Layout
from service.engine.schemes.registry import (
    DEFAULT_KERAS_VERSION,
    KERAS_VERSIONS,
    MAX_RANK,
    Context,
    Scheme,
    get_scheme,
)

# torch's words for an empty tensor (its kaiming_ warns them; the others return it silently, as Keras and JAX do).
ZERO_SIZE_WARNING = "Initializing zero-element tensors is a no-op"
CHUNK_ELEMENTS = 1 << 20  # 4 MiB of float32: cache-friendly, and the unit of streaming


@dataclass(frozen=True)
class TensorRequest:
    """Everything that determines a tensor's bits. Pure data: the API and the CLI both build one."""

    shape: tuple[int, ...]
    scheme: str
    seed: int
    params: Mapping[str, Any] = field(default_factory=dict)
    dtype: str = "float32"
    layout: Layout | None = None
    fan_in: int | None = None
    fan_out: int | None = None
    name: str = "weight"
    rng: str = DEFAULT_RNG
    # Whose Keras the keras.* schemes follow (None: the default, 3.14, and no mention in the metadata).
    keras_version: str | None = None


@dataclass(frozen=True)
class Plan:
    """A resolved request: `values(start, stop)` gives any flat slice, `tensor()` the whole thing."""

    request: TensorRequest
    scheme: Scheme
    params: dict[str, Any]
    layout: Layout
    distribution: Distribution
    dtype: DType
    gain: float | None
    fans: dict[str, int]  # the fans the scheme read
    shape_fans: Fans
    rng: Rng
    stream: TensorStream  # the rng's, for this tensor

    @property
    def shape(self) -> tuple[int, ...]:
        return self.request.shape

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    @property
    def draw(self) -> Draw:
        return Draw(self.request.name, self.distribution, self.shape, self.dtype.name)

    @property
    def random_access(self) -> bool:
        """Any range costs only itself: both the distribution (not a whole-matrix one) and the rng allow it."""
        return self.numel > 0 and self.distribution.random_access and self.rng.random_access

    @cached_property
    def _whole(self) -> NDArray:
        # Structured distributions (orthogonal, sparse) and sequential rngs need the whole tensor: once per plan.
        if self.numel == 0:  # a zero-size dimension: nothing is drawn, as in the frameworks
            return np.empty(0, dtype=np.float64)
        return self.rng.sample(self.distribution, self.stream, self.shape, self.dtype.numpy)

    def _slice(self, start: int, stop: int | None) -> tuple[int, int]:
        stop = self.numel if stop is None else stop
        if not 0 <= start <= stop <= self.numel:
            raise ValueError(f"slice [{start}, {stop}) is outside [0, {self.numel})")
        return start, stop

    def values(self, start: int = 0, stop: int | None = None) -> NDArray[np.float64]:
        """float64 values of flat elements [start, stop), before rounding to the output dtype."""
        start, stop = self._slice(start, stop)
        if self.random_access:
            return self.rng.generate(self.distribution, self.stream, self.shape, start, stop, np.dtype(np.float64))
        return self._whole[start:stop].astype(np.float64, copy=False)

    def working_bytes(self, chunk_elements: int) -> int:
        """Memory generating this tensor `chunk_elements` at a time holds at once, an upper bound (tracemalloc
        and RSS measurements in tests/engine/test_memory.py): a chunk in the output dtype and two copies of it (the
        pieces of a region joined, the bytes of a stream), plus the engine's temporaries; for orthogonal and sparse
        those are the whole matrix's, as it is computed and kept, and an rng without random access keeps the whole
        tensor in float64 besides."""
        piece = min(chunk_elements, self.numel)
        if not self.rng.random_access:
            return 3 * 8 * piece + 8 * self.numel + self.distribution.scratch_bytes(self.numel)
        return 3 * 8 * piece + self.distribution.scratch_bytes(piece)

    def generate(self, start: int = 0, stop: int | None = None) -> NDArray:
        """Flat elements [start, stop) in the output dtype (contiguous, little-endian)."""
        start, stop = self._slice(start, stop)
        if self.random_access:
            # Rounded as each chunk is written: no float64 copy of the whole range (dtypes.round_to's route).
            return self.rng.generate(self.distribution, self.stream, self.shape, start, stop, self.dtype.numpy)
        return round_to(self._whole[start:stop], self.dtype)

    def generate_runs(self, starts: NDArray[np.int64], length: int) -> NDArray:
        """Flat elements [s, s + length) for each s of `starts`, one run after another, in the output dtype."""
        if self.random_access:
            return self.rng.generate_runs(self.distribution, self.stream, self.shape, starts, length, self.dtype.numpy)
        return round_to(self._whole[run_indices(starts, length)], self.dtype)

    def chunks(
        self, start: int = 0, stop: int | None = None, chunk_elements: int = CHUNK_ELEMENTS
    ) -> Iterator[NDArray]:
        """Flat elements [start, stop) in the output dtype, as consecutive arrays of at most chunk_elements."""
        stop = self.numel if stop is None else stop
        # At least one chunk, empty for an empty tensor: every format writes its data from the first chunk.
        for first in range(start, stop if self.numel else start + 1, chunk_elements):
            yield self.generate(first, min(first + chunk_elements, stop))

    def tensor(self) -> NDArray:
        return self.generate().reshape(self.shape)

    def metadata(self, version: int | None = None) -> dict[str, Any]:
        """What was generated and how, in JSON-native types (safetensors stores each value as a string), in the
        rng's metadata version unless another is asked (/stats, whose bytes are not frozen, asks the latest)."""
        version = self.rng.metadata_version if version is None else version
        if version >= 2:
            fan_in, fan_out = self.shape_fans.known()
            # A framework's own fan rule (JAX's axes, Keras 3.15's input_axes) beats the layout's.
            fan_in, fan_out = self.fans.get("fan_in", fan_in), self.fans.get("fan_out", fan_out)
            fans: dict[str, Any] = {"fan_in": fan_in, "fan_out": fan_out, "fans_used": sorted(self.fans)}
        else:
            fans = {"fan_in": self.fans.get("fan_in"), "fan_out": self.fans.get("fan_out")}
        meta: dict[str, Any] = {
            "name": self.request.name,
            "scheme": self.scheme.name,
            "family": self.scheme.family,
            "params": self.params,
            "seed": self.request.seed,
            "shape": list(self.shape),
            "dtype": self.dtype.name,
            "layout": self.layout,
            **fans,
            "gain": self.gain,
            "distribution": self.distribution.kind,
            **self.distribution.describe(),
            "rng": self.request.rng,
            **self.rng.metadata(self.distribution),
            "service": f"initserve {__version__}",
        }
        if self.scheme.alias_of:
            meta["alias_of"] = self.scheme.alias_of
        if self.numel == 0:
            meta["warning"] = ZERO_SIZE_WARNING
        if self.request.keras_version is not None or self.scheme.name.startswith("keras."):
            meta["keras_version"] = self.request.keras_version or DEFAULT_KERAS_VERSION
        return meta


def make_plan(request: TensorRequest) -> Plan:
    """Resolve `request`; raises InitError (naming the field and the rule) for anything it cannot honour."""
    rng = get_rng(request.rng)
    if len(request.shape) > MAX_RANK:
        raise InitError("shape", f"at most {MAX_RANK} dimensions are supported, got {len(request.shape)}")
    scheme = get_scheme(request.scheme)
    smallest = 0 if scheme.namespaced else 1  # the frameworks return the empty tensor; bare names refuse it
    if any(dim < smallest for dim in request.shape):
        raise InitError("shape", f"every dimension must be >= {smallest}, got {list(request.shape)}")
    try:
        dtype = DTYPES[request.dtype]
    except KeyError:
        raise InitError("dtype", f"unknown dtype {request.dtype!r}; known: {', '.join(DTYPES)}") from None
    keras_version = request.keras_version or DEFAULT_KERAS_VERSION
    if keras_version not in KERAS_VERSIONS:
        raise InitError("keras_version", f"keras_version must be one of {list(KERAS_VERSIONS)}, got {keras_version!r}")
    params = scheme.full_params(request.params)
    layout = request.layout or scheme.default_layout
    fans = Fans(request.shape, layout, request.fan_in, request.fan_out)
    try:
        built = rng.build(scheme, Context(params, request.shape, layout, fans, keras_version))
    except InitError:
        raise
    except (ArithmeticError, ValueError) as error:  # a safety net: parameter ranges should have caught it earlier
        raise InitError("scheme", f"{scheme.name}: parameters out of numerical range ({error})") from None
    _check_finite(scheme, built.distribution)
    check_fits(built.distribution.max_abs(), dtype, "dtype", f"{scheme.name} with these parameters")
    rng.prepare(built.distribution, dtype.numpy)
    draw = Draw(request.name, built.distribution, request.shape, dtype.name)
    return Plan(
        request=request,
        scheme=scheme,
        params=params,
        layout=layout,
        distribution=built.distribution,
        dtype=dtype,
        gain=built.gain,
        fans=dict(built.fans),
        shape_fans=fans,
        rng=rng,
        stream=rng.streams(request.seed, [draw])[0],
    )


def check_fits(largest: float, dtype: DType, field: str, what: str) -> None:
    """InitError naming `field` unless values up to |x| = largest fit `dtype` (no rounding to infinity)."""
    if largest > dtype.max:
        raise InitError(
            field, f"{what} can reach |x| = {largest:.6g}, which overflows {dtype.name} (max {dtype.max:.6g})"
        )


def _check_finite(scheme: Scheme, distribution: Distribution) -> None:
    for key, value in distribution.describe().items():
        if not math.isfinite(value):
            given = ", ".join(p.name for p in scheme.params) or "the fans"
            raise InitError(
                scheme.params[0].name if scheme.params else "scheme",
                f"{scheme.name}: {given} give a non-finite {key} ({value})",
            )
    moments = distribution.moments()
    if not (math.isfinite(distribution.max_abs()) and math.isfinite(moments.mean) and math.isfinite(moments.variance)):
        raise InitError(
            scheme.params[0].name if scheme.params else "scheme",
            f"{scheme.name}: the parameters overflow float64 (values, their range or their variance)",
        )
