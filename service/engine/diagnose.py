"""Depth diagnostics: a stack of dense layers run forward and backward on seeded inputs, per-layer statistics
beside what mean-field theory predicts (Glorot & Bengio 2010; He et al. 2015; Poole et al. 2016).

Layer l (1..L) maps x_{l-1} (batch x n_{l-1}) to x_l = act(norm(x_{l-1} W_l^T)), with no bias. Its weight is the
tensor /init returns for (seed, name `layers.{l-1}.weight`, shape [n_l, n_{l-1}] in the torch layout or
[n_{l-1}, n_l] in the keras one): the same bits. The inputs x_0 are N(0, 1) drawn from the seed (name
`diagnose.input`) and the per-example output gradients g = dLoss/dx_L from N(0, 1) too (`diagnose.output_gradient`):
the loss is mean over the batch of <g, x_L>, so each example's back-propagated gradient has unit scale at the top,
and a weight gradient is the batch mean of the examples' ones. Arithmetic is float64 (the weights as generated in
their dtype, then widened); matrix products run in BLAS: deterministic on one machine, equal elsewhere to rounding.

Theory (mean-field, infinite width, weights i.i.d. with zero mean): the pre-activation variance q_l follows
q_1 = n_0 Var[W_1] E[x_0^2], q_{l+1} = n_l Var[W_{l+1}] E[act(h)^2] with h ~ N(0, q_l) (normalisation: q = 1);
the activation's mean and variance are Gaussian integrals at q_l (for linear: q; ReLU: E[x^2] = q/2), and the
gradients go back as Var[dh_l] = E[act'(h)^2] Var[dx_l], Var[dx_{l-1}] = n_l Var[W_l] Var[dh_l], with
Var[dW_l] = Var[dh_l] E[x_{l-1}^2] / batch. Where the assumptions do not hold (weights with a non-zero mean such as
eye; the backward pass through a normalisation) the prediction is null.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from service.engine import cancel
from service.engine.errors import InitError
from service.engine.plan import Plan, TensorRequest, make_plan
from service.engine.random import detmath
from service.engine.schemes.fans import Layout
from service.engine.schemes.registry import get_scheme

F64 = NDArray[np.float64]
Norm = Literal["none", "batch", "layer"]
NORMS: tuple[Norm, ...] = ("none", "batch", "layer")
NORM_EPS = 1e-5  # torch's BatchNorm1d / LayerNorm default
INPUT_NAME = "diagnose.input"
OUTPUT_GRADIENT_NAME = "diagnose.output_gradient"
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
# |a| beyond this share of its bound counts as saturated (tanh and softsign: |a| > 0.99; sigmoid: a outside
# [0.01, 0.99]); Glorot & Bengio call a unit saturated where its derivative has all but vanished.
SATURATION = 0.99
# The Gaussian integrals of the theory: trapezoids over z in [-10, 10] (the tails beyond hold < 1e-22), fine
# enough for activations with a kink (relu, selu, softsign's derivative) to be accurate to ~1e-8.
_Z = np.linspace(-10.0, 10.0, 20001)
_PHI = np.exp(-0.5 * _Z * _Z) / math.sqrt(2 * math.pi) * (_Z[1] - _Z[0])


@dataclass(frozen=True)
class Activation:
    """An activation, its derivative (from its input h and output a), and its range when bounded."""

    forward: Callable[[F64, float], F64]
    derivative: Callable[[F64, F64, float], F64]
    bounds: tuple[float, float] | None = None


def _gelu_derivative(h: F64, a: F64, slope: float) -> F64:
    return detmath.ndtr(h) + h * np.exp(-0.5 * h * h) / math.sqrt(2 * math.pi)


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda h, s: h, lambda h, a, s: np.ones_like(h)),
    "tanh": Activation(lambda h, s: np.tanh(h), lambda h, a, s: 1.0 - a * a, (-1.0, 1.0)),
    "relu": Activation(lambda h, s: np.maximum(h, 0.0), lambda h, a, s: (h > 0).astype(np.float64)),
    "leaky_relu": Activation(lambda h, s: np.where(h > 0, h, s * h), lambda h, a, s: np.where(h > 0, 1.0, s)),
    "sigmoid": Activation(lambda h, s: 0.5 * (1.0 + np.tanh(0.5 * h)), lambda h, a, s: a * (1.0 - a), (0.0, 1.0)),
    "selu": Activation(
        lambda h, s: SELU_SCALE * np.where(h > 0, h, SELU_ALPHA * np.expm1(np.minimum(h, 0.0))),
        lambda h, a, s: np.where(h > 0, SELU_SCALE, a + SELU_SCALE * SELU_ALPHA),
    ),
    "gelu": Activation(lambda h, s: h * detmath.ndtr(h), _gelu_derivative),
    "softsign": Activation(
        lambda h, s: h / (1.0 + np.abs(h)), lambda h, a, s: 1.0 / np.square(1.0 + np.abs(h)), (-1.0, 1.0)
    ),
}

# Layers, widths, batch: fixed bounds (the work and the memory have their own, configurable, limits).
MAX_LAYERS = 100
MAX_WIDTH = 1 << 16
MAX_BATCH = 1 << 16
MAX_BINS = 200
THEORY_FIELDS = (
    "preactivation_variance",
    "activation_mean",
    "activation_variance",
    "gradient_variance",
    "weight_gradient_variance",
)


@dataclass(frozen=True)
class LayerInit:
    """How one layer's weight is initialised: a scheme of the catalogue with its parameters, in a layout."""

    scheme: str
    params: Mapping[str, Any] = field(default_factory=dict)
    layout: Layout | None = None


