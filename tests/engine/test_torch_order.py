"""The proof that a torch recipe is drawn in PyTorch's own order, under an rng keyed by request (torch-2.13).

For each architecture, torch builds the module after `torch.manual_seed` while every write into a tensor is logged
(`Tensor.uniform_`, `normal_`, `fill_`, `zero_`: what torch.nn.init and the modules' reset_parameters end in),
with whether it advanced the generator; rules are applied as `for name, t in model.state_dict().items(): init(t)`.
Our side is the list of draws `plan_model` hands to a request-keyed rng. The two must agree draw for draw: the
tensor written, its shape and dtype, the distribution and its parameters, and whether a later write overwrites it
(a discarded draw). Replaying torch's logged draws on fresh tensors must leave the generator where building the
module did, so no draw went unlogged. Then the end to end proof: the file a `"rng": "torch-2.13"` model request
returns equals, tensor for tensor (`torch.equal`), the state dict torch builds with the same seed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")  # the reference path, before torch is first imported
torch = pytest.importorskip("torch")
nn = torch.nn
safetensors_torch = pytest.importorskip("safetensors.torch")

from service.engine.bundle import INTEGER_DTYPE, Copy, ModelRequest, Overwritten, plan_model  # noqa: E402
from service.engine.random import registry  # noqa: E402
from service.engine.random.rng import Draw  # noqa: E402
from service.engine.random.rngs.torch_2_13 import Torch213  # noqa: E402
from service.engine.recipes.expand import expand_ordered  # noqa: E402
from service.engine.schemes.distributions import Constant, Normal, Uniform  # noqa: E402
from tests.torch_architectures import basic_block, issue16_layers, language_model  # noqa: E402

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Write:
    """One write into a tensor of the model, in either world."""

    name: str
    op: str  # uniform_, normal_ or fill_
    args: tuple[float, ...]
    shape: tuple[int, ...]
    dtype: str
    discarded: bool

    @property
    def empty(self) -> bool:
        return 0 in self.shape

    @property
    def draws(self) -> bool:
        """Moves the generator: an empty tensor's write does not (torch's kaiming_uniform_ does not even call
        uniform_ on one; its uniform_ draws nothing), so neither world's empty tensors are compared."""
        return self.op != "fill_" and not self.empty

    def matches(self, other: Write) -> bool:
        return self == other  # the parameters too, to the last bit: the doubles torch hands uniform_/normal_


# ---- torch's side --------------------------------------------------------------------------------------------


