"""Depth diagnostics: the published findings reproduced on the returned numbers, the theory beside them, the weights'
bits those of /init, determinism, checks and the memory estimate.

The findings (Glorot & Bengio 2010; He et al. 2015) are asserted on variances averaged over SEEDS at width 512 with
N(0, 1) inputs; each bound was set after simulating it (the numbers in the comments are those runs' averages).
"""

from __future__ import annotations

import numpy as np
import pytest

from service.engine import cancel
from service.engine.cancel import CancelToken, WorkCancelledError
from service.engine.diagnose import (
    ACTIVATIONS,
    DiagnoseSpec,
    LayerInit,
    check,
    diagnose,
    weight_request,
    working_bytes,
)
from service.engine.errors import InitError

from .test_memory import peak_bytes

SEEDS = (1, 2, 3)
WIDTH = 512


def stack(activation: str, init: LayerInit, depth: int, seed: int, **more) -> dict:
    spec = DiagnoseSpec(widths=(WIDTH,) * (depth + 1), activations=(activation,), inits=(init,), seed=seed, **more)
    return diagnose(spec)


def averaged(activation: str, init: LayerInit, depth: int, key: str = "output", **more) -> np.ndarray:
    """Per layer, the variance of `key` averaged over SEEDS."""
    runs = [[layer[key]["variance"] for layer in stack(activation, init, depth, s, **more)["layers"]] for s in SEEDS]
    return np.mean(runs, axis=0)


@pytest.fixture(scope="module")
def tanh_standard() -> np.ndarray:
    # U(+-1/sqrt(n_in)), Glorot & Bengio's "standard" initialisation: what torch_default is.
    return averaged("tanh", LayerInit("torch_default"), 10)


def test_tanh_with_the_standard_init_decays_geometrically(tanh_standard):
    # n Var[W] = 1/3: each layer keeps about a third of the variance (simulated: 0.29, 0.32, then 0.33 each).
    ratios = tanh_standard[1:] / tanh_standard[:-1]
    assert np.all((ratios > 0.25) & (ratios < 0.4)), ratios
    assert tanh_standard[-1] < 1e-4  # 8.8e-6


def test_tanh_with_xavier_decays_as_one_over_depth_not_geometrically(tanh_standard):
    xavier = averaged("tanh", LayerInit("xavier_uniform"), 10)
    assert xavier[9] >= 10 * tanh_standard[9]  # 0.052 against 8.8e-6
    # Not constant: q_{l+1} ~ q_l - 2 q_l^2, so Var ~ c / l (l * Var: 0.39, 0.47, 0.50, 0.51, 0.52, ..., 0.52).
    assert xavier[9] < 0.2 * xavier[0]
    scaled = xavier * np.arange(1, 11)
    assert np.all((scaled[3:] > 0.45) & (scaled[3:] < 0.6)), scaled
    # A geometric decay at the first layers' rate would be ~1e-3 by layer 10.
    assert xavier[9] > 0.5 * xavier[1] ** 9 / xavier[0] ** 8 * 10


def log_slope(variances: np.ndarray, base: float) -> float:
    return float(np.polyfit(np.arange(1, variances.size + 1), np.log(variances) / np.log(base), 1)[0])


def test_relu_with_he_keeps_the_variance_over_20_layers():
    he = averaged("relu", LayerInit("kaiming_normal", {"nonlinearity": "relu"}), 20)
    assert abs(log_slope(he, np.e)) <= 0.05  # simulated: -0.001


def test_relu_with_xavier_halves_the_variance_per_layer():
    xavier = averaged("relu", LayerInit("xavier_normal"), 20)
    assert abs(log_slope(xavier, 2) + 1) <= 0.1  # simulated: -1.001


def test_batch_norm_restores_unit_variance_after_every_layer():
    normed = averaged("relu", LayerInit("xavier_normal"), 20, key="preactivation", norm="batch")
    # 1 / (1 + eps / sigma^2) per feature: unit variance to 1e-4 while the un-normalised stack loses a factor 2^20.
    assert np.all(np.abs(normed - 1) < 1e-3), normed
    outputs = averaged("relu", LayerInit("xavier_normal"), 20, norm="batch")
    assert np.all(np.abs(outputs - (0.5 - 1 / (2 * np.pi))) < 0.03), outputs


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_the_theory_predicts_what_is_measured(activation):
    """Mean-field predictions, averaged over SEEDS at width 256 (LeCun normal weights), within 10% for every
    activation (the weight gradients' within 20%: a batch mean of 64 products is noisier)."""
    keys = (("output", "variance"), ("gradient", "variance"), ("gradient", "weight_variance"))
    measured, predicted = [], []
    for seed in SEEDS:
        spec = DiagnoseSpec(
            widths=(256,) * 5, activations=(activation,), inits=(LayerInit("lecun_normal"),), seed=seed, batch=64
        )
        layers = diagnose(spec)["layers"]
        measured.append([[layer[a][b] for a, b in keys] for layer in layers])
        predicted = [
            [layer["theory"][k] for k in ("activation_variance", "gradient_variance", "weight_gradient_variance")]
            for layer in layers
        ]
    ratio = np.mean(measured, axis=0) / np.array(predicted)
    assert np.all(np.abs(ratio[:, :2] - 1) < 0.1), ratio
    assert np.all(np.abs(ratio[:, 2] - 1) < 0.2), ratio