@dataclass(frozen=True)
class DiagnoseSpec:
    """A stack: widths n_0 (the input) .. n_L; activations and inits one for every layer, or one per layer."""

    widths: tuple[int, ...]
    activations: tuple[str, ...]
    inits: tuple[LayerInit, ...]
    seed: int
    batch: int = 256
    norm: Norm = "none"
    dtype: str = "float32"
    negative_slope: float = 0.01
    bins: int = 32

    @property
    def depth(self) -> int:
        return len(self.widths) - 1

    @property
    def weight_elements(self) -> int:
        return sum(a * b for a, b in zip(self.widths, self.widths[1:], strict=False))

    @property
    def work(self) -> int:
        """Multiply-adds of the forward pass (the backward pass costs twice as many)."""
        return self.batch * self.weight_elements

    def activation(self, layer: int) -> Activation:
        return ACTIVATIONS[self.activations[layer if len(self.activations) > 1 else 0]]

    def activation_name(self, layer: int) -> str:
        return self.activations[layer if len(self.activations) > 1 else 0]

    def init(self, layer: int) -> LayerInit:
        return self.inits[layer if len(self.inits) > 1 else 0]


def weight_request(spec: DiagnoseSpec, layer: int) -> TensorRequest:
    """The /init request whose tensor is layer `layer`'s weight (0-based): [out, in] in the torch layout, [in, out]
    in the keras one."""
    init = spec.init(layer)
    n_in, n_out = spec.widths[layer], spec.widths[layer + 1]
    layout = init.layout or get_scheme(init.scheme).default_layout
    return TensorRequest(
        shape=(n_in, n_out) if layout == "keras" else (n_out, n_in),
        scheme=init.scheme,
        seed=spec.seed,
        params=init.params,
        dtype=spec.dtype,
        layout=init.layout,
        name=f"layers.{layer}.weight",
    )


def _normal(spec: DiagnoseSpec, name: str, width: int) -> F64:
    request = TensorRequest(shape=(spec.batch, width), scheme="normal", seed=spec.seed, dtype="float64", name=name)
    return make_plan(request).tensor()


