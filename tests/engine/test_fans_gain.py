"""Fans, gains and request validation: the reference's examples, torch's exact error texts, InitError fields."""

from __future__ import annotations

import math

import pytest

from service.engine.errors import InitError
from service.engine.plan import TensorRequest, make_plan
from service.engine.schemes.distributions import Constant
from service.engine.schemes.fans import compute_fans
from service.engine.schemes.gain import calculate_gain
from service.engine.schemes.registry import REGISTRY, Built, Context, Scheme

TORCH_FAN_ERROR = "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions"


def plan_of(shape, scheme, params=None, **kwargs):
    kwargs.setdefault("seed", 0)
    return make_plan(TensorRequest(shape=tuple(shape), scheme=scheme, params=params or {}, **kwargs))


def init_error(shape, scheme, params=None, **kwargs) -> InitError:
    with pytest.raises(InitError) as info:
        plan_of(shape, scheme, params, **kwargs)
    assert isinstance(info.value, ValueError)
    return info.value


# ---- compute_fans -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "layout", "fans"),
    [
        ((16, 3, 3, 3), "torch", (27, 144)),  # the reference's examples
        ((3, 3, 16, 32), "keras", (144, 288)),
        ((256, 784), "torch", (784, 256)),  # Linear [out, in]
        ((784, 256), "keras", (784, 256)),  # Dense [in, out]
        ((8, 2, 5), "torch", (10, 40)),
        ((5, 2, 8), "keras", (10, 40)),
        ((4, 3, 2, 5, 7), "torch", (210, 280)),
        ((2, 5, 7, 3, 4), "keras", (210, 280)),
        ((), "keras", (1, 1)),
        ((7,), "keras", (7, 7)),
        ((1, 1), "torch", (1, 1)),
    ],
)
def test_compute_fans_examples(shape, layout, fans):
    assert compute_fans(shape, layout) == fans


@pytest.mark.parametrize("shape", [(), (5,)])
def test_compute_fans_torch_needs_two_dims(shape):
    with pytest.raises(InitError) as info:
        compute_fans(shape, "torch")
    assert str(info.value) == TORCH_FAN_ERROR
    assert info.value.message == TORCH_FAN_ERROR
    assert info.value.field == "shape"


@pytest.mark.parametrize(
    "scheme", ["kaiming_normal", "kaiming_uniform", "xavier_uniform", "xavier_normal", "torch_default", "msra"]
)
@pytest.mark.parametrize("shape", [(), (12,)])
def test_torch_fan_schemes_refuse_fewer_than_two_dims(scheme, shape):
    error = init_error(shape, scheme)
    assert error.message == TORCH_FAN_ERROR
    assert error.field == "shape"


@pytest.mark.parametrize(("shape", "fan_in"), [((), 1), ((12,), 12)])
def test_keras_fans_of_small_ranks(shape, fan_in):
    plan = plan_of(shape, "lecun_uniform", dtype="float64")
    assert plan.fans == {"fan_in": fan_in}
    assert plan.distribution.describe()["bound"] == pytest.approx(math.sqrt(3 / fan_in), rel=1e-15)


def test_uniform_unit_scaling_small_ranks_use_input_size_one():
    # TF1: input_size = prod(shape[:-1]) = 1 for 0-D and 1-D shapes, unless fan_in is given
    for shape in [(), (12,)]:
        plan = plan_of(shape, "uniform_unit_scaling", {"factor": 2.0}, dtype="float64")
        assert plan.fans == {}
        assert plan.distribution.describe()["bound"] == pytest.approx(2.0 * math.sqrt(3.0), rel=1e-15)
    plan = plan_of((12,), "uniform_unit_scaling", fan_in=48, dtype="float64")
    assert plan.fans == {"fan_in": 48}
    assert plan.distribution.describe()["bound"] == pytest.approx(0.25, rel=1e-15)


