"""Every scheme addressable by framework (torch.*, keras.*, jax.*, tf1.*), each with that framework's semantics,
argument names, defaults and errors; bare names keep their meaning (tests/api/test_response_bytes.py pins their
bytes). Checked against the real frameworks in tests/engine/test_frameworks.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.engine.errors import InitError
from service.engine.plan import TensorRequest, make_plan
from service.engine.recipes.expand import expand
from service.engine.schemes.registry import REGISTRY, SCHEMES, TRUNCATED_NORMAL_STD_2


def plan(scheme: str, shape: tuple[int, ...], keras_version: str | None = None, rng: str = "philox-v1", **params):
    return make_plan(TensorRequest(shape, scheme, 3, params, keras_version=keras_version, rng=rng))


def refused(scheme: str, shape: tuple[int, ...], **params) -> InitError:
    with pytest.raises(InitError) as error:
        plan(scheme, shape, **params)
    return error.value


@pytest.mark.parametrize("bare", SCHEMES, ids=lambda s: s.name)
def test_every_bare_scheme_is_also_addressable_in_its_framework(bare):
    namespaced = REGISTRY[f"{bare.family}.{bare.name}"]
    if bare.family == "keras":  # keras.* has Keras's own validation and axes: compared in the tests below
        return
    shape = tuple(bare.example["shape"])
    params = {k: v for k, v in bare.example.items() if k != "shape"}
    ours = plan(namespaced.name, shape, **params)
    assert np.array_equal(ours.tensor(), plan(bare.name, shape, **params).tensor())
    assert ours.metadata()["scheme"] == namespaced.name


@pytest.mark.parametrize("name", ["he_normal", "kaiming_normal", "glorot_normal", "xavier_normal", "lecun_normal"])
def test_jax_normal_variants_are_truncated_with_the_correction(name):
    p = plan(f"jax.{name}", (3, 3, 16, 32))
    fan_in, fan_out = 144, 288
    scale, n = {"he": (2.0, fan_in), "kaiming": (2.0, fan_in), "lecun": (1.0, fan_in)}.get(
        name.split("_")[0], (1.0, (fan_in + fan_out) / 2)
    )
    std = math.sqrt(scale / n) / TRUNCATED_NORMAL_STD_2
    meta = p.metadata()
    assert meta["distribution"] == "truncated_normal" and meta["std"] == pytest.approx(std, rel=1e-15)
    assert meta["a"] == pytest.approx(-2 * std) and np.abs(p.tensor()).max() <= 2 * std + 1e-7


def test_jax_variance_scaling_axes_and_distribution_names():
    p = plan("jax.variance_scaling", (4, 5, 6), scale=1.0, mode="fan_in", distribution="uniform", in_axis=0, out_axis=1)
    assert (p.fans["fan_in"], p.metadata()["bound"]) == (24, math.sqrt(3.0 / 24))
    p = plan("jax.variance_scaling", (4, 5, 6), scale=1.0, mode="fan_out", distribution="normal", in_axis=[0, 1])
    assert p.fans == {"fan_out": 6 * 20 // 20} and p.distribution.kind == "normal"  # 'normal' is untruncated
    p = plan("jax.variance_scaling", (2, 3, 8, 16), scale=2.0, mode="fan_geo_avg", distribution="uniform", batch_axis=0)
    assert p.fans == {"fan_in": 24, "fan_out": 48}
    assert p.metadata()["bound"] == pytest.approx(math.sqrt(3 * 2.0 / math.sqrt(24 * 48)))


@pytest.mark.parametrize(
    ("scheme", "shape", "params", "field", "needle"),
    [
        ("jax.he_normal", (6,), {}, "shape", "1-dimensional weights tensor with default in_axis"),
        ("jax.variance_scaling", (), {"scale": 1.0, "mode": "fan_in", "distribution": "uniform"}, "shape", "0-dim"),
        ("jax.variance_scaling", (4, 5), {"scale": 1.0, "mode": "FAN_IN", "distribution": "uniform"}, "mode", "FAN_IN"),
        (
            "jax.variance_scaling",
            (4, 5),
            {"scale": 1.0, "mode": "fan_in", "distribution": "untruncated_normal"},
            "distribution",
            "invalid distribution for variance scaling initializer: untruncated_normal",
        ),
        ("jax.glorot_uniform", (4, 5), {"in_axis": 3}, "in_axis", "out of range"),
        ("jax.orthogonal", (5,), {}, "shape", "at least a 2D shape"),
        ("jax.delta_orthogonal", (3, 3, 8, 4), {}, "shape", "`fan_in` must be less or equal than `fan_out`"),
        ("keras.variance_scaling", (4, 5), {"mode": "fan_geo_avg"}, "mode", "Invalid `mode` argument: fan_geo_avg"),
        ("keras.variance_scaling", (4, 5), {"mode": "FAN_IN"}, "mode", "Invalid `mode` argument: FAN_IN"),
        ("keras.glorot_uniform", (4, 5, 6), {"input_axes": [0], "output_axes": [1, 2]}, "input_axes", "3.15"),
        ("torch.trunc_normal", (4, 5), {"std": 0.0}, "std", "ZeroDivisionError"),
        ("trunc_normal", (4, 5), {"a": 0.5, "b": 0.5}, "b", "needs a < b"),  # the bare name keeps refusing
        ("truncated_normal", (4, 5), {"mean": 3.4028234663852886e38}, "b", "needs a < b"),  # mean +- 2 stddev: one
        ("jax.lecun_normal", (4, 5), {"out_axis": [10**27, 1]}, "out_axis", "from -8 to 7"),  # no tensor's axis
        ("keras.glorot_uniform", (4, 5), {"input_axes": [-9], "output_axes": [1]}, "input_axes", "from -8 to 7"),
    ],
)
def test_framework_errors(scheme, shape, params, field, needle):
    error = refused(scheme, shape, **params)
    assert error.field == field and needle in error.message, error.message


def test_jax_orthogonal_column_axis_and_delta_orthogonal():
    w = plan("jax.orthogonal", (4, 5), column_axis=0, scale=-2.0).tensor().astype(np.float64)
    assert np.allclose(w @ w.T, 4.0 * np.eye(4), atol=1e-5)  # rows (the column axis 0) orthogonal, norm |scale|
    w = plan("jax.delta_orthogonal", (3, 3, 4, 8)).tensor().astype(np.float64)
    centre = w[1, 1]
    assert np.allclose(centre @ centre.T, np.eye(4), atol=1e-5)
    w[1, 1] = 0
    assert not w.any()


def test_keras_names_defaults_and_validation():
    assert plan("keras.uniform", (4, 5)).metadata()["bound"] == 0.05
    assert plan("keras.normal", (4, 5)).metadata()["std"] == 0.05
    p = plan("keras.variance_scaling", (4, 5), distribution="NORMAL")  # lower-cased; 'normal' is truncated_normal
    assert p.distribution.kind == "truncated_normal" and p.metadata()["keras_version"] == "3.14"
    p = plan("keras.glorot_uniform", (64, 4, 16), "3.15", input_axes=[0], output_axes=[1, 2])
    assert (p.fans, p.metadata()["bound"]) == ({"fan_in": 64, "fan_out": 64}, pytest.approx(0.21650635094610965))
    p = plan("keras.glorot_uniform", (64, 4, 16), "3.15", input_axes=[0])  # Keras ignores one list alone
    assert p.fans == {"fan_in": 256, "fan_out": 1024}


def test_edge_cases_the_frameworks_accept():
    assert np.all(plan("torch.trunc_normal", (4, 5), a=0.5, b=0.5).tensor() == 0.5)
    w = plan("torch.trunc_normal", (200, 50), std=-1.0).tensor()
    assert w.min() >= -2 and w.max() <= 2 and abs(float(w.std()) - 0.8796) < 0.02
    w = plan("torch.orthogonal", (4, 5), gain=-2.0).tensor().astype(np.float64)
    assert np.allclose(w @ w.T, 4 * np.eye(4), atol=1e-5)
    assert np.array_equal(plan("keras.identity", (3, 3), gain=-2.0).tensor(), -2 * np.eye(3, dtype=np.float32))
    assert np.all(plan("torch.constant", (4, 5), val=True).tensor() == 1.0)
    assert np.all(plan("keras.uniform", (4, 5), minval=0.5, maxval=-0.2).tensor() == 0.5)  # Keras on JAX
    assert np.all(plan("keras.truncated_normal", (4, 5), stddev=0.0, mean=0.25).tensor() == 0.25)
    huge = 3.4028234663852886e38  # mean +- 2 stddev round to the mean: Keras gives it everywhere
    assert np.all(plan("keras.truncated_normal", (4, 5), mean=huge).tensor() == huge)
    assert plan("keras.random_normal", (4, 5), stddev=-0.1).metadata()["std"] == 0.1
    assert np.all(plan("torch.sparse", (4, 5), sparsity=1.5).tensor() == 0)


def test_edge_cases_under_the_torch_rng():
    """torch 2.13's trunc_normal_ samples a == b and negative std (the generator follows its algorithm)."""
    assert np.all(plan("torch.trunc_normal", (4, 5), rng="torch-2.13", a=0.5, b=0.5).tensor() == 0.5)
    w = plan("torch.orthogonal", (4, 5), rng="torch-2.13", gain=-2.0).tensor().astype(np.float64)
    assert np.allclose(w @ w.T, 4 * np.eye(4), atol=1e-5)
    w = plan("jax.delta_orthogonal", (3, 3, 4, 8), rng="torch-2.13").tensor().astype(np.float64)
    assert np.allclose(w[1, 1] @ w[1, 1].T, np.eye(4), atol=1e-5) and np.count_nonzero(w) == 32