def check(spec: DiagnoseSpec) -> list[Plan]:
    """The weights' plans, after checking what the engine must (InitError naming the field and the rule)."""
    if not 1 <= spec.depth <= MAX_LAYERS:
        raise InitError("widths", f"widths give {spec.depth} layers; between 1 and {MAX_LAYERS} are supported")
    for count, what in ((len(spec.activations), "activation"), (len(spec.inits), "init")):
        if count not in (1, spec.depth):
            raise InitError(
                what, f"{count} values of {what} for {spec.depth} layers: give one for all, or one per layer"
            )
    for activation in spec.activations:
        if activation not in ACTIVATIONS:
            raise InitError("activation", f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
    if spec.norm not in NORMS:
        raise InitError("norm", f"unknown norm {spec.norm!r}; known: {', '.join(NORMS)}")
    if spec.norm == "batch" and spec.batch < 2:
        raise InitError("batch", "batch normalisation needs a batch of at least 2")
    plans = []
    for layer in range(spec.depth):
        try:
            plans.append(make_plan(weight_request(spec, layer)))
        except InitError as error:
            where = f"init.{layer}" if len(spec.inits) > 1 else "init"
            field = "scheme" if error.field in ("shape", "scheme") else error.field
            raise InitError(
                f"{where}.{field}", f"layer {layer} ({spec.widths[layer]} -> {spec.widths[layer + 1]}): {error.message}"
            ) from None
    return plans


def working_bytes(spec: DiagnoseSpec, plans: Sequence[Plan]) -> int:
    """Memory `diagnose` holds at once, an upper bound (tests/engine/test_diagnose.py measures it): every weight in
    float64 with the largest one's generation, the activations kept for the backward pass (inputs and outputs of
    every activation), and the backward pass's temporaries (a few batch x width arrays and a weight gradient)."""
    widest = max(spec.widths)
    largest = max(plan.numel for plan in plans)
    generation = max(plan.working_bytes(plan.numel) + plan.nbytes for plan in plans)
    kept = spec.weight_elements + spec.batch * (spec.widths[0] + 2 * sum(spec.widths[1:]))
    temporaries = largest + 8 * spec.batch * widest
    return 8 * (kept + temporaries) + generation


def _moments(a: F64) -> tuple[float, float]:
    mean = float(a.mean())
    return mean, float(np.square(a - mean).mean())


def _gauss(q: float, f: Callable[[F64], F64]) -> float:
    """E[f(h)] for h ~ N(0, q)."""
    return float(np.dot(f(math.sqrt(q) * _Z), _PHI))


def _histogram(a: F64, bins: int) -> dict[str, list[float] | list[int]]:
    low, high = float(a.min()), float(a.max())
    if high <= low:
        high = low + 1.0 if low == 0 else low + abs(low)
    counts, edges = np.histogram(a, bins=bins, range=(low, high))
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def _saturation(a: F64, bounds: tuple[float, float] | None) -> float | None:
    if bounds is None:
        return None
    low, high = bounds
    margin = (1.0 - SATURATION) * (high - low) / 2
    return float(np.count_nonzero((a <= low + margin) | (a >= high - margin)) / a.size)


def _normalise(h: F64, norm: Norm) -> tuple[F64, F64 | None]:
    """h normalised over the batch (batch) or the features (layer), and the 1/std it was divided by."""
    if norm == "none":
        return h, None
    axis = 0 if norm == "batch" else 1
    centred = h - h.mean(axis=axis, keepdims=True)
    inverse = 1.0 / np.sqrt(np.square(centred).mean(axis=axis, keepdims=True) + NORM_EPS)
    centred *= inverse
    return centred, inverse


def _normalise_backward(grad: F64, normalised: F64, inverse: F64, norm: Norm) -> F64:
    axis = 0 if norm == "batch" else 1
    mean_grad = grad.mean(axis=axis, keepdims=True)
    mean_projection = (grad * normalised).mean(axis=axis, keepdims=True)
    return inverse * (grad - mean_grad - normalised * mean_projection)


def _theory(spec: DiagnoseSpec, plans: Sequence[Plan]) -> list[dict[str, float | None]]:
    """The mean-field predictions per layer (see the module docstring); None where they do not hold."""
    slope = spec.negative_slope
    rows: list[dict[str, float | None]] = []
    derivative_squares: list[float | None] = []
    input_seconds: list[float | None] = []
    second: float | None = 1.0  # E[x_0^2] of N(0, 1) inputs
    for layer, plan in enumerate(plans):
        moments = plan.distribution.moments()
        input_seconds.append(second)
        q: float | None = None
        if spec.norm != "none":
            q = 1.0
        elif second is not None and moments.mean == 0.0:
            q = spec.widths[layer] * moments.variance * second
        row: dict[str, float | None] = dict.fromkeys(THEORY_FIELDS)
        row["preactivation_variance"] = q
        second = derivative_square = None
        if q is not None:
            act = spec.activation(layer)
            mean = _gauss(q, lambda h, act=act: act.forward(h, slope))
            second = _gauss(q, lambda h, act=act: np.square(act.forward(h, slope)))
            derivative_square = _gauss(q, lambda h, act=act: np.square(act.derivative(h, act.forward(h, slope), slope)))
            row.update(activation_mean=mean, activation_variance=max(second - mean * mean, 0.0))
        derivative_squares.append(derivative_square)
        rows.append(row)
    if spec.norm == "none" and None not in derivative_squares:
        grad = 1.0  # the output gradients' variance
        for layer in reversed(range(spec.depth)):
            dh = derivative_squares[layer] * grad  # type: ignore[operator]
            rows[layer]["gradient_variance"] = dh
            rows[layer]["weight_gradient_variance"] = dh * input_seconds[layer] / spec.batch  # type: ignore[operator]
            grad = spec.widths[layer + 1] * plans[layer].distribution.moments().variance * dh
    return rows


def diagnose(spec: DiagnoseSpec, plans: Sequence[Plan] | None = None) -> dict[str, Any]:
    """Forward and backward through the stack; per layer, the measured statistics and the theory's."""
    plans = check(spec) if plans is None else plans
    token = cancel.current()
    slope = spec.negative_slope
    weights: list[F64] = []
    for plan in plans:
        tensor = plan.tensor().astype(np.float64)
        weights.append(tensor.T if plan.layout == "keras" else tensor)  # every weight as [out, in]
        if token is not None:
            token.check()
    x = _normal(spec, INPUT_NAME, spec.widths[0])
    inputs: list[F64] = []
    kept: list[tuple[F64, F64, F64 | None]] = []  # per layer: the activation's input h and output a, the norm's 1/std
    layers: list[dict[str, Any]] = []
    for layer, weight in enumerate(weights):
        act = spec.activation(layer)
        inputs.append(x)
        linear = x @ weight.T
        before_norm = _moments(linear)
        h, inverse = _normalise(linear, spec.norm)
        del linear
        pre_mean, pre_var = _moments(h)
        x = act.forward(h, slope)
        mean, variance = _moments(x)
        layers.append(
            {
                "layer": layer,
                "width": spec.widths[layer + 1],
                "activation": spec.activation_name(layer),
                "linear": {"mean": before_norm[0], "variance": before_norm[1]},
                "preactivation": {"mean": pre_mean, "variance": pre_var},
                "output": {
                    "mean": mean,
                    "variance": variance,
                    "saturation": _saturation(x, act.bounds),
                    "histogram": _histogram(x, spec.bins),
                },
            }
        )
        kept.append((h, x, inverse))
        if token is not None:
            token.check()
    grad = _normal(spec, OUTPUT_GRADIENT_NAME, spec.widths[-1])
    for layer in reversed(range(spec.depth)):
        h, a, inverse = kept.pop()
        act = spec.activation(layer)
        grad = grad * act.derivative(h, a, slope)
        if inverse is not None:
            grad = _normalise_backward(grad, h, inverse, spec.norm)
        del h, a
        weight_grad = grad.T @ inputs.pop() / spec.batch
        layers[layer]["gradient"] = {
            "variance": _moments(grad)[1],
            "weight_variance": _moments(weight_grad)[1],
        }
        del weight_grad
        grad = grad @ weights[layer]
        if token is not None:
            token.check()
    theory = _theory(spec, plans)
    for layer, plan in enumerate(plans):
        moments = plan.distribution.moments()
        layers[layer]["weight"] = {
            "name": plan.request.name,
            "shape": list(plan.shape),
            "layout": plan.layout,
            "scheme": plan.scheme.name,
            "params": plan.params,
            "fan_in": plan.shape_fans.known()[0],
            "fan_out": plan.shape_fans.known()[1],
            "gain": plan.gain,
            "mean": moments.mean,
            "variance": moments.variance,
        }
        layers[layer]["theory"] = theory[layer]
    return {
        "input": {"batch": spec.batch, "width": spec.widths[0], "distribution": "N(0, 1)", "name": INPUT_NAME},
        "output_gradient": {"distribution": "N(0, 1)", "name": OUTPUT_GRADIENT_NAME},
        "layers": layers,
    }