def test_keras_max_one_guard():
    # variance_scaling divides by max(1, n): explicit fan_in 0 must not divide by zero
    plan = plan_of((4, 4), "he_uniform", fan_in=0, dtype="float64")
    assert plan.distribution.describe()["bound"] == pytest.approx(math.sqrt(6.0), rel=1e-15)


# ---- explicit fans --------------------------------------------------------------------------------------------


def test_explicit_fan_in_overrides_shape():
    plan = plan_of((256, 784), "kaiming_normal", fan_in=1000, dtype="float64")
    assert plan.fans == {"fan_in": 1000}
    assert plan.metadata()["fan_in"] == 1000
    assert plan.distribution.describe()["std"] == pytest.approx(math.sqrt(2.0) / math.sqrt(1000), rel=1e-15)


def test_explicit_fan_out_overrides_shape():
    plan = plan_of((256, 784), "kaiming_uniform", {"mode": "fan_out"}, fan_out=90, dtype="float64")
    assert plan.fans == {"fan_out": 90}
    assert plan.distribution.describe()["bound"] == pytest.approx(math.sqrt(6 / 90), rel=1e-15)


def test_explicit_fans_both_for_xavier():
    plan = plan_of((256, 784), "xavier_uniform", fan_in=10, fan_out=20, dtype="float64")
    assert plan.fans == {"fan_in": 10, "fan_out": 20}
    assert plan.distribution.describe()["bound"] == pytest.approx(math.sqrt(6 / 30), rel=1e-15)


def test_one_explicit_fan_keeps_the_other_from_the_shape():
    plan = plan_of((3, 3, 16, 32), "glorot_uniform", fan_in=100, dtype="float64")
    assert plan.fans == {"fan_in": 100, "fan_out": 288}
    assert plan.distribution.describe()["bound"] == pytest.approx(math.sqrt(3 / ((100 + 288) / 2)), rel=1e-15)


def test_explicit_fans_change_the_values_not_the_stream():
    a = plan_of((64, 32), "kaiming_normal", dtype="float64").values()
    b = plan_of((64, 32), "kaiming_normal", fan_in=128, dtype="float64").values()
    # same normals, std sqrt(2/32) vs sqrt(2/128): exactly a factor 2 up to rounding
    assert b == pytest.approx(a / 2, rel=1e-15, abs=0)


def test_schemes_without_fans_report_none():
    plan = plan_of((5, 5), "normal")
    assert plan.fans == {}
    assert plan.metadata()["fan_in"] is None
    assert plan.metadata()["fan_out"] is None


# ---- calculate_gain -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nonlinearity", "gain"),
    [
        ("linear", 1.0),
        ("conv1d", 1.0),
        ("conv2d", 1.0),
        ("conv3d", 1.0),
        ("conv_transpose1d", 1.0),
        ("conv_transpose2d", 1.0),
        ("conv_transpose3d", 1.0),
        ("sigmoid", 1.0),
        ("tanh", 5.0 / 3),
        ("relu", math.sqrt(2.0)),
        ("selu", 3.0 / 4),
        ("leaky_relu", 1.4141428569978354),
    ],
)
def test_calculate_gain_table(nonlinearity, gain):
    assert calculate_gain(nonlinearity) == gain


def test_calculate_gain_leaky_relu_values():
    assert calculate_gain("leaky_relu") == 1.4141428569978354
    assert calculate_gain("leaky_relu") == math.sqrt(2 / 1.0001)
    assert calculate_gain("leaky_relu", 0.2) == math.sqrt(2.0 / (1 + 0.2**2))
    assert calculate_gain("leaky_relu", 0) == math.sqrt(2.0)
    assert calculate_gain("leaky_relu", 1) == 1.0
    assert calculate_gain("leaky_relu", math.sqrt(5.0)) == pytest.approx(math.sqrt(1 / 3), rel=1e-15)


def test_calculate_gain_param_ignored_for_others():
    assert calculate_gain("relu", 0.5) == math.sqrt(2.0)
    assert calculate_gain("tanh", 3) == 5.0 / 3


