"""The scheme catalogue: every scheme is data (its family, parameters and one build rule) in one registry.

Names keep the meaning, argument names and defaults of the framework they come from
(../shared/reference/init-semantics.md). As in JAX's `variance_scaling`, glorot/xavier, he/kaiming and lecun
are parameterisations of one mechanism, `variance_scaling(scale, mode, distribution)`:

    n = fan_in | fan_out | (fan_in + fan_out) / 2 | sqrt(fan_in * fan_out)      (by mode)
    variance = scale / max(1, n)
    uniform:             U(-sqrt(3 * variance), +sqrt(3 * variance))
    untruncated_normal:  N(0, variance)
    truncated_normal:    std = sqrt(variance) / 0.87962566103423978, cut at +-2 std (post-cut std: sqrt(variance))

PyTorch's schemes enter with scale = gain^2 and an untruncated normal; Keras's normal variants are truncated.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from service.engine.errors import InitError
from service.engine.schemes import distributions as d
from service.engine.schemes.fans import Fans, Layout
from service.engine.schemes.gain import NONLINEARITIES, calculate_gain

Family = Literal["torch", "keras", "jax", "tf1"]
# Every scheme is also addressable as <family>.<name> ("torch.kaiming_normal", "jax.he_normal"): the namespace says
# whose meaning, argument names, defaults and errors it keeps. Bare names keep the meaning they always had.
NAMESPACES: tuple[Family, ...] = ("torch", "keras", "jax", "tf1")
REQUIRED: Any = object()
# The Keras versions whose names, defaults and fans keras.* schemes and Keras recipes can follow (`keras_version`);
# the default keeps what the service always did, which is 3.14's (docs/versioning.md).
KERAS_VERSIONS = ("3.14", "3.15")
DEFAULT_KERAS_VERSION = "3.14"
# Parameter types beyond float/int/str: JAX's in_axis/out_axis/batch_axis (an axis or a list of them), Keras
# 3.15's input_axes/output_axes (a list, or None), and a number that may also be a boolean (torch's constant_
# fills with val=True as 1).
MAX_RANK = 8  # dimensions of the largest tensor a request may name: its axes are -8 to 7
Axes = int | list[int]
AxisList = list[int] | None
Number = float | bool
PARAM_KINDS: dict[Any, str] = {
    float: "number",
    int: "integer",
    str: "string",
    Axes: "integer or array of integers",
    AxisList: "array of integers or null",
    Number: "number or boolean",
}

# Std of a standard normal truncated to [-2, 2]; Keras divides by it so the truncated std is the intended one.
TRUNCATED_NORMAL_STD_2 = 0.87962566103423978
TORCH_MODES = ("fan_in", "fan_out")
VARIANCE_SCALING_MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
VARIANCE_SCALING_DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")
KERAS_MODES = ("fan_in", "fan_out", "fan_avg")
JAX_DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")


@dataclass(frozen=True)
class Param:
    """One scheme parameter: its JSON type, default and range (validated at the API edge)."""

    name: str
    type: Any  # a key of PARAM_KINDS
    default: Any = REQUIRED
    doc: str = ""
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    choices: tuple[str, ...] | None = None  # documented; checked by the build rule with the framework's error

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def kind(self) -> str:
        """The JSON type, for the catalogue."""
        return PARAM_KINDS[self.type]

    def check(self, value: Any) -> Any:
        """The value if it has this parameter's type and range (the API checks the same first, via Pydantic)."""
        if self.type in (Axes, AxisList):
            return self._check_axes(value)
        if self.type is Number and isinstance(value, bool):
            return float(value)
        numeric = self.type in (int, float, Number)
        kinds = (int, float) if self.type in (float, Number) else (self.type,)
        if isinstance(value, bool) or not isinstance(value, kinds) or (numeric and not math.isfinite(value)):
            kind = {float: "a finite number", Number: "a finite number", int: "an integer", str: "a string"}[self.type]
            raise InitError(self.name, f"{self.name} must be {kind}, got {value!r}")
        # operator.ge, not value.__ge__: an int's own method returns NotImplemented (truthy) for a float bound
        for bound, holds, words in (("ge", operator.ge, ">="), ("gt", operator.gt, ">"), ("le", operator.le, "<=")):
            limit = getattr(self, bound)
            if limit is not None and not holds(value, limit):
                raise InitError(self.name, f"{self.name} must be {words} {limit}, got {value}")
        return float(value) if self.type in (float, Number) else value

    def _check_axes(self, value: Any) -> Any:
        def is_axis(item: Any) -> bool:
            # No tensor has an axis beyond MAX_RANK: larger integers are refused even where the fans are given and
            # the axes go unread (they are echoed in the metadata, and JSON writers refuse integers past 64 bits).
            return isinstance(item, int) and not isinstance(item, bool) and -MAX_RANK <= item < MAX_RANK

        if value is None and self.type is AxisList:
            return None
        if is_axis(value) and self.type is Axes:
            return value
        if isinstance(value, list | tuple) and all(is_axis(item) for item in value):
            return list(value)
        raise InitError(
            self.name,
            f"{self.name} must be {self.kind.replace('array', 'a list')} from {-MAX_RANK} to {MAX_RANK - 1} (axes "
            f"of a tensor of at most {MAX_RANK} dimensions), got {value!r}",
        )


@dataclass
class Context:
    """What a build rule sees: the full parameters (defaults filled), the shape and its fans."""

    params: Mapping[str, Any]
    shape: tuple[int, ...]
    layout: Layout
    fans: Fans
    keras_version: str = DEFAULT_KERAS_VERSION

    def __getitem__(self, name: str) -> Any:
        return self.params[name]


@dataclass(frozen=True)
class Built:
    distribution: d.Distribution
    gain: float | None = None
    fans: Mapping[str, int] = field(default_factory=dict)  # the fans the distribution was computed from


