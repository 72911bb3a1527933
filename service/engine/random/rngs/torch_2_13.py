"""torch-2.13: PyTorch 2.13's CPU default generator after `torch.manual_seed(seed)`, one stream per request
consumed tensor after tensor as torch.nn.init consumes it (docs/torch-rng.md).

Each distribution is drawn by the torch operation that torch.nn.init uses for it (`torch213.generator`):
uniform -> uniform_, normal -> normal_, truncated normal -> trunc_normal_ (2.13's algorithm), orthogonal ->
orthogonal_ (normal_ on the flattened matrix, then QR), sparse -> sparse_ (normal_, then randperm per column),
constant / eye / dirac -> no draw. The torch family's xavier_*/kaiming_*/torch_default compute their bound or std
in Python double as torch/nn/init.py writes it (`build`), so that the doubles handed to uniform_/normal_ are
torch's own.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service.engine.dtypes import DTYPES
from service.engine.errors import InitError
from service.engine.random.rng import Draw, Rng
from service.engine.random.torch213 import kernels
from service.engine.random.torch213.generator import HALVES, Generator
from service.engine.schemes import distributions as d
from service.engine.schemes.gain import calculate_gain
from service.engine.schemes.registry import Built, Context, Scheme, check_xavier_fans

TORCH_VERSION = "2.13.0"
CPU_PATH = "ATen CPU kernels, AVX2 build (ATEN_CPU_CAPABILITY=avx2; avx512 gives the same bits)"
_UNIFORM_STD_TO_BOUND = math.sqrt(3.0)


def _torch_fans(c: Context) -> tuple[int, int]:
    return c.fans.fan_in, c.fans.fan_out


def _xavier(distribution: str) -> Any:
    def build(c: Context) -> Built:
        check_xavier_fans(c)
        fan_in, fan_out = _torch_fans(c)
        gain = c["gain"]
        std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
        used = {"fan_in": fan_in, "fan_out": fan_out}
        if distribution == "uniform":
            a = _UNIFORM_STD_TO_BOUND * std
            return Built(d.Uniform(-a, a), gain, used)
        return Built(d.Normal(0.0, std), gain, used)

    return build


def _kaiming(distribution: str, fixed: dict[str, Any] | None = None) -> Any:
    def build(c: Context) -> Built:
        params = fixed or c.params
        mode = params["mode"].lower()
        if mode not in ("fan_in", "fan_out"):
            raise InitError("mode", f"Mode {mode} not supported, please use one of ['fan_in', 'fan_out']")
        fan = c.fans.fan_in if mode == "fan_in" else c.fans.fan_out
        gain = calculate_gain(params["nonlinearity"], params["a"], param_field="a")
        std = gain / math.sqrt(fan)
        used = {mode: fan}
        if distribution == "uniform":
            bound = _UNIFORM_STD_TO_BOUND * std
            return Built(d.Uniform(-bound, bound), gain, used)
        return Built(d.Normal(0.0, std), gain, used)

    return build


# nn.Linear / nn.Conv*d.reset_parameters: kaiming_uniform_(weight, a=math.sqrt(5)).
_TORCH_DEFAULT = {"a": math.sqrt(5), "mode": "fan_in", "nonlinearity": "leaky_relu"}


def _torch_default(c: Context) -> Built:
    built = _kaiming("uniform", _TORCH_DEFAULT)(c)
    if len(c.shape) >= 2:
        return built
    # A bias (torch reads no fans off fewer than 2 dims, so only a bias given its weight's fan_in is 1-d):
    # reset_parameters draws it U(+-1 / math.sqrt(fan_in)), which rounds otherwise than kaiming's bound.
    bound = 1 / math.sqrt(c.fans.fan_in)
    return dataclasses.replace(built, distribution=d.Uniform(-bound, bound))


# The torch schemes whose parameters torch/nn/init.py computes with other roundings than the shared
# variance_scaling mechanism (sqrt(3) * gain / sqrt(fan) against sqrt(3 * gain^2 / fan)).
TORCH_BUILDS = {
    "xavier_uniform": _xavier("uniform"),
    "xavier_normal": _xavier("normal"),
    "kaiming_uniform": _kaiming("uniform"),
    "kaiming_normal": _kaiming("normal"),
    "msra": _kaiming("normal"),
    "torch_default": _torch_default,
}


class _RequestStream:
    """The request's one generator, advanced draw after draw. A draw's values need every earlier draw, so the
    state after each draw computed is kept (2.5 KiB): a tensor sampled again, or after a later one, starts from
    the nearest state before it instead of replaying the request from the seed."""

    def __init__(self, seed: int, draws: Sequence[Draw]) -> None:
        self.draws = list(draws)
        self.states: dict[int, Generator] = {0: Generator.seeded(seed)}
        self.lock = threading.Lock()
        self.draws_computed = 0  # transforms run, for tests that count work

    def values(self, index: int) -> NDArray:
        with self.lock:
            start = max(i for i in self.states if i <= index)
            generator = self.states[start].copy()
            for earlier in range(start, index):
                _advance(generator, self.draws[earlier])
                self.states[earlier + 1] = generator.copy()
            self.draws_computed += 1
            values = _draw(generator, self.draws[index])
            self.states[index + 1] = generator
            return values


def _dtype(draw: Draw) -> np.dtype:
    return DTYPES[draw.dtype].numpy


def _draw(generator: Generator, draw: Draw) -> NDArray:
    """The draw's values in its dtype, flat row-major, as torch.nn.init leaves them."""
    dist, dtype, n = draw.distribution, _dtype(draw), math.prod(draw.shape)
    if isinstance(dist, d.Uniform):
        return generator.uniform_(n, dist.low, dist.high, dtype)
    if isinstance(dist, d.Normal):
        return generator.normal_(n, dist.mean, dist.std, dtype)
    if isinstance(dist, d.TruncatedNormal):
        return generator.trunc_normal_(n, dist.mean, dist.std, dist.a, dist.b, dtype)
    if isinstance(dist, d.Orthogonal):
        return _orthogonal(generator, dist, dtype)
    if isinstance(dist, d.Sparse):
        values = generator.normal_(n, 0.0, dist.std, dtype).reshape(dist.rows, dist.cols)
        zero_rows = generator.randperm_prefixes(dist.rows, dist.cols, dist.zeros_per_column)
        values[zero_rows, np.arange(dist.cols)[None, :]] = 0
        return values.reshape(-1)
    # constant, eye, dirac: no draw (fill_ casts double -> float -> half, as the engine rounds anyway)
    return dist.sample(None, draw.shape, 0, n)  # type: ignore[arg-type]


