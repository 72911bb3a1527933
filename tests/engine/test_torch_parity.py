"""The proof: recipes expand to state dicts PyTorch loads with strict=True, distributed as PyTorch's own init.

For each architecture the equivalent torch module is built, our file (safetensors, as the API returns it) is
loaded into it with `load_state_dict(strict=True)`, and every tensor is compared with torch's own fresh init:
constants exactly, random ones by a two-sample Kolmogorov-Smirnov test between ours (pooled over seeds) and
torch's (pooled over fresh instances), each side at least MIN_SAMPLES values. Seeds are fixed on both sides, so
the outcome is deterministic; the negative control shows the test does reject a wrong fan.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
safetensors_torch = pytest.importorskip("safetensors.torch")
stats = pytest.importorskip("scipy.stats")

from service.api.delivery import buffered_body, many  # noqa: E402
from service.engine.bundle import ModelRequest, TensorSpec, plan_model, plan_tensor  # noqa: E402
from service.engine.recipes.expand import expand  # noqa: E402
from service.formats import FORMATS  # noqa: E402
from tests.torch_architectures import basic_block, issue16_layers, language_model  # noqa: E402

MIN_SAMPLES = 4000
P_FLOOR = 1e-4


BASIC_BLOCK, BasicBlock = basic_block(32, 64)
LANGUAGE_MODEL, LanguageModel = language_model(500, 32, 64)


class Mixed(nn.Sequential):
    """The other layer types: grouped, depthwise and transposed convolutions, norms, GRU, attention, PReLU.
    Every random tensor has >= 64 elements, so few fresh torch instances make a sample."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv1d(8, 64, 5, groups=4),
            nn.Conv3d(2, 64, (1, 2, 3)),
            nn.Conv2d(64, 64, 3, groups=64),
            nn.ConvTranspose2d(64, 96, 3, stride=2, groups=4),
            nn.GroupNorm(4, 96),
            nn.LayerNorm([96]),
            nn.GELU(),
            nn.GRU(96, 32, bidirectional=True),
            nn.RNN(8, 64),
            nn.PReLU(4),
            nn.TransformerDecoderLayer(64, 4, 128),
            nn.BatchNorm1d(8, affine=False),
        )


MIXED = [
    "conv1d(8, 64, 5, groups=4)",
    "conv3d(2, 64, (1, 2, 3))",
    "conv2d(64, 64, 3, groups=64)",
    "conv_transpose2d(64, 96, 3, stride=2, groups=4)",
    "groupnorm(4, 96)",
    "layernorm([96])",
    "gelu",
    "gru(96, 32, bidirectional=True)",
    "rnn(8, 64)",
    "prelu(4)",
    "transformer_decoder_layer(64, 4, 128)",
    "batchnorm1d(8, affine=False)",
]

ARCHITECTURES: dict[str, tuple[list, Callable[[], nn.Module]]] = {
    "resnet_basic_block": (BASIC_BLOCK, BasicBlock),
    "lstm_language_model": (LANGUAGE_MODEL, LanguageModel),
    "transformer_encoder_layer": (
        [{"type": "transformer_encoder_layer", "name": "", "args": [64, 4, 128]}],
        lambda: nn.TransformerEncoderLayer(64, 4, 128),
    ),
    "other_layer_types": (MIXED, Mixed),
    "issue16_layer_types": issue16_layers(64),
    "transformer_stacks": (
        [
            "encoder: transformer_encoder('transformer_encoder_layer(64, 4, 128)', 2, 'layernorm(64)')",
            {"type": "transformer", "name": "transformer", "args": [64, 4, 2, 2, 128]},
        ],
        lambda: nn.ModuleDict(
            {
                "encoder": nn.TransformerEncoder(
                    nn.TransformerEncoderLayer(64, 4, 128), 2, nn.LayerNorm(64), enable_nested_tensor=False
                ),
                "transformer": nn.Transformer(64, 4, 2, 2, 128),
            }
        ),
    ),
}


@functools.cache
def _torch_state(factory: Callable[[], nn.Module], seed: int) -> dict[str, np.ndarray]:
    torch.manual_seed(seed)
    return {k: v.detach().numpy().copy() for k, v in factory().state_dict().items()}


def _pooled_torch(factory: Callable[[], nn.Module], name: str, numel: int) -> np.ndarray:
    reps = math.ceil(MIN_SAMPLES / numel)
    return np.concatenate([_torch_state(factory, 1000 + seed)[name].ravel() for seed in range(reps)])


def _pooled_ours(name: str, spec: TensorSpec) -> np.ndarray:
    reps = math.ceil(MIN_SAMPLES / math.prod(spec.shape))
    return np.concatenate([plan_tensor(seed, name, spec).tensor().ravel() for seed in range(reps)])


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_state_dict_loads_strictly_and_matches_torchs_own_init(architecture):
    layers, factory = ARCHITECTURES[architecture]
    specs = expand(layers, "torch")
    module = factory()
    assert list(specs) == list(module.state_dict())

    # The file as the API returns it, loaded as a client would.
    bundle = many(plan_model(ModelRequest(7, specs)), {"seed": 7, "rng": "philox-v1", "service": "test"})
    loaded = safetensors_torch.load(bytes(buffered_body(bundle, FORMATS["safetensors"])))
    module.load_state_dict(loaded, strict=True)
    ours = {k: v.detach().numpy() for k, v in module.state_dict().items()}

    first, second = _torch_state(factory, 1), _torch_state(factory, 2)
    for name, spec in specs.items():
        reference = first[name]
        assert ours[name].shape == reference.shape and ours[name].dtype == reference.dtype, name
        if np.array_equal(first[name], second[name]):  # torch's init is deterministic here: ours must be equal
            assert np.array_equal(ours[name], reference), name
            continue
        ks = stats.ks_2samp(_pooled_ours(name, spec), _pooled_torch(factory, name, reference.size))
        assert ks.pvalue > P_FLOOR, f"{name}: {spec.scheme} vs torch, KS p = {ks.pvalue:.2e}"


def test_padding_row_is_zero_like_torchs():
    specs = expand(LANGUAGE_MODEL, "torch")
    weight = plan_tensor(3, "embed.weight", specs["embed.weight"]).tensor()
    assert np.all(weight[0] == 0) and np.all(weight[1:] != 0)


def test_negative_control_real_fans_differ_from_torchs_transposed_default():
    """A rule with the layer's real fans is a different distribution from torch's default for a grouped
    transposed convolution (torch reads fan_in off [in, out/groups, k, k]); `fans: framework` is torch's."""
    layer = ["conv_transpose2d(12, 24, 3, groups=3)"]

    def factory() -> nn.Module:
        return nn.Sequential(nn.ConvTranspose2d(12, 24, 3, groups=3))

    theirs = _pooled_torch(factory, "0.weight", 12 * 8 * 9)
    rule = {"param": "weight", "scheme": "kaiming_uniform", "a": math.sqrt(5)}
    real = expand(layer, rules=[rule])["0.weight"]
    framework = expand(layer, rules=[{**rule, "fans": "framework"}])["0.weight"]
    assert (real.fan_in, real.fan_out) == (4 * 9, 8 * 9)
    assert stats.ks_2samp(_pooled_ours("0.weight", real), theirs).pvalue < 1e-12
    assert stats.ks_2samp(_pooled_ours("0.weight", framework), theirs).pvalue > P_FLOOR
