"""`generate(request)`: the tensor the service returns for a single-tensor `rng: "philox-v1"` or `"philox-v2"`
request, computed here bit for bit, written from docs/reproducibility.md and docs/philox-v2.md alone (section numbers
below are reproducibility.md's unless they say v2). Every scheme but `orthogonal` (a LAPACK QR, not bit-exact across
machines), every dtype, slices, seeds up to 2^64 - 1.
"""

from __future__ import annotations

import difflib
import math
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from initserve_client import elementary, philox, philox2, samplers2
from initserve_client.contract import RNG, RNG_V2, F, document, float_of
from initserve_client.decode import DTYPES, Tensor
from initserve_client.errors import RequestError
from initserve_client.rounding import first_at_least, last_at_most, pred, to_dtype

SCHEMES: dict[str, dict[str, Any]] = document()["schemes"]
# The service's framework-namespaced names (jax.he_normal, ...): refused here, named in refusals as the service does.
NAMESPACED: dict[str, dict[str, Any]] = document()["namespaced_schemes"]
SERVICE_PARAMS: dict[str, list[str]] = {
    **{name: list(spec["params"]) for name, spec in SCHEMES.items()},
    **{name: spec["params"] for name, spec in NAMESPACED.items()},
}
NOT_LOCAL = ("orthogonal",)  # the whole-matrix schemes that are not bit-exact across machines (section 5.3)
COMMON = ("shape", "scheme", "seed", "name", "dtype", "layout", "fan_in", "fan_out", "slice", "rng", "format")
LIMITS: dict[str, Any] = document()["constants"]["limits"]  # section 1.1; beyond 2^53 as decimal strings
MAX_SEED = int(LIMITS["max_seed"])
MAX_FAN = int(LIMITS["max_fan"])
MAX_DIMS = LIMITS["max_rank"]
MAX_NAME = LIMITS["max_name_chars"]
MAX_ELEMENTS = int(LIMITS["max_elements"])
FORMATS = ("safetensors", "json", "npy")
DTYPE_MAX = {name: float_of(entry["bits"]) for name, entry in document()["constants"]["dtype_max"].items()}
CHUNK = 1 << 15  # elements a step: the temporaries of the elementary functions stay in cache

_2_M53 = 2.0**-53
_2_M52 = 2.0**-52
_11, _12 = np.uint64(11), np.uint64(12)


def _refuse(field_name: str | int | tuple[str | int, ...], message: str, kind: str = "value_error") -> RequestError:
    loc = field_name if isinstance(field_name, tuple) else (field_name,)
    return RequestError(422, [{"loc": ["body", *loc], "msg": message, "type": kind}])


def _pydantic(loc: tuple[str | int, ...], message: str, kind: str) -> RequestError:
    """The service's messages for type and range rules carry the field's dotted path first."""
    return _refuse(loc, f"{'.'.join(map(str, loc))}: {message}", kind)


def _bound_text(value: float) -> str:
    return f"{value:g}"


def _integer(value: Any, loc: tuple[str | int, ...], ge: int | None = None, le: int | None = None) -> int:
    if type(value) is not int:  # JSON integers only: not true/false, not 2.0, not "2"
        raise _pydantic(loc, "Input should be a valid integer", "int_type")
    if ge is not None and value < ge:
        raise _pydantic(loc, f"Input should be greater than or equal to {ge}", "greater_than_equal")
    if le is not None and value > le:
        raise _pydantic(loc, f"Input should be less than or equal to {le}", "less_than_equal")
    return value


def _number(value: Any, name: str, rules: Mapping[str, Any]) -> float:
    if type(value) not in (int, float):
        raise _pydantic((name,), "Input should be a valid number", "float_type")
    try:
        number = float(value)  # an integer rounded to nearest, ties to even (section 1.1)
    except OverflowError:
        raise _pydantic((name,), "Input should be a valid number", "float_type") from None
    if not math.isfinite(number):
        raise _pydantic((name,), "Input should be a finite number", "finite_number")
    for rule, test, words in (
        ("ge", number.__ge__, "greater than or equal to"),
        ("gt", number.__gt__, "greater than"),
        ("le", number.__le__, "less than or equal to"),
    ):
        if rule in rules and not test(rules[rule]):
            kind = {"ge": "greater_than_equal", "gt": "greater_than", "le": "less_than_equal"}[rule]
            raise _pydantic((name,), f"Input should be {words} {_bound_text(rules[rule])}", kind)
    return number