@pytest.mark.parametrize("name", ["ReLU", "Tanh", "gelu", "", "LINEAR"])
def test_calculate_gain_unsupported(name):
    with pytest.raises(ValueError) as info:
        calculate_gain(name)
    assert str(info.value) == f"Unsupported nonlinearity {name}"


@pytest.mark.parametrize(("param", "text"), [(True, "True"), (False, "False"), ("0.2", "0.2"), ([0.1], "[0.1]")])
def test_calculate_gain_bad_slope(param, text):
    with pytest.raises(ValueError) as info:
        calculate_gain("leaky_relu", param)
    assert str(info.value) == f"negative_slope {text} not a valid number"


def test_unsupported_nonlinearity_through_a_plan():
    error = init_error((4, 4), "kaiming_normal", {"nonlinearity": "ReLU"})
    assert error.field == "nonlinearity"
    assert error.message == "Unsupported nonlinearity ReLU"


def test_bad_slope_through_a_plan_message():
    # the registry's type check runs before calculate_gain, as Pydantic does at the API edge
    error = init_error((4, 4), "kaiming_uniform", {"a": True})
    assert (error.field, error.message) == ("a", "a must be a finite number, got True")


@pytest.mark.parametrize("scheme", ["kaiming_uniform", "kaiming_normal", "msra"])
def test_bad_slope_through_a_plan_names_the_request_field(scheme):
    error = init_error((4, 4), scheme, {"a": "0.1", "nonlinearity": "leaky_relu"})
    assert error.field == "a"


def test_keras_truncated_normal_bad_stddev_names_stddev():
    assert init_error((4, 4), "truncated_normal", {"stddev": 0.0}).field == "stddev"


def test_variance_scaling_negative_scale_is_an_init_error():
    with pytest.raises(InitError) as info:
        plan_of((4, 4), "variance_scaling", {"scale": -1.0})
    assert info.value.field == "scale"


# ---- kaiming modes and gains ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fan_out", "FAN_OUT", "Fan_Out"])
def test_kaiming_mode_is_case_insensitive(mode):
    plan = plan_of((30, 20), "kaiming_normal", {"mode": mode}, dtype="float64")
    assert plan.fans == {"fan_out": 30}
    assert plan.distribution.describe()["std"] == pytest.approx(math.sqrt(2 / 30), rel=1e-15)


@pytest.mark.parametrize(("mode", "lowered"), [("fan_avg", "fan_avg"), ("FAN_AVG", "fan_avg"), ("in", "in")])
@pytest.mark.parametrize("scheme", ["kaiming_uniform", "kaiming_normal", "msra"])
def test_kaiming_bad_mode(scheme, mode, lowered):
    error = init_error((30, 20), scheme, {"mode": mode})
    assert error.field == "mode"
    assert error.message == f"Mode {lowered} not supported, please use one of ['fan_in', 'fan_out']"


def test_kaiming_default_gain_is_sqrt2():
    for scheme in ("kaiming_uniform", "kaiming_normal", "msra"):
        plan = plan_of((30, 20), scheme, dtype="float64")
        assert plan.gain == math.sqrt(2.0)
        assert plan.metadata()["gain"] == math.sqrt(2.0)
    normal = plan_of((30, 20), "kaiming_normal", dtype="float64").distribution.describe()
    assert normal["std"] == pytest.approx(math.sqrt(2.0) / math.sqrt(20), rel=1e-15)
    uniform = plan_of((30, 20), "kaiming_uniform", dtype="float64").distribution.describe()
    assert uniform["bound"] == pytest.approx(math.sqrt(3.0) * math.sqrt(2.0) / math.sqrt(20), rel=1e-15)


def test_msra_is_kaiming_normal_with_relu():
    msra = plan_of((30, 20), "msra", dtype="float64", seed=3)
    kaiming = plan_of((30, 20), "kaiming_normal", {"nonlinearity": "relu"}, dtype="float64", seed=3)
    assert msra.values().tobytes() == kaiming.values().tobytes()
    assert msra.metadata()["alias_of"] == "kaiming_normal"


