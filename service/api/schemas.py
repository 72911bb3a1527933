"""Request models, generated from the registries: one strict model per scheme, discriminated by `scheme`.

The scheme registry stays the single place where a parameter's type, default and range are written, and the
format registry the one that says which formats hold one tensor or many; the OpenAPI schema clients generate code
from is derived from them here. Every tensor request is built on `TensorFields`, and turned into the engine's one
tensor spec (`TensorSpec`) the same way.

POST /init takes one tensor, many tensors (`{"seed", "tensors": {name: spec}}`) or a model (`{"seed", "model":
recipe}`), told apart by their keys. A tensor of many is a single-tensor request without seed, name, format and rng,
plus `fill_rows` and the `int64` dtype for constant buffers. Layers are checked by the engine
(service/engine/recipes/layers.py declares their arguments), which names the layer and argument at fault.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    create_model,
    field_validator,
)
from pydantic_core import PydanticCustomError

from service.engine.bundle import INTEGER_DTYPE, MAX_TENSORS, ModelRequest, RowFill, TensorSpec
from service.engine.diagnose import ACTIVATIONS, NORMS, DiagnoseSpec, LayerInit
from service.engine.diagnose import MAX_BATCH as DIAGNOSE_MAX_BATCH
from service.engine.diagnose import MAX_BINS as DIAGNOSE_MAX_BINS
from service.engine.diagnose import MAX_LAYERS as DIAGNOSE_MAX_LAYERS
from service.engine.diagnose import MAX_WIDTH as DIAGNOSE_MAX_WIDTH
from service.engine.dtypes import DTYPES
from service.engine.errors import InitError
from service.engine.plan import MAX_RANK, TensorRequest
from service.engine.random.registry import DEFAULT_RNG, RNGS
from service.engine.recipes.expand import FAN_SOURCES, MAX_LAYERS, MAX_RULES
from service.engine.recipes.layers import CONTAINER, FRAMEWORKS, LAYERS
from service.engine.recipes.transformers import FRAMEWORK as TRANSFORMERS
from service.engine.region import check_bounds
from service.engine.schemes.fans import LAYOUTS
from service.engine.schemes.registry import (
    ALL_SCHEMES,
    DEFAULT_KERAS_VERSION,
    KERAS_VERSIONS,
    REGISTRY,
    Axes,
    AxisList,
    Number,
    Param,
    Scheme,
)
from service.formats import holding

MAX_SEED = (1 << 64) - 1
RESERVED_NAME = "__metadata__"  # safetensors' header key for metadata
NOT_RESERVED: dict[str, Any] = {"not": {"const": RESERVED_NAME}}
# A fan is written into the metadata (and the ETag it is hashed from) as a JSON integer of at most 64 bits.
MAX_FAN = (1 << 64) - 1

Dim = Annotated[int, Field(ge=1, description="a dimension, >= 1")]
Fan = Annotated[int, Field(ge=1, le=MAX_FAN)]
# An explicit example: ReDoc's generated sample would otherwise be the maximum, printed as a float beyond 2^64 - 1.
Seed = Annotated[
    int, Field(ge=0, le=MAX_SEED, examples=[7], description="in [0, 2^64); drawn (< 2^53) and returned when omitted")
]
MAX_NAME_CHARS = 256  # code points
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS, json_schema_extra=NOT_RESERVED)]
Shape = Annotated[list[Dim], Field(max_length=MAX_RANK, description="0 to 8 dimensions, each >= 1")]


def _not_reserved(name: str) -> str:
    if name == RESERVED_NAME:
        raise ValueError(f"{RESERVED_NAME!r} is reserved by safetensors")
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TensorFields(_Strict):
    """A tensor's fields, whatever its scheme; `scheme` and its parameters are added per scheme (scheme_union)."""

    shape: Shape
    dtype: Literal[tuple(DTYPES)] = "float32"  # type: ignore[valid-type]
    layout: Literal[LAYOUTS] | None = None  # type: ignore[valid-type]
    fan_in: Fan | None = None
    fan_out: Fan | None = None

    def params(self) -> dict[str, Any]:
        """The scheme's parameters, as the registry declares them."""
        return {p.name: getattr(self, p.name) for p in REGISTRY[self.scheme].params}  # type: ignore[attr-defined]

    def spec(self) -> TensorSpec:
        return TensorSpec(
            shape=tuple(self.shape),
            scheme=self.scheme,  # type: ignore[attr-defined]
            params=self.params(),
            dtype=self.dtype,
            layout=self.layout,
            fan_in=self.fan_in,
            fan_out=self.fan_out,
        )