def test_keras_315_multi_head_attention_kernels_have_their_real_fans():
    specs = expand(["multihead_attention(64, 4)"], "keras", keras_version="3.15")
    for name in ("multi_head_attention/query/kernel", "multi_head_attention/attention_output/kernel"):
        spec = specs[name]
        p = make_plan(spec.request(1, name, keras_version="3.15"))
        assert p.fans == {"fan_in": 64, "fan_out": 64}, name
        assert p.metadata()["bound"] == pytest.approx(0.2165063509461097)
    # The default (3.14) keeps the fans read off the shape, and its bits.
    old = expand(["multihead_attention(64, 4)"], "keras")["multi_head_attention/query/kernel"]
    assert (old.scheme, make_plan(old.request(1, "q")).fans) == ("glorot_uniform", {"fan_in": 256, "fan_out": 1024})


@pytest.mark.parametrize(
    ("mean", "std", "a", "b"), [(0.0, 1.0, 40.0, 41.0), (0.0, 1.0, -41.0, -40.0), (1.0, -2.0, 90.0, 1e6)]
)
def test_far_tail_truncated_normal_is_sampled_exactly(mean, std, a, b):
    """Where Phi(b) - Phi(a) underflows float64 the bare name refuses (its bytes are pinned), torch.* samples by
    exponential rejection: the law of scipy's truncnorm, any slice on its own."""
    stats = pytest.importorskip("scipy.stats")
    assert "underflows" in refused("trunc_normal", (4, 5), mean=mean, std=abs(std), a=a, b=b).message
    p = plan("torch.trunc_normal", (200, 200), mean=mean, std=std, a=a, b=b)
    values = p.values()
    assert a <= values.min() and values.max() <= b
    law = stats.truncnorm((a - mean) / abs(std), (b - mean) / abs(std), loc=mean, scale=abs(std))
    assert stats.kstest(values, law.cdf).pvalue > 1e-4
    assert p.distribution.moments().mean == pytest.approx(law.mean(), abs=1e-9)
    assert np.array_equal(p.values(1234, 5678), values[1234:5678])
    assert stats.kstest(values, lambda x: p.distribution.cdf(np.asarray(x))).pvalue > 1e-4
    j = plan("jax.truncated_normal", (50, 40), stddev=0.5, lower=40.0, upper=41.0).values()
    assert j.min() >= 20.0 and j.max() <= 20.5