@dataclass(frozen=True)
class Scheme:
    """One entry of the catalogue, documented as torch/nn/init.py documents its functions: the formula, where it
    comes from (the framework function it reproduces, and the paper where there is one) and a short example (the
    request fields besides scheme and seed; a test plans every one). The README's scheme table is generated from
    these (`python -m service.engine.schemes.table`)."""

    name: str
    family: Family
    formula: str
    build: Callable[[Context], Built]
    params: tuple[Param, ...] = ()
    alias_of: str | None = None
    source: str = ""  # the framework function (or file) whose meaning, argument names and defaults it keeps
    paper: str = ""
    example: Mapping[str, Any] = field(default_factory=dict)
    # Also fills integer dtypes (int64 buffers): its build gives a Constant whose value is its parameters' exactly
    # (an integer val is not rounded through float64).
    integer: bool = False

    @property
    def namespaced(self) -> bool:
        """Named <framework>.<name>: the framework's semantics, zero-size dimensions included."""
        return "." in self.name

    @property
    def default_layout(self) -> Layout:
        return "torch" if self.family == "torch" else "keras"

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def full_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """`given` with defaults filled in; unknown, missing, mistyped or out-of-range ones are an InitError."""
        for name in given:
            if self.param(name) is None:
                known = ", ".join(p.name for p in self.params) or "none"
                raise InitError(name, f"{name!r} is not a parameter of scheme {self.name!r} (its parameters: {known})")
        full = {}
        for p in self.params:
            if p.name in given:
                full[p.name] = p.check(given[p.name])
            elif p.required:
                raise InitError(p.name, f"scheme {self.name!r} needs parameter {p.name!r}")
            else:
                full[p.name] = p.default
        return full


# ---- the shared mechanism -------------------------------------------------------------------------------


def variance_scaling(scale: float, mode: str, distribution: str, fans: Fans, gain: float | None = None) -> Built:
    """The one mechanism behind glorot/xavier, he/kaiming and lecun (formulas in the module docstring), with the
    fans its mode reads."""
    if mode == "fan_in":
        used = {"fan_in": fans.fan_in}
        n = float(used["fan_in"])
    elif mode == "fan_out":
        used = {"fan_out": fans.fan_out}
        n = float(used["fan_out"])
    else:
        used = {"fan_in": fans.fan_in, "fan_out": fans.fan_out}
        if mode == "fan_avg":
            n = (used["fan_in"] + used["fan_out"]) / 2.0
        else:
            n = math.sqrt(float(used["fan_in"]) * float(used["fan_out"]))
    variance = scale / max(1.0, n)
    if distribution == "uniform":
        bound = math.sqrt(3.0 * variance)
        return Built(d.Uniform(-bound, bound), gain, used)
    if distribution == "untruncated_normal":
        return Built(d.Normal(0.0, math.sqrt(variance)), gain, used)
    std = math.sqrt(variance) / TRUNCATED_NORMAL_STD_2
    return Built(d.TruncatedNormal(0.0, std, -2.0 * std, 2.0 * std), gain, used)


def _torch_mode(mode: str) -> str:
    lowered = mode.lower()
    if lowered not in TORCH_MODES:
        raise InitError("mode", f"Mode {lowered} not supported, please use one of {list(TORCH_MODES)}")
    return lowered


def _kaiming(distribution: str) -> Callable[[Context], Built]:
    def build(c: Context) -> Built:
        mode = _torch_mode(c["mode"])
        gain = calculate_gain(c["nonlinearity"], c["a"], param_field="a")
        return variance_scaling(gain * gain, mode, distribution, c.fans, gain)

    return build


def _xavier(distribution: str) -> Callable[[Context], Built]:
    def build(c: Context) -> Built:
        check_xavier_fans(c)
        return variance_scaling(c["gain"] * c["gain"], "fan_avg", distribution, c.fans, c["gain"])

    return build


def check_xavier_fans(c: Context) -> None:
    """torch's xavier divides by fan_in + fan_out: a zero-size shape whose fans are both 0 raises."""
    if c.fans.fan_in + c.fans.fan_out == 0:
        raise InitError("shape", f"xavier on {list(c.shape)}: fan_in + fan_out is 0 (torch raises ZeroDivisionError)")


def _keras_fixed(scale: float, mode: str, distribution: str) -> Callable[[Context], Built]:
    def build(c: Context) -> Built:
        return variance_scaling(scale, mode, distribution, c.fans)

    return build


def _variance_scaling_rule(c: Context) -> Built:
    mode, distribution = c["mode"].lower(), c["distribution"].lower()
    if mode not in VARIANCE_SCALING_MODES:
        raise InitError(
            "mode", f"Invalid `mode` argument: {c['mode']}. Please use one of {list(VARIANCE_SCALING_MODES)}"
        )
    if distribution == "normal":
        raise InitError(
            "distribution",
            "distribution 'normal' is ambiguous: Keras reads it as 'truncated_normal', JAX as "
            "'untruncated_normal'; name one of " + str(list(VARIANCE_SCALING_DISTRIBUTIONS)),
        )
    if distribution not in VARIANCE_SCALING_DISTRIBUTIONS:
        raise InitError(
            "distribution",
            f"Invalid `distribution` argument: {c['distribution']}. "
            f"Please use one of {list(VARIANCE_SCALING_DISTRIBUTIONS)}",
        )
    return variance_scaling(c["scale"], mode, distribution, c.fans)


# ---- Keras's own semantics (keras.*) ------------------------------------------------------------------------


def _keras_fans(c: Context) -> Fans:
    """keras.initializers.compute_fans: with both input_axes and output_axes (Keras 3.15), the products of those
    axes; else the layout's fans (Keras ignores one list given alone)."""
    input_axes, output_axes = c["input_axes"], c["output_axes"]
    for name, axes in (("input_axes", input_axes), ("output_axes", output_axes)):
        if axes is not None and c.keras_version < "3.15":
            raise InitError(name, f"{name} is new in Keras 3.15: send keras_version '3.15' (got {c.keras_version})")
        for axis in axes or ():
            _check_axis(name, axis, c.shape)
    if input_axes is None or output_axes is None:
        return c.fans
    fan_in = math.prod(c.shape[axis] for axis in input_axes)
    fan_out = math.prod(c.shape[axis] for axis in output_axes)
    return _override(c.fans, fan_in, fan_out)