def test_saturation_is_counted_for_bounded_activations_only():
    spec = DiagnoseSpec(
        widths=(64, 64, 64), activations=("tanh", "relu"), inits=(LayerInit("normal", {"std": 1.0}),), seed=1
    )
    tanh, relu = diagnose(spec)["layers"]
    # N(0, 64) pre-activations: |tanh(h)| > 0.99 where |h| > 2.65, P = 0.74.
    assert 0.65 < tanh["output"]["saturation"] < 0.8
    assert relu["output"]["saturation"] is None
    assert sum(tanh["output"]["histogram"]["counts"]) == 256 * 64


def test_weights_are_the_bits_of_init_for_their_name_in_either_layout():
    for layout, shape in (("torch", [32, 16]), ("keras", [16, 32])):
        spec = DiagnoseSpec(widths=(16, 32), activations=("relu",), inits=(LayerInit("he_normal", {}, layout),), seed=9)
        request = weight_request(spec, 0)
        assert list(request.shape) == shape and request.name == "layers.0.weight"
        assert diagnose(spec)["layers"][0]["weight"]["shape"] == shape
    # keras' family default is its own layout
    spec = DiagnoseSpec(widths=(16, 32), activations=("relu",), inits=(LayerInit("he_normal"),), seed=9)
    assert list(weight_request(spec, 0).shape) == [16, 32]


def test_deterministic_for_a_seed_and_different_across_seeds():
    def run(seed: int) -> dict:
        spec = DiagnoseSpec(
            widths=(32, 48, 16), activations=("gelu", "tanh"), inits=(LayerInit("xavier_uniform"),), seed=seed, batch=8
        )
        return diagnose(spec)

    assert run(4) == run(4)
    assert run(4)["layers"][0]["output"] != run(5)["layers"][0]["output"]


def test_layers_are_checked_with_the_field_and_the_rule():
    base = {"widths": (8, 8, 8), "seed": 1}
    with pytest.raises(InitError) as error:
        check(DiagnoseSpec(activations=("relu", "tanh", "relu"), inits=(LayerInit("he_normal"),), **base))
    assert error.value.field == "activation" and "2 layers" in error.value.message
    with pytest.raises(InitError) as error:
        check(DiagnoseSpec(activations=("relu",), inits=(LayerInit("he_normal"), LayerInit("dirac")), **base))
    assert error.value.field == "init.1.scheme" and "layer 1" in error.value.message
    with pytest.raises(InitError) as error:
        check(DiagnoseSpec(activations=("relu",), inits=(LayerInit("kaiming_normal", {"mode": "fan_avg"}),), **base))
    assert error.value.field == "init.mode" and "fan_avg" in error.value.message
    with pytest.raises(InitError) as error:
        check(DiagnoseSpec(activations=("relu",), inits=(LayerInit("he_normal"),), norm="batch", batch=1, **base))
    assert error.value.field == "batch"


def test_a_cancelled_run_stops_before_its_next_layer():
    spec = DiagnoseSpec(widths=(64,) * 11, activations=("relu",), inits=(LayerInit("he_normal"),), seed=1, batch=16)
    plans = check(spec)
    generated = []
    original = type(plans[0]).tensor

    def counting(plan):  # counts the weights generated
        generated.append(plan.request.name)
        return original(plan)

    token = CancelToken()
    token.cancel()
    bound = cancel.bind(token)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(type(plans[0]), "tensor", counting)
            with pytest.raises(WorkCancelledError):
                diagnose(spec, plans)
    finally:
        cancel._current.reset(bound)
    assert generated == ["layers.0.weight"]


@pytest.mark.parametrize(
    ("widths", "norm", "scheme", "dtype"),
    [
        ((256, 512, 512, 128), "none", "he_normal", "float32"),
        ((512, 128, 1024), "batch", "orthogonal", "float64"),
        ((64, 2048, 64), "layer", "sparse", "float16"),
    ],
)
def test_memory_stays_within_the_estimate(widths, norm, scheme, dtype):
    params = {"sparsity": 0.1} if scheme == "sparse" else {}
    spec = DiagnoseSpec(
        widths=widths,
        activations=("gelu",),
        inits=(LayerInit(scheme, params),),
        seed=2,
        batch=128,
        norm=norm,
        dtype=dtype,
    )
    diagnose(spec)  # first uses (LAPACK, numba) allocate once for good
    estimate = working_bytes(spec, check(spec))
    peak = peak_bytes(lambda: diagnose(spec, check(spec)))
    assert peak <= estimate
    assert estimate < 3 * peak  # an estimate, not a guess: admission refuses by it
