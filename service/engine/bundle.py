"""Many tensors in one request: a seed and an ordered mapping name -> spec, resolved to one tensor source each.

Each tensor is keyed by (seed, its name) exactly as the single-tensor request with that name and the same fields
would be, so its bits equal that request's and do not depend on which other tensors are asked for, nor on their
order. Two additions the single-tensor request does not have, both deterministic and outside the random stream:

* `fill_rows`: rows along axis 0 overwritten with a constant after generation (PyTorch's `padding_idx` row of an
  embedding, Keras's unit forget bias of an LSTM); every other element keeps the bits of the plain request.
* integer buffers (`dtype: "int64"`, the schemes marked `integer`: zeros / ones / constant with an integral
  `val`): PyTorch's `BatchNorm*.num_batches_tracked`, a 0-d int64 that `load_state_dict(strict=True)` requires.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service import __version__
from service.engine.dtypes import DTYPES, DType, round_to
from service.engine.errors import InitError, TooLargeError
from service.engine.plan import CHUNK_ELEMENTS, MAX_RANK, Plan, TensorRequest, check_fits, make_plan
from service.engine.random.registry import DEFAULT_RNG, get_rng
from service.engine.random.rng import Rng
from service.engine.schemes.distributions import Constant
from service.engine.schemes.fans import Fans, Layout
from service.engine.schemes.registry import REGISTRY, Context

MAX_TENSORS = 4096
INTEGER_DTYPE = "int64"
_INT64 = np.dtype("<i8")
# The dtype of constant buffers only: not in DTYPES, which the schemes' rounding covers.
INT64 = DType(INTEGER_DTYPE, _INT64, "I64", "<i8", float((1 << 63) - 1))  # type: ignore[arg-type]


@dataclass(frozen=True)
class RowFill:
    """Rows [start, stop) along axis 0 set to `value` (rounded to the tensor's dtype)."""

    start: int
    stop: int
    value: float


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a model request: a TensorRequest without seed and name (the name is its key)."""

    shape: tuple[int, ...]
    scheme: str
    params: Mapping[str, Any] = field(default_factory=dict)
    dtype: str = "float32"
    layout: Layout | None = None
    fan_in: int | None = None
    fan_out: int | None = None
    fill_rows: tuple[RowFill, ...] = ()
    origin: Mapping[str, Any] = field(default_factory=dict)  # where a recipe took it from: metadata only, no bits
    # A deep copy of another tensor of the request (torch's TransformerEncoder copies one layer N times): keyed by
    # tensor, its stream is keyed by that tensor's name, so the copy has the bits `copy_of` has with this spec.
    copy_of: str | None = None

    def request(self, seed: int, name: str, rng: str = DEFAULT_RNG, keras_version: str | None = None) -> TensorRequest:
        """The single-tensor request whose bits this tensor has (fill_rows aside)."""
        return TensorRequest(
            shape=self.shape,
            scheme=self.scheme,
            seed=seed,
            params=self.params,
            dtype=self.dtype,
            layout=self.layout,
            fan_in=self.fan_in,
            fan_out=self.fan_out,
            name=self.copy_of or name,
            rng=rng,
            keras_version=keras_version,
        )


@dataclass(frozen=True)
class Overwritten:
    """A draw a framework makes into tensor `name` and later overwrites (MultiheadAttention's out_proj.bias, a
    default a rule replaces): it consumes a request-keyed stream, and its values are never output."""

    name: str
    spec: TensorSpec


@dataclass(frozen=True)
class Copy:
    """Tensor `name` takes the values of the latest draw into tensor `source` (a deep copy: torch's
    TransformerEncoder/Decoder layers): no draw of its own."""

    name: str
    source: str


DrawStep = str | Overwritten | Copy  # a tensor's own draw (by name), an overwritten one, or a copy


@dataclass(frozen=True)
class ModelRequest:
    seed: int
    tensors: Mapping[str, TensorSpec]  # the response's order
    rng: str = DEFAULT_RNG
    # The order a request-keyed rng draws in: every tensor's name once, among overwritten draws (a recipe gives
    # its framework's construction order). None: the tensors' order, nothing overwritten. A tensor-keyed rng
    # ignores it.
    order: tuple[DrawStep, ...] | None = None
    keras_version: str | None = None  # whose Keras keras.* schemes follow (TensorRequest.keras_version)

    def draw_order(self) -> list[str]:
        """`order` for the metadata: names, an overwritten draw's marked as such."""
        steps = self.tensors if self.order is None else self.order
        return [_described(step) for step in steps]

    @property
    def numel(self) -> int:
        return sum(math.prod(spec.shape) for spec in self.tensors.values())


def _described(step: DrawStep) -> str:
    if isinstance(step, Overwritten):
        return f"{step.name} (overwritten)"
    if isinstance(step, Copy):
        return f"{step.name} (copy of {step.source})"
    return step


class ModelTensor(ABC):
    """One tensor of a model response, generated on demand in bounded memory."""

    name: str
    shape: tuple[int, ...]
    dtype: DType
    machine_exact: bool  # else bits equal elsewhere only to rounding error (orthogonal: LAPACK)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    @property
    def cost(self) -> int:
        """Work to produce the tensor, in elements (as `Region.cost`): a whole tensor costs its size."""
        return self.numel

    @abstractmethod
    def chunks(
        self, chunk_elements: int = CHUNK_ELEMENTS, first: int = 0, last: int | None = None
    ) -> Iterator[NDArray]:
        """The flat row-major values [first, last) (default: all), as consecutive arrays of at most chunk_elements;
        only those are generated (a byte range of a checkpoint file asks for a few)."""

    @abstractmethod
    def working_bytes(self, chunk_elements: int) -> int:
        """Memory `chunks(chunk_elements)` holds at once."""

    @property
    def scheme_name(self) -> str:
        return str(self.metadata()["scheme"])

    @abstractmethod
    def metadata(self) -> dict[str, Any]:
        """What was generated and how (JSON-native types)."""

    def tensor(self) -> NDArray:
        flat = np.concatenate(list(self.chunks())) if self.numel else np.empty(0, self.dtype.numpy)
        return flat.reshape(self.shape)


class RandomTensor(ModelTensor):
    """A tensor of the engine (any scheme), its random stream keyed by (seed, name), with optional row fills."""

    def __init__(
        self,
        plan: Plan,
        fill_rows: tuple[RowFill, ...] = (),
        origin: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        self.plan = plan
        self.fill_rows = fill_rows
        self.origin = dict(origin or {})
        self.name = name or plan.request.name  # a copy's plan is keyed by the tensor it copies
        self.shape = plan.shape
        self.dtype = plan.dtype
        self.machine_exact = plan.distribution.machine_exact

    def chunks(
        self, chunk_elements: int = CHUNK_ELEMENTS, first: int = 0, last: int | None = None
    ) -> Iterator[NDArray]:
        # A fresh copy of the plan: a structured distribution's whole-matrix cache then dies with this generator
        # instead of living as long as the model's list of tensors.
        plan = dataclasses.replace(self.plan)
        row = math.prod(self.shape[1:])
        end = self.numel if last is None else last
        # One empty chunk for an empty tensor: every format writes its data from the first chunk.
        for start in range(first, end if self.numel else first + 1, chunk_elements):
            stop = min(start + chunk_elements, end)
            values = plan.generate(start, stop)
            hits = [f for f in self.fill_rows if max(f.start * row, start) < min(f.stop * row, stop)]
            if hits:
                values = values.copy()  # float64 output can be a view of a structured plan's cached matrix
            for fill in hits:
                lo, hi = max(fill.start * row, start), min(fill.stop * row, stop)
                values[lo - start : hi - start] = round_to(np.array([fill.value]), plan.dtype)[0]
            yield values

    def working_bytes(self, chunk_elements: int) -> int:
        return self.plan.working_bytes(chunk_elements)

    @property
    def scheme_name(self) -> str:
        return self.plan.scheme.name

    def metadata(self) -> dict[str, Any]:
        meta = self.plan.metadata()
        if self.fill_rows:
            meta["fill_rows"] = [dataclasses.asdict(fill) for fill in self.fill_rows]
        if self.origin:
            meta["origin"] = self.origin
        return meta


class IntegerTensor(ModelTensor):
    """A constant int64 buffer: no random stream, the same for every seed."""

    def __init__(
        self,
        name: str,
        shape: tuple[int, ...],
        scheme: str,
        params: Mapping[str, Any],
        value: int,
        origin: Mapping[str, Any],
    ) -> None:
        self.name = name
        self.shape = shape
        self.scheme = scheme
        self.params = dict(params)
        self.value = value
        self.origin = dict(origin)
        self.dtype = INT64
        self.machine_exact = True

    def chunks(
        self, chunk_elements: int = CHUNK_ELEMENTS, first: int = 0, last: int | None = None
    ) -> Iterator[NDArray]:
        end = self.numel if last is None else last
        for start in range(first, end, chunk_elements):
            yield np.full(min(chunk_elements, end - start), self.value, dtype=_INT64)

    def working_bytes(self, chunk_elements: int) -> int:
        return 8 * min(chunk_elements, self.numel)

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": self.name,
            "scheme": self.scheme,
            "params": self.params,
            "shape": list(self.shape),
            "dtype": INTEGER_DTYPE,
            "distribution": "constant",
            "value": self.value,
            "service": f"initserve {__version__}",
        }
        if self.origin:
            meta["origin"] = self.origin
        return meta


def _at(name: str, error: InitError) -> InitError:
    return InitError(f"tensors[{name!r}].{error.field}", f"tensor {name!r}: {error.message}", error.where)


def _integer_tensor(name: str, spec: TensorSpec) -> IntegerTensor:
    scheme = REGISTRY.get(spec.scheme)
    if scheme is None or not scheme.integer:
        integer_schemes = ", ".join(s.name for s in REGISTRY.values() if s.integer)
        raise InitError("dtype", f"int64 tensors take schemes {integer_schemes}; got {spec.scheme!r}")
    if len(spec.shape) > MAX_RANK or any(dim < 1 for dim in spec.shape):
        raise InitError("shape", f"at most {MAX_RANK} dimensions, each >= 1, got {list(spec.shape)}")
    if spec.fill_rows:
        raise InitError("fill_rows", "int64 tensors are constant: fill_rows does not apply")
    unknown = sorted(set(spec.params) - {p.name for p in scheme.params})
    if unknown:
        raise InitError(unknown[0], f"{unknown[0]!r} is not a parameter of scheme {spec.scheme!r}")
    # The parameters as given (a missing one as None, refused below), not through Param.check's float: an int64
    # val beyond 2^53 must keep its exact value.
    params = {p.name: _integral(spec.params.get(p.name, None if p.required else p.default)) for p in scheme.params}
    distribution = scheme.build(Context(params, spec.shape, "torch", Fans(spec.shape, "torch"))).distribution
    assert isinstance(distribution, Constant), f"integer scheme {scheme.name} must build a Constant"
    value = _integral(distribution.value)
    if isinstance(value, bool) or not isinstance(value, int) or not -(1 << 63) <= value < 1 << 63:
        raise InitError("val", f"an int64 constant needs an integer val in [-2^63, 2^63), got {value!r}")
    return IntegerTensor(name, spec.shape, scheme.name, params, value, spec.origin)


def _integral(value: Any) -> Any:
    """An integral float as the int it equals (7.0 -> 7); anything else unchanged."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _check_fills(spec: TensorSpec) -> None:
    for index, fill in enumerate(spec.fill_rows):
        if not spec.shape:
            raise InitError("fill_rows", "fill_rows needs at least one dimension")
        if not 0 <= fill.start < fill.stop <= spec.shape[0]:
            raise InitError(
                "fill_rows", f"rows [{fill.start}, {fill.stop}) are not a non-empty range inside [0, {spec.shape[0]})"
            )
        if not math.isfinite(fill.value):
            raise InitError("fill_rows", f"fill value must be finite, got {fill.value}")
        check_fits(abs(fill.value), DTYPES[spec.dtype], "fill_rows", f"fill_rows[{index}].value")


def plan_tensor(
    seed: int, name: str, spec: TensorSpec, rng: str = DEFAULT_RNG, keras_version: str | None = None
) -> ModelTensor:
    """One tensor of a model request, with its own stream; InitError locations name the tensor."""
    try:
        if spec.dtype == INTEGER_DTYPE:
            return _integer_tensor(name, spec)
        if spec.dtype not in DTYPES:
            known = ", ".join((*DTYPES, INTEGER_DTYPE))
            raise InitError("dtype", f"unknown dtype {spec.dtype!r}; known: {known}")
        _check_fills(spec)
        origin = {**spec.origin, "copy_of": spec.copy_of} if spec.copy_of else spec.origin
        return RandomTensor(make_plan(spec.request(seed, name, rng, keras_version)), spec.fill_rows, origin, name)
    except InitError as error:
        raise _at(name, error) from None


def check_size(request: ModelRequest, max_tensor_elements: int, max_request_elements: int) -> None:
    """Limits apply to each tensor and to the whole request (the number of tensors, the sum of their elements);
    a TooLargeError's `limit` names the argument exceeded."""
    if not request.tensors:
        raise InitError("tensors", "at least one tensor is required")
    if len(request.tensors) > MAX_TENSORS:
        raise TooLargeError("tensors", f"{len(request.tensors)} tensors; the limit is {MAX_TENSORS} per request")
    for name, spec in request.tensors.items():
        numel = math.prod(spec.shape)
        if numel > max_tensor_elements:
            raise TooLargeError(
                f"tensors[{name!r}].shape",
                f"tensor {name!r} has {numel} elements; the limit is {max_tensor_elements} per tensor",
                limit="max_tensor_elements",
            )
    numel = request.numel
    if numel > max_request_elements:
        raise TooLargeError(
            "tensors",
            f"the tensors have {numel} elements in total; the limit is {max_request_elements} for the whole request",
            limit="max_request_elements",
        )


def plan_model(request: ModelRequest) -> list[ModelTensor]:
    """Every tensor of `request`, in its order; nothing is generated yet."""
    if not 0 <= request.seed < 1 << 64:
        raise InitError("seed", f"seed must be in [0, 2^64), got {request.seed}")
    rng = get_rng(request.rng)
    tensors = [
        plan_tensor(request.seed, name, spec, request.rng, request.keras_version)
        for name, spec in request.tensors.items()
    ]
    if rng.keyed_by == "request":
        _draw_in_order(request, tensors, rng)
    return tensors


def _draw_in_order(request: ModelRequest, tensors: list[ModelTensor], rng: Rng) -> None:
    """One stream for the request, consumed draw after draw in the request's order (overwritten draws included):
    the streams of all draws at once. Integer buffers draw nothing."""
    pending = {t.name: t for t in tensors if isinstance(t, RandomTensor)}
    steps = tuple(request.tensors) if request.order is None else request.order
    owners: list[RandomTensor | None] = []  # per draw: the tensor it is output as, None for an overwritten one
    draws = []
    latest: dict[str, int] = {}  # tensor name -> its latest draw so far, for the copies made of it
    copies: list[tuple[RandomTensor, int]] = []
    for step in steps:
        if isinstance(step, Copy):
            if step.name in pending and step.source in latest:
                copies.append((pending.pop(step.name), latest[step.source]))
            elif request.tensors[step.name].dtype != INTEGER_DTYPE:
                raise ValueError(f"the draw order copies into {step.name!r} from {step.source!r}, not drawn before")
            continue
        drawn = len(draws)
        if isinstance(step, Overwritten):
            overwritten = plan_tensor(request.seed, step.name, step.spec, request.rng, request.keras_version)
            if isinstance(overwritten, RandomTensor):
                owners.append(None)
                draws.append(dataclasses.replace(overwritten.plan.draw, discarded=True))
        elif step in pending:
            tensor = pending.pop(step)
            owners.append(tensor)
            draws.append(tensor.plan.draw)
        elif request.tensors[step].dtype != INTEGER_DTYPE:
            raise ValueError(f"the draw order names tensor {step!r} twice")
        if len(draws) > drawn:
            latest[step.name if isinstance(step, Overwritten) else step] = drawn
    if pending:
        raise ValueError(f"the draw order misses tensors {sorted(pending)}")
    streams = rng.streams(request.seed, draws)
    for owner, stream in zip(owners, streams, strict=True):
        if owner is not None:
            owner.plan = dataclasses.replace(owner.plan, stream=stream)
    for copy, source in copies:
        copy.plan = dataclasses.replace(copy.plan, stream=streams[source])