def _override(fans: Fans, fan_in: float, fan_out: float) -> Fans:
    """Fans computed by a framework's own rule, an explicit fan of the request still winning."""
    explicit_in = fans.explicit_fan_in if fans.explicit_fan_in is not None else fan_in
    explicit_out = fans.explicit_fan_out if fans.explicit_fan_out is not None else fan_out
    return Fans(fans.shape, fans.layout, explicit_in, explicit_out)  # type: ignore[arg-type]


def _keras_variance_scaling(c: Context, scale: float, mode: str, distribution: str) -> Built:
    """keras.initializers.VarianceScaling's checks (mode case-sensitive and without fan_geo_avg; distribution
    lower-cased, 'normal' its legacy name of truncated_normal), then the shared mechanism."""
    if mode not in KERAS_MODES:
        raise InitError("mode", f"Invalid `mode` argument: {mode}. Please use one of {list(KERAS_MODES)}")
    lowered = distribution.lower()
    lowered = "truncated_normal" if lowered == "normal" else lowered
    if lowered not in VARIANCE_SCALING_DISTRIBUTIONS:
        raise InitError(
            "distribution",
            f"Invalid `distribution` argument: {lowered}.Please use one of {list(VARIANCE_SCALING_DISTRIBUTIONS)}",
        )
    return variance_scaling(scale, mode, lowered, _keras_fans(c))


def _keras_fixed_axes(scale: float, mode: str, distribution: str) -> Callable[[Context], Built]:
    def build(c: Context) -> Built:
        return _keras_variance_scaling(c, scale, mode, distribution)

    return build


# ---- JAX's own semantics (jax.*) ----------------------------------------------------------------------------


def _check_axis(name: str, axis: int, shape: tuple[int, ...]) -> None:
    if not -len(shape) <= axis < len(shape):
        raise InitError(name, f"{name}: axis {axis} is out of range for a {len(shape)}-dimensional shape")


def _jax_size(name: str, axes: Any, shape: tuple[int, ...]) -> int:
    for axis in [axes] if isinstance(axes, int) else axes:
        _check_axis(name, axis, shape)
    return shape[axes] if isinstance(axes, int) else math.prod(shape[axis] for axis in axes)


def _jax_fans(c: Context) -> Fans:
    """jax.nn.initializers._compute_fans: in/out sizes are the products of in_axis/out_axis, the receptive field
    prod(shape) / in / out / batch (a float, as JAX computes it). An explicit fan of the request wins."""
    if c.layout != "keras":
        raise InitError("layout", "jax schemes read their fans from in_axis, out_axis and batch_axis, not a layout")
    if c.fans.explicit_fan_in is not None and c.fans.explicit_fan_out is not None:
        return c.fans
    in_axis, out_axis, batch_axis = c["in_axis"], c["out_axis"], c["batch_axis"]
    if in_axis == -2 and len(c.shape) <= 1:
        raise InitError(
            "shape",
            f"Can't compute input and output sizes of a {len(c.shape)}-dimensional weights tensor with default "
            "in_axis. Must be at least 2D or specify in_axis explicitly.",
        )
    in_size = _jax_size("in_axis", in_axis, c.shape)
    out_size = _jax_size("out_axis", out_axis, c.shape)
    batch_size = _jax_size("batch_axis", batch_axis, c.shape)
    if in_size * out_size * batch_size == 0:
        raise InitError(
            "shape",
            f"JAX divides prod(shape) by the in, out and batch sizes: one is 0 in {list(c.shape)} (ZeroDivisionError)",
        )
    receptive_field = math.prod(c.shape) / in_size / out_size / batch_size
    return _override(c.fans, _integral(in_size * receptive_field), _integral(out_size * receptive_field))


def _integral(value: float) -> float:
    """A fan as an int where it is one (JAX's are floats, integral unless axes overlap)."""
    return int(value) if value.is_integer() else value


def _jax_variance_scaling(c: Context, scale: float, mode: str, distribution: str) -> Built:
    """jax.nn.initializers.variance_scaling: mode and distribution compared case-sensitively; 'normal' is the
    untruncated normal; fan_geo_avg is sqrt(fan_in * fan_out)."""
    fans = _jax_fans(c)
    if mode not in VARIANCE_SCALING_MODES:
        raise InitError("mode", f"invalid mode for variance scaling initializer: {mode}")
    if distribution not in JAX_DISTRIBUTIONS:
        raise InitError("distribution", f"invalid distribution for variance scaling initializer: {distribution}")
    return variance_scaling(scale, mode, "untruncated_normal" if distribution == "normal" else distribution, fans)


def _jax_fixed(scale: float, mode: str, distribution: str) -> Callable[[Context], Built]:
    def build(c: Context) -> Built:
        return _jax_variance_scaling(c, scale, mode, distribution)

    return build


def _jax_orthogonal(c: Context) -> Built:
    _need_rank(c, tuple(range(2, 9)), "orthogonal initializer requires at least a 2D shape")
    _check_axis("column_axis", c["column_axis"], c.shape)
    cols = c.shape[c["column_axis"]]
    rows = math.prod(c.shape) // cols if cols else 0  # JAX returns zeros for a zero-size shape
    return Built(d.AxisOrthogonal(c["scale"], rows, cols, c.shape, c["column_axis"]), c["scale"])


def _jax_delta_orthogonal(c: Context) -> Built:
    _need_rank(c, (3, 4, 5), "Delta orthogonal initializer requires a 3D, 4D or 5D shape.")
    if c.shape[-1] < c.shape[-2]:
        raise InitError("shape", "`fan_in` must be less or equal than `fan_out`. ")
    matrix = c.shape[-2:]
    _check_axis("column_axis", c["column_axis"], matrix)
    cols = matrix[c["column_axis"]]
    rows = math.prod(matrix) // cols if cols else 0
    orthogonal = d.DeltaOrthogonal(c["scale"], rows, cols, matrix, c["column_axis"], kernel=c.shape[:-2])
    return Built(orthogonal, c["scale"])


def _jax_uniform(c: Context) -> Built:
    # uniform(key) * scale: U[0, scale), or (scale, 0] for a negative scale.
    return Built(d.Uniform(min(0.0, c["scale"]), max(0.0, c["scale"])))