class RequestFields(_Strict):
    """What a whole request has, one tensor or many: the seed that keys every stream, the rng, the format."""

    single: ClassVar[bool]  # one tensor (else many): which formats hold the response

    seed: Seed | None = None
    rng: Literal[RNGS] = Field(  # type: ignore[valid-type]
        DEFAULT_RNG, description="random algorithm id; results never change within one id"
    )
    keras_version: Literal[KERAS_VERSIONS] | None = Field(  # type: ignore[valid-type]
        None,
        description=(
            "the Keras version whose names, defaults and fans keras.* schemes and Keras recipes follow; "
            f"default {DEFAULT_KERAS_VERSION} (3.15: MultiHeadAttention kernels' real fans, input_axes/output_axes)"
        ),
    )


class SingleFields(TensorFields, RequestFields):
    """One tensor."""

    single: ClassVar[bool] = True

    shape: Annotated[Shape, Field(examples=[[256, 784]])]
    layout: Literal[LAYOUTS] | None = Field(  # type: ignore[valid-type]
        None, description="torch: [out, in, *kernel]; keras: [*kernel, in, out]; default: the scheme's family"
    )
    fan_in: Fan | None = Field(None, description="overrides the fan_in of the shape")
    fan_out: Fan | None = Field(None, description="overrides the fan_out of the shape")
    name: Name = Field("weight", description="tensor name: keys the random stream and names it in the file")
    format: Literal[tuple(holding(True))] | None = Field(  # type: ignore[valid-type]
        None, description="output format; default from the Accept header, else safetensors"
    )

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        return _not_reserved(name)

    def to_engine(self, seed: int) -> TensorRequest:
        return self.spec().request(seed, self.name, self.rng, self.keras_version)


Bound = Annotated[
    list[Annotated[int, Field(ge=0)]], Field(min_length=2, max_length=2, description="[start, stop) of one dimension")
]


class InitFields(SingleFields):
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


class StatsFields(SingleFields):
    bins: Annotated[int, Field(ge=1, le=1000, description="histogram bins")] = 32