@pytest.mark.parametrize(
    ("shape", "fan_in"),
    [((10, 1), 1), ((256, 784), 784), ((64, 3, 7, 7), 147), ((5, 3000), 3000), ((2, 1000003), 1000003)],
)
def test_torch_default_bound(shape, fan_in):
    plan = plan_of(shape, "torch_default", dtype="float64")
    assert plan.fans == {"fan_in": fan_in}
    bound = plan.distribution.describe()["bound"]
    assert bound == pytest.approx(1 / math.sqrt(fan_in), rel=1e-15)
    assert plan.gain == pytest.approx(math.sqrt(1 / 3), rel=1e-15)


@pytest.mark.parametrize(
    ("scheme", "params", "gain"),
    [
        ("xavier_uniform", {"gain": 2.0}, 2.0),
        ("xavier_normal", {}, 1.0),
        ("orthogonal", {"gain": 0.5}, 0.5),
        ("kaiming_uniform", {"nonlinearity": "tanh"}, 5 / 3),
        ("he_normal", {}, None),
        ("normal", {}, None),
    ],
)
def test_gain_in_metadata(scheme, params, gain):
    assert plan_of((8, 8), scheme, params).gain == gain


# ---- variance_scaling -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("distribution", ["normal", "NORMAL", "Normal"])
def test_variance_scaling_normal_is_ambiguous(distribution):
    error = init_error((8, 8), "variance_scaling", {"distribution": distribution})
    assert error.field == "distribution"
    assert "ambiguous" in error.message
    assert "truncated_normal" in error.message and "untruncated_normal" in error.message


def test_variance_scaling_bad_distribution_and_mode():
    assert init_error((8, 8), "variance_scaling", {"distribution": "gaussian"}).field == "distribution"
    assert init_error((8, 8), "variance_scaling", {"mode": "fan_max"}).field == "mode"


def test_variance_scaling_case_insensitive():
    a = plan_of((8, 8), "variance_scaling", {"mode": "FAN_AVG", "distribution": "Uniform"}, dtype="float64")
    b = plan_of((8, 8), "variance_scaling", {"mode": "fan_avg", "distribution": "uniform"}, dtype="float64")
    assert a.values().tobytes() == b.values().tobytes()


# ---- request validation -------------------------------------------------------------------------------------


def test_unknown_scheme():
    error = init_error((4, 4), "he_normall")
    assert error.field == "scheme"
    assert "he_normall" in error.message


def test_unknown_param():
    error = init_error((4, 4), "kaiming_normal", {"gain": 2.0})
    assert error.field == "gain"
    assert "gain" in error.message and "kaiming_normal" in error.message


@pytest.mark.parametrize(
    ("scheme", "param"),
    [
        ("xavier_uniform", "mode"),
        ("he_normal", "scale"),
        ("normal", "stddev"),
        ("random_normal", "std"),
        ("trunc_normal", "stddev"),
        ("uniform", "minval"),
        ("eye", "gain"),
        ("torch_default", "a"),
    ],
)
def test_param_of_another_scheme(scheme, param):
    error = init_error((4, 4), scheme, {param: 1.0})
    assert error.field == param
    assert scheme in error.message


def test_missing_required_param():
    error = init_error((10, 10), "sparse")
    assert error.field == "sparsity"
    assert "sparsity" in error.message


def test_dtype_overflow_refused():
    error = init_error((4, 4), "normal", {"std": 1e5}, dtype="float16")
    assert error.field == "dtype"
    assert "float16" in error.message
    # the same in float32 and bfloat16 is fine
    plan_of((4, 4), "normal", {"std": 1e5}, dtype="float32")
    plan_of((4, 4), "normal", {"std": 1e5}, dtype="bfloat16")