def _jax_truncated_normal(c: Context) -> Built:
    """stddev * truncated_normal(lower, upper): lower and upper count standard deviations."""
    stddev, lower, upper = c["stddev"], c["lower"], c["upper"]
    if lower > upper:
        raise InitError("lower", f"truncated_normal needs lower <= upper, got {lower} > {upper}")
    if stddev == 0:
        return Built(d.Constant(0.0))
    a, b = sorted((stddev * lower, stddev * upper))
    return Built(d.truncated_normal(0.0, abs(stddev), a, b))


# ---- plain and structured schemes --------------------------------------------------------------------------


def _need_rank(c: Context, ranks: tuple[int, ...], message: str) -> None:
    if len(c.shape) not in ranks:
        raise InitError("shape", message)


def _torch_layout_only(c: Context, scheme: str) -> None:
    if c.layout != "torch":
        raise InitError("layout", f"{scheme} is defined for the torch layout ([out, in, *kernel]) only")


def _uniform(c: Context) -> Built:
    if c["a"] > c["b"]:
        raise InitError("a", f"uniform_ expects to return a [from, to) range, but found from={c['a']} > to={c['b']}")
    return Built(d.Uniform(c["a"], c["b"]))


def _random_uniform(c: Context) -> Built:
    if c["minval"] > c["maxval"]:
        raise InitError("minval", f"random_uniform expects minval <= maxval, got {c['minval']} > {c['maxval']}")
    return Built(d.Uniform(c["minval"], c["maxval"]))


def _keras_random_uniform(c: Context) -> Built:
    if c["minval"] > c["maxval"]:
        # Keras on JAX: max(minval, minval + (maxval - minval) * u) is minval everywhere.
        return Built(d.Constant(c["minval"]))
    return Built(d.Uniform(c["minval"], c["maxval"]))


def _normal(c: Context) -> Built:
    return Built(d.Normal(c["mean"], c["std"]))


def _random_normal(c: Context) -> Built:
    # Keras multiplies a standard normal by stddev: a negative one has the law of its absolute value.
    return Built(d.Normal(c["mean"], abs(c["stddev"])))


def _trunc_normal(c: Context) -> Built:
    if not c["a"] < c["b"]:
        raise InitError("b", f"truncated normal needs a < b, got a={c['a']}, b={c['b']}")
    return Built(d.TruncatedNormal(c["mean"], c["std"], c["a"], c["b"]))


def _torch_trunc_normal(c: Context) -> Built:
    """torch's trunc_normal_: any std but 0 (it divides by it), and a == b gives a everywhere."""
    if c["std"] == 0:
        raise InitError("std", "trunc_normal_ divides by std: it must not be 0 (torch raises ZeroDivisionError)")
    return Built(d.truncated_normal(c["mean"], c["std"], c["a"], c["b"]))


def _keras_truncated_normal(c: Context) -> Built:
    # Keras multiplies a standard truncated normal by stddev: a negative one has its absolute value's law, and 0
    # gives the mean everywhere (only the keras.* name accepts them; the bare one keeps stddev > 0).
    mean, stddev = c["mean"], abs(c["stddev"])
    if stddev == 0:
        return Built(d.Constant(mean))
    return Built(d.TruncatedNormal(mean, stddev, mean - 2.0 * stddev, mean + 2.0 * stddev))


def _bare_keras_truncated_normal(c: Context) -> Built:
    """The bare name keeps its refusal of a cut that collapses in float64 (a huge mean: mean +- 2 stddev are one
    value); keras.truncated_normal follows Keras there and gives the mean."""
    a, b = c["mean"] - 2.0 * c["stddev"], c["mean"] + 2.0 * c["stddev"]
    if not a < b:
        raise InitError("b", f"truncated normal needs a < b, got a={a}, b={b}")
    return _keras_truncated_normal(c)


def _eye(c: Context) -> Built:
    _need_rank(c, (2,), "Only tensors with 2 dimensions are supported")
    return Built(d.Eye(1.0, *c.shape))


def _identity(c: Context) -> Built:
    _need_rank(
        c,
        (2,),
        f"Identity matrix initializer can only be used for 2D matrices. "
        f"Received: shape={c.shape} of rank {len(c.shape)}.",
    )
    return Built(d.Eye(c["gain"], *c.shape), c["gain"])


def _dirac(c: Context) -> Built:
    _torch_layout_only(c, "dirac")
    _need_rank(c, (3, 4, 5), "Only tensors with 3, 4, or 5 dimensions are supported")
    if c.shape[0] % c["groups"] != 0:
        raise InitError("groups", "dim 0 must be divisible by groups")
    return Built(d.Dirac(c["groups"], c.shape))


def _orthogonal(c: Context) -> Built:
    _need_rank(c, tuple(range(2, 9)), "Only tensors with 2 or more dimensions are supported")
    if c.layout == "torch":
        rows, cols = c.shape[0], math.prod(c.shape[1:])
    else:
        rows, cols = math.prod(c.shape[:-1]), c.shape[-1]
    return Built(d.Orthogonal(c["gain"], rows, cols), c["gain"])


def _sparse(c: Context) -> Built:
    _torch_layout_only(c, "sparse")
    _need_rank(c, (2,), "Only tensors with 2 dimensions are supported")
    return Built(d.Sparse(c["sparsity"], c["std"], *c.shape))


def _uniform_unit_scaling(c: Context) -> Built:
    used = {"fan_in": c.fans.fan_in} if len(c.shape) >= 2 or c.fans.explicit_fan_in else {}
    input_size = float(used.get("fan_in", 1.0))
    bound = math.sqrt(3.0 / max(input_size, 1.0)) * c["factor"]
    return Built(d.Uniform(-abs(bound), abs(bound)), fans=used)


def _constant(value: float | None) -> Callable[[Context], Built]:
    def build(c: Context) -> Built:
        return Built(d.Constant(c["val"] if value is None else value))

    return build


# ---- the registry -----------------------------------------------------------------------------------------

