"""The Keras layers added for issue 16 against Keras 3.15 itself (JAX backend; skipped without the jaxkeras
extra): for each recipe, the model Keras builds has the same variables, `variable.path` without the model's name
equal to ours, the same shapes, and per tensor the same distribution: constants exactly, random ones by a
two-sample KS test between ours (pooled over seeds) and Keras's (pooled over fresh models, seeded)."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")
stats = pytest.importorskip("scipy.stats")
L = keras.layers

from service.engine.bundle import plan_tensor  # noqa: E402
from service.engine.recipes.expand import expand  # noqa: E402

MIN_SAMPLES = 3000
P_FLOOR = 1e-4

MODELS: dict[str, tuple[list[Any], Callable[[], Any]]] = {
    "bidirectional_and_gru_reset_before": (
        ["lstm(4, 8, 2, bidirectional=True)", "gru(16, 12, reset_after=False)", "bi: rnn(12, 24, bidirectional=True)"],
        lambda: keras.Sequential(
            [
                keras.Input((5, 4)),
                L.Bidirectional(L.LSTM(8, return_sequences=True)),
                L.Bidirectional(L.LSTM(8, return_sequences=True)),
                L.GRU(12, reset_after=False, return_sequences=True),
                L.Bidirectional(L.SimpleRNN(24), name="bi"),
            ]
        ),
    ),
    "depthwise_separable_prelu": (
        [
            "prelu(input_shape=(7, 7, 3), shared_axes=(1, 2))",
            "prelu(input_shape=(7, 7, 3), init=0.1)",
            "depthwise_conv2d(3, 3, depth_multiplier=8)",
            "separable_conv2d(24, 16, 3, depth_multiplier=2)",
        ],
        lambda: keras.Sequential(
            [
                keras.Input((7, 7, 3)),
                L.PReLU(shared_axes=[1, 2]),
                L.PReLU(alpha_initializer=keras.initializers.Constant(0.1)),
                L.DepthwiseConv2D(3, depth_multiplier=8),
                L.SeparableConv2D(16, 3, depth_multiplier=2),
            ]
        ),
    ),
    "depthwise_separable_1d": (
        ["depthwise_conv1d(16, 5, depth_multiplier=4)", "separable_conv1d(64, 32, 3)"],
        lambda: keras.Sequential(
            [keras.Input((12, 16)), L.DepthwiseConv1D(5, depth_multiplier=4), L.SeparableConv1D(32, 3)]
        ),
    ),
    "dense_of_no_features": (
        ["linear(0, 5)", "linear(5, 3)"],
        lambda: keras.Sequential([keras.Input((0,)), L.Dense(5), L.Dense(3)]),
    ),
    "einsum_dense_rms_normalization": (
        [
            "einsum_dense('abc,cd->abd', (None, 64), (6, 32), bias_axes='d')",
            "einsum_dense('abc,cde->abde', (None, 3, 5), (6, 64))",
            "einsum_dense('...b,bc->...c', 48, (6, 3, 5), 'c')",
            "rmsnorm(48)",
        ],
        lambda: keras.Sequential(
            [
                keras.Input((6, 32)),
                L.EinsumDense("abc,cd->abd", output_shape=(None, 64), bias_axes="d"),
                L.EinsumDense("abc,cde->abde", output_shape=(None, 3, 5)),
                L.EinsumDense("...b,bc->...c", output_shape=48, bias_axes="c"),
                L.RMSNormalization(),
            ]
        ),
    ),
    "rms_normalization_axes": (
        ["rmsnorm([3, 48])"],
        lambda: keras.Sequential([keras.Input((3, 48)), L.RMSNormalization(axis=[-2, -1])]),
    ),
}
# The Keras installed (the jaxkeras extra) is 3.15.1: requests name its semantics. Keras 3.15 initialises a 3-D
# EinsumDense kernel over its input/output axes (keras-team/keras#22789), where 3.14, the service's default, reads
# fans off the shape.
KERAS_VERSION = "3.15"


@functools.cache
def _keras_values(factory: Callable[[], Any], seed: int) -> dict[str, np.ndarray]:
    keras.backend.clear_session()  # Keras's auto-names count from a fresh session, as ours count per recipe
    keras.utils.set_random_seed(seed)
    model = factory()
    return {v.path.split("/", 1)[1]: np.asarray(v.numpy()) for v in model.weights}


@pytest.mark.parametrize("case", list(MODELS))
def test_keras_builds_the_same_variables_distributed_alike(case):
    layers, factory = MODELS[case]
    specs = expand(layers, "keras", keras_version=KERAS_VERSION)
    first = _keras_values(factory, 1)
    assert list(specs) == list(first)
    assert {n: s.shape for n, s in specs.items()} == {n: v.shape for n, v in first.items()}
    second = _keras_values(factory, 2)
    for name, spec in specs.items():
        ours = plan_tensor(0, name, spec, keras_version=KERAS_VERSION).tensor()
        if np.array_equal(first[name], second[name]):  # Keras's init is a constant here: ours must be equal
            assert np.array_equal(ours, first[name]), name
            continue
        reps = math.ceil(MIN_SAMPLES / ours.size)
        pooled = np.concatenate(
            [plan_tensor(seed, name, spec, keras_version=KERAS_VERSION).tensor().ravel() for seed in range(reps)]
        )
        theirs = np.concatenate([_keras_values(factory, 100 + seed)[name].ravel() for seed in range(min(reps, 40))])
        p = stats.ks_2samp(pooled, theirs).pvalue
        assert p > P_FLOOR, f"{name}: {spec.scheme} vs Keras, KS p = {p:.2e}"
