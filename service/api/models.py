"""Request models generated from the scheme registry: one strict model per scheme, discriminated by `scheme`.

The registry stays the single place where a parameter's type, default and range are written; the OpenAPI
schema clients generate code from is derived from it here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    create_model,
    field_validator,
)
from pydantic_core import PydanticCustomError

from service.engine.dtypes import DTYPES
from service.engine.errors import InitError
from service.engine.plan import MAX_RANK, TensorRequest
from service.engine.random.philox import RNG_ID
from service.engine.region import check_bounds
from service.engine.schemes.fans import LAYOUTS
from service.engine.schemes.registry import SCHEMES, Param, Scheme

MAX_SEED = (1 << 64) - 1
FORMATS = ("safetensors", "json", "npy")
COMMON_FIELDS = ("shape", "seed", "dtype", "layout", "fan_in", "fan_out", "name", "format", "rng", "bins", "slice")

Dim = Annotated[int, Field(ge=1, description="a dimension, >= 1")]
RESERVED_NAME = "__metadata__"  # safetensors' header key for metadata
NOT_RESERVED: dict[str, Any] = {"not": {"const": RESERVED_NAME}}
# A fan is written into the metadata (and the ETag it is hashed from) as a JSON integer of at most 64 bits.
MAX_FAN = (1 << 64) - 1
Fan = Annotated[int, Field(ge=1, le=MAX_FAN)]


class TensorFields(BaseModel):
    """Fields every request has, whatever its scheme."""

    model_config = ConfigDict(extra="forbid", strict=True)

    shape: Annotated[
        list[Dim], Field(max_length=MAX_RANK, description="0 to 8 dimensions, each >= 1", examples=[[256, 784]])
    ]
    seed: (
        Annotated[int, Field(ge=0, le=MAX_SEED, description="in [0, 2^64); drawn (< 2^53) and returned when omitted")]
        | None
    ) = None
    dtype: Literal[tuple(DTYPES)] = "float32"  # type: ignore[valid-type]
    layout: Literal[LAYOUTS] | None = Field(  # type: ignore[valid-type]
        None, description="torch: [out, in, *kernel]; keras: [*kernel, in, out]; default: the scheme's family"
    )
    fan_in: Fan | None = Field(None, description="overrides the fan_in of the shape")
    fan_out: Fan | None = Field(None, description="overrides the fan_out of the shape")
    name: Annotated[str, Field(min_length=1, max_length=256, json_schema_extra=NOT_RESERVED)] = Field(
        "weight", description="tensor name: keys the random stream and names it in the file"
    )
    format: Literal[FORMATS] | None = Field(  # type: ignore[valid-type]
        None, description="output format; default from the Accept header, else safetensors"
    )
    rng: Literal[RNG_ID] = Field(RNG_ID, description="random algorithm id; results never change within one id")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name == RESERVED_NAME:
            raise ValueError(f"{RESERVED_NAME!r} is reserved by safetensors")
        return name

    def to_engine(self, seed: int) -> TensorRequest:
        params = {k: v for k, v in self if k not in COMMON_FIELDS and k != "scheme"}
        return TensorRequest(
            shape=tuple(self.shape),
            scheme=self.scheme,
            seed=seed,
            params=params,  # type: ignore[attr-defined]
            dtype=self.dtype,
            layout=self.layout,
            fan_in=self.fan_in,
            fan_out=self.fan_out,
            name=self.name,
            rng=self.rng,
        )


Bound = Annotated[
    list[Annotated[int, Field(ge=0)]], Field(min_length=2, max_length=2, description="[start, stop) of one dimension")
]


class InitFields(TensorFields):
    """What /init takes beyond the tensor: the region to return."""

    slice: list[Bound] | None = Field(
        None,
        max_length=MAX_RANK,
        description=(
            "only this region: one [start, stop) per dimension, 0 <= start < stop <= dim; bit-identical to the same "
            "region of the whole tensor, at a cost proportional to the region (orthogonal and sparse: the whole)"
        ),
        examples=[[[0, 128], [0, 784]]],
    )

    @field_validator("slice")
    @classmethod
    def _within_shape(cls, bounds: list[list[int]] | None, info: ValidationInfo) -> list[list[int]] | None:
        if bounds is not None and "shape" in info.data:
            try:
                check_bounds(info.data["shape"], bounds)
            except InitError as error:
                raise PydanticCustomError("slice_out_of_range", error.message) from None
        return bounds


class StatsFields(TensorFields):
    bins: Annotated[int, Field(ge=1, le=1000, description="histogram bins")] = 32


def _exact_integer(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A number parameter keeps an integer as given (checked as a number): the engine rounds it for float tensors,
    and an int64 constant (`val` of 2^63 - 1) needs every digit, which a float would lose above 2^53."""
    checked = handler(value)
    return value if type(value) is int else checked


def _param_field(param: Param, examples: bool) -> tuple[Any, Any]:
    kind: Any = param.type
    constraints: dict[str, Any] = {"description": param.doc}
    if kind is float:
        constraints["allow_inf_nan"] = False
    if param.choices:
        # In the schema only: the framework's own message refuses the others (and some compare case-insensitively).
        constraints["json_schema_extra"] = {"enum": list(param.choices)}
        if examples:
            constraints["examples"] = list(param.choices)
    for bound in ("ge", "gt", "le"):
        if getattr(param, bound) is not None:
            constraints[bound] = getattr(param, bound)
    default = ... if param.required else param.default
    if kind is float:  # the range checked on the number, then the integer kept (the schema stays a number's)
        return Annotated[float, Field(**constraints), WrapValidator(_exact_integer)], default
    return Annotated[kind, Field(**constraints)], default


def _model(scheme: Scheme, base: type[BaseModel], suffix: str, examples: bool) -> type[BaseModel]:
    fields: dict[str, Any] = {"scheme": (Literal[scheme.name], ...)}
    fields.update({p.name: _param_field(p, examples) for p in scheme.params})
    title = "".join(part.title() for part in scheme.name.split("_"))
    return create_model(f"{title}{suffix}", __base__=base, __doc__=f"{scheme.formula}.", **fields)


def scheme_union(base: type[BaseModel], suffix: str, examples: bool = True) -> Any:
    """One strict model per scheme on `base` (its parameters with their types and ranges), discriminated by
    `scheme`. `examples=False` leaves out the allowed values as OpenAPI examples: nested in many-tensor requests
    they would multiply the explicit examples a fuzzer combines, for no new information."""
    members = tuple(_model(s, base, suffix, examples) for s in SCHEMES)
    return Annotated[Union[members], Field(discriminator="scheme")]  # noqa: UP007


InitRequest = scheme_union(InitFields, "Init")
StatsRequest = scheme_union(StatsFields, "Stats")