class TorchLog:
    """Every uniform_/normal_/fill_/zero_ while active: the tensor, its arguments, whether the generator moved."""

    OPS = ("uniform_", "normal_", "fill_", "zero_")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[Any, str, tuple[float, ...], bool]] = []
        for op in self.OPS:
            monkeypatch.setattr(torch.Tensor, op, self._logged(getattr(torch.Tensor, op), op))
        # TransformerEncoder/Decoder deep-copy a prototype layer that is not in the state dict: its draws are
        # logged as draws into the first copy (the service names them so).
        self.prototypes: list[tuple[Any, Any]] = []
        clones = nn.modules.transformer._get_clones

        def logged_clones(module: Any, n: int) -> Any:
            copies = clones(module, n)
            self.prototypes.append((module, copies[0]))
            return copies

        monkeypatch.setattr(nn.modules.transformer, "_get_clones", logged_clones)

    def _logged(self, method: Callable[..., Any], op: str) -> Callable[..., Any]:
        def logged(tensor: Any, *args: Any, **kwargs: Any) -> Any:
            before = torch.get_rng_state()
            result = method(tensor, *args, **kwargs)
            moved = not torch.equal(before, torch.get_rng_state())
            # The tensor itself stays referenced: no storage is freed and reused under another tensor's address.
            values = tuple(float(a) for a in args) if op != "zero_" else (0.0,)
            self.calls.append((tensor, "fill_" if op == "zero_" else op, values, moved))
            return result

        return logged

    def writes(self, module: Any) -> list[Write]:
        """The logged writes into the module's state-dict tensors (whole ones; a row fill does not count)."""
        owners = {t.untyped_storage().data_ptr(): (n, t) for n, t in module.state_dict(keep_vars=True).items()}
        prefixes = {id(m): f"{n}." if n else "" for n, m in module.named_modules()}
        for prototype, first in self.prototypes:
            state = first.state_dict(keep_vars=True)
            for n, t in prototype.state_dict(keep_vars=True).items():
                owners[t.untyped_storage().data_ptr()] = (prefixes[id(first)] + n, state[n])
        # Empty tensors have no storage to tell them apart by: they are the parameters themselves.
        empty = {id(t): (n, t) for n, t in module.state_dict(keep_vars=True).items() if t.numel() == 0}
        found: list[tuple[str, str, tuple[float, ...], Any]] = []
        for tensor, op, args, moved in self.calls:
            if tensor.numel() == 0:
                name, owner = empty.get(id(tensor), (None, None))
            else:
                name, owner = owners.get(tensor.untyped_storage().data_ptr(), (None, None))
            whole = owner is not None and tensor.numel() == owner.numel() and tensor.storage_offset() == 0
            assert whole or not moved, f"a draw into part of a tensor or into none of the model: {op}{args}"
            if whole and owner.dtype != torch.int64:
                # Drawing no element moves no generator.
                assert moved == (op != "fill_" and owner.numel() > 0), f"{name}: {op} moved the generator: {moved}"
                found.append((name, op, args, owner))
        last = {name: index for index, (name, *_) in enumerate(found)}
        return [
            Write(name, op, args, tuple(owner.shape), str(owner.dtype).removeprefix("torch."), index != last[name])
            for index, (name, op, args, owner) in enumerate(found)
        ]


TorchRule = Callable[[str, Any], None]  # (state-dict name, tensor): init it if a rule matches


def torch_writes(factory: Callable[[], Any], rule: TorchRule | None, dtype: str) -> list[Write]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(DTYPES[dtype])
    try:
        with pytest.MonkeyPatch.context() as patch:
            log = TorchLog(patch)
            torch.manual_seed(0)
            module = factory()
            if rule:
                with torch.no_grad():
                    for name, tensor in module.state_dict(keep_vars=True).items():
                        rule(name, tensor)
            built = torch.get_rng_state()
        writes = log.writes(module)
        # Replay only the logged draws: the generator must end where building the module left it.
        torch.manual_seed(0)
        for write in writes:
            if write.draws:
                getattr(torch.empty(write.shape, dtype=DTYPES[write.dtype]), write.op)(*write.args)
        assert torch.equal(torch.get_rng_state(), built), "torch drew something the log did not see"
        return writes
    finally:
        torch.set_default_dtype(previous)


# ---- our side ------------------------------------------------------------------------------------------------


class Recorder(Torch213):
    """torch-2.13's parameters (its `build`: torch's own doubles), but only recording the draws it is asked for."""

    id = "order-test"

    def __init__(self) -> None:
        self.draws: list[Draw] = []

    def streams(self, seed: int, draws: Sequence[Draw]) -> list[Any]:
        self.draws = list(draws)
        return [None] * len(draws)

    def sample(self, *args: Any) -> Any:
        raise AssertionError("nothing is generated here")

    generate = generate_runs = sample


@pytest.fixture
def recorder(monkeypatch) -> Recorder:
    entry = Recorder()
    monkeypatch.setitem(registry.REGISTRY, entry.id, entry)
    return entry


def our_writes(recorder: Recorder, layers: list[Any], rules: list[dict[str, Any]], dtype: str) -> list[Write]:
    specs, order = expand_ordered(layers, "torch", rules, dtype)
    plan_model(ModelRequest(0, specs, recorder.id, order))
    steps = [
        s
        for s in order or specs
        if isinstance(s, Overwritten) or (not isinstance(s, Copy) and specs[s].dtype != INTEGER_DTYPE)
    ]
    assert len(steps) == len(recorder.draws)
    writes = []
    for step, draw in zip(steps, recorder.draws, strict=True):
        spec = step.spec if isinstance(step, Overwritten) else specs[step]
        assert (draw.name, draw.discarded) == ((step.name, True) if isinstance(step, Overwritten) else (step, False))
        dist = draw.distribution
        if isinstance(dist, Uniform):
            op, args = "uniform_", (dist.low, dist.high)
        elif isinstance(dist, Normal):
            op, args = "normal_", (dist.mean, dist.std)
        else:
            assert isinstance(dist, Constant), f"{draw.name}: no torch write for {dist.kind} here"
            op, args = "fill_", (dist.value,)
        writes.append(Write(draw.name, op, args, draw.shape, spec.dtype, draw.discarded))
    return writes