def _orthogonal(generator: Generator, dist: d.Orthogonal, dtype: np.dtype) -> NDArray:
    """orthogonal_: normal_(0, 1) on the (rows, cols) matrix, transposed when wide, Q of its QR times the signs
    of diag(R), transposed back, times gain (in the dtype). torch's QR is LAPACK in the tensor's dtype; this one
    is NumPy's in float64 of the same normals: equal to torch's within 1e-6, not bit for bit."""
    flattened = generator.normal_(dist.rows * dist.cols, 0.0, 1.0, dtype).reshape(dist.rows, dist.cols)
    matrix = flattened.astype(np.float64)
    if dist.rows < dist.cols:
        matrix = matrix.T
    q, r = np.linalg.qr(matrix)
    q *= np.sign(np.diag(r))
    if dist.rows < dist.cols:
        q = q.T
    # arrange: JAX's column_axis and delta_orthogonal place the matrix; torch's own layout keeps it as it is.
    return dist.arrange(q.astype(dtype) * dtype.type(dist.gain)).astype(dtype, copy=False)


def _advance(generator: Generator, draw: Draw) -> None:
    """Consume a draw whose values are not needed: skip its words where their count is known up front."""
    dist, dtype, n = draw.distribution, _dtype(draw), math.prod(draw.shape)
    if isinstance(dist, d.Uniform):
        generator.skip_uniform(n, dtype)
    elif isinstance(dist, d.Normal | d.Orthogonal):
        generator.skip_normal(n, dtype)
    elif isinstance(dist, d.Sparse):
        generator.skip_normal(n, dtype)
        generator.skip_randperms(dist.rows, dist.cols)
    elif isinstance(dist, d.TruncatedNormal):  # its redraws depend on the values
        _draw(generator, draw)


def _check(draw: Draw) -> None:
    if isinstance(draw.distribution, d.Orthogonal) and _dtype(draw) in HALVES:
        raise InitError(
            "dtype",
            f"orthogonal under rng torch-2.13 supports float32 and float64: torch's CPU QR (torch.linalg.qr) is not "
            f"implemented for {draw.dtype}",
        )


class Torch213(Rng):
    id = "torch-2.13"
    random_access = False
    keyed_by = "request"
    contract = "docs/torch-rng.md"

    def build(self, scheme: Scheme, context: Context) -> Built:
        rule = TORCH_BUILDS.get(scheme.name.removeprefix("torch.")) if scheme.family == "torch" else None
        if 0 in context.shape:  # torch draws nothing for an empty tensor (kaiming returns before reading fans)
            rule = None
        return rule(context) if rule is not None else scheme.build(context)

    def streams(self, seed: int, draws: Sequence[Draw]) -> list[tuple[_RequestStream, int]]:
        for draw in draws:
            _check(draw)
        shared = _RequestStream(seed, draws)
        return [(shared, index) for index in range(len(draws))]

    def sample(
        self,
        distribution: d.Distribution,
        stream: tuple[_RequestStream, int],
        shape: tuple[int, ...],
        dtype: np.dtype,
    ) -> NDArray:
        shared, index = stream
        return shared.values(index)

    def kernels(self) -> list[tuple[str, Any, tuple[Any, ...]]]:
        return kernels.serving_signatures()

    def metadata(self, distribution: d.Distribution) -> dict[str, Any]:
        exact = "within 1e-6 (QR)" if isinstance(distribution, d.Orthogonal) else "bit-identical"
        return {
            "rng_reproduces": f"torch {TORCH_VERSION} torch.manual_seed(seed) + torch.nn.init, {CPU_PATH}",
            "rng_exact": exact,
        }

    def generate(self, *args: Any) -> NDArray:
        raise NotImplementedError("torch-2.13 is sequential: the plan samples whole tensors")

    generate_runs = generate


RNG = Torch213()