def test_keras_315_rule_with_framework_fans_reads_the_kernel_axes():
    rule = {"layer": "multihead_attention", "param": "weight", "scheme": "he_uniform", "fans": "framework"}
    for version, fans in ((None, (None, None)), ("3.15", (64, 64))):
        spec = expand(["multihead_attention(64, 4)"], "keras", [rule], keras_version=version)
        assert (
            spec["multi_head_attention/query/kernel"].fan_in,
            spec["multi_head_attention/query/kernel"].fan_out,
        ) == fans
    out = expand(["multihead_attention(64, 4)"], "keras", [rule], keras_version="3.15")
    assert (
        out["multi_head_attention/attention_output/kernel"].fan_in,
        out["multi_head_attention/attention_output/kernel"].fan_out,
    ) == (64, 64)


def test_namespaced_edge_cases_under_philox_v2():
    w = plan("jax.delta_orthogonal", (3, 3, 4, 8), rng="philox-v2").tensor().astype(np.float64)
    assert np.allclose(w[1, 1] @ w[1, 1].T, np.eye(4), atol=1e-5) and np.count_nonzero(w) == 32
    w = plan("jax.orthogonal", (4, 5), rng="philox-v2", column_axis=0).tensor().astype(np.float64)
    assert np.allclose(w @ w.T, np.eye(4), atol=1e-5)
    assert np.all(plan("torch.trunc_normal", (4, 5), rng="philox-v2", a=0.5, b=0.5).tensor() == 0.5)
    w = plan("torch.trunc_normal", (100, 100), rng="philox-v2", std=-1.0).tensor()
    assert w.min() >= -2 and w.max() <= 2 and abs(float(w.std()) - 0.8796) < 0.02