def assert_same_order(ours: list[Write], theirs: list[Write]) -> None:
    """The draws (the writes that consume the generator) agree one for one, in order; so do the final values."""
    our_draws, their_draws = [w for w in ours if w.draws], [w for w in theirs if w.draws]
    for index, (our, their) in enumerate(zip(our_draws, their_draws, strict=False)):
        assert our.matches(their), f"draw {index}: ours {our}, torch's {their}"
    assert len(our_draws) == len(their_draws), [w.name for w in our_draws[len(their_draws) :] or their_draws]
    our_final = {w.name: w for w in ours if not w.discarded and not w.empty}
    their_final = {w.name: w for w in theirs if not w.discarded and not w.empty}
    assert our_final.keys() == their_final.keys()
    for name, write in their_final.items():
        assert our_final[name].matches(write), f"{name}: ours {our_final[name]}, torch's {write}"


# ---- the architectures ---------------------------------------------------------------------------------------


BASIC_BLOCK, BasicBlock = basic_block(16, 32)
LANGUAGE_MODEL, LanguageModel = language_model(50, 8, 12)

MIXED = [
    "conv1d(8, 16, 5, groups=4)",
    "conv3d(2, 4, (1, 2, 3))",
    "conv2d(16, 16, 3, groups=16)",
    "conv_transpose2d(16, 24, 3, stride=2, groups=4)",
    "conv_transpose1d(4, 6, 2, bias=False)",
    "conv_transpose3d(3, 2, (2, 1, 2))",
    "groupnorm(4, 24)",
    "layernorm([24])",
    "gelu",
    "gru(24, 8, bidirectional=True)",
    "rnn(8, 6, 2, nonlinearity='relu', bias=False)",
    "prelu(4)",
    "transformer_decoder_layer(16, 4, 32)",
    "batchnorm1d(8, affine=False)",
    "embedding(7, 3, padding_idx=-2)",
    "gru(5, 4, 3, bias=False, bidirectional=True)",
]


def mixed() -> Any:
    return nn.Sequential(
        nn.Conv1d(8, 16, 5, groups=4),
        nn.Conv3d(2, 4, (1, 2, 3)),
        nn.Conv2d(16, 16, 3, groups=16),
        nn.ConvTranspose2d(16, 24, 3, stride=2, groups=4),
        nn.ConvTranspose1d(4, 6, 2, bias=False),
        nn.ConvTranspose3d(3, 2, (2, 1, 2)),
        nn.GroupNorm(4, 24),
        nn.LayerNorm([24]),
        nn.GELU(),
        nn.GRU(24, 8, bidirectional=True),
        nn.RNN(8, 6, 2, nonlinearity="relu", bias=False),
        nn.PReLU(4),
        nn.TransformerDecoderLayer(16, 4, 32),
        nn.BatchNorm1d(8, affine=False),
        nn.Embedding(7, 3, padding_idx=-2),
        nn.GRU(5, 4, 3, bias=False, bidirectional=True),
    )


