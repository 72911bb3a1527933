"""Fill an existing torch.nn.Module from the service in one model request.

Each module whose exact type the recipe language knows becomes a recipe layer named by its module path, with the
constructor arguments that shape its parameters read back from it; containers (Sequential, ModuleList, ModuleDict,
your own modules without parameters of their own) become nested `sequential`s. The layers are listed in
`named_children` order, which is registration order: for `rng="torch-2.13"` that must also be the order the
modules were constructed in (true when each submodule is constructed where it is assigned). Anything else that
owns parameters itself is refused by name: its initialisation is its own code, which the client cannot see.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from initserve_client.client import Client
from initserve_client.decode import Tensors, to_torch
from initserve_client.errors import InitserveError, ServiceError, UnsupportedModuleError

if TYPE_CHECKING:
    import torch

Args = dict[str, Any]
Reader = Callable[[Any], tuple[str, Args]]  # module -> (recipe layer type, the arguments that shape its parameters)


def _has(tensor: Any) -> bool:
    return tensor is not None


def _conv(kind: str) -> Reader:
    def read(m: Any) -> tuple[str, Args]:
        shape = {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": list(m.kernel_size)}
        return kind, {**shape, "groups": m.groups, "bias": _has(m.bias)}

    return read


def _affine_bias(m: Any, affine: bool) -> bool:
    # `bias=False` only matters (and only shows) when the norm is affine
    return _has(m.bias) or not affine


def _recurrent(kind: str) -> Reader:
    def read(m: Any) -> tuple[str, Args]:
        args = {"input_size": m.input_size, "hidden_size": m.hidden_size, "num_layers": m.num_layers}
        args |= {"bias": m.bias, "bidirectional": m.bidirectional}
        if getattr(m, "proj_size", 0):
            args["proj_size"] = m.proj_size
        return kind, args

    return read


def _cell(kind: str) -> Reader:
    def read(m: Any) -> tuple[str, Args]:
        args = {"input_size": m.input_size, "hidden_size": m.hidden_size, "bias": m.bias}
        return kind, args | ({"nonlinearity": m.nonlinearity} if kind == "rnn_cell" else {})

    return read


def _attention(m: Any) -> tuple[str, Args]:
    args = {"embed_dim": m.embed_dim, "num_heads": m.num_heads, "bias": _has(m.in_proj_bias)}
    args["add_bias_kv"] = _has(m.bias_k)
    args |= {side: getattr(m, side) for side in ("kdim", "vdim") if getattr(m, side) != m.embed_dim}
    return "multihead_attention", args


def _transformer(kind: str) -> Reader:
    def read(m: Any) -> tuple[str, Args]:
        attention, linear = m.self_attn, m.linear1
        args = {"d_model": attention.embed_dim, "nhead": attention.num_heads}
        return kind, {**args, "dim_feedforward": linear.out_features, "bias": _has(linear.bias)}

    return read


def _batchnorm(kind: str) -> Reader:
    def read(m: Any) -> tuple[str, Args]:
        args = {"num_features": m.num_features, "affine": m.affine, "track_running_stats": m.track_running_stats}
        return kind, {**args, "bias": _affine_bias(m, m.affine)}

    return read


def _linear(m: Any) -> tuple[str, Args]:
    return "linear", {"in_features": m.in_features, "out_features": m.out_features, "bias": _has(m.bias)}


def _embedding(m: Any) -> tuple[str, Args]:
    args = {"num_embeddings": m.num_embeddings, "embedding_dim": m.embedding_dim}
    return "embedding", {**args, "padding_idx": m.padding_idx}


def _layernorm(m: Any) -> tuple[str, Args]:
    affine = m.elementwise_affine
    args = {"normalized_shape": list(m.normalized_shape), "elementwise_affine": affine}
    return "layernorm", {**args, "bias": _affine_bias(m, affine)}


def _groupnorm(m: Any) -> tuple[str, Args]:
    args = {"num_groups": m.num_groups, "num_channels": m.num_channels, "affine": m.affine}
    return "groupnorm", {**args, "bias": _affine_bias(m, m.affine)}


def _prelu(m: Any) -> tuple[str, Args]:
    return "prelu", {"num_parameters": m.num_parameters, "init": m.init}


def _rmsnorm(m: Any) -> tuple[str, Args]:
    return "rmsnorm", {"normalized_shape": list(m.normalized_shape), "elementwise_affine": m.elementwise_affine}


def _bilinear(m: Any) -> tuple[str, Args]:
    args = {"in1_features": m.in1_features, "in2_features": m.in2_features, "out_features": m.out_features}
    return "bilinear", {**args, "bias": _has(m.bias)}


def _embedding_bag(m: Any) -> tuple[str, Args]:
    args = {"num_embeddings": m.num_embeddings, "embedding_dim": m.embedding_dim}
    return "embedding_bag", {**args, "padding_idx": m.padding_idx}


@functools.cache
def readers() -> dict[type, Reader]:
    """The module types init_module fills (exact types: a subclass may initialise differently), by recipe type."""
    from torch import nn

    table: dict[type, Reader] = {
        nn.Linear: _linear,
        nn.Embedding: _embedding,
        nn.LayerNorm: _layernorm,
        nn.GroupNorm: _groupnorm,
        nn.PReLU: _prelu,
        nn.MultiheadAttention: _attention,
        nn.RNN: _recurrent("rnn"),
        nn.GRU: _recurrent("gru"),
        nn.LSTM: _recurrent("lstm"),
        nn.TransformerEncoderLayer: _transformer("transformer_encoder_layer"),
        nn.TransformerDecoderLayer: _transformer("transformer_decoder_layer"),
        nn.RMSNorm: _rmsnorm,
        nn.Bilinear: _bilinear,
        nn.EmbeddingBag: _embedding_bag,
        nn.RNNCell: _cell("rnn_cell"),
        nn.GRUCell: _cell("gru_cell"),
        nn.LSTMCell: _cell("lstm_cell"),
    }
    for rank in (1, 2, 3):
        table[getattr(nn, f"Conv{rank}d")] = _conv(f"conv{rank}d")
        table[getattr(nn, f"ConvTranspose{rank}d")] = _conv(f"conv_transpose{rank}d")
        table[getattr(nn, f"BatchNorm{rank}d")] = _batchnorm(f"batchnorm{rank}d")
        # instance norm has batch norm's parameters and buffers (off by default)
        table[getattr(nn, f"InstanceNorm{rank}d")] = _batchnorm(f"instancenorm{rank}d")
    return table


def supported_types() -> list[str]:
    """The torch module types init_module fills, as `nn.Name`."""
    return sorted(f"nn.{kind.__name__}" for kind in readers())


def _stacks() -> tuple[type, ...]:
    """Modules that deep-copy one constructed layer `num_layers` times: its layers all start equal."""
    from torch import nn

    return nn.TransformerEncoder, nn.TransformerDecoder


def _refused() -> dict[type, str]:
    from torch import nn

    return {
        nn.Transformer: "nn.Transformer re-initialises every parameter of more than one dimension with "
        "xavier_uniform_ after construction; build it from nn.TransformerEncoder/Decoder, or fill it yourself"
    }


@dataclass
class Recipe:
    """The recipe layers of a module tree, and what filling the module from the response needs besides."""

    layers: list[Args] = field(default_factory=list)
    # (recipe location, module path, module type): to name the module a service error is about
    locations: list[tuple[str, str, str]] = field(default_factory=list)
    # (clone prefix, source prefix): the layers of a stack that are deep copies of its first
    clones: list[tuple[str, str]] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)

    def layer(self, name: str, path: str, module: Any, location: str) -> Args | None:
        """The recipe layer of `module` at `path`; None if it holds nothing to fill (or was met before: a module
        registered twice is constructed, and drawn, once)."""
        if id(module) in self.seen:
            return None
        self.seen.add(id(module))
        self.locations.append((location, path, type(module).__name__))
        reader = readers().get(type(module))
        if reader is not None:
            layer_type, args = reader(module)
            return {"type": layer_type, "name": name, **args}
        children = self.children(module, path, location)
        return {"type": "sequential", "name": name, "layers": children} if children else None

    def children(self, module: Any, path: str, location: str) -> list[Args]:
        """The layers of a module the recipe language does not know: refused if it owns parameters itself."""
        kind, where = type(module), path or "(the root)"
        if kind in _refused():
            raise UnsupportedModuleError(f"module {where!r}: {_refused()[kind]}")
        own = [name for name, _ in module.named_parameters(recurse=False)]
        if own:
            raise UnsupportedModuleError(
                f"module {where!r} is a {kind.__module__}.{kind.__qualname__} with parameters of its own "
                f"({', '.join(own)}); init_module fills only the types the recipe language knows, and never guesses "
                f"another's initialisation: {', '.join(supported_types())} (containers of them are walked)"
            )
        prefix = f"{path}." if path else ""
        stack = kind in _stacks()
        layers: list[Args] = []
        for name, child in module.named_children():
            at = f"{location}.layers[{len(layers)}]" if location else f"model.layers[{len(layers)}]"
            if stack and name == "layers" and len(child):
                # torch deep-copies one constructed layer: the first is drawn, the others are copies of it
                first = self.layer("0", f"{prefix}layers.0", child[0], f"{at}.layers[0]")
                self.clones += [(f"{prefix}layers.{k}.", f"{prefix}layers.0.") for k in range(1, len(child))]
                layer = {"type": "sequential", "name": name, "layers": [first]} if first else None
            else:
                layer = self.layer(name, prefix + name, child, at)
            if layer is not None:
                layers.append(layer)
        return layers


def recipe(module: Any) -> Recipe:
    """The recipe of `module` (a torch.nn.Module): its layers in registration order."""
    built = Recipe()
    if type(module) in readers():  # a bare layer: its parameters at the top level, as torch names them
        built.layers.append(built.layer("", "", module, "model.layers[0]"))  # type: ignore[arg-type]
    else:
        built.seen.add(id(module))
        built.layers = built.children(module, "", "")
    return built


FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16")


def _dtype(module: Any) -> str:
    """The dtype the module's parameters share."""
    found = {str(t.dtype).removeprefix("torch.") for t in module.parameters() if t.is_floating_point()}
    if len(found) > 1:
        raise InitserveError(f"the module's parameters have several dtypes ({sorted(found)}): pass dtype=")
    dtype = found.pop() if found else "float32"
    if dtype not in FLOAT_DTYPES:
        raise InitserveError(f"the service generates float32, float64, float16 or bfloat16, not {dtype}: pass dtype=")
    return dtype