def _exact_integer(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A number parameter keeps an integer as given (checked as a number): the engine rounds it for float tensors,
    and an int64 constant (`val` of 2^63 - 1) needs every digit, which a float would lose above 2^53."""
    checked = handler(value)
    return value if type(value) is int else checked


def _engine_validator(param: Param) -> Any:
    def check(value: Any) -> Any:
        try:
            checked = param.check(value)
        except InitError as error:
            raise PydanticCustomError("param_type", error.message) from None
        # A number keeps an integer as given, as _exact_integer does: an int64 constant needs every digit.
        return value if type(value) is int else checked

    return check


def _union_schema(param: Param) -> dict[str, Any]:
    members: dict[Any, list[dict[str, Any]]] = {
        Number: [{"type": "number"}, {"type": "boolean"}],
        Axes: [{"type": "integer"}, {"type": "array", "items": {"type": "integer"}}],
        AxisList: [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}],
    }
    schema: dict[str, Any] = {"anyOf": members[param.type], "description": param.doc}
    if not param.required:
        schema["default"] = param.default
    return schema


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
    if kind in (Number, Axes, AxisList):  # unions checked by the engine's rule, with one message for the whole union
        return Annotated[Any, PlainValidator(_engine_validator(param)), WithJsonSchema(_union_schema(param))], default
    return Annotated[kind, Field(**constraints)], default


# A framework-namespaced scheme takes zero-size dimensions, as the framework does (the empty tensor); bare names
# keep refusing them.
EmptyShape = Annotated[
    list[Annotated[int, Field(ge=0)]],
    Field(max_length=MAX_RANK, description="0 to 8 dimensions, each >= 0 (0: the empty tensor, as the framework)"),
]


def _model(schemes: list[Scheme], base: type[BaseModel], suffix: str, examples: bool) -> type[BaseModel]:
    """One model for schemes with the same parameters (every bare scheme has its own)."""
    first = schemes[0]
    fields: dict[str, Any] = {"scheme": (Literal[tuple(s.name for s in schemes)], ...)}
    if first.namespaced and "shape" in base.model_fields:
        fields["shape"] = (EmptyShape, ...)
    fields.update({p.name: _param_field(p, examples) for p in first.params})
    title = "".join(part.title() for part in first.name.replace(".", "_").split("_"))
    if len(schemes) == 1:
        return create_model(f"{title}{suffix}", __base__=base, __doc__=f"{first.formula}.", **fields)
    doc = "; ".join(f"{s.name}: {s.formula}" for s in schemes)
    return create_model(f"{title}Family{suffix}", __base__=base, __doc__=f"{doc}.", **fields)


def scheme_union(base: type[BaseModel], suffix: str, examples: bool = True) -> Any:
    """Strict models on `base` (the parameters with their types and ranges), discriminated by `scheme`: one per
    bare scheme, one per parameter list among the namespaced ones (`jax.he_normal` and nine others share theirs),
    which keeps the schema (and the app's start) from growing with every name. `examples=False` leaves out the
    allowed values as OpenAPI examples: nested in many-tensor requests they would multiply the explicit examples a
    fuzzer combines, for no new information."""
    namespaced: dict[str, list[Scheme]] = {}
    for scheme in ALL_SCHEMES:
        if scheme.namespaced:
            namespaced.setdefault(repr(scheme.params), []).append(scheme)
    groups = [*([s] for s in ALL_SCHEMES if not s.namespaced), *namespaced.values()]
    members = tuple(_model(group, base, suffix, examples) for group in groups)
    return Annotated[Union[members], Field(discriminator="scheme")]  # noqa: UP007


InitRequest = scheme_union(InitFields, "Init")
StatsRequest = scheme_union(StatsFields, "Stats")


# ---- many tensors ----


class FillRows(_Strict):
    """Rows [start, stop) along axis 0 set to `value` after generation; the other elements keep their bits."""

    start: Annotated[int, Field(ge=0)]
    stop: Annotated[int, Field(ge=1)]
    value: Annotated[float, Field(allow_inf_nan=False)] = 0.0


class TensorSpecFields(TensorFields):
    """One tensor: its name is its key in `tensors`, its seed the request's."""

    dtype: Literal[(*DTYPES, INTEGER_DTYPE)] = Field(  # type: ignore[valid-type]
        "float32", description="int64 only for constant buffers (zeros, ones, constant with an integral val)"
    )
    fill_rows: list[FillRows] = Field(default_factory=list, max_length=64)

    def spec(self) -> TensorSpec:
        fills = tuple(RowFill(f.start, f.stop, f.value) for f in self.fill_rows)
        return dataclasses.replace(super().spec(), fill_rows=fills)


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


class TransformersRecipe(_Strict):
    """A Hugging Face transformers model from its config.json: every parameter of the head class, with
    transformers' names, shapes, tied weights and init (docs/transformers.md)."""

    framework: Literal["transformers"]
    config: dict[str, Any] = Field(description="the model's config.json (model_type and the fields it reads)")
    architecture: Annotated[str, Field(max_length=128)] | None = Field(
        None, description="the head class, e.g. LlamaForCausalLM; default: the config's architectures[0]"
    )
    rules: list[RuleRequest] = Field(default_factory=list, max_length=MAX_RULES)  # type: ignore[valid-type]
    dtype: Literal[tuple(DTYPES)] | None = Field(  # type: ignore[valid-type]
        None, description="default: the config's dtype (or torch_dtype), else float32"
    )


_RECIPE_TAGS = ("recipe", TRANSFORMERS)


def _recipe_kind(model: Any) -> str:
    """By `framework`, of a body (a dict) or of a validated model (when serialised: the cache's request key)."""
    framework = model.get("framework") if isinstance(model, dict) else getattr(model, "framework", None)
    return TRANSFORMERS if framework == TRANSFORMERS else "recipe"


ModelRecipe = Annotated[
    Union[Annotated[Recipe, Tag("recipe")], Annotated[TransformersRecipe, Tag(TRANSFORMERS)]],  # noqa: UP007
    Discriminator(_recipe_kind),
]


class ManyFields(RequestFields):
    single: ClassVar[bool] = False

    format: Literal[tuple(holding(False))] | None = Field(  # type: ignore[valid-type]
        None, description="safetensors (default), json or npz; or by Accept"
    )


class TensorsInit(ManyFields):
    """Many tensors in one request, each keyed by (seed, its name)."""

    tensors: dict[Name, TensorSpecRequest] = Field(min_length=1, max_length=MAX_TENSORS)  # type: ignore[valid-type]

    @field_validator("tensors")
    @classmethod
    def _not_reserved(cls, tensors: dict[str, Any]) -> dict[str, Any]:
        for name in tensors:
            _not_reserved(name)
        return tensors

    def to_engine(self, seed: int) -> ModelRequest:
        specs = {name: spec.spec() for name, spec in self.tensors.items()}
        return ModelRequest(seed, specs, self.rng, keras_version=self.keras_version)


class ModelInit(ManyFields):
    """A whole model from a recipe, or a transformers config."""

    model: ModelRecipe


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


InitBody = Annotated[
    Union[  # noqa: UP007
        Annotated[InitRequest, Tag(SINGLE)], Annotated[TensorsInit, Tag(MANY)], Annotated[ModelInit, Tag(RECIPE)]
    ],
    Discriminator(_body_kind),
]


def strip_union_tags(loc: tuple[Any, ...] | list[Any]) -> tuple[list[Any], str | None]:
    """Pydantic's location without the union tags a client never wrote, and the scheme of a single-tensor request
    if its tag was one: ("body", "tensor", "normal", "std") -> ["body", "std"], "normal"; ("body", "tensors",
    "tensors", "w", "normal", "std") -> ["body", "tensors", "w", "std"]; rules likewise; GET's ("query", ...)."""
    parts = list(loc)
    scheme = None
    if len(parts) >= 2 and parts[0] == "body" and parts[1] in _TAGS:
        del parts[1]
        if parts[1:2] == [RECIPE] and len(parts) > 2 and parts[2] in _RECIPE_TAGS:
            del parts[2]
        if parts[1:2] == [MANY] and len(parts) > 3 and parts[3] in REGISTRY:
            del parts[3]
        elif parts[1:3] == [RECIPE, "rules"] and len(parts) > 4 and parts[4] in REGISTRY:
            del parts[4]
    if len(parts) >= 3 and parts[0] == "body" and parts[1] in PER_LAYER_FIELDS and parts[2] in (ONE, EACH):
        del parts[2]  # /diagnose: ["body", "init", "each", 1, "he_normal", "gain"] -> ["body", "init", 1, "gain"]
        at = 3 if parts[2:3] and isinstance(parts[2], int) else 2
        if len(parts) > at and parts[at] in REGISTRY:
            scheme = parts.pop(at)
        return parts, scheme
    if len(parts) >= 2 and parts[0] in ("body", "query") and parts[1] in REGISTRY:
        scheme = parts.pop(1)
    return parts, scheme


# ---- POST /diagnose ----


class DiagnoseInitFields(_Strict):
    """A layer's weight init: a scheme of the catalogue with its parameters; the shape comes from the widths."""

    layout: Literal[LAYOUTS] | None = Field(  # type: ignore[valid-type]
        None, description="torch: the weight is [out, in]; keras: [in, out]; default: the scheme's family"
    )

    def to_engine(self) -> LayerInit:
        params = {p.name: getattr(self, p.name) for p in REGISTRY[self.scheme].params}  # type: ignore[attr-defined]
        return LayerInit(self.scheme, params, self.layout)  # type: ignore[attr-defined]


ONE, EACH = "one", "each"  # the union tags of a value given for every layer, or a list of one per layer
PER_LAYER_FIELDS = ("activation", "init")


def _one_or_each(item: Any) -> Any:
    """`item` for every layer, or a list of one per layer: told apart by being a list (the tags leave error
    locations: strip_union_tags)."""
    return Annotated[
        Union[Annotated[item, Tag(ONE)], Annotated[list[item], Tag(EACH)]],  # noqa: UP007
        Discriminator(lambda value: EACH if isinstance(value, list) else ONE),
    ]


DiagnoseInit = scheme_union(DiagnoseInitFields, "DiagnoseInit", examples=False)
ActivationName = Literal[tuple(ACTIVATIONS)]  # type: ignore[valid-type]
Width = Annotated[int, Field(ge=1, le=DIAGNOSE_MAX_WIDTH)]


class DiagnoseRequest(_Strict):
    """A stack of dense layers (no bias) run forward and backward on a batch of N(0, 1) inputs drawn from the seed."""

    widths: list[Width] = Field(
        min_length=2,
        max_length=DIAGNOSE_MAX_LAYERS + 1,
        description="the input's width, then each layer's output width: L + 1 numbers for L layers",
        examples=[[256, 256, 256, 256, 256, 256, 256, 256, 256]],
    )
    activation: _one_or_each(ActivationName) = Field(  # type: ignore[valid-type]
        "relu", description="one for every layer, or a list of one per layer"
    )
    init: _one_or_each(DiagnoseInit) = Field(  # type: ignore[valid-type]
        description="one scheme (with its parameters and layout) for every layer, or a list of one per layer"
    )
    norm: Literal[NORMS] = Field(  # type: ignore[valid-type]
        "none", description="batch or layer normalisation (eps 1e-5, no affine) between each product and activation"
    )
    batch: Annotated[int, Field(ge=1, le=DIAGNOSE_MAX_BATCH)] = Field(256, description="inputs drawn from the seed")
    seed: Seed | None = None
    dtype: Literal[tuple(DTYPES)] = Field(  # type: ignore[valid-type]
        "float32", description="the weights' dtype (the arithmetic is float64)"
    )
    negative_slope: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = Field(
        0.01, description="leaky_relu's slope for negative inputs"
    )
    bins: Annotated[int, Field(ge=1, le=DIAGNOSE_MAX_BINS)] = Field(32, description="histogram bins per layer")

    def to_engine(self, seed: int) -> DiagnoseSpec:
        activations = self.activation if isinstance(self.activation, list) else [self.activation]
        inits = self.init if isinstance(self.init, list) else [self.init]
        return DiagnoseSpec(
            widths=tuple(self.widths),
            activations=tuple(activations),
            inits=tuple(init.to_engine() for init in inits),
            seed=seed,
            batch=self.batch,
            norm=self.norm,
            dtype=self.dtype,
            negative_slope=self.negative_slope,
            bins=self.bins,
        )