_FINITE = "any finite number"
_KERAS_STDDEV = Param(
    "stddev", float, 0.05, "standard deviation (before truncation); a negative one acts as its absolute value"
)
_GAIN = Param("gain", float, 1.0, "multiplier of the result", ge=0.0)
# orthogonal_ and Keras's Orthogonal and Identity multiply by gain, whatever its sign (xavier's std cannot be < 0).
_SIGNED_GAIN = Param("gain", float, 1.0, "multiplier of the result (any sign)")
_KAIMING_PARAMS = (
    Param("a", float, 0.0, "negative slope of the rectifier after this layer (leaky_relu only)"),
    Param(
        "mode",
        str,
        "fan_in",
        "'fan_in' keeps forward variances, 'fan_out' backward ones (case-insensitive)",
        choices=TORCH_MODES,
    ),
    Param("nonlinearity", str, "leaky_relu", "name for calculate_gain", choices=NONLINEARITIES),
)
_MSRA_PARAMS = tuple(
    Param(p.name, p.type, "relu", p.doc, choices=p.choices) if p.name == "nonlinearity" else p for p in _KAIMING_PARAMS
)

_TORCH = "torch.nn.init"
_KERAS = "keras.initializers"
_GLOROT = "Glorot & Bengio 2010, Understanding the difficulty of training deep feedforward neural networks"
_HE = "He et al. 2015, Delving Deep into Rectifiers"
_LECUN = "LeCun et al. 1998, Efficient BackProp"