def _annotated(error: ServiceError, locations: Sequence[tuple[str, str, str]]) -> ServiceError:
    """The service's error with the module its recipe location (`model.layers[0].layers[2].kdim`) stands for named
    in its message."""
    detail = []
    for item in error.detail:
        parts = [str(part) for part in item.get("loc", [])]
        found = [
            entry
            for entry in locations
            if any(part == entry[0] or part.startswith((f"{entry[0]}.", f"{entry[0]}[")) for part in parts)
        ]
        if found:
            _, path, kind = max(found, key=lambda entry: len(entry[0]))
            item = {**item, "msg": f"{item.get('msg', '')} (module {path or '(the root)'!r}, nn.{kind})"}
        detail.append(item)
    return ServiceError(error.status, detail, error.request_id, error.retry_after)


def _state(tensors: Mapping[str, Any], clones: Sequence[tuple[str, str]]) -> dict[str, Any]:
    state = dict(tensors)
    for target, source in clones:
        state |= {target + name[len(source) :]: value for name, value in tensors.items() if name.startswith(source)}
    return state


def init_module(
    module: torch.nn.Module,
    client: Client | str,
    seed: int | None,
    rng: str = "philox-v1",
    rules: Sequence[Mapping[str, Any]] | None = None,
    dtype: str | None = None,
) -> Tensors:
    """Fill `module`'s parameters (and the buffers the service produces: BatchNorm's running statistics) in place
    from one model request, by their names; returns the response (its `metadata` has the seed, drawn if None).

    Each layer gets its framework default, or what `rules` (the recipe language's, module paths as layer names)
    say. `rng="torch-2.13"` gives exactly what constructing the module under `torch.manual_seed(seed)` gives.
    `dtype` (default: the parameters') is the dtype generated in; values are copied into each parameter's own.
    Every parameter must be filled and every shape match, or nothing is written (InitserveError).
    """
    built = recipe(module)
    if built.clones and rules:
        # torch applies a rule to each layer of the stack after construction: no longer copies of the first
        raise UnsupportedModuleError(
            "rules cannot be combined with nn.TransformerEncoder/nn.TransformerDecoder, whose layers are copies of "
            "one: build the layers as an nn.ModuleList of separately constructed layers, or pass no rules"
        )
    if not built.layers:  # no parameters at all (the walk refuses any it cannot fill): nothing to ask for
        return Tensors({}, {}, {})
    body = {
        "seed": seed,
        "rng": rng,
        "model": {
            "framework": "torch",
            "layers": built.layers,
            "rules": list(rules or []),
            "dtype": dtype or _dtype(module),
        },
    }
    if seed is None:
        del body["seed"]
    owned = isinstance(client, str)
    http = Client(client) if isinstance(client, str) else client
    try:
        tensors = http.fetch_tensors(body)
    except ServiceError as error:
        raise _annotated(error, built.locations) from None
    finally:
        if owned:
            http.close()
    _fill(module, _state(tensors, built.clones))
    return tensors


def _fill(module: Any, state: Mapping[str, Any]) -> None:
    import torch

    targets = dict(module.named_parameters())  # a tied parameter once, under its first name
    names = {n for n, _ in module.named_parameters(remove_duplicate=False)}
    buffers = dict(module.named_buffers(remove_duplicate=False))
    missing = sorted(set(targets) - set(state))
    unexpected = sorted(set(state) - names - set(buffers))
    if missing or unexpected:
        raise InitserveError(
            f"the service's tensors do not match the module's parameters: missing {missing}, unexpected {unexpected}"
        )
    targets |= {name: tensor for name, tensor in buffers.items() if name in state}
    wrong = [
        f"{name}: module {list(t.shape)}, service {list(state[name].shape)}"
        for name, t in targets.items()
        if tuple(t.shape) != tuple(state[name].shape)
    ]
    if wrong:
        raise InitserveError(f"shapes differ: {'; '.join(wrong)}")
    with torch.no_grad():
        for name, tensor in targets.items():
            tensor.copy_(to_torch(state[name]))
