"""init_module against the real server and real torch modules.

The proof of `rng="torch-2.13"`: the module filled by init_module equals, tensor for tensor (torch.equal on the
state dict), the same module constructed under torch.manual_seed(seed), for several architectures; and the order
the recipe lists the modules in (named_children, registration order) is the order torch constructed them in,
checked by logging every nn.Module construction. Then the default rng, rules, buffers, dtypes, tied and shared
modules, and every refusal: unknown types owning parameters, subclasses, and what the service refuses, named by
module path.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from initserve_client import (
    Client,
    InitserveError,
    ServiceError,
    UnsupportedModuleError,
    init_module,
    supported_types,
)
from initserve_client.torch_init import readers, recipe

torch = pytest.importorskip("torch")
nn = torch.nn

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 32), nn.GELU())
        self.head = nn.Linear(32, 5, bias=False)


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, (3, 1), stride=2, groups=2, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)


class LanguageModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8, padding_idx=0)
        self.lstm = nn.LSTM(8, 12, num_layers=2, dropout=0.1)
        self.head = nn.Linear(12, 50)


class Encoder(nn.Module):
    """Token and position embeddings, a transformer encoder layer, a norm and a tied head."""

    def __init__(self, tied: bool = False) -> None:
        super().__init__()
        self.tokens = nn.Embedding(40, 16)
        self.positions = nn.Embedding(12, 16)
        self.layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 40, bias=False)
        if tied:
            self.head.weight = self.tokens.weight


class Stack(nn.Module):
    """nn.TransformerEncoder and Decoder deep-copy the layer they are given: all their layers start equal."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(30, 16)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 24), 3, norm=nn.LayerNorm(16))
        self.decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(16, 2, 24), 2)
        self.out = nn.Linear(16, 30)


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(12, 3)
        self.cross = nn.MultiheadAttention(12, 4, bias=False)
        self.decoder = nn.TransformerDecoderLayer(12, 2, 16, bias=False)


def every_type() -> Any:
    """Every module type init_module fills, once (and a ModuleDict and ModuleList around some)."""
    return nn.Sequential(
        nn.Conv1d(8, 16, 5, groups=4),
        nn.Conv3d(2, 4, (1, 2, 3)),
        nn.ConvTranspose1d(4, 6, 2, bias=False),
        nn.ConvTranspose2d(16, 24, 3, stride=2, groups=4),
        nn.ConvTranspose3d(3, 2, (2, 1, 2)),
        nn.ModuleDict({"norm": nn.GroupNorm(4, 24), "ln": nn.LayerNorm([24], bias=False)}),
        nn.GRU(24, 8, bidirectional=True),
        nn.RNN(8, 6, 2, nonlinearity="relu", bias=False),
        nn.PReLU(4, init=0.1),
        nn.ModuleList([nn.BatchNorm1d(8, affine=False), nn.BatchNorm3d(3, track_running_stats=False)]),
        nn.Embedding(7, 3, padding_idx=-2),
        nn.TransformerDecoderLayer(16, 4, 32),
        nn.MultiheadAttention(8, 2, kdim=3, vdim=5, add_bias_kv=True),
        nn.LSTM(4, 6, 2, proj_size=3, bidirectional=True),
        nn.RMSNorm([2, 3]),
        nn.ModuleList(
            [
                nn.InstanceNorm1d(4),
                nn.InstanceNorm2d(4, affine=True),
                nn.InstanceNorm3d(4, affine=True, track_running_stats=True, bias=False),
            ]
        ),
        nn.Bilinear(2, 3, 4),
        nn.EmbeddingBag(9, 4, padding_idx=2),
        nn.RNNCell(3, 4, nonlinearity="relu"),
        nn.GRUCell(4, 3, bias=False),
        nn.LSTMCell(3, 5),
    )


ARCHITECTURES: dict[str, Callable[[], Any]] = {
    "mlp": MLP,
    "conv_net": ConvNet,
    "lstm_language_model": LanguageModel,
    "transformer_encoder_with_embeddings": Encoder,
    "tied_head": lambda: Encoder(tied=True),
    "transformer_encoder_stack": Stack,
    "attention": Attention,
    "bare_attention": lambda: nn.MultiheadAttention(8, 2),
    "bare_linear": lambda: nn.Linear(7, 3),
    "every_type": every_type,
}