SCHEMES: tuple[Scheme, ...] = (
    # PyTorch family
    Scheme(
        "uniform",
        "torch",
        "U[a, b)",
        _uniform,
        (Param("a", float, 0.0, "lower bound"), Param("b", float, 1.0, "upper bound")),
        source=f"{_TORCH}.uniform_",
        example={"shape": [3, 5], "a": -0.1, "b": 0.1},
    ),
    Scheme(
        "normal",
        "torch",
        "N(mean, std^2); std = 0 fills with mean",
        _normal,
        (Param("mean", float, 0.0, _FINITE), Param("std", float, 1.0, "standard deviation", ge=0.0)),
        source=f"{_TORCH}.normal_",
        example={"shape": [3, 5], "std": 0.02},
    ),
    Scheme(
        "trunc_normal",
        "torch",
        "N(mean, std^2) restricted to [a, b]; a and b are absolute values, not multiples of std",
        _trunc_normal,
        (
            Param("mean", float, 0.0, _FINITE),
            Param("std", float, 1.0, "std before truncation", gt=0.0),
            Param("a", float, -2.0, "lower cut (absolute)"),
            Param("b", float, 2.0, "upper cut (absolute)"),
        ),
        source=f"{_TORCH}.trunc_normal_",
        example={"shape": [768, 768], "std": 0.02, "a": -0.04, "b": 0.04},
    ),
    Scheme(
        "constant",
        "torch",
        "val everywhere",
        _constant(None),
        (Param("val", float, REQUIRED, "fill value"),),
        source=f"{_TORCH}.constant_",
        example={"shape": [64], "val": 0.1},
        integer=True,
    ),
    Scheme(
        "zeros",
        "torch",
        "0 everywhere",
        _constant(0.0),
        source=f"{_TORCH}.zeros_",
        example={"shape": [64]},
        integer=True,
    ),
    Scheme(
        "ones", "torch", "1 everywhere", _constant(1.0), source=f"{_TORCH}.ones_", example={"shape": [64]}, integer=True
    ),
    Scheme(
        "eye",
        "torch",
        "identity of a 2-D matrix (rectangular allowed)",
        _eye,
        source=f"{_TORCH}.eye_",
        example={"shape": [3, 5]},
    ),
    Scheme(
        "dirac",
        "torch",
        "identity convolution: 1 at [g*out/groups + d, d, k//2, ...]",
        _dirac,
        (Param("groups", int, 1, "number of groups; dim 0 must be divisible by it", ge=1),),
        source=f"{_TORCH}.dirac_",
        paper="Zagoruyko & Komodakis 2017, DiracNets",
        example={"shape": [16, 16, 3, 3]},
    ),
    Scheme(
        "xavier_uniform",
        "torch",
        "U(-b, b), b = sqrt(3 * gain^2 / ((fan_in + fan_out) / 2))",
        _xavier("uniform"),
        (_GAIN,),
        source=f"{_TORCH}.xavier_uniform_",
        paper=_GLOROT,
        example={"shape": [256, 784]},
    ),
    Scheme(
        "xavier_normal",
        "torch",
        "N(0, std^2), std = sqrt(gain^2 / ((fan_in + fan_out) / 2)), untruncated",
        _xavier("untruncated_normal"),
        (_GAIN,),
        source=f"{_TORCH}.xavier_normal_",
        paper=_GLOROT,
        example={"shape": [256, 784], "gain": 1.0},
    ),
    Scheme(
        "kaiming_uniform",
        "torch",
        "U(-b, b), b = sqrt(3 * gain^2 / fan_mode), gain = calculate_gain(nonlinearity, a)",
        _kaiming("uniform"),
        _KAIMING_PARAMS,
        source=f"{_TORCH}.kaiming_uniform_",
        paper=_HE,
        example={"shape": [64, 3, 3, 3], "mode": "fan_out", "nonlinearity": "relu"},
    ),
    Scheme(
        "kaiming_normal",
        "torch",
        "N(0, std^2), std = sqrt(gain^2 / fan_mode), gain = calculate_gain(nonlinearity, a), untruncated",
        _kaiming("untruncated_normal"),
        _KAIMING_PARAMS,
        source=f"{_TORCH}.kaiming_normal_",
        paper=_HE,
        example={"shape": [256, 784], "nonlinearity": "relu"},
    ),
    Scheme(
        "msra",
        "torch",
        "kaiming_normal with nonlinearity='relu' by default",
        _kaiming("untruncated_normal"),
        _MSRA_PARAMS,
        alias_of="kaiming_normal",
        source="the MSRA (He et al. 2015) name of kaiming_normal",
        paper=_HE,
        example={"shape": [64, 3, 7, 7], "mode": "fan_out"},
    ),
    Scheme(
        "orthogonal",
        "torch",
        "semi-orthogonal Q of a normal matrix's QR, sign-corrected, times gain; torch layout "
        "flattens to [shape[0], prod(rest)], keras to [prod(shape[:-1]), shape[-1]]",
        _orthogonal,
        (_GAIN,),
        source=f"{_TORCH}.orthogonal_ / {_KERAS}.Orthogonal",
        paper="Saxe et al. 2013, Exact solutions to the nonlinear dynamics of learning in deep linear neural networks",
        example={"shape": [512, 128]},
    ),
    Scheme(
        "sparse",
        "torch",
        "N(0, std^2) with ceil(sparsity * rows) zeros in every column",
        _sparse,
        (
            Param("sparsity", float, REQUIRED, "fraction of each column set to zero", ge=0.0, le=1.0),
            Param("std", float, 0.01, "std of the non-zero values", ge=0.0),
        ),
        source=f"{_TORCH}.sparse_",
        paper="Martens 2010, Deep learning via Hessian-free optimization",
        example={"shape": [100, 50], "sparsity": 0.1},
    ),
    Scheme(
        "torch_default",
        "torch",
        "U(-1/sqrt(fan_in), 1/sqrt(fan_in)): kaiming_uniform(a=sqrt(5)), what nn.Linear and nn.Conv* do",
        lambda c: _kaiming("uniform")(
            Context({"a": math.sqrt(5.0), "mode": "fan_in", "nonlinearity": "leaky_relu"}, c.shape, c.layout, c.fans)
        ),
        source="nn.Linear.reset_parameters / nn.Conv*d.reset_parameters",
        example={"shape": [256, 784]},
    ),
    # Keras / JAX family
    Scheme(
        "variance_scaling",
        "keras",
        "variance = scale / max(1, n), n by mode; uniform: U(+-sqrt(3 variance)); "
        "untruncated_normal: N(0, variance); truncated_normal: std = sqrt(variance) / 0.8796..., cut at +-2 std",
        _variance_scaling_rule,
        (
            Param("scale", float, 1.0, "variance multiplier", gt=0.0),
            Param("mode", str, "fan_in", "which fan n is (case-insensitive)", choices=VARIANCE_SCALING_MODES),
            Param(
                "distribution",
                str,
                "truncated_normal",
                "case-insensitive; 'normal' is refused as ambiguous",
                choices=VARIANCE_SCALING_DISTRIBUTIONS,
            ),
        ),
        source=f"{_KERAS}.VarianceScaling / jax.nn.initializers.variance_scaling",
        example={"shape": [784, 256], "scale": 2.0, "distribution": "untruncated_normal"},
    ),
    *(
        Scheme(
            name,
            "keras",
            f"variance_scaling(scale={scale:g}, mode={mode}, distribution={dist})",
            _keras_fixed(scale, mode, dist),
            source=f"{_KERAS}.{api}",
            paper=paper,
            example={"shape": shape},
        )
        for name, scale, mode, dist, api, paper, shape in (
            ("glorot_uniform", 1.0, "fan_avg", "uniform", "GlorotUniform", _GLOROT, [784, 256]),
            ("glorot_normal", 1.0, "fan_avg", "truncated_normal", "GlorotNormal", _GLOROT, [784, 256]),
            ("he_uniform", 2.0, "fan_in", "uniform", "HeUniform", _HE, [3, 3, 3, 64]),
            ("he_normal", 2.0, "fan_in", "truncated_normal", "HeNormal", _HE, [3, 3, 3, 64]),
            ("lecun_uniform", 1.0, "fan_in", "uniform", "LecunUniform", _LECUN, [784, 256]),
            ("lecun_normal", 1.0, "fan_in", "truncated_normal", "LecunNormal", _LECUN, [784, 256]),
        )
    ),
    Scheme(
        "random_normal",
        "keras",
        "N(mean, stddev^2)",
        lambda c: Built(d.Normal(c["mean"], c["stddev"])),
        (Param("mean", float, 0.0, _FINITE), Param("stddev", float, 0.05, "standard deviation", ge=0.0)),
        source=f"{_KERAS}.RandomNormal",
        example={"shape": [1000, 64]},
    ),
    Scheme(
        "random_uniform",
        "keras",
        "U[minval, maxval)",
        _random_uniform,
        (Param("minval", float, -0.05, "lower bound"), Param("maxval", float, 0.05, "upper bound")),
        source=f"{_KERAS}.RandomUniform",
        example={"shape": [1000, 64]},
    ),
    Scheme(
        "truncated_normal",
        "keras",
        "N(mean, stddev^2) cut at mean +- 2 stddev (stddev is the pre-cut value; the real std is 0.8796 * stddev)",
        _bare_keras_truncated_normal,
        (Param("mean", float, 0.0, _FINITE), Param("stddev", float, 0.05, "std before truncation", gt=0.0)),
        source=f"{_KERAS}.TruncatedNormal",
        example={"shape": [784, 256], "stddev": 0.02},
    ),
    Scheme(
        "identity",
        "keras",
        "gain * eye, 2-D only",
        _identity,
        (_GAIN,),
        source=f"{_KERAS}.Identity",
        example={"shape": [64, 64]},
    ),
    # TensorFlow 1 legacy
    Scheme(
        "uniform_unit_scaling",
        "tf1",
        "U(-b, b), b = sqrt(3 / max(1, input_size)) * factor, input_size = "
        "fan_in of the layout for >= 2 dims (keras: prod(shape[:-1]), as TF1), else 1 unless fan_in is given",
        _uniform_unit_scaling,
        (Param("factor", float, 1.0, "multiplier of the bound"),),
        source="tf.compat.v1.uniform_unit_scaling_initializer",
        paper="Sussillo & Abbott 2014, Random Walk Initialization for Training Very Deep Feedforward Networks",
        example={"shape": [784, 256], "factor": 1.43},
    ),
)


REGISTRY_BARE: dict[str, Scheme] = {s.name: s for s in SCHEMES}

# ---- the framework namespaces -------------------------------------------------------------------------------

