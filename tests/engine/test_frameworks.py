"""The jax.* and keras.* schemes and the Keras 3.15 recipe against the real frameworks (the `jaxkeras` extra:
keras 3.15.1 on the JAX backend, jax 0.10.2; skipped without it), torch.* against torch 2.13 (the `torch` extra).

For each scheme: the framework's own fans (its fan function) and bound or std (read by running its initializer
with its random source replaced by ones, so that the result is the number it multiplies by) equal the service's
metadata; and a two-sample Kolmogorov-Smirnov test between the framework's values (pooled over seeds) and the
service's (pooled over seeds) does not reject. The negative control (torch's untruncated kaiming_normal against
JAX's truncated one) must be rejected by the same test. Seeds are fixed on both sides: deterministic.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
jax = pytest.importorskip("jax")
keras = pytest.importorskip("keras")
stats = pytest.importorskip("scipy.stats")

from jax._src.nn import initializers as jax_init  # noqa: E402
from keras.src.initializers import random_initializers as keras_random  # noqa: E402

from service.engine.plan import TensorRequest, make_plan  # noqa: E402
from service.engine.recipes.expand import expand  # noqa: E402

SAMPLES = 40_000  # per side, pooled over seeds
SEEDS = 4
P_FLOOR = 1e-4
SHAPE = (3, 3, 16, 32)


def ours(
    scheme: str,
    shape: tuple[int, ...],
    params: dict[str, Any],
    keras_version: str | None = None,
    samples: int = SAMPLES,
) -> np.ndarray:
    per_seed = max(1, samples // (math.prod(shape) * SEEDS)) * SEEDS
    return np.concatenate(
        [
            make_plan(TensorRequest(shape, scheme, seed, params, name="w", keras_version=keras_version))
            .tensor()
            .reshape(-1)
            for seed in range(per_seed)
        ]
    ).astype(np.float64)


def metadata(scheme: str, shape: tuple[int, ...], params: dict[str, Any], keras_version: str | None = None) -> dict:
    return make_plan(TensorRequest(shape, scheme, 0, params, keras_version=keras_version)).metadata()


def pooled(draw: Callable[[int], Any], size: int) -> np.ndarray:
    seeds = max(1, SAMPLES // size)
    return np.concatenate([np.asarray(draw(seed), dtype=np.float64).reshape(-1) for seed in range(seeds)])


def jax_pooled(init: Any, shape: tuple[int, ...], samples: int = SAMPLES) -> np.ndarray:
    """JAX's values over max(1, samples / size) keys, vectorised: one compilation, not one per key."""
    keys = jax.random.split(jax.random.key(0), max(1, samples // math.prod(shape)))
    return np.asarray(jax.vmap(lambda key: init(key, shape))(keys), dtype=np.float64).reshape(-1)


def same_law(a: np.ndarray, b: np.ndarray) -> float:
    return float(stats.ks_2samp(a, b).pvalue)


# ---- JAX -------------------------------------------------------------------------------------------------------


class _Ones:
    """jax.random with every sampler returning ones (and recording its bounds): an initializer then returns the
    number it multiplies by."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def sample(key: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args))
            shape = args[2] if name == "truncated_normal" else args[0]
            return jax.numpy.ones(shape, jax.numpy.float64 if jax.config.jax_enable_x64 else jax.numpy.float32)

        return sample


@contextmanager
def jax_ones() -> Iterator[_Ones]:
    real, stub = jax_init.random, _Ones()
    jax_init.random = stub
    try:
        yield stub
    finally:
        jax_init.random = real


JAX_AXES = {"in_axis": 0, "out_axis": 1, "batch_axis": [3]}
JAX_CASES = [
    *((name, {}, SHAPE) for name in ("glorot_uniform", "xavier_normal", "he_uniform", "kaiming_normal")),
    *((name, {}, (64, 48)) for name in ("lecun_uniform", "lecun_normal", "glorot_normal", "he_normal")),
    ("xavier_uniform", JAX_AXES, (8, 6, 5, 2)),
    ("variance_scaling", {"scale": 2.0, "mode": "fan_geo_avg", "distribution": "normal", **JAX_AXES}, (8, 6, 5, 2)),
    ("variance_scaling", {"scale": 0.5, "mode": "fan_out", "distribution": "truncated_normal"}, (64, 48)),
    ("variance_scaling", {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform", "in_axis": [0, 1]}, (4, 5, 60)),
    ("normal", {"stddev": 0.3}, (64, 48)),
    ("uniform", {"scale": 0.7}, (64, 48)),
    ("truncated_normal", {"stddev": 0.2, "lower": -1.0, "upper": 3.0}, (64, 48)),
    ("orthogonal", {"scale": 1.5, "column_axis": 0}, (24, 32)),
    ("delta_orthogonal", {"scale": 1.0}, (3, 3, 16, 32)),
]


def _jax_initializer(name: str, params: dict[str, Any]) -> Any:
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    if name == "variance_scaling":
        rest = {k: v for k, v in params.items() if k not in ("scale", "mode", "distribution")}
        return jax_init.variance_scaling(params["scale"], params["mode"], params["distribution"], **rest)
    return getattr(jax.nn.initializers, name)(**params)


@pytest.mark.parametrize(("name", "params", "shape"), JAX_CASES, ids=lambda c: str(c))
def test_jax_scheme_matches_jax(name, params, shape):
    init = _jax_initializer(name, params)
    meta = metadata(f"jax.{name}", shape, params)
    if name not in ("normal", "uniform", "truncated_normal", "orthogonal", "delta_orthogonal"):
        axes = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items() if k.endswith("_axis")}
        fan_in, fan_out = jax_init._compute_fans(shape, **axes)
        for fan, value in (("fan_in", fan_in), ("fan_out", fan_out)):
            assert meta[fan] in (None, value), (fan, meta[fan], value)
        with jax_ones() as stub:
            factor = float(np.asarray(init(jax.random.key(0), shape)).reshape(-1)[0])
        kind, args = stub.calls[0]
        if kind == "uniform":
            assert meta["bound"] == pytest.approx(factor, rel=1e-6)
        elif kind == "normal":
            assert (meta["distribution"], meta["std"]) == ("normal", pytest.approx(factor, rel=1e-6))
        else:
            assert args[:2] == (-2, 2) and meta["std"] == pytest.approx(factor, rel=1e-6)
            assert meta["b"] == pytest.approx(2 * factor, rel=1e-6)
    assert same_law(ours(f"jax.{name}", shape, params), jax_pooled(init, shape)) > P_FLOOR


def test_the_ks_test_rejects_a_different_meaning():
    """The negative control: torch's kaiming_normal (untruncated) is not JAX's (truncated), which the same test
    with the same sizes tells apart."""
    shape = (64, 48)
    # The two laws differ by KS distance 0.019 (the sweep): 200,000 values a side tell them apart.
    theirs = jax_pooled(jax.nn.initializers.kaiming_normal(), shape, 200_000)
    mine = ours("kaiming_normal", (48, 64), {"nonlinearity": "relu"}, samples=200_000)  # torch layout: fan_in 64
    assert same_law(mine, theirs) < 1e-6
    assert same_law(ours("jax.kaiming_normal", shape, {}, samples=200_000), theirs) > P_FLOOR


@pytest.mark.parametrize(
    ("shape", "params", "needle"),
    [
        ((6,), {}, "1-dimensional weights tensor with default in_axis"),
        ((), {}, "0-dimensional weights tensor with default in_axis"),
    ],
)
def test_jax_refuses_what_jax_refuses(shape, params, needle):
    with pytest.raises(ValueError, match=needle[:20]):
        jax.nn.initializers.he_normal(**params)(jax.random.key(0), shape)
    with pytest.raises(Exception, match=needle[:20]):
        make_plan(TensorRequest(shape, "jax.he_normal", 0, params))


# ---- Keras ------------------------------------------------------------------------------------------------------


class _KerasOnes:
    """keras.random with every sampler returning ones and recording its arguments."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls: list[tuple[str, dict]] = []

    def __getattr__(self, name: str) -> Any:
        if name not in ("uniform", "normal", "truncated_normal"):
            return getattr(self.real, name)

        def sample(shape: Any, **kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            return keras.ops.ones(shape)

        return sample


@contextmanager
def keras_ones() -> Iterator[_KerasOnes]:
    real = keras_random.random
    stub = _KerasOnes(real)
    keras_random.random = stub
    try:
        yield stub
    finally:
        keras_random.random = real


KERAS_AXES = {"input_axes": [0], "output_axes": [1, 2]}
KERAS_CASES = [
    *((name, {}, SHAPE, None) for name in ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal")),
    *((name, {}, (64, 48), None) for name in ("lecun_uniform", "lecun_normal")),
    ("glorot_uniform", KERAS_AXES, (64, 4, 16), "3.15"),
    ("he_normal", KERAS_AXES, (64, 4, 16), "3.15"),
    ("variance_scaling", {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"}, (64, 48), None),
    ("variance_scaling", {"scale": 1.0, "mode": "fan_avg", "distribution": "normal"}, SHAPE, None),
    ("random_normal", {"mean": 0.1, "stddev": 0.2}, (64, 48), None),
    ("normal", {}, (64, 48), None),
    ("random_uniform", {"minval": -0.3, "maxval": 0.1}, (64, 48), None),
    ("uniform", {}, (64, 48), None),
    ("truncated_normal", {"stddev": 0.2}, (64, 48), None),
    ("orthogonal", {"gain": -1.0}, (24, 32), None),
]


@pytest.mark.parametrize(("name", "params", "shape", "version"), KERAS_CASES, ids=lambda c: str(c))
def test_keras_scheme_matches_keras(name, params, shape, version):
    def initializer(seed: int) -> Any:
        return keras.initializers.get({"class_name": name, "config": {**params, "seed": seed}})

    meta = metadata(f"keras.{name}", shape, params, version)
    with keras_ones() as stub:
        initializer(0)(shape)
    kind, args = stub.calls[0]
    if kind == "uniform":
        described = meta.get("bound", meta.get("high"))
        assert described == pytest.approx(args["maxval"], rel=1e-12), (meta, args)
    elif "stddev" in args:  # not orthogonal's standard normal
        assert meta["std"] == pytest.approx(args["stddev"], rel=1e-12), (meta, args)
    if isinstance(keras.initializers.get(name), keras.initializers.VarianceScaling):
        fans = keras_random.compute_fans(shape, params.get("input_axes"), params.get("output_axes"))
        assert tuple(meta[f] or v for f, v in zip(("fan_in", "fan_out"), fans, strict=True)) == fans
    theirs = pooled(lambda seed: initializer(seed)(shape), math.prod(shape))
    assert same_law(ours(f"keras.{name}", shape, params, version), theirs) > P_FLOOR


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("variance_scaling", {"mode": "fan_geo_avg"}),
        ("variance_scaling", {"mode": "FAN_IN"}),
    ],
)
def test_keras_refuses_what_keras_refuses(name, params):
    with pytest.raises(ValueError, match="Invalid `mode` argument"):
        keras.initializers.VarianceScaling(**params)
    with pytest.raises(Exception, match="Invalid `mode` argument"):
        make_plan(TensorRequest((4, 5), f"keras.{name}", 0, params))


def test_keras_315_multi_head_attention_recipe_is_keras_315s():
    """Names equal variable.path, shapes equal, and every kernel's glorot bound (read off Keras's own call) and
    fans equal the recipe's metadata under keras_version 3.15."""
    inputs = keras.Input((10, 64))
    layer = keras.layers.MultiHeadAttention(num_heads=4, key_dim=16)
    with keras_ones() as stub:
        keras.Model(inputs, layer(inputs, inputs))
    bounds = [args["maxval"] for kind, args in stub.calls if kind == "uniform"]
    specs = expand(["multihead_attention(64, 4)"], "keras", keras_version="3.15")
    assert {v.path: tuple(v.shape) for v in layer.weights} == {name: spec.shape for name, spec in specs.items()}
    kernels = [name for name in specs if name.endswith("kernel")]
    assert len(bounds) == len(kernels) == 4
    for name, bound in zip(kernels, bounds, strict=True):  # query, key, value, attention_output: built in this order
        meta = make_plan(specs[name].request(0, name, keras_version="3.15")).metadata()
        assert (meta["fan_in"], meta["fan_out"]) == (64, 64) and meta["bound"] == pytest.approx(bound, rel=1e-12)
    old = expand(["multihead_attention(64, 4)"], "keras")[kernels[0]]  # without the version: 3.14's fans
    assert make_plan(old.request(0, "q")).metadata()["bound"] != pytest.approx(bounds[0])


def test_keras_315_rule_with_framework_fans_reads_the_kernel_axes():
    """A rule `he_uniform` with `"fans": "framework"` on MultiHeadAttention: Keras 3.15 hands the kernel's axes to
    the initializer (bound sqrt(6 / 64)); the recipe under keras_version 3.15 does the same."""
    inputs = keras.Input((10, 64))
    with keras_ones() as stub:
        keras.Model(inputs, keras.layers.MultiHeadAttention(4, 16, kernel_initializer="he_uniform")(inputs, inputs))
    bound = next(args["maxval"] for kind, args in stub.calls if kind == "uniform")
    rule = {"layer": "multihead_attention", "param": "weight", "scheme": "he_uniform", "fans": "framework"}
    spec = expand(["multihead_attention(64, 4)"], "keras", [rule], keras_version="3.15")[
        "multi_head_attention/query/kernel"
    ]
    assert make_plan(spec.request(0, "q", keras_version="3.15")).metadata()["bound"] == pytest.approx(bound, rel=1e-12)