def constructed(factory: Callable[[], Any], seed: int, dtype: str = "float32") -> Any:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(DTYPES[dtype])
    try:
        torch.manual_seed(seed)
        return factory()
    finally:
        torch.set_default_dtype(previous)


def scrambled(module: Any) -> Any:
    """The module with every floating tensor overwritten, so that a tensor init_module misses shows."""
    with torch.no_grad():
        for tensor in module.state_dict().values():
            tensor.fill_(7)
    return module


def assert_equal_state(ours: Any, theirs: Any) -> None:
    ours, theirs = ours.state_dict(), theirs.state_dict()
    assert list(ours) == list(theirs)
    differ = [name for name, tensor in theirs.items() if not torch.equal(ours[name], tensor)]
    assert not differ, f"not bit-identical to torch: {differ}"


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_torch_2_13_fills_the_module_as_constructing_it_under_manual_seed(client, architecture):
    factory = ARCHITECTURES[architecture]
    for seed in (0, 2**64 - 1):
        module = scrambled(constructed(factory, 12345))
        response = init_module(module, client, seed, rng="torch-2.13")
        assert response.metadata["rng"] == "torch-2.13"
        assert_equal_state(module, constructed(factory, seed))


@pytest.mark.parametrize("dtype", ["float64", "bfloat16"])
@pytest.mark.parametrize("architecture", ["lstm_language_model", "transformer_encoder_with_embeddings"])
def test_torch_2_13_in_other_dtypes(client, architecture, dtype):
    """A module built in float64 or bfloat16 (set_default_dtype) is generated in its dtype, as torch draws it."""
    factory = ARCHITECTURES[architecture]
    module = scrambled(constructed(factory, 1, dtype))
    init_module(module, client, 5, rng="torch-2.13")
    assert_equal_state(module, constructed(factory, 5, dtype))


def test_construct_then_cast_is_generated_in_the_construction_dtype(client):
    """A module built in float32 and cast with .half() is torch-2.13's float32 draws rounded: dtype="float32"."""
    module = scrambled(LanguageModel().half())
    init_module(module, client, 5, rng="torch-2.13", dtype="float32")
    assert_equal_state(module, constructed(LanguageModel, 5).half())


def _types(layers: list[Any]) -> set[str]:
    return {t for layer in layers for t in (_types(layer["layers"]) if "layers" in layer else {layer["type"]})}


def test_the_filled_types_are_the_recipe_languages_and_every_one_is_proven_above():
    """Every layer type of the service's catalogue that has parameters (service/engine/recipes/layers.py) has one
    torch module type here, and the architectures of the equality test use each of them."""
    layers = pytest.importorskip("service.engine.recipes.layers")
    # Not the stacks (init_module sends a TransformerEncoder/Decoder's first layer and copies it itself, as torch
    # does; nn.Transformer it refuses) nor the Keras-only types.
    catalogue = {name for name, layer in layers.LAYERS.items() if layer.torch or (layer.children and not layer.stack)}
    used = set().union(*(_types(recipe(factory()).layers) for factory in ARCHITECTURES.values()))
    assert used == catalogue
    assert len(readers()) == len(catalogue) == len(supported_types())


