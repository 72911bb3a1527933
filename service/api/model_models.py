"""Request models for many tensors in one request: `{"seed", "tensors": {name: spec}}` or `{"seed", "model": recipe}`.

A tensor spec is a single-tensor request without seed, name, format and rng (one model per scheme, from the
registry, as for single tensors), plus `fill_rows` and the `int64` dtype for constant buffers. Layers are checked
by the engine (service/engine/recipes/layers.py declares their arguments), which names the layer and argument at fault.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, WithJsonSchema, field_validator

from service.api.models import MAX_SEED, NOT_RESERVED, RESERVED_NAME, Fan, scheme_union
from service.engine.bundle import INTEGER_DTYPE, MAX_TENSORS, ModelRequest, RowFill, TensorSpec
from service.engine.dtypes import DTYPES
from service.engine.plan import MAX_RANK
from service.engine.random.philox import RNG_ID
from service.engine.recipes.expand import FAN_SOURCES, MAX_LAYERS, MAX_RULES
from service.engine.recipes.layers import CONTAINER, FRAMEWORKS, LAYERS
from service.engine.schemes.fans import LAYOUTS
from service.engine.schemes.registry import SCHEMES

MODEL_FORMATS = ("safetensors", "json", "npz")
TENSOR_FIELDS = ("shape", "dtype", "layout", "fan_in", "fan_out", "fill_rows", "scheme")
RULE_FIELDS = ("layer", "param", "fans", "dtype", "scheme")
Dim = Annotated[int, Field(ge=1, description="a dimension, >= 1")]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED, description="in [0, 2^64); drawn (< 2^53) and returned when omitted")]
Name = Annotated[str, Field(min_length=1, max_length=256, json_schema_extra=NOT_RESERVED)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FillRows(_Strict):
    """Rows [start, stop) along axis 0 set to `value` after generation; the other elements keep their bits."""

    start: Annotated[int, Field(ge=0)]
    stop: Annotated[int, Field(ge=1)]
    value: Annotated[float, Field(allow_inf_nan=False)] = 0.0


class TensorSpecFields(_Strict):
    """One tensor: its name is its key in `tensors`, its seed the request's."""

    shape: Annotated[list[Dim], Field(max_length=MAX_RANK, description="0 to 8 dimensions, each >= 1")]
    dtype: Literal[(*DTYPES, INTEGER_DTYPE)] = Field(  # type: ignore[valid-type]
        "float32", description="int64 only for constant buffers (zeros, ones, constant with an integral val)"
    )
    layout: Literal[LAYOUTS] | None = None  # type: ignore[valid-type]
    fan_in: Fan | None = None
    fan_out: Fan | None = None
    fill_rows: list[FillRows] = Field(default_factory=list, max_length=64)

    def to_engine(self) -> TensorSpec:
        return TensorSpec(
            shape=tuple(self.shape),
            scheme=self.scheme,  # type: ignore[attr-defined]
            params={k: v for k, v in self if k not in TENSOR_FIELDS},
            dtype=self.dtype,
            layout=self.layout,
            fan_in=self.fan_in,
            fan_out=self.fan_out,
            fill_rows=tuple(RowFill(f.start, f.stop, f.value) for f in self.fill_rows),
        )


class RuleFields(_Strict):
    """Overrides the default init of matching parameters; later rules win."""

    layer: Annotated[str, Field(max_length=256)] = Field(
        "*", description="a layer type (conv2d), a group (conv, norm, recurrent, ...), a module name or path, or *"
    )
    param: Annotated[str, Field(max_length=256)] = Field(
        "*", description="weight, bias, buffer, a parameter key (weight_hh) or name (kernel), or * (not buffers)"
    )
    fans: Literal[FAN_SOURCES] = Field(  # type: ignore[valid-type]
        "layer", description="layer: the layer's real fans; framework: read off the shape as the framework does"
    )
    dtype: Literal[tuple(DTYPES)] | None = None  # type: ignore[valid-type]

    def to_engine(self) -> dict[str, Any]:
        return {k: v for k, v in self if v is not None}