def _literal(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if type(value) is not str or value not in choices:
        quoted = [f"'{choice}'" for choice in choices]
        listed = ", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else quoted[0]
        raise _pydantic((name,), f"Input should be {listed}", "literal_error")
    return value


def _string(value: Any, name: str) -> str:
    if type(value) is not str:
        raise _pydantic((name,), "Input should be a valid string", "string_type")
    return value


# ---- the request (section 1.1) --------------------------------------------------------------------------


@dataclass
class _Request:
    shape: tuple[int, ...]
    scheme: str
    params: dict[str, Any]
    seed: int
    name: str
    dtype: str
    layout: str
    fans_given: dict[str, int]
    region: tuple[tuple[int, int], ...] | None
    rng: str


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise _pydantic(("shape",), "Input should be a valid list", "list_type")
    if len(value) > MAX_DIMS:
        message = f"List should have at most {MAX_DIMS} items after validation, not {len(value)}"
        raise _pydantic(("shape",), message, "too_long")
    return tuple(_integer(dim, ("shape", i), ge=1) for i, dim in enumerate(value))


def _addressable(shape: tuple[int, ...]) -> None:
    """Flat indices are signed 64-bit (section 1.1): the whole tensor's count is refused beyond them, whatever slice
    asks for. The service checks it after every field's own rules and the slice's bounds."""
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise _refuse("shape", f"shape {list(shape)} has {count} elements; at most 2^63 - 1 can be addressed")


def _name(value: Any) -> str:
    name = _string(value, "name")
    if not name:
        raise _pydantic(("name",), "String should have at least 1 character", "string_too_short")
    if len(name) > MAX_NAME:
        raise _pydantic(("name",), f"String should have at most {MAX_NAME} characters", "string_too_long")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: not text the key's UTF-8 bytes can hold
        message = "text must be valid Unicode; a \\ud800-\\udfff escape must be half of a surrogate pair"
        raise _pydantic(("name",), message, "unicode_invalid") from None
    if name == "__metadata__":
        raise _pydantic(("name",), "Value error, '__metadata__' is reserved by safetensors", "value_error")
    return name


def _slice(value: Any, shape: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, list):
        raise _pydantic(("slice",), "Input should be a valid list", "list_type")
    bounds = []
    for d, pair in enumerate(value):
        if not isinstance(pair, list):
            raise _pydantic(("slice", d), "Input should be a valid list", "list_type")
        if len(pair) != 2:
            more, words = ("too_short", "at least") if len(pair) < 2 else ("too_long", "at most")
            raise _pydantic(("slice", d), f"List should have {words} 2 items after validation, not {len(pair)}", more)
        bounds.append((_integer(pair[0], ("slice", d, 0)), _integer(pair[1], ("slice", d, 1))))
    if len(bounds) != len(shape):
        message = f"slice needs one [start, stop) per dimension of shape {list(shape)}, got {len(bounds)}"
        raise _pydantic(("slice",), message, "slice_out_of_range")
    for d, ((start, stop), dim) in enumerate(zip(bounds, shape, strict=True)):
        if not 0 <= start < stop <= dim:
            message = f"slice[{d}] = [{start}, {stop}) must satisfy 0 <= start < stop <= {dim}"
            raise _pydantic(("slice",), message, "slice_out_of_range")
    return tuple(bounds)


def _scheme(request: Mapping[str, Any]) -> str:
    if "scheme" not in request:
        raise _refuse("scheme", "field 'scheme' is required (GET /schemes lists them)", "union_tag_not_found")
    scheme = request["scheme"]
    if type(scheme) is str and scheme in NAMESPACED:
        message = (
            f"scheme '{scheme}' is not generated locally: the specification defines the bare names' bits only "
            "(docs/faithfulness.md says whose rules it follows); fetch it from the service"
        )
        raise _refuse("scheme", message, "not_local")
    if type(scheme) is not str or scheme not in SCHEMES:
        close = difflib.get_close_matches(str(scheme), list(SERVICE_PARAMS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ";"
        known = ", ".join(SERVICE_PARAMS)
        raise _refuse("scheme", f"unknown scheme '{scheme}'{hint} known schemes: {known}", "union_tag_invalid")
    if scheme in NOT_LOCAL:
        message = (
            f"scheme '{scheme}' is not generated locally: its QR decomposition (LAPACK) is not bit-exact across "
            "machines (docs/reproducibility.md section 5.3); fetch it from the service"
        )
        raise _refuse("scheme", message, "not_local")
    return scheme


def _params(request: Mapping[str, Any], scheme: str) -> dict[str, Any]:
    declared: dict[str, dict[str, Any]] = SCHEMES[scheme]["params"]
    takes = ", ".join(declared) or "none"
    for key in request:
        if key in COMMON or key in declared:
            continue
        owners = [other for other, names in SERVICE_PARAMS.items() if key in names]
        if owners:
            message = f"'{key}' is not a parameter of scheme '{scheme}' (its parameters: {takes}); it belongs to "
            raise _refuse(key, message + ", ".join(owners[:6]), "extra_forbidden")
        raise _refuse(key, f"unknown field '{key}' (scheme '{scheme}' takes: {takes})", "extra_forbidden")
    params: dict[str, Any] = {}
    for key, spec in declared.items():
        if key not in request:
            if spec["default"] is None:
                raise _pydantic((key,), "Field required", "missing")
            params[key] = spec["default"]
        elif spec["type"] == "number":
            params[key] = _number(request[key], key, spec)
        elif spec["type"] == "integer":
            params[key] = _integer(request[key], (key,), ge=spec.get("ge"), le=spec.get("le"))
        else:  # a string; its choices are checked where it is used, with the framework's own words
            params[key] = _string(request[key], key)
    return params


def _read(request: Mapping[str, Any]) -> _Request:
    if not isinstance(request, Mapping):
        message = "body: Input should be a valid dictionary or object to extract fields from"
        raise RequestError(422, [{"loc": ["body"], "msg": message, "type": "model_attributes_type"}])
    for many in ("tensors", "model"):
        if many in request:
            message = (
                f"generate() computes one tensor: call it once per tensor of a '{many}' request, with that "
                "tensor's name (its bits are the single request's), or fetch it from the service (fetch_tensors)"
            )
            raise _refuse(many, message, "not_local")
    rng = _literal(request.get("rng", RNG), "rng", (RNG, RNG_V2, "torch-2.13"))
    if rng not in (RNG, RNG_V2):
        message = (
            f"generate() computes rngs '{RNG}' and '{RNG_V2}': '{rng}' is torch's sequential generator, fetch it from "
            "the service"
        )
        raise _refuse("rng", message, "not_local")
    if "shape" not in request:
        raise _pydantic(("shape",), "Field required", "missing")
    shape = _shape(request["shape"])
    scheme = _scheme(request)
    params = _params(request, scheme)
    seed = request.get("seed")
    # No seed: drawn below 2^53, as the service draws it, and returned in the metadata (random by design).
    seed = secrets.randbelow(2**53) if seed is None else _integer(seed, ("seed",), ge=0, le=MAX_SEED)
    name = _name(request.get("name", "weight"))
    dtype = _literal(request.get("dtype", "float32"), "dtype", tuple(name for name in DTYPES if name != "int64"))
    layout = request.get("layout")
    layout = SCHEMES[scheme]["default_layout"] if layout is None else _literal(layout, "layout", ("torch", "keras"))
    fans_given = {
        key: _integer(request[key], (key,), ge=1, le=MAX_FAN)
        for key in ("fan_in", "fan_out")
        if request.get(key) is not None
    }
    region = None if request.get("slice") is None else _slice(request["slice"], shape)
    fmt = request.get("format")
    if fmt is not None:
        _literal(fmt, "format", FORMATS)
    _addressable(shape)
    if fmt == "npy" and dtype == "bfloat16":
        message = (
            "format 'npy' cannot hold bfloat16 (NumPy has no standard code for it); use safetensors, or another dtype"
        )
        raise _refuse("format", message)
    return _Request(shape, scheme, params, seed, name, dtype, layout, fans_given, region, rng)


# ---- schemes to distributions (section 6) ---------------------------------------------------------------


@dataclass
class _Distribution:
    kind: str  # uniform, normal, truncated_normal, constant, eye, dirac, sparse
    numbers: dict[str, float | int] = field(default_factory=dict)  # the metadata's, in its order
    gain: float | None = None
    fans: dict[str, int] = field(default_factory=dict)  # the fans the scheme read
    shape_fans: dict[str, int | None] = field(default_factory=dict)  # metadata version 2's


class _Fans:
    """The fans of section 6.1, computed only when read (a scheme that reads none takes any shape)."""

    def __init__(self, shape: tuple[int, ...], layout: str, given: dict[str, int]) -> None:
        self.shape, self.layout, self.given = shape, layout, given
        self.read: dict[str, int] = {}

    def __call__(self, which: str) -> int:
        if which not in self.read:
            self.read[which] = self.given[which] if which in self.given else self._computed()[which]
        return self.read[which]

    def of_shape(self) -> dict[str, int | None]:
        """Metadata version 2's fans: both, given or computed, None only where the torch layout has fewer than 2
        dimensions (CHANGELOG.md)."""
        computable = self.layout == "keras" or len(self.shape) >= 2
        computed: dict[str, int | None] = dict(self._computed()) if computable else {"fan_in": None, "fan_out": None}
        return {key: self.given.get(key, value) for key, value in computed.items()}

    def _computed(self) -> dict[str, int]:
        shape = self.shape
        if self.layout == "keras":
            if len(shape) < 2:
                n = shape[0] if shape else 1
                return {"fan_in": n, "fan_out": n}
            rf = math.prod(shape[:-2])
            return {"fan_in": shape[-2] * rf, "fan_out": shape[-1] * rf}
        if len(shape) < 2:
            message = "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions"
            raise _refuse("shape", message)
        rf = math.prod(shape[2:])
        return {"fan_in": shape[1] * rf, "fan_out": shape[0] * rf}


def _choices(scheme: str, param: str) -> list[str]:
    """A string parameter's accepted values, from the contract's JSON."""
    return SCHEMES[scheme]["params"][param]["choices"]


def _gain(nonlinearity: str, a: float) -> float:
    """Section 6.2: every accepted name but these four has gain 1.0."""
    accepted = _choices("kaiming_uniform", "nonlinearity")
    if nonlinearity not in accepted:
        raise _refuse("nonlinearity", f"Unsupported nonlinearity {nonlinearity}; accepted: {', '.join(accepted)}")
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1.0 + a * a))
    if nonlinearity == "selu":
        return 3.0 / 4.0
    return 1.0


def _variance_scaling(scale: float, mode: str, distribution: str, fan: _Fans) -> _Distribution:
    """Section 6.3, with mode and distribution already lowercased and checked."""
    if mode == "fan_in":
        n = float(fan("fan_in"))
    elif mode == "fan_out":
        n = float(fan("fan_out"))
    elif mode == "fan_avg":
        n = float(fan("fan_in") + fan("fan_out")) / 2.0
    else:
        n = math.sqrt(float(fan("fan_in")) * float(fan("fan_out")))
    variance = scale / max(1.0, n)
    if distribution == "uniform":
        bound = math.sqrt(3.0 * variance)
        return _Distribution("uniform", {"low": -bound, "high": bound})
    if distribution == "untruncated_normal":
        return _Distribution("normal", {"mean": 0.0, "std": math.sqrt(variance)})
    std = math.sqrt(variance) / F["TRUNCATED_NORMAL_STD_2"]
    return _Distribution("truncated_normal", {"mean": 0.0, "std": std, "a": -2.0 * std, "b": 2.0 * std})


def _kaiming(p: Mapping[str, Any], distribution: str, fan: _Fans) -> _Distribution:
    mode, modes = p["mode"].lower(), _choices("kaiming_uniform", "mode")
    if mode not in modes:
        raise _refuse("mode", f"Mode {p['mode']} not supported, please use one of {modes}")
    g = _gain(p["nonlinearity"], p["a"])
    dist = _variance_scaling(g * g, mode, distribution, fan)
    dist.gain = g
    return dist


def _keras_variance_scaling(p: Mapping[str, Any], fan: _Fans) -> _Distribution:
    modes, distributions = _choices("variance_scaling", "mode"), _choices("variance_scaling", "distribution")
    mode, distribution = p["mode"].lower(), p["distribution"].lower()
    if mode not in modes:
        raise _refuse("mode", f"Invalid `mode` argument: {p['mode']}. Please use one of {modes}")
    if distribution == "normal":
        message = (
            "distribution 'normal' is ambiguous: Keras reads it as 'truncated_normal', JAX as 'untruncated_normal'; "
            f"name one of {distributions}"
        )
        raise _refuse("distribution", message)
    if distribution not in distributions:
        message = f"Invalid `distribution` argument: {p['distribution']}. Please use one of {distributions}"
        raise _refuse("distribution", message)
    return _variance_scaling(p["scale"], mode, distribution, fan)


def _uniform_unit_scaling(p: Mapping[str, Any], shape: tuple[int, ...], fan: _Fans) -> _Distribution:
    """Section 6.5."""
    input_size = float(fan("fan_in")) if len(shape) >= 2 or "fan_in" in fan.given else 1.0
    bound = abs(math.sqrt(3.0 / max(input_size, 1.0)) * p["factor"])
    return _Distribution("uniform", {"low": -bound, "high": bound})


def _needs_2d(request: _Request, message: str) -> None:
    if len(request.shape) != 2:
        raise _refuse("shape", message)


def _torch_layout_only(request: _Request) -> None:
    if request.layout != "torch":
        raise _refuse("layout", f"{request.scheme} is defined for the torch layout ([out, in, *kernel]) only")


def _build(request: _Request) -> _Distribution:
    """The scheme's distribution (section 6.4), with the gain and the fans it read."""
    p, shape, scheme = request.params, request.shape, request.scheme
    fan = _Fans(shape, request.layout, request.fans_given)
    base = SCHEMES[scheme].get("alias_of", scheme)
    builders: dict[str, Callable[[], _Distribution]] = {
        "uniform": lambda: _Distribution("uniform", {"low": p["a"], "high": p["b"]}),
        "normal": lambda: _Distribution("normal", {"mean": p["mean"], "std": p["std"]}),
        "trunc_normal": lambda: _Distribution(
            "truncated_normal", {"mean": p["mean"], "std": p["std"], "a": p["a"], "b": p["b"]}
        ),
        "constant": lambda: _Distribution("constant", {"value": p["val"]}),
        "zeros": lambda: _Distribution("constant", {"value": 0.0}),
        "ones": lambda: _Distribution("constant", {"value": 1.0}),
        "eye": lambda: _Distribution("eye", gain=1.0),
        "identity": lambda: _Distribution("eye", gain=p["gain"]),
        "dirac": lambda: _Distribution("dirac", {"groups": p["groups"]}),
        "sparse": lambda: _sparse(p, shape),
        "xavier_uniform": lambda: _xavier(p, "uniform", fan),
        "xavier_normal": lambda: _xavier(p, "untruncated_normal", fan),
        "kaiming_uniform": lambda: _kaiming(p, "uniform", fan),
        "kaiming_normal": lambda: _kaiming(p, "untruncated_normal", fan),
        "torch_default": lambda: _kaiming(
            {"a": math.sqrt(5.0), "mode": "fan_in", "nonlinearity": "leaky_relu"}, "uniform", fan
        ),
        "variance_scaling": lambda: _keras_variance_scaling(p, fan),
        "glorot_uniform": lambda: _variance_scaling(1.0, "fan_avg", "uniform", fan),
        "glorot_normal": lambda: _variance_scaling(1.0, "fan_avg", "truncated_normal", fan),
        "he_uniform": lambda: _variance_scaling(2.0, "fan_in", "uniform", fan),
        "he_normal": lambda: _variance_scaling(2.0, "fan_in", "truncated_normal", fan),
        "lecun_uniform": lambda: _variance_scaling(1.0, "fan_in", "uniform", fan),
        "lecun_normal": lambda: _variance_scaling(1.0, "fan_in", "truncated_normal", fan),
        "random_normal": lambda: _Distribution("normal", {"mean": p["mean"], "std": p["stddev"]}),
        "random_uniform": lambda: _Distribution("uniform", {"low": p["minval"], "high": p["maxval"]}),
        "truncated_normal": lambda: _Distribution(
            "truncated_normal",
            {
                "mean": p["mean"],
                "std": p["stddev"],
                "a": p["mean"] - 2.0 * p["stddev"],
                "b": p["mean"] + 2.0 * p["stddev"],
            },
        ),
        "uniform_unit_scaling": lambda: _uniform_unit_scaling(p, shape, fan),
    }
    if base in ("eye", "identity", "sparse"):
        if base == "identity":
            _needs_2d(
                request,
                "Identity matrix initializer can only be used for 2D matrices. "
                f"Received: shape={tuple(shape)} of rank {len(shape)}.",
            )
        else:
            _needs_2d(request, "Only tensors with 2 dimensions are supported")
    if base == "dirac":
        if not 3 <= len(shape) <= 5:
            raise _refuse("shape", "Only tensors with 3, 4, or 5 dimensions are supported")
        _torch_layout_only(request)
        if shape[0] % p["groups"]:
            raise _refuse("groups", "dim 0 must be divisible by groups")
    if base == "sparse":
        _torch_layout_only(request)
    if base == "uniform" and p["a"] > p["b"]:
        raise _refuse("a", f"uniform_ expects to return a [from, to) range, but found from={p['a']!r} > to={p['b']!r}")
    if base == "random_uniform" and p["minval"] > p["maxval"]:
        raise _refuse("minval", f"random_uniform expects minval <= maxval, got {p['minval']!r} > {p['maxval']!r}")
    dist = builders[base]()
    if base in ("xavier_uniform", "xavier_normal", "identity"):
        dist.gain = p["gain"]
    elif base == "eye":
        dist.gain = 1.0
    dist.fans = fan.read
    dist.shape_fans = fan.of_shape()
    return dist


def _xavier(p: Mapping[str, Any], distribution: str, fan: _Fans) -> _Distribution:
    return _variance_scaling(p["gain"] * p["gain"], "fan_avg", distribution, fan)


def _sparse(p: Mapping[str, Any], shape: tuple[int, ...]) -> _Distribution:
    rows = shape[0]
    zeros = min(math.ceil(p["sparsity"] * float(rows)), rows)
    return _Distribution("sparse", {"std": p["std"], "sparsity": p["sparsity"], "zeros_per_column": zeros})


# ---- what cannot be represented (sections 5.1, 9) ---------------------------------------------------------


@dataclass
class _Truncation:
    """Section 5.1's per-tensor quantities."""

    lo: float
    hi: float
    mirrored: bool
    p_lo: float
    mass: float


def _truncation(mean: float, std: float, a: float, b: float) -> _Truncation:
    """Section 5.1, for std > 0 (an overflowing a - mean gives an infinite alpha: IEEE, no exception)."""
    alpha = (a - mean) / std
    beta = (b - mean) / std
    mirrored = alpha + beta > 0
    lo, hi = (-beta, -alpha) if mirrored else (alpha, beta)
    p_lo = float(elementary.ndtr(lo)[0])
    return _Truncation(lo, hi, mirrored, p_lo, float(elementary.ndtr(hi)[0]) - p_lo)


def _shown_numbers(dist: _Distribution) -> dict[str, float | int]:
    """The distribution's numbers as the metadata names them: a symmetric Uniform(-bound, bound) by its bound."""
    if dist.kind == "uniform" and dist.numbers["low"] == -dist.numbers["high"]:
        return {"bound": dist.numbers["high"]}
    return dict(dist.numbers)


def _too_far_in_the_tail(mean: float, std: float, a: float, b: float) -> RequestError:
    message = f"the interval [{a!r}, {b!r}] lies too far in the tail of N({mean!r}, {std!r}^2): its probability "
    return _refuse("b", message + "underflows float64")


def _admit_truncation(dist: _Distribution) -> _Truncation | None:
    """Section 5.1's conditions on a truncated normal, whichever scheme gave it: std > 0, a < b, mass > 0."""
    if dist.kind != "truncated_normal":
        return None
    mean, std, a, b = (float(dist.numbers[k]) for k in ("mean", "std", "a", "b"))
    # A bare scheme's std is never negative (its parameters' bounds): only a variance_scaling std underflowed to 0.0
    # reaches this, refused in the service's words (which also serve torch.trunc_normal's negative std).
    if not std > 0:
        raise _refuse("std", f"truncated normal needs std != 0, got {std!r}")
    if not a < b:
        raise _refuse("b", f"truncated normal needs a < b, got a={a!r}, b={b!r}")
    truncation = _truncation(mean, std, a, b)
    if not truncation.mass > 0:
        raise _too_far_in_the_tail(mean, std, a, b)
    return truncation


def _largest(dist: _Distribution) -> float:
    """Section 9's L, the largest |value| the distribution can give."""
    n = dist.numbers
    if dist.kind == "uniform":
        return max(abs(n["low"]), abs(n["high"]))
    if dist.kind == "normal":
        return abs(n["mean"]) + n["std"] * F["MAX_NORMAL_RADIUS"]
    if dist.kind == "sparse":
        return n["std"] * F["MAX_NORMAL_RADIUS"]
    if dist.kind == "truncated_normal":
        return max(abs(n["a"]), abs(n["b"]))
    if dist.kind == "constant":
        return abs(n["value"])
    if dist.kind == "eye":
        assert dist.gain is not None
        return abs(dist.gain)
    return 1.0  # dirac


def _moments(request: _Request, dist: _Distribution, truncation: _Truncation | None) -> tuple[float, ...]:
    """Section 9 step 1's table: the operations behind the distribution's mean and variance, in its order (Python
    floats: an overflow gives inf, an invalid operation NaN, never an exception)."""
    n = dist.numbers
    if dist.kind == "uniform":
        low, high = n["low"], n["high"]
        return low + high, (high - low) * (high - low)
    if dist.kind == "normal":
        return (n["std"] * n["std"],)
    if dist.kind == "truncated_normal":
        assert truncation is not None
        mean, std, lo, hi, mass = n["mean"], n["std"], truncation.lo, truncation.hi, truncation.mass
        pdf_lo = float(elementary.exp(-0.5 * (lo * lo))[0]) / F["SQRT_2PI"]
        pdf_hi = float(elementary.exp(-0.5 * (hi * hi))[0]) / F["SQRT_2PI"]
        shift = (pdf_lo - pdf_hi) / mass
        v = (1.0 + (lo * pdf_lo - hi * pdf_hi) / mass) - shift * shift
        # A NaN v stays NaN (the page's `v if v > 0.0 else 0.0` would make it 0.0): it arises exactly when alpha or
        # beta is infinite (their pdf is 0.0, times inf), and the service refuses those requests.
        return mean + std * (-shift if truncation.mirrored else shift), (std * std) * (0.0 if v <= 0.0 else v)
    if dist.kind == "eye":
        assert dist.gain is not None
        return ((dist.gain * dist.gain) * float(min(request.shape)),)
    if dist.kind == "sparse":
        # The integers' quotient rounded once (Python's int / int), not (rows - zeros) / rows: the last bit differs.
        kept = 1.0 - n["zeros_per_column"] / request.shape[0]
        return (((kept * n["std"]) * n["std"]),)
    return ()  # constant, dirac


def _check(request: _Request, dist: _Distribution) -> _Truncation | None:
    """Section 5.1's conditions, then section 9: step 1, float64 overflow (at the scheme's first parameter, at
    `scheme` if it has none); step 2, the dtype's range (at `dtype`), on the float64 L itself, not its rounding."""
    truncation = _admit_truncation(dist)
    scheme, params = request.scheme, list(request.params)
    first = params[0] if params else "scheme"
    numbers = {**_shown_numbers(dist), **({"gain": dist.gain} if dist.kind == "eye" else {})}
    for key, value in numbers.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise _refuse(first, f"{scheme}: {', '.join(params)} give a non-finite {key} ({value!r})")
    largest = _largest(dist)
    if not all(math.isfinite(x) for x in (largest, *_moments(request, dist, truncation))):
        raise _refuse(first, f"{scheme}: the parameters overflow float64 (values, their range or their variance)")
    if largest > DTYPE_MAX[request.dtype]:
        message = (
            f"{scheme} with these parameters can reach |x| = {_bound_text(largest)}, which overflows "
            f"{request.dtype} (max {_bound_text(DTYPE_MAX[request.dtype])})"
        )
        raise _refuse("dtype", message)
    return truncation


# ---- philox-v2's refusals and cuts (docs/philox-v2.md sections 6, 7) ----------------------------------------


@dataclass
class _Cut:
    """The float64 interval whose values round into the distribution's interval in the output dtype: a uniform's
    [lo, hi), a truncated normal's [a', b']."""

    lo: float
    hi: float


def _check_v2(request: _Request, dist: _Distribution) -> tuple[_Cut | None, _Truncation | None]:
    """After section 9's checks (which philox-v2 keeps): a dtype with no value in the interval, and a normal (or
    sparse's normals) whose tail (|z| up to samplers2.LARGEST_Z, beyond v1's MAX_NORMAL_RADIUS) overflows the dtype,
    refused at `dtype`."""
    n, dtype = dist.numbers, request.dtype
    if dist.kind == "uniform" and n["low"] < n["high"]:
        low, high = float(n["low"]), float(n["high"])
        cut = _Cut(first_at_least(low, dtype, strict=low == -high), first_at_least(high, dtype))
        if not cut.lo < cut.hi:
            message = f"no {dtype} value lies in the uniform's interval [{low!r}, {high!r}) after rounding"
            raise _refuse("dtype", message)
        return cut, None
    if dist.kind in ("normal", "sparse"):  # sparse's values are wide normals of mean 0, rounded to the dtype
        largest = abs(n.get("mean", 0.0)) + n["std"] * samplers2.LARGEST_Z
        if largest > DTYPE_MAX[dtype]:
            message = (
                f"{dist.kind} with these parameters can reach |x| = {_bound_text(largest)}, which overflows "
                f"{dtype} (max {_bound_text(DTYPE_MAX[dtype])})"
            )
            raise _refuse("dtype", message)
    if dist.kind == "truncated_normal":
        mean, std, a, b = (float(n[key]) for key in ("mean", "std", "a", "b"))
        cut = _Cut(first_at_least(a, dtype), last_at_most(b, dtype))
        if not cut.lo < cut.hi:
            raise _refuse("dtype", f"no {dtype} value lies in the truncation interval [{a!r}, {b!r}]")
        truncation = _truncation(mean, std, cut.lo, cut.hi)
        if not truncation.mass > 0:
            raise _too_far_in_the_tail(mean, std, cut.lo, cut.hi)  # the service names the cut interval
        return cut, truncation
    return None, None


# ---- the values (sections 2, 3, 5, 7) ------------------------------------------------------------------


def _first_of_runs(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct values of an ascending array, the position of each element's value among them)."""
    starts = np.empty(sorted_values.shape, dtype=bool)
    starts[:1] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=starts[1:])
    return sorted_values[starts], np.cumsum(starts) - 1


# an rng's stream: the four words of each block index of stream `purpose`, as an array (len(blocks), 4)
Stream = Callable[[np.ndarray, int], np.ndarray]


def _words(stream: Stream, units: np.ndarray, per_block: int, purpose: int) -> np.ndarray:
    """Stream words for ascending unit indices: units of 1 word (per_block 4) or of 2 (normal pairs, per_block 2),
    as an array (len(units), 4 // per_block); each block is computed once."""
    blocks, position = _first_of_runs(units // np.uint64(per_block))
    words = stream(blocks, purpose)
    width = 4 // per_block
    offset = (units % np.uint64(per_block)).astype(np.int64) * width
    return np.stack([words[position, offset + j] for j in range(width)], axis=-1)


def uniform01(w: np.ndarray) -> np.ndarray:
    return (w >> _11).astype(np.float64) * _2_M53


def uniform_open(w: np.ndarray) -> np.ndarray:
    return ((w >> _12).astype(np.float64) + 0.5) * _2_M52


def normal_pair(w0: np.ndarray, w1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box-Muller (section 3): the values of elements 2k and 2k+1."""
    u1 = ((w0 >> _11).astype(np.float64) + 1.0) * _2_M53
    t = (w1 >> _11).astype(np.float64) * _2_M53
    r = np.sqrt(-2.0 * elementary.log(u1))
    s, c = elementary.sincos_turns(t)
    return r * c, r * s


def _standard_normal(stream: Stream, index: np.ndarray) -> np.ndarray:
    """N(0, 1) of each element (ascending flat indices): one Box-Muller pair per pair of elements (section 2.3)."""
    pairs, position = _first_of_runs(index >> np.uint64(1))
    words = _words(stream, pairs, 2, 0)
    even, odd = normal_pair(words[:, 0], words[:, 1])
    return np.where((index & np.uint64(1)).astype(bool), odd[position], even[position])


def _word_of(stream: Stream, index: np.ndarray, purpose: int) -> np.ndarray:
    return _words(stream, index, 4, purpose)[:, 0]


def _draw_of(stream: Stream, index: np.ndarray, wide: bool) -> np.ndarray:
    """philox-v2's draws (v2 section 5): word i (narrow), or words 2i and 2i + 1 as one 64-bit word (wide)."""
    if not wide:
        return _word_of(stream, index, 0)
    pair = _words(stream, index, 2, 0)
    return (pair[:, 0] << np.uint64(32)) | pair[:, 1]


def _chunks(shape: tuple[int, ...], region: tuple[tuple[int, int], ...]) -> Iterator[np.ndarray]:
    """The flat row-major indices (uint64, ascending) of the region's elements in the whole tensor, a chunk at a
    time (section 7)."""
    count = math.prod(stop - start for start, stop in region)
    whole = all(start == 0 and stop == dim for (start, stop), dim in zip(region, shape, strict=True))
    if whole:
        for begin in range(0, count, CHUNK):
            yield np.arange(begin, min(begin + CHUNK, count), dtype=np.uint64)
        return
    strides = [math.prod(shape[d + 1 :]) for d in range(len(shape))]
    index = np.zeros([stop - start for start, stop in region], dtype=np.uint64)
    for d, ((start, stop), stride) in enumerate(zip(region, strides, strict=True)):
        axis = np.arange(start, stop, dtype=np.uint64) * np.uint64(stride)
        index += axis.reshape([-1 if e == d else 1 for e in range(len(shape))])
    flat = index.reshape(-1)
    for begin in range(0, count, CHUNK):
        yield flat[begin : begin + CHUNK]


class _V1Variates:
    """philox-v1's variates of elements (ascending flat indices): sections 2.3, 3 and 5."""

    def __init__(self, request: _Request) -> None:
        key = philox.key(request.seed, request.name)
        self.stream: Stream = lambda blocks, purpose: philox.stream_words(key, blocks, purpose)

    def uniform(self, index: np.ndarray, low: float, high: float, cut: _Cut | None) -> np.ndarray:
        return low + (high - low) * uniform01(_word_of(self.stream, index, 0))

    def normal(self, index: np.ndarray) -> np.ndarray:
        return _standard_normal(self.stream, index)

    def open_unit(self, index: np.ndarray) -> np.ndarray:
        return uniform_open(_word_of(self.stream, index, 0))


class _V2Variates:
    """philox-v2's (v2 sections 3, 5, 7): an element's draw is 32 bits (narrow) or 64 (wide); the normal's retries
    read the element's own retry stream."""

    def __init__(self, request: _Request, wide: bool) -> None:
        words = philox2.digest_words(request.seed, request.name)
        self.stream: Stream = lambda blocks, purpose: philox2.stream_words(words, blocks, purpose)
        self.retry: samplers2.RetryWords = lambda element, k: philox2.retry_words(words, element, k)
        self.wide = wide

    def uniform(self, index: np.ndarray, low: float, high: float, cut: _Cut | None) -> np.ndarray:
        if cut is None:  # not low < high: U[a, a) is a
            return np.full(index.shape, low, dtype=np.float64)
        draw = _draw_of(self.stream, index, self.wide)
        return samplers2.uniform(draw, self.wide, cut.lo, cut.hi - cut.lo, pred(cut.hi))

    def normal(self, index: np.ndarray) -> np.ndarray:
        return samplers2.standard_normal(_draw_of(self.stream, index, self.wide), self.wide, index, self.retry)

    def open_unit(self, index: np.ndarray) -> np.ndarray:
        return samplers2.open_unit(_draw_of(self.stream, index, self.wide), self.wide)


def _variates(request: _Request, wide: bool | None = None) -> _V1Variates | _V2Variates:
    """The request's rng; philox-v2 draws wide for float64 output unless told (sparse always draws wide)."""
    if request.rng == RNG:
        return _V1Variates(request)
    return _V2Variates(request, request.dtype == "float64" if wide is None else wide)


def _random_values(
    request: _Request,
    dist: _Distribution,
    truncation: _Truncation | None,
    cut: _Cut | None,
    region: tuple[tuple[int, int], ...],
) -> np.ndarray:
    variates = _variates(request)
    n = dist.numbers
    parts = []
    for index in _chunks(request.shape, region):
        if dist.kind == "uniform":
            parts.append(variates.uniform(index, n["low"], n["high"], cut))
        elif dist.kind == "normal":
            parts.append(n["mean"] + n["std"] * variates.normal(index))
        else:  # truncated normal, section 5.1; philox-v2 (its section 7) on its cut [a', b']
            assert truncation is not None
            a, b = (cut.lo, cut.hi) if cut else (n["a"], n["b"])
            z = elementary.ndtri(truncation.p_lo + variates.open_unit(index) * truncation.mass)
            if truncation.mirrored:
                z = -z
            x = n["mean"] + n["std"] * z
            x = np.where(x > a, x, a)
            parts.append(np.where(x < b, x, b))
    values = np.concatenate(parts) if parts else np.empty(0)
    return values.reshape([stop - start for start, stop in region])


def _sparse_values(request: _Request, dist: _Distribution) -> np.ndarray:
    """Section 5.4, on the whole matrix: Normal(0, std) (philox-v2: its wide normals), then in each column the rows
    with the smallest purpose-1 mask words (ties to the lower row) set to zero."""
    rows, cols = request.shape
    whole = ((0, rows), (0, cols))
    variates = _variates(request, wide=True)
    std = dist.numbers["std"]
    values = np.concatenate([0.0 + std * variates.normal(i) for i in _chunks(request.shape, whole)])
    values = values.reshape(rows, cols)
    mask = np.concatenate([_word_of(variates.stream, i, 1) for i in _chunks(request.shape, whole)])
    order = np.argsort(mask.reshape(rows, cols), axis=0, kind="stable")[: int(dist.numbers["zeros_per_column"])]
    values[order, np.arange(cols)] = 0.0
    return values


def _grid(region: tuple[tuple[int, int], ...]) -> list[np.ndarray]:
    return list(np.ix_(*(np.arange(start, stop) for start, stop in region)))


def _values(request: _Request, dist: _Distribution, truncation: _Truncation | None, cut: _Cut | None) -> np.ndarray:
    """The float64 values of the region (section 5)."""
    region = request.region or tuple((0, dim) for dim in request.shape)
    region_shape = tuple(stop - start for start, stop in region)
    if dist.kind == "constant":
        return np.full(region_shape, dist.numbers["value"], dtype=np.float64)
    if dist.kind == "eye":
        row, col = _grid(region)
        return np.where(row == col, dist.gain, 0.0)
    if dist.kind == "dirac":
        out, channel, *kernel = _grid(region)
        per = request.shape[0] // int(dist.numbers["groups"])
        hit = (channel < min(per, request.shape[1])) & (out % per == channel)
        for j, k in zip(kernel, request.shape[2:], strict=True):
            hit = hit & (j == k // 2)
        return np.where(hit, 1.0, 0.0)
    if dist.kind == "sparse":
        return _sparse_values(request, dist)[tuple(slice(start, stop) for start, stop in region)]
    return _random_values(request, dist, truncation, cut, region)


# ---- the metadata (section 10) ---------------------------------------------------------------------------


def _metadata(request: _Request, dist: _Distribution) -> dict[str, Any]:
    spec = SCHEMES[request.scheme]
    shape = [stop - start for start, stop in request.region] if request.region else list(request.shape)
    metadata: dict[str, Any] = {
        "name": request.name,
        "scheme": request.scheme,
        "family": spec["family"],
        "params": dict(request.params),
        "seed": request.seed,
        "shape": shape,
        "dtype": request.dtype,
        "layout": request.layout,
    }
    if request.rng == RNG:  # metadata version 1, frozen with philox-v1: the fans the scheme read
        metadata.update({"fan_in": dist.fans.get("fan_in"), "fan_out": dist.fans.get("fan_out")})
    else:  # version 2 (CHANGELOG.md): both fans of the shape, and those the scheme read
        metadata.update(dist.shape_fans)
        metadata["fans_used"] = [key for key in ("fan_in", "fan_out") if key in dist.fans]
    metadata.update({"gain": dist.gain, "distribution": dist.kind})
    metadata.update(_shown_numbers(dist))
    metadata["rng"] = request.rng
    if "alias_of" in spec:
        metadata["alias_of"] = spec["alias_of"]
    if request.region:
        metadata["full_shape"] = list(request.shape)
        metadata["slice"] = [list(bounds) for bounds in request.region]
    return metadata


def generate(request: Mapping[str, Any]) -> Tensor:
    """The tensor `POST /init` returns for `request` (a single-tensor body; `format` is accepted and ignored),
    computed locally, bit for bit, with no round trip: rng philox-v1 (the default) or philox-v2, every scheme but
    orthogonal, every dtype, slices. Its metadata is the service's but for `service` (the server's version). A
    request the service would refuse raises RequestError (status 422, the service's `loc` and `type`)."""
    parsed = _read(request)
    dist = _build(parsed)
    truncation = _check(parsed, dist)
    cut = None
    if parsed.rng == RNG_V2:
        cut, truncation = _check_v2(parsed, dist)
    array = to_dtype(_values(parsed, dist, truncation, cut), parsed.dtype)
    return Tensor(parsed.name, array, _metadata(parsed, dist))