ARCHITECTURES: dict[str, tuple[list[Any], Callable[[], Any]]] = {
    "resnet_basic_block": (BASIC_BLOCK, BasicBlock),
    "lstm_language_model": (LANGUAGE_MODEL, LanguageModel),
    "transformer_encoder_layer": (
        [{"type": "transformer_encoder_layer", "name": "", "args": [16, 4, 32]}],
        lambda: nn.TransformerEncoderLayer(16, 4, 32),
    ),
    "transformer_decoder_layer_no_bias": (
        ["transformer_decoder_layer(8, 2, 12, bias=False)"],
        lambda: nn.Sequential(nn.TransformerDecoderLayer(8, 2, 12, bias=False)),
    ),
    "attention": (["multihead_attention(12, 3)"], lambda: nn.Sequential(nn.MultiheadAttention(12, 3))),
    "attention_no_bias": (
        ["multihead_attention(12, 3, bias=False)"],
        lambda: nn.Sequential(nn.MultiheadAttention(12, 3, bias=False)),
    ),
    "conv_net": (
        ["conv2d(3, 8, 3)", "relu", "conv2d(8, 8, 3, bias=False)", "maxpool2d(2)", "flatten", "linear(32, 10)"],
        lambda: nn.Sequential(
            nn.Conv2d(3, 8, 3),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, bias=False),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32, 10),
        ),
    ),
    "other_layer_types": (MIXED, mixed),
    "issue16_layer_types": issue16_layers(8),
    "transformer_encoder_stack": (
        ["transformer_encoder('transformer_encoder_layer(8, 2, 16)', 3, 'layernorm(8)')", "linear(8, 4)"],
        lambda: nn.Sequential(
            nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16), 3, nn.LayerNorm(8), enable_nested_tensor=False),
            nn.Linear(8, 4),
        ),
    ),
    "transformer_decoder_stack": (
        [{"type": "transformer_decoder", "name": "", "args": ["transformer_decoder_layer(8, 2, 12, bias=False)", 2]}],
        lambda: nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 12, bias=False), 2),
    ),
    "transformer": (
        [{"type": "transformer", "name": "", "args": [8, 2, 2, 3, 12]}],
        lambda: nn.Transformer(8, 2, 2, 3, 12),
    ),
}


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_default_draws_follow_torchs_construction(architecture, dtype, recorder):
    layers, factory = ARCHITECTURES[architecture]
    assert_same_order(our_writes(recorder, layers, [], dtype), torch_writes(factory, None, dtype))


def test_multihead_attention_draws_out_proj_first_and_overwrites_its_bias(recorder):
    writes = our_writes(recorder, ["multihead_attention(8, 2)"], [], "float32")
    assert [(w.name, w.op, w.discarded) for w in writes if w.draws] == [
        ("0.out_proj.weight", "uniform_", False),
        ("0.out_proj.bias", "uniform_", True),
        ("0.in_proj_weight", "uniform_", False),
    ]