_JAX = "jax.nn.initializers"
_KERAS_AXES = (
    Param("input_axes", AxisList, None, "Keras 3.15: axes whose product is fan_in (with output_axes)"),
    Param("output_axes", AxisList, None, "Keras 3.15: axes whose product is fan_out (with input_axes)"),
)
_JAX_AXES = (
    Param("in_axis", Axes, -2, "axis or axes of the input dimension"),
    Param("out_axis", Axes, -1, "axis or axes of the output dimension"),
    Param("batch_axis", Axes, [], "axis or axes that are neither input, output nor receptive field"),
)
_KERAS_FIXED = (
    ("glorot_uniform", 1.0, "fan_avg", "uniform", "GlorotUniform", _GLOROT),
    ("glorot_normal", 1.0, "fan_avg", "truncated_normal", "GlorotNormal", _GLOROT),
    ("he_uniform", 2.0, "fan_in", "uniform", "HeUniform", _HE),
    ("he_normal", 2.0, "fan_in", "truncated_normal", "HeNormal", _HE),
    ("lecun_uniform", 1.0, "fan_in", "uniform", "LecunUniform", _LECUN),
    ("lecun_normal", 1.0, "fan_in", "truncated_normal", "LecunNormal", _LECUN),
)


def _in(namespace: Family, scheme: Scheme, name: str | None = None, alias_of: str | None = None) -> Scheme:
    """`scheme` under `namespace`: its meaning unchanged, named <namespace>.<name>."""
    alias = alias_of or scheme.alias_of
    return dataclasses.replace(
        scheme,
        name=f"{namespace}.{name or scheme.name}",
        family=namespace,
        alias_of=f"{namespace}.{alias}" if alias else None,
    )


_KERAS_NORMAL: dict[str, Any] = {"build": _random_normal, "params": (Param("mean", float, 0.0, _FINITE), _KERAS_STDDEV)}
_KERAS_UNIFORM: dict[str, Any] = {
    "build": _keras_random_uniform,
    "formula": "U[minval, maxval); minval everywhere if minval > maxval (as Keras on JAX)",
}
_KERAS_TRUNCATED: dict[str, Any] = {
    "build": _keras_truncated_normal,
    "params": (Param("mean", float, 0.0, _FINITE), _KERAS_STDDEV),
}

KERAS_SCHEMES: tuple[Scheme, ...] = (
    Scheme(
        "keras.variance_scaling",
        "keras",
        "variance = scale / max(1, n), n = fan_in | fan_out | (fan_in + fan_out) / 2 (mode, case-sensitive); "
        "truncated_normal (or 'normal'): std = sqrt(variance) / 0.8796..., cut at +-2 std; untruncated_normal; uniform",
        lambda c: _keras_variance_scaling(c, c["scale"], c["mode"], c["distribution"]),
        (
            Param("scale", float, 1.0, "variance multiplier", gt=0.0),
            Param("mode", str, "fan_in", "which fan n is", choices=KERAS_MODES),
            Param(
                "distribution",
                str,
                "truncated_normal",
                "case-insensitive; 'normal' is truncated_normal",
                choices=(*VARIANCE_SCALING_DISTRIBUTIONS, "normal"),
            ),
            *_KERAS_AXES,
        ),
        source=f"{_KERAS}.VarianceScaling",
        example={"shape": [784, 256], "scale": 2.0, "distribution": "untruncated_normal"},
    ),
    *(
        Scheme(
            f"keras.{name}",
            "keras",
            f"variance_scaling(scale={scale:g}, mode={mode}, distribution={dist})",
            _keras_fixed_axes(scale, mode, dist),
            _KERAS_AXES,
            source=f"{_KERAS}.{api}",
            paper=paper,
            example={"shape": [784, 256]},
        )
        for name, scale, mode, dist, api, paper in _KERAS_FIXED
    ),
    *(
        dataclasses.replace(_in("keras", REGISTRY_BARE[bare], name, alias), **changes)
        for name, bare, alias, changes in (
            ("random_normal", "random_normal", None, _KERAS_NORMAL),
            ("normal", "random_normal", "random_normal", _KERAS_NORMAL),
            ("random_uniform", "random_uniform", None, _KERAS_UNIFORM),
            ("uniform", "random_uniform", "random_uniform", _KERAS_UNIFORM),
            ("truncated_normal", "truncated_normal", None, _KERAS_TRUNCATED),
            ("identity", "identity", None, {"params": (_SIGNED_GAIN,)}),
        )
    ),
    *(
        dataclasses.replace(_in("keras", REGISTRY_BARE[bare], name, alias), source=f"{_KERAS}.{bare.title()}")
        for name, bare, alias in (
            ("zeros", "zeros", None),
            ("zero", "zeros", "zeros"),
            ("ones", "ones", None),
            ("one", "ones", "ones"),
        )
    ),
    dataclasses.replace(
        _in("keras", REGISTRY_BARE["constant"]),
        params=(Param("value", Number, 0.0, "fill value"),),
        formula="value everywhere",
        build=lambda c: Built(d.Constant(c["value"])),
        source=f"{_KERAS}.Constant",
        example={"shape": [64], "value": 0.1},
    ),
    dataclasses.replace(
        _in("keras", REGISTRY_BARE["orthogonal"]), params=(_SIGNED_GAIN,), source=f"{_KERAS}.Orthogonal"
    ),
)

