"""Every random scheme against its reference distribution (../shared/reference/init-semantics.md).

The expected distribution of each case is built here, with SciPy, from the reference formulas and from fans
computed here; nothing is taken from the engine (not its cdf, moments, fans or gains). Each case is checked
on a 2-D and a 4-D (conv-like) shape under both layouts, on float64 output:
* the fans the engine reports are the ones the layout's convention gives, and only the ones the scheme uses;
* a one-sample KS test of the whole tensor (fixed seeds: deterministic; p > 1e-3);
* all values inside the support, and the distribution kind in the metadata;
* Distribution.moments() equals SciPy's mean and variance (rel 1e-12), and Distribution.cdf() SciPy's cdf
  (abs 1e-13).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from scipy import stats

from service.engine.plan import TensorRequest, make_plan
from service.engine.schemes.registry import REGISTRY

TRUNC_STD_2 = 0.87962566103423978  # std of N(0, 1) truncated to [-2, 2]
SHAPES = [(400, 150), (96, 32, 5, 3)]
LAYOUTS = ["torch", "keras"]
KS_P_MIN = 1e-3


def reference_fans(shape: tuple[int, ...], layout: str) -> dict[str, int]:
    if layout == "torch":
        rf = math.prod(shape[2:])
        return {"fan_in": shape[1] * rf, "fan_out": shape[0] * rf}
    rf = math.prod(shape[:-2])
    return {"fan_in": shape[-2] * rf, "fan_out": shape[-1] * rf}


def reference_gain(nonlinearity: str, a: float) -> float:
    table = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5 / 3, "relu": math.sqrt(2.0), "selu": 0.75}
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1.0 + a * a))
    return table[nonlinearity]


@dataclass(frozen=True)
class Expected:
    dist: Any  # a frozen scipy.stats distribution
    uses: tuple[str, ...]  # the fans the scheme must read
    kind: str  # "uniform" | "normal" | "truncated_normal"


def sym_uniform(bound: float, uses: tuple[str, ...]) -> Expected:
    return Expected(stats.uniform(loc=-bound, scale=2 * bound), uses, "uniform")


def centred_normal(std: float, uses: tuple[str, ...]) -> Expected:
    return Expected(stats.norm(loc=0.0, scale=std), uses, "normal")


def keras_truncated(variance: float, uses: tuple[str, ...]) -> Expected:
    # Keras: stddev = sqrt(variance) / 0.8796..., cut at +-2 stddev
    return Expected(
        stats.truncnorm(-2.0, 2.0, loc=0.0, scale=math.sqrt(variance) / TRUNC_STD_2), uses, "truncated_normal"
    )


def vs_reference(scale: float, mode: str, distribution: str, fans: dict[str, int]) -> Expected:
    fi, fo = fans["fan_in"], fans["fan_out"]
    n, uses = {
        "fan_in": (fi, ("fan_in",)),
        "fan_out": (fo, ("fan_out",)),
        "fan_avg": ((fi + fo) / 2, ("fan_in", "fan_out")),
        "fan_geo_avg": (math.sqrt(fi * fo), ("fan_in", "fan_out")),
    }[mode]
    s = scale / max(1.0, n)
    if distribution == "uniform":
        return sym_uniform(math.sqrt(3 * s), uses)
    if distribution == "untruncated_normal":
        return centred_normal(math.sqrt(s), uses)
    assert distribution == "truncated_normal"
    return keras_truncated(s, uses)


def kaiming(
    params: dict[str, Any], normal: bool, default_nonlinearity: str = "leaky_relu"
) -> Callable[[dict[str, int]], Expected]:
    def expected(fans: dict[str, int]) -> Expected:
        mode = params.get("mode", "fan_in").lower()
        gain = reference_gain(params.get("nonlinearity", default_nonlinearity), params.get("a", 0.0))
        fan = fans[mode]
        if normal:
            return centred_normal(gain / math.sqrt(fan), (mode,))
        return sym_uniform(math.sqrt(3.0) * gain / math.sqrt(fan), (mode,))

    return expected


# (scheme, params, expected(fans)); ids are built from scheme and params
CASES: list[tuple[str, dict[str, Any], Callable[[dict[str, int]], Expected]]] = [
    ("uniform", {}, lambda f: Expected(stats.uniform(0.0, 1.0), (), "uniform")),
    ("uniform", {"a": -0.3, "b": 0.7}, lambda f: Expected(stats.uniform(-0.3, 1.0), (), "uniform")),
    ("normal", {}, lambda f: Expected(stats.norm(0.0, 1.0), (), "normal")),
    ("normal", {"mean": 0.5, "std": 2.0}, lambda f: Expected(stats.norm(0.5, 2.0), (), "normal")),
    ("trunc_normal", {}, lambda f: Expected(stats.truncnorm(-2.0, 2.0), (), "truncated_normal")),
    # a and b are absolute: [-1, 3] around mean 0.5 with std 2 is alpha = -0.75, beta = 1.25
    (
        "trunc_normal",
        {"mean": 0.5, "std": 2.0, "a": -1.0, "b": 3.0},
        lambda f: Expected(stats.truncnorm(-0.75, 1.25, loc=0.5, scale=2.0), (), "truncated_normal"),
    ),
    ("xavier_uniform", {}, lambda f: sym_uniform(math.sqrt(6 / (f["fan_in"] + f["fan_out"])), ("fan_in", "fan_out"))),
    (
        "xavier_uniform",
        {"gain": 2.0},
        lambda f: sym_uniform(2.0 * math.sqrt(6 / (f["fan_in"] + f["fan_out"])), ("fan_in", "fan_out")),
    ),
    ("xavier_normal", {}, lambda f: centred_normal(math.sqrt(2 / (f["fan_in"] + f["fan_out"])), ("fan_in", "fan_out"))),
    (
        "xavier_normal",
        {"gain": 0.5},
        lambda f: centred_normal(0.5 * math.sqrt(2 / (f["fan_in"] + f["fan_out"])), ("fan_in", "fan_out")),
    ),
    *(
        (name, params, kaiming(params, normal=name == "kaiming_normal"))
        for name in ("kaiming_uniform", "kaiming_normal")
        for params in (
            {},
            {"a": 0.2, "mode": "fan_out"},
            {"a": math.sqrt(5.0)},
            {"nonlinearity": "relu", "mode": "FAN_OUT"},
            {"nonlinearity": "tanh"},
            {"nonlinearity": "selu", "mode": "fan_out"},
            {"nonlinearity": "linear", "a": 3.0},  # a is ignored unless leaky_relu
        )
    ),
    ("msra", {}, kaiming({}, normal=True, default_nonlinearity="relu")),
    ("msra", {"mode": "fan_out"}, kaiming({"mode": "fan_out"}, normal=True, default_nonlinearity="relu")),
    ("torch_default", {}, lambda f: sym_uniform(1 / math.sqrt(f["fan_in"]), ("fan_in",))),
    ("variance_scaling", {}, lambda f: vs_reference(1.0, "fan_in", "truncated_normal", f)),
    *(
        (
            "variance_scaling",
            {"scale": 2.5, "mode": mode, "distribution": dist},
            lambda f, mode=mode, dist=dist: vs_reference(2.5, mode, dist, f),
        )
        for mode in ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
        for dist in ("truncated_normal", "untruncated_normal", "uniform")
    ),
    ("glorot_uniform", {}, lambda f: sym_uniform(math.sqrt(6 / (f["fan_in"] + f["fan_out"])), ("fan_in", "fan_out"))),
    ("glorot_normal", {}, lambda f: keras_truncated(2 / (f["fan_in"] + f["fan_out"]), ("fan_in", "fan_out"))),
    ("he_uniform", {}, lambda f: sym_uniform(math.sqrt(6 / f["fan_in"]), ("fan_in",))),
    ("he_normal", {}, lambda f: keras_truncated(2 / f["fan_in"], ("fan_in",))),
    ("lecun_uniform", {}, lambda f: sym_uniform(math.sqrt(3 / f["fan_in"]), ("fan_in",))),
    ("lecun_normal", {}, lambda f: keras_truncated(1 / f["fan_in"], ("fan_in",))),
    ("random_normal", {}, lambda f: Expected(stats.norm(0.0, 0.05), (), "normal")),
    ("random_normal", {"mean": -1.0, "stddev": 0.3}, lambda f: Expected(stats.norm(-1.0, 0.3), (), "normal")),
    ("random_uniform", {}, lambda f: Expected(stats.uniform(-0.05, 0.1), (), "uniform")),
    ("random_uniform", {"minval": 1.0, "maxval": 3.0}, lambda f: Expected(stats.uniform(1.0, 2.0), (), "uniform")),
    # Keras truncated_normal: cut at mean +- 2 stddev, stddev is the pre-cut value
    ("truncated_normal", {}, lambda f: Expected(stats.truncnorm(-2.0, 2.0, scale=0.05), (), "truncated_normal")),
    (
        "truncated_normal",
        {"mean": 1.0, "stddev": 0.2},
        lambda f: Expected(stats.truncnorm(-2.0, 2.0, loc=1.0, scale=0.2), (), "truncated_normal"),
    ),
    # TF1: input_size = prod(shape[:-1]), i.e. the fan_in of the requested layout for >= 2 dims
    ("uniform_unit_scaling", {}, lambda f: sym_uniform(math.sqrt(3 / f["fan_in"]), ("fan_in",))),
    ("uniform_unit_scaling", {"factor": 1.43}, lambda f: sym_uniform(math.sqrt(3 / f["fan_in"]) * 1.43, ("fan_in",))),
]

# Deterministic or structured schemes: tested in test_structured.py.
STRUCTURED = {"constant", "zeros", "ones", "eye", "dirac", "orthogonal", "sparse", "identity"}


def case_id(case: tuple[str, dict[str, Any], Any]) -> str:
    scheme, params, _ = case
    return scheme + "".join(f"-{k}={v:.4g}" if isinstance(v, float) else f"-{k}={v}" for k, v in params.items())


def test_every_random_scheme_has_a_case():
    covered = {scheme for scheme, _, _ in CASES}
    # The framework namespaces (torch.*, keras.*, jax.*, tf1.*) are checked against the frameworks themselves:
    # tests/engine/test_frameworks.py, test_torch_namespaces.py and test_namespaces.py.
    bare = {name for name, scheme in REGISTRY.items() if not scheme.namespaced}
    assert covered | STRUCTURED == bare, "a scheme without a statistical test (or a stale name)"
    assert not covered & STRUCTURED


def check_against(plan, values: np.ndarray, expected: Expected, label: str) -> None:
    dist = expected.dist
    assert values.dtype == np.float64
    assert plan.distribution.kind == expected.kind, label
    assert plan.metadata()["distribution"] == expected.kind

    lower, upper = dist.support()
    assert values.min() >= lower, label
    assert values.max() <= upper, label
    moments = plan.distribution.moments()
    assert moments.lower == (None if math.isinf(lower) else pytest.approx(lower, rel=1e-14)), label
    assert moments.upper == (None if math.isinf(upper) else pytest.approx(upper, rel=1e-14)), label

    result = stats.kstest(values, dist.cdf)
    assert result.pvalue > KS_P_MIN, f"{label}: KS D={result.statistic:.4g} p={result.pvalue:.3g}"

    scale = dist.std()
    assert moments.mean == pytest.approx(dist.mean(), rel=1e-12, abs=1e-14 * scale), label
    assert moments.variance == pytest.approx(dist.var(), rel=1e-12), label

    grid = np.concatenate(
        [
            dist.ppf(np.linspace(1e-9, 1 - 1e-9, 401)),
            [dist.mean() - 20 * scale, dist.mean() + 20 * scale],
            values[:200],
        ]
    )
    np.testing.assert_allclose(plan.distribution.cdf(grid), dist.cdf(grid), rtol=0, atol=1e-13, err_msg=label)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_scheme_distribution(case, shape, layout):
    scheme, params, expected_of = case
    fans = reference_fans(shape, layout)
    expected = expected_of(fans)
    seed = 1000 + CASES.index(case) * 10 + SHAPES.index(shape) * 2 + LAYOUTS.index(layout)
    plan = make_plan(
        TensorRequest(
            shape=shape, scheme=scheme, seed=seed, params=params, dtype="float64", layout=layout, name="weight"
        )
    )
    assert plan.layout == layout
    assert plan.fans == {k: fans[k] for k in expected.uses}, "fans must follow the layout's convention"
    assert plan.metadata()["fan_in"] == plan.fans.get("fan_in")
    assert plan.metadata()["fan_out"] == plan.fans.get("fan_out")
    values = plan.generate()
    assert values.shape == (math.prod(shape),)
    check_against(plan, values, expected, f"{case_id(case)} {shape} {layout}")


def test_layouts_give_swapped_fans_and_different_tensors():
    # The same array under the two conventions: 2-D fans swap, so kaiming_uniform's bound changes.
    torch_plan = make_plan(TensorRequest(shape=(400, 150), scheme="kaiming_uniform", seed=5, layout="torch"))
    keras_plan = make_plan(TensorRequest(shape=(400, 150), scheme="kaiming_uniform", seed=5, layout="keras"))
    assert torch_plan.fans == {"fan_in": 150}
    assert keras_plan.fans == {"fan_in": 400}
    assert torch_plan.distribution.describe()["bound"] == pytest.approx(math.sqrt(6 / 150), rel=1e-15)
    assert keras_plan.distribution.describe()["bound"] == pytest.approx(math.sqrt(6 / 400), rel=1e-15)


@pytest.mark.parametrize(
    ("scheme", "layout"),
    [
        ("kaiming_normal", "torch"),
        ("xavier_uniform", "torch"),
        ("he_normal", "keras"),
        ("glorot_uniform", "keras"),
        ("uniform_unit_scaling", "keras"),
    ],
)
def test_default_layout_follows_family(scheme, layout):
    plan = make_plan(TensorRequest(shape=(8, 4), scheme=scheme, seed=0))
    assert plan.layout == layout
    assert plan.metadata()["layout"] == layout


def test_he_normal_is_truncated_kaiming_normal_is_not():
    # Same target variance 2/fan_in; only Keras's cuts at 2 (pre-cut) std. 60k samples from each.
    shape = (400, 150)
    he = make_plan(TensorRequest(shape=shape, scheme="he_normal", seed=3, dtype="float64", layout="torch")).values()
    km = make_plan(TensorRequest(shape=shape, scheme="kaiming_normal", seed=3, dtype="float64")).values()
    std = math.sqrt(2 / 150)
    assert np.abs(he).max() <= 2 * std / TRUNC_STD_2
    assert np.abs(km).max() > 3.5 * std
    # post-truncation std equals the target within sampling error (the Keras correction)
    assert he.std() == pytest.approx(std, rel=0.02)
    assert km.std() == pytest.approx(std, rel=0.02)
    assert stats.kstest(he, stats.norm(0, std).cdf).pvalue < 1e-6


# ---- truncated normals far in a tail and asymmetric ------------------------------------------------------

TAIL_CASES = [
    (0.0, 1.0, 3.0, 4.0),
    (0.0, 1.0, -6.0, -5.0),
    (0.3, 1.5, -4.0, 1.0),  # asymmetric, mostly the upper part cut
    (-2.0, 0.5, -1.9, 5.0),  # asymmetric, bulk below the interval
    (1.0, 2.0, 1.0, 1.5),  # narrow, starting at the mean
]


@pytest.mark.parametrize(("mean", "std", "a", "b"), TAIL_CASES)
def test_trunc_normal_tails_and_asymmetric(mean, std, a, b):
    plan = make_plan(
        TensorRequest(
            shape=(200, 250),
            scheme="trunc_normal",
            seed=77,
            dtype="float64",
            params={"mean": mean, "std": std, "a": a, "b": b},
        )
    )
    dist = stats.truncnorm((a - mean) / std, (b - mean) / std, loc=mean, scale=std)
    check_against(plan, plan.values(), Expected(dist, (), "truncated_normal"), f"trunc_normal {mean, std, a, b}")