# Rules, and how torch applies the same ones after construction (in the state dict's order).
RULE_CASES: dict[str, tuple[list[Any], Callable[[], Any], list[dict[str, Any]], TorchRule]] = {
    "resnet_fan_out": (
        BASIC_BLOCK,
        BasicBlock,
        [
            {"layer": "conv", "param": "weight", "scheme": "kaiming_normal", "mode": "fan_out", "nonlinearity": "relu"},
            {"layer": "norm", "param": "weight", "scheme": "uniform"},
        ],
        lambda name, t: (
            nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu")
            if t.dim() == 4
            else nn.init.uniform_(t)
            if name.endswith("weight")
            else None
        ),
    ),
    "language_model": (
        LANGUAGE_MODEL,
        LanguageModel,
        [
            {"layer": "embedding", "scheme": "normal", "std": 0.02},
            {"layer": "recurrent", "param": "weight_hh", "scheme": "xavier_uniform", "fans": "framework"},
            {"param": "bias", "scheme": "zeros"},
        ],
        lambda name, t: (
            nn.init.normal_(t, std=0.02)[0].zero_()  # the padding row stays 0 under a rule (docs/models.md)
            if name == "embed.weight"
            else nn.init.xavier_uniform_(t)
            if "weight_hh" in name
            else nn.init.zeros_(t)
            if "bias" in name
            else None
        ),
    ),
    "attention_biases": (
        [{"type": "transformer_encoder_layer", "name": "", "args": [16, 4, 32]}],
        lambda: nn.TransformerEncoderLayer(16, 4, 32),
        [
            {"layer": "attention", "param": "bias", "scheme": "uniform", "a": -0.1, "b": 0.1},
            {"layer": "linear", "param": "weight", "scheme": "xavier_normal", "fans": "framework"},
        ],
        lambda name, t: (
            nn.init.uniform_(t, -0.1, 0.1)
            if name in ("self_attn.in_proj_bias", "self_attn.out_proj.bias")
            else nn.init.xavier_normal_(t)
            if name.startswith("linear") and t.dim() == 2
            else None
        ),
    ),
    # A rule on the first copy only: the other copies keep the prototype's draw, which the rule overwrites in it.
    "stack_copies": (
        ["transformer_encoder('transformer_encoder_layer(8, 2, 16)', 3)"],
        lambda: nn.Sequential(
            nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16), 3, enable_nested_tensor=False)
        ),
        [
            {"layer": "linear", "param": "weight", "scheme": "xavier_normal", "fans": "framework"},
            {"layer": "0.layers.0", "param": "bias", "scheme": "uniform", "a": -0.1, "b": 0.1},
        ],
        lambda name, t: (
            nn.init.uniform_(t, -0.1, 0.1)
            if name.startswith("0.layers.0.") and "bias" in name
            else nn.init.xavier_normal_(t)
            if ".linear" in name and name.endswith("weight")
            else None
        ),
    ),
}


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", list(RULE_CASES))
def test_rules_draw_after_construction_in_state_dict_order(case, dtype, recorder):
    layers, factory, rules, torch_rule = RULE_CASES[case]
    theirs = torch_writes(factory, torch_rule, dtype)
    assert_same_order(our_writes(recorder, layers, rules, dtype), theirs)
    assert any(w.discarded for w in theirs)  # the defaults the rules replace were drawn, and are overwritten


# ---- end to end: the bits ------------------------------------------------------------------------------------

CASES = {
    **{name: (layers, factory, [], None) for name, (layers, factory) in ARCHITECTURES.items()},
    **{f"rules_{name}": case for name, case in RULE_CASES.items()},
}


def torch_state(factory: Callable[[], Any], rule: TorchRule | None, dtype: str, seed: int) -> dict[str, Any]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(DTYPES[dtype])
    try:
        torch.manual_seed(seed)
        module = factory()
        if rule:
            with torch.no_grad():
                for name, tensor in module.state_dict(keep_vars=True).items():
                    rule(name, tensor)
        return module.state_dict()
    finally:
        torch.set_default_dtype(previous)


@pytest.mark.parametrize("seed", [0, 2**32 + 5, 2**64 - 1])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", list(CASES))
def test_the_model_file_is_torchs_state_dict_bit_for_bit(case, dtype, seed, client):
    layers, factory, rules, torch_rule = CASES[case]
    body = {"rng": "torch-2.13", "seed": seed, "model": {"layers": layers, "rules": rules, "dtype": dtype}}
    response = client.post("/init", json=body)
    assert response.status_code == 200, response.text
    ours = safetensors_torch.load(response.content)
    theirs = torch_state(factory, torch_rule, dtype, seed)
    assert ours.keys() == theirs.keys()
    differ = [name for name, tensor in theirs.items() if not torch.equal(ours[name], tensor)]
    assert not differ, f"not bit-identical to torch: {differ}"


@pytest.mark.parametrize("fan_in", [3, 27, 784])
def test_a_1d_torch_default_is_a_bias_as_reset_parameters_draws_it(fan_in, client):
    """Bias bound 1 / math.sqrt(fan_in), not kaiming's sqrt(3) * gain / sqrt(fan_in): equal in real numbers, not
    always in doubles (fan_in 3 differs in the last bit, which float64 keeps)."""
    body = {"shape": [64], "scheme": "torch_default", "fan_in": fan_in, "dtype": "float64", "seed": 5}
    response = client.post("/init", json={**body, "rng": "torch-2.13"})
    torch.manual_seed(5)
    expected = torch.empty(64, dtype=torch.float64).uniform_(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
    assert torch.equal(safetensors_torch.load(response.content)["weight"], expected)