JAX_SCHEMES: tuple[Scheme, ...] = (
    Scheme(
        "jax.variance_scaling",
        "jax",
        "variance = scale / n, n = fan_in | fan_out | (fan_in + fan_out) / 2 | sqrt(fan_in * fan_out) (mode); "
        "truncated_normal: std = sqrt(variance) / 0.8796..., cut at +-2 std; normal: untruncated; uniform",
        lambda c: _jax_variance_scaling(c, c["scale"], c["mode"], c["distribution"]),
        (
            Param("scale", float, REQUIRED, "variance multiplier", gt=0.0),
            Param("mode", str, REQUIRED, "which fan n is (case-sensitive)", choices=VARIANCE_SCALING_MODES),
            Param("distribution", str, REQUIRED, "case-sensitive; 'normal' is untruncated", choices=JAX_DISTRIBUTIONS),
            *_JAX_AXES,
        ),
        source=f"{_JAX}.variance_scaling",
        example={"shape": [784, 256], "scale": 2.0, "mode": "fan_in", "distribution": "normal"},
    ),
    *(
        Scheme(
            f"jax.{name}",
            "jax",
            f"variance_scaling({scale:g}, {mode}, {dist}) over in_axis/out_axis/batch_axis",
            _jax_fixed(scale, mode, dist),
            _JAX_AXES,
            alias_of=f"jax.{alias}" if alias else None,
            source=f"{_JAX}.{name}",
            paper=paper,
            example={"shape": [3, 3, 16, 32]},
        )
        for name, alias, scale, mode, dist, paper in (
            ("glorot_uniform", None, 1.0, "fan_avg", "uniform", _GLOROT),
            ("glorot_normal", None, 1.0, "fan_avg", "truncated_normal", _GLOROT),
            ("xavier_uniform", "glorot_uniform", 1.0, "fan_avg", "uniform", _GLOROT),
            ("xavier_normal", "glorot_normal", 1.0, "fan_avg", "truncated_normal", _GLOROT),
            ("he_uniform", None, 2.0, "fan_in", "uniform", _HE),
            ("he_normal", None, 2.0, "fan_in", "truncated_normal", _HE),
            ("kaiming_uniform", "he_uniform", 2.0, "fan_in", "uniform", _HE),
            ("kaiming_normal", "he_normal", 2.0, "fan_in", "truncated_normal", _HE),
            ("lecun_uniform", None, 1.0, "fan_in", "uniform", _LECUN),
            ("lecun_normal", None, 1.0, "fan_in", "truncated_normal", _LECUN),
        )
    ),
    Scheme(
        "jax.orthogonal",
        "jax",
        "semi-orthogonal [prod(shape) / shape[column_axis], shape[column_axis]] matrix (QR of normals, "
        "sign-corrected), its columns along column_axis, times scale",
        _jax_orthogonal,
        (Param("scale", float, 1.0, "multiplier (any sign)"), Param("column_axis", int, -1, "axis of the columns")),
        source=f"{_JAX}.orthogonal",
        paper="Saxe et al. 2013, Exact solutions to the nonlinear dynamics of learning in deep linear neural networks",
        example={"shape": [512, 128]},
    ),
    Scheme(
        "jax.delta_orthogonal",
        "jax",
        "zeros but the centre tap ((k - 1) // 2 on every kernel axis): an orthogonal [in, out] matrix times scale",
        _jax_delta_orthogonal,
        (
            Param("scale", float, 1.0, "multiplier (any sign)"),
            Param("column_axis", int, -1, "axis of the columns of the [in, out] matrix"),
        ),
        source=f"{_JAX}.delta_orthogonal",
        paper="Xiao et al. 2018, Dynamical Isometry and a Mean Field Theory of CNNs",
        example={"shape": [3, 3, 16, 32]},
    ),
    Scheme(
        "jax.normal",
        "jax",
        "N(0, stddev^2)",
        lambda c: Built(d.Normal(0.0, abs(c["stddev"]))),
        (Param("stddev", float, 1e-2, "standard deviation (a negative one acts as its absolute value)"),),
        source=f"{_JAX}.normal",
        example={"shape": [1000, 64]},
    ),
    Scheme(
        "jax.uniform",
        "jax",
        "U[0, scale)",
        _jax_uniform,
        (Param("scale", float, 1e-2, "upper bound"),),
        source=f"{_JAX}.uniform",
        example={"shape": [1000, 64]},
    ),
    Scheme(
        "jax.truncated_normal",
        "jax",
        "stddev * N(0, 1) restricted to [lower, upper] (bounds in standard deviations)",
        _jax_truncated_normal,
        (
            Param("stddev", float, 1e-2, "scale of the standard truncated normal"),
            Param("lower", float, -2.0, "lower cut, in standard deviations"),
            Param("upper", float, 2.0, "upper cut, in standard deviations"),
        ),
        source=f"{_JAX}.truncated_normal",
        example={"shape": [784, 256], "stddev": 0.02},
    ),
    *(dataclasses.replace(_in("jax", REGISTRY_BARE[name]), source=f"{_JAX}.{name}") for name in ("zeros", "ones")),
    dataclasses.replace(
        _in("jax", REGISTRY_BARE["constant"]),
        params=(Param("value", Number, REQUIRED, "fill value"),),
        formula="value everywhere",
        build=lambda c: Built(d.Constant(c["value"])),
        source=f"{_JAX}.constant",
        example={"shape": [64], "value": 0.1},
    ),
)

# Where the framework accepts what the bare name refuses (docs/faithfulness.md): the namespaced name follows it.
_TORCH_CHANGES: dict[str, dict[str, Any]] = {
    "orthogonal": {"params": (_SIGNED_GAIN,)},
    "trunc_normal": {
        "build": _torch_trunc_normal,
        "formula": "N(mean, std^2) restricted to [a, b] (absolute values, not multiples of std); a == b gives a",
        "params": (
            Param("mean", float, 0.0, _FINITE),
            Param("std", float, 1.0, "std before truncation; not 0 (a negative one acts as its absolute value)"),
            Param("a", float, -2.0, "lower cut (absolute)"),
            Param("b", float, 2.0, "upper cut (absolute), >= a"),
        ),
    },
    "constant": {"params": (Param("val", Number, REQUIRED, "fill value (a boolean fills 1 or 0)"),)},
    "sparse": {
        "params": (
            Param("sparsity", float, REQUIRED, "fraction of each column set to zero (1 or more: all)", ge=0.0),
            Param("std", float, 0.01, "std of the non-zero values", ge=0.0),
        )
    },
}
# Keras's VarianceScaling subclasses (bare and keras.*): the initializers EinsumDense (Keras 3.15) hands its
# kernel's input and output axes to.
KERAS_VARIANCE_SCALING = frozenset(
    {"variance_scaling", *(name for name, *_ in _KERAS_FIXED)}
    | {f"keras.{s}" for s in ("variance_scaling", *(n for n, *_ in _KERAS_FIXED))}
)
ALL_SCHEMES: tuple[Scheme, ...] = (
    *SCHEMES,
    *(dataclasses.replace(_in(s.family, s), **_TORCH_CHANGES.get(s.name, {})) for s in SCHEMES if s.family != "keras"),
    *KERAS_SCHEMES,
    *JAX_SCHEMES,
)
REGISTRY: dict[str, Scheme] = {s.name: s for s in ALL_SCHEMES}


def get_scheme(name: str) -> Scheme:
    try:
        return REGISTRY[name]
    except KeyError:
        raise InitError("scheme", f"unknown scheme {name!r}; known schemes: {', '.join(REGISTRY)}") from None