def _recipe_order(module: Any) -> list[Any]:
    """The modules the recipe has a layer for (of a type the recipe language knows), in its order."""
    by_path = dict(module.named_modules(remove_duplicate=False))
    return [by_path[path] for _, path, _ in recipe(module).locations if type(by_path[path]) in readers()]


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_the_recipe_lists_modules_in_construction_order(architecture, monkeypatch):
    """What torch-2.13's equality rests on: every module of a known type is constructed in the order the recipe
    lists it (nn.Module.__init__ logs each construction; a stack's layers are deep copies, never constructed,
    and are checked by the equality test above)."""
    order: list[Any] = []
    original = nn.Module.__init__

    def logged(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        order.append(self)

    monkeypatch.setattr(nn.Module, "__init__", logged)
    module = ARCHITECTURES[architecture]()
    monkeypatch.undo()
    built = {id(m) for m in order}
    listed = [m for m in _recipe_order(module) if id(m) in built]  # not a stack's deep copies
    ids = {id(m) for m in listed}
    assert [m for m in order if id(m) in ids] == listed
    assert listed


def test_default_rng_gives_the_file_of_the_same_recipe_written_by_hand(client):
    """philox-v1 keys each tensor by its name: init_module's request is the recipe docs/models.md shows."""
    module = scrambled(LanguageModel())
    init_module(module, client, 7)
    layers = ["embed: embedding(50, 8, padding_idx=0)", "lstm: lstm(8, 12, 2, dropout=0.1)", "head: linear(12, 50)"]
    expected = client.fetch_tensors({"seed": 7, "model": {"layers": layers}}, as_torch=True)
    state = module.state_dict()
    assert list(state) == list(expected)
    assert all(torch.equal(state[name], tensor) for name, tensor in expected.items())
    assert torch.all(state["embed.weight"][0] == 0)


def test_rules_name_modules_by_path_and_buffers_are_filled(client):
    module = scrambled(ConvNet())
    rules = [
        {"layer": "conv", "param": "weight", "scheme": "kaiming_normal", "mode": "fan_out", "nonlinearity": "relu"},
        {"layer": "fc", "param": "bias", "scheme": "constant", "val": 0.5},
    ]
    response = init_module(module, client, 3, rules=rules)
    assert torch.all(module.fc.bias == 0.5)
    assert response.tensor_metadata["conv2.weight"]["origin"]["init"] == "rules[0]"
    assert torch.all(module.bn1.running_mean == 0) and torch.all(module.bn1.running_var == 1)
    assert module.bn1.num_batches_tracked.item() == 0 and module.bn1.num_batches_tracked.dtype == torch.int64


def test_a_drawn_seed_is_returned(client):
    module = nn.Linear(3, 2)
    response = init_module(module, client, None)
    seed = response.metadata["seed"]
    again = nn.Linear(3, 2)
    init_module(again, client, seed)
    assert torch.equal(module.weight, again.weight)


def test_a_module_registered_twice_is_constructed_and_drawn_once(client):
    def build() -> Any:
        shared = nn.Linear(4, 4)
        return nn.Sequential(nn.Sequential(shared), nn.Sequential(nn.ReLU(), shared), nn.Linear(4, 2))

    module = scrambled(build())
    init_module(module, client, 9, rng="torch-2.13")
    assert_equal_state(module, constructed(build, 9))
    assert module[1][1] is module[0][0]


def test_dtypes_follow_the_parameters_or_the_argument(client):
    module = nn.Linear(4, 3).double()
    response = init_module(module, client, 1)
    assert response.tensor_metadata["weight"]["dtype"] == "float64"
    half = nn.Linear(4, 3)
    response = init_module(half, client, 1, dtype="float16")
    assert half.weight.dtype == torch.float32 and response["weight"].dtype.name == "float16"
    assert torch.equal(half.weight, torch.from_numpy(response["weight"].astype("float32")))
    mixed = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2).half())
    with pytest.raises(InitserveError, match="several dtypes"):
        init_module(mixed, client, 1)


def test_nothing_to_fill_sends_nothing():
    assert len(init_module(nn.Sequential(nn.ReLU(), nn.Flatten()), Client("http://127.0.0.1:9"), 1)) == 0


class Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(4))


class MyLinear(nn.Linear):
    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)


