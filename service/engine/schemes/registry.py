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

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from service.engine.errors import InitError
from service.engine.schemes import distributions as d
from service.engine.schemes.fans import Fans, Layout
from service.engine.schemes.gain import NONLINEARITIES, calculate_gain

Family = Literal["torch", "keras", "tf1"]
REQUIRED: Any = object()

# Std of a standard normal truncated to [-2, 2]; Keras divides by it so the truncated std is the intended one.
TRUNCATED_NORMAL_STD_2 = 0.87962566103423978
TORCH_MODES = ("fan_in", "fan_out")
VARIANCE_SCALING_MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
VARIANCE_SCALING_DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")


@dataclass(frozen=True)
class Param:
    """One scheme parameter: its JSON type, default and range (validated at the API edge)."""

    name: str
    type: type
    default: Any = REQUIRED
    doc: str = ""
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    choices: tuple[str, ...] | None = None  # documented; checked by the build rule with the framework's error

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def check(self, value: Any) -> Any:
        """The value if it has this parameter's type and range (the API checks the same first, via Pydantic)."""
        numeric = self.type in (int, float)
        kinds = (int, float) if self.type is float else (self.type,)
        if isinstance(value, bool) or not isinstance(value, kinds) or (numeric and not math.isfinite(value)):
            kind = {float: "a finite number", int: "an integer", str: "a string"}[self.type]
            raise InitError(self.name, f"{self.name} must be {kind}, got {value!r}")
        for bound, holds, words in (("ge", value.__ge__, ">="), ("gt", value.__gt__, ">"), ("le", value.__le__, "<=")):
            limit = getattr(self, bound)
            if limit is not None and not holds(limit):
                raise InitError(self.name, f"{self.name} must be {words} {limit}, got {value}")
        return float(value) if self.type is float else value


@dataclass
class Context:
    """What a build rule sees: the full parameters (defaults filled), the shape and its fans."""

    params: Mapping[str, Any]
    shape: tuple[int, ...]
    layout: Layout
    fans: Fans

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
        return variance_scaling(c["gain"] * c["gain"], "fan_avg", distribution, c.fans, c["gain"])

    return build


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


def _normal(c: Context) -> Built:
    return Built(d.Normal(c["mean"], c["std"]))


def _trunc_normal(c: Context) -> Built:
    return Built(d.TruncatedNormal(c["mean"], c["std"], c["a"], c["b"]))


def _keras_truncated_normal(c: Context) -> Built:
    mean, stddev = c["mean"], c["stddev"]
    return Built(d.TruncatedNormal(mean, stddev, mean - 2.0 * stddev, mean + 2.0 * stddev))


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
_GAIN = Param("gain", float, 1.0, "multiplier of the result", ge=0.0)
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
        _keras_truncated_normal,
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

REGISTRY: dict[str, Scheme] = {s.name: s for s in SCHEMES}


def get_scheme(name: str) -> Scheme:
    try:
        return REGISTRY[name]
    except KeyError:
        raise InitError("scheme", f"unknown scheme {name!r}; known schemes: {', '.join(REGISTRY)}") from None