TensorSpecRequest = scheme_union(TensorSpecFields, "TensorSpec", examples=False)
RuleRequest = scheme_union(RuleFields, "Rule", examples=False)
# The object form as far as a schema can say it; a layer's own arguments (its signature) are the engine's to check.
_LAYER_OBJECT = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"type": "string", "enum": [*LAYERS, CONTAINER]},
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_]*$", "description": "letters, digits and _"},
        "args": {"type": "array", "description": "positional arguments"},
        "layers": {"type": "array", "description": "the layers of a sequential"},
    },
    "additionalProperties": True,
}
Layer = Annotated[
    str | Annotated[dict[str, Any], WithJsonSchema(_LAYER_OBJECT)],
    Field(description="'conv2d(3, 64, 3, bias=false)', 'conv1: conv2d(...)', or {type, name, args, ...}"),
]


class Recipe(_Strict):
    """A model as a list of layers; its parameters get the framework's default init unless a rule overrides."""

    framework: Literal[FRAMEWORKS] = Field("torch", description="names, layouts and default inits")  # type: ignore[valid-type]
    layers: list[Layer] = Field(min_length=1, max_length=MAX_LAYERS)
    rules: list[RuleRequest] = Field(default_factory=list, max_length=MAX_RULES)  # type: ignore[valid-type]
    dtype: Literal[tuple(DTYPES)] = "float32"  # type: ignore[valid-type]


class ManyFields(_Strict):
    seed: Seed | None = None
    format: Literal[MODEL_FORMATS] | None = Field(  # type: ignore[valid-type]
        None, description="safetensors (default), json or npz; or by Accept"
    )
    rng: Literal[RNG_ID] = RNG_ID


class TensorsInit(ManyFields):
    """Many tensors in one request, each keyed by (seed, its name)."""

    tensors: dict[Name, TensorSpecRequest] = Field(min_length=1, max_length=MAX_TENSORS)  # type: ignore[valid-type]

    @field_validator("tensors")
    @classmethod
    def _not_reserved(cls, tensors: dict[str, Any]) -> dict[str, Any]:
        if RESERVED_NAME in tensors:
            raise ValueError(f"{RESERVED_NAME!r} is reserved by safetensors")
        return tensors

    def to_engine(self, seed: int) -> ModelRequest:
        return ModelRequest(seed, {name: spec.to_engine() for name, spec in self.tensors.items()}, self.rng)


class ModelInit(ManyFields):
    """A whole model from a recipe."""

    model: Recipe


# ---- POST /init's body: one tensor, many tensors, or a model ----

SINGLE, MANY, RECIPE = "tensor", "tensors", "model"
_TAGS = (SINGLE, MANY, RECIPE)


def _body_kind(body: Any) -> str:
    """Which request a body is: `model` or `tensors` present make it a many-tensor request, else a single one."""
    if isinstance(body, dict):
        if RECIPE in body:
            return RECIPE
        if MANY in body:
            return MANY
    return SINGLE


def init_body(single: Any) -> Any:
    """The body of POST /init: `single` (the single-tensor request), TensorsInit or ModelInit, told apart by keys."""
    return Annotated[
        Union[  # noqa: UP007
            Annotated[single, Tag(SINGLE)], Annotated[TensorsInit, Tag(MANY)], Annotated[ModelInit, Tag(RECIPE)]
        ],
        Discriminator(_body_kind),
    ]


def strip_union_tags(loc: tuple[Any, ...] | list[Any]) -> tuple[Any, ...]:
    """Pydantic's location without the union tags a client never wrote: ("body", "tensor", "normal", "std") ->
    ("body", "normal", "std") (the scheme tag is then errors.py's to drop); ("body", "tensors", "tensors", "w",
    "normal", "std") -> ("body", "tensors", "w", "std"); rules likewise."""
    parts = list(loc)
    if len(parts) >= 2 and parts[0] == "body" and parts[1] in _TAGS:
        del parts[1]
        if parts[1:2] == [MANY] and len(parts) > 3 and parts[3] in SCHEME_NAMES:
            del parts[3]
        elif parts[1:3] == [RECIPE, "rules"] and len(parts) > 4 and parts[4] in SCHEME_NAMES:
            del parts[4]
    return tuple(parts)


SCHEME_NAMES = frozenset(s.name for s in SCHEMES)