@pytest.mark.parametrize(
    ("factory", "words"),
    [
        (lambda: nn.Sequential(nn.Linear(4, 4), nn.Sequential(Scale())), "'1.0' is a .*Scale with parameters"),
        (lambda: nn.Sequential(MyLinear(2, 2)), "'0' is a .*MyLinear"),
        (
            lambda: nn.ParameterList([nn.Parameter(torch.ones(2))]),
            r"'\(the root\)' is a torch.nn.modules.container.Param",
        ),
        (lambda: nn.Sequential(nn.LazyLinear(3)), "LazyLinear"),
        (lambda: nn.Transformer(8, 2, 1, 1, 16), "xavier_uniform_"),
    ],
)
def test_other_types_owning_parameters_are_refused_by_name_before_any_request(factory, words):
    module = factory()
    before = copy.deepcopy(module.state_dict())
    unreachable = Client("http://127.0.0.1:9")  # a request would fail with a connection error, not this one
    with pytest.raises(UnsupportedModuleError, match=words) as refused:
        init_module(module, unreachable, 1)
    if "parameters of its own" in str(refused.value):
        assert "nn.Linear" in str(refused.value) and "nn.MultiheadAttention" in str(refused.value)
    after = module.state_dict()
    lazy = nn.parameter.UninitializedParameter
    assert all(torch.equal(before[name], after[name]) for name in before if not isinstance(after[name], lazy))


def test_rules_and_copied_stacks_are_refused():
    """A rule applies to each layer of a stack after construction, which copies of one layer cannot give."""
    with pytest.raises(UnsupportedModuleError, match=r"rules cannot be combined with nn\.TransformerEncoder"):
        init_module(Stack(), Client("http://127.0.0.1:9"), 1, rules=[{"param": "bias", "scheme": "zeros"}])


def test_the_services_refusals_name_the_module(client):
    module = nn.Sequential(nn.Linear(4, 4), nn.ModuleDict({"rnn": nn.LSTM(4, 8, 65)}))
    with pytest.raises(ServiceError) as refused:
        init_module(module, client, 1)
    assert refused.value.status == 422
    item = refused.value.detail[0]
    assert item["loc"] == ["body", "model.layers[1].layers[0].num_layers"] and item["type"] == "value_error"
    assert "at most 64" in item["msg"] and "(module '1.rnn', nn.LSTM)" in item["msg"]
    cell = nn.Sequential(nn.RNNCell(3, 4, nonlinearity="gelu"))  # torch refuses it only in forward
    with pytest.raises(ServiceError, match=r"nonlinearity.*\(module '0', nn.RNNCell\)"):
        init_module(cell, client, 1)


def test_a_mismatch_writes_nothing(client):
    """A composite changed after construction (a replaced linear2 without bias): the service's tensors do not
    match the module's parameters, and no parameter is written."""
    layer = nn.TransformerEncoderLayer(8, 2, 16)
    layer.linear2 = nn.Linear(16, 8, bias=False)
    before = copy.deepcopy(layer.state_dict())
    with pytest.raises(InitserveError, match=r"unexpected \['linear2.bias'\]"):
        init_module(layer, client, 1)
    assert all(torch.equal(before[name], tensor) for name, tensor in layer.state_dict().items())
    grown = nn.TransformerEncoderLayer(8, 2, 16)
    grown.norm1 = nn.LayerNorm(8)
    grown.linear2.weight = nn.Parameter(torch.zeros(8, 17))
    with pytest.raises(InitserveError, match=r"linear2.weight: module \[8, 17\], service \[8, 16\]"):
        init_module(grown, client, 1)
    assert torch.all(grown.linear2.weight == 0)


def test_a_url_works_as_the_client(url):
    module = nn.Linear(3, 2)
    init_module(module, url, 4)
    reference = nn.Linear(3, 2)
    with Client(url) as client:
        init_module(reference, client, 4)
    assert torch.equal(module.weight, reference.weight)


def test_an_api_key_is_sent(serve):
    with serve(env={"INITSERVE_API_KEYS": "sesame"}) as (base, _):
        with pytest.raises(ServiceError) as refused:
            init_module(nn.Linear(2, 2), base, 1)
        assert refused.value.status == 401 and refused.value.detail[0]["loc"] == ["header", "authorization"]
        with Client(base, api_key="sesame") as client:
            assert list(init_module(nn.Linear(2, 2), client, 1)) == ["weight", "bias"]
    with pytest.raises(httpx.TransportError):  # transport failures stay httpx's own
        init_module(nn.Linear(2, 2), base, 1)