@pytest.mark.parametrize(("params", "ok"), [({"a": -60000.0, "b": 60000.0}, True), ({"a": 0.0, "b": 70000.0}, False)])
def test_uniform_float16_bounds(params, ok):
    if ok:
        assert plan_of((64,), "uniform", params, dtype="float16").tensor().max() <= 65504
    else:
        assert init_error((64,), "uniform", params, dtype="float16").field == "dtype"


@pytest.mark.parametrize(("a", "b"), [(1.0, 1.0), (2.0, 1.0), (0.5, -0.5)])
def test_trunc_normal_needs_a_below_b(a, b):
    error = init_error((4, 4), "trunc_normal", {"a": a, "b": b})
    assert error.field == "b"
    assert "a < b" in error.message


def test_trunc_normal_interval_beyond_float64_tail():
    error = init_error((4, 4), "trunc_normal", {"a": 60.0, "b": 61.0})
    assert error.field == "b"


def test_uniform_needs_a_at_most_b():
    error = init_error((4, 4), "uniform", {"a": 1.0, "b": 0.0})
    assert error.field == "a"
    assert error.message == "uniform_ expects to return a [from, to) range, but found from=1.0 > to=0.0"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"shape": (4, 0)}, "shape"),
        ({"shape": (1,) * 9}, "shape"),
        ({"dtype": "int8"}, "dtype"),
        ({"dtype": "float8"}, "dtype"),
        ({"rng": "mt19937"}, "rng"),
    ],
)
def test_request_level_errors(kwargs, field):
    request = {"shape": (4, 4), "scheme": "normal", "seed": 0, **kwargs}
    with pytest.raises(InitError) as info:
        make_plan(TensorRequest(**request))
    assert info.value.field == field


@pytest.mark.parametrize(
    ("scheme", "params", "field", "text"),
    [
        ("normal", {"std": -1.0}, "std", "std must be >= 0.0, got -1.0"),
        ("sparse", {"sparsity": -0.5}, "sparsity", "sparsity must be >= 0.0, got -0.5"),
        ("sparse", {"sparsity": 1.5}, "sparsity", "sparsity must be <= 1.0, got 1.5"),
        ("dirac", {"groups": 1.0}, "groups", "groups must be an integer, got 1.0"),
        ("kaiming_normal", {"mode": 3}, "mode", "mode must be a string, got 3"),
        ("uniform", {"a": float("nan")}, "a", "a must be a finite number, got nan"),
        ("variance_scaling", {"scale": 0.0}, "scale", "scale must be > 0.0, got 0.0"),
    ],
)
def test_engine_checks_registry_types_and_ranges(scheme, params, field, text):
    shape = (4, 4, 3) if scheme == "dirac" else (4, 4)
    error = init_error(shape, scheme, params)
    assert (error.field, error.message) == (field, text)


@pytest.mark.parametrize(
    ("scheme", "params", "used"),
    [
        ("kaiming_normal", {}, {"fan_in"}),
        ("kaiming_uniform", {"mode": "fan_out"}, {"fan_out"}),
        ("variance_scaling", {"mode": "fan_geo_avg"}, {"fan_in", "fan_out"}),
        ("torch_default", {}, {"fan_in"}),
        ("uniform_unit_scaling", {}, {"fan_in"}),
        ("orthogonal", {}, set()),
        ("normal", {}, set()),
    ],
)
def test_the_fans_reported_are_those_the_build_rule_says_it_used(scheme, params, used):
    assert set(plan_of((6, 4), scheme, params).fans) == used


def test_reading_a_fan_changes_nothing(monkeypatch):
    # A rule may read a fan (here to check it) without it becoming response metadata: only its Built says.
    def build(c: Context) -> Built:
        assert c.fans.fan_out == 6 and c.fans.fan_in == 4
        return Built(Constant(0.5))

    monkeypatch.setitem(REGISTRY, "checked", Scheme("checked", "torch", "0.5", build))
    plan = plan_of((6, 4), "checked")
    assert plan.fans == {} and plan.metadata()["fan_in"] is None and plan.metadata()["fan_out"] is None
