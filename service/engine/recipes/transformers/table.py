"""The vocabulary of the transformers tables: modules as transformers builds them, and their init as data.

A table (one module per architecture family beside this one) lists, for one `model_type`, the modules of the base
model in construction order (which is the state dict's), the block repeated per layer, and per head class what it
adds and ties. Dimensions are config fields, integers, or products of both ("num_key_value_heads*head_dim"); a
module's existence or bias may hang on a boolean field ("attention_bias", "!tie_word_embeddings"). Nothing here
runs transformers or torch: the tables were read off the modelling code of the pinned version (SEMANTICS), and
tests/engine/test_transformers.py checks them against it when it is installed.

Init, as `PreTrainedModel._init_weights` and the architectures' overrides do it in that version:

* `Linear` (nn.Linear) and `Embedding`: normal(0, std) with std = `initializer_range or 0.02` (the base class's
  fallback: an initializer_range of 0 gives 0.02); biases zeros; an embedding's `padding_idx` row zeros.
* `Conv1D` (GPT-2's transposed linear, weight [in, out]): normal(0, initializer_range), no fallback; bias zeros.
  `residual=True`: GPT-2's scaled residual projection, normal(0, initializer_range / sqrt(2 * n_layer)).
* `Norm` (LayerNorm, RMSNorm): weight ones, bias (LayerNorm only) zeros. `Bias`: a bare parameter, zeros.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# The transformers release whose modelling code these tables follow. A later release whose init or names differ
# gets a new id beside this one; what an id produces never changes (it is part of every request's identity).
SEMANTICS = "transformers-5.24.0"

Dim = int | str  # an integer, a config field, or a product of them: "3*n_embd", "num_attention_heads*head_dim"
Condition = bool | str  # a boolean config field, "!field" for its negation, or a constant
ModuleKind = Literal["linear", "conv1d", "embedding", "norm", "bias"]
Init = Literal["normal", "normal_exact", "residual", "zeros", "ones"]


@dataclass(frozen=True)
class Module:
    """One module of a model: its path (relative to its section; `{i}` the layer index), kind and dimensions."""

    path: str
    kind: ModuleKind
    fan_in: Dim = 1  # linear/conv1d: in_features; embedding: num_embeddings; norm/bias: the size
    fan_out: Dim = 1  # linear/conv1d: out_features; embedding: embedding_dim
    bias: Condition = False
    when: Condition = True  # the module exists only when this holds
    padding: str | None = None  # embedding: the config field holding padding_idx
    residual: bool = False  # conv1d: GPT-2's scaled residual projection


def Linear(path: str, fan_in: Dim, fan_out: Dim, bias: Condition = True, when: Condition = True) -> Module:  # noqa: N802
    return Module(path, "linear", fan_in, fan_out, bias, when)


def Conv1D(path: str, fan_in: Dim, fan_out: Dim, residual: bool = False, when: Condition = True) -> Module:  # noqa: N802
    return Module(path, "conv1d", fan_in, fan_out, True, when, residual=residual)


def Embedding(path: str, num: Dim, dim: Dim, padding: str | None = None) -> Module:  # noqa: N802
    return Module(path, "embedding", num, dim, padding=padding)


def Norm(path: str, size: Dim, bias: bool = True, when: Condition = True) -> Module:  # noqa: N802
    """LayerNorm (bias=True) or RMSNorm (bias=False)."""
    return Module(path, "norm", size, size, bias, when)


def Bias(path: str, size: Dim) -> Module:  # noqa: N802
    """A bare `nn.Parameter(torch.zeros(size))` registered as `path`."""
    return Module(path, "bias", size, size)


@dataclass(frozen=True)
class Head:
    """A head class: the base model under `prefix`, then its own modules; `tied` maps a parameter that
    `tie_word_embeddings` ties (and save_pretrained therefore does not write) to the one it is tied to."""

    prefix: str
    modules: tuple[Module, ...] = ()
    tied: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, Any] = field(default_factory=dict)  # what the class passes its base model (add_pooling_layer)


@dataclass(frozen=True)
class Architecture:
    """One model_type: the config fields its modelling code reads (with the config class's defaults), how the
    derived ones are computed, the base model's modules and its head classes."""

    model_type: str
    defaults: Mapping[str, Any]  # every config field the modules read, as the config class defaults it
    ints: tuple[str, ...]  # fields that must be integers >= 1
    before: tuple[Module, ...]  # the base model's modules before its layers
    layers: str  # the ModuleList's name, e.g. "layers" or "encoder.layer"
    layer: tuple[Module, ...]  # one layer's modules; paths relative to `{layers}.{i}`
    after: tuple[Module, ...]
    heads: Mapping[str, Head]
    layer_count: str = "num_hidden_layers"
    aliases: Mapping[str, str] = field(default_factory=dict)  # the config class's attribute_map: alias -> field
    derive: Callable[[dict[str, Any]], None] | None = None  # fills derived fields; raises InitError when refused
    divisible: tuple[tuple[str, str], ...] = ()  # (a, b): transformers refuses a config where b does not divide a


def dim(expression: Dim, config: Mapping[str, Any]) -> int:
    """The value of a dimension: an integer, a field, or a product of integers and fields."""
    if isinstance(expression, int):
        return expression
    return math.prod(int(part) if part.isdigit() else int(config[part]) for part in expression.split("*"))


def holds(condition: Condition, config: Mapping[str, Any]) -> bool:
    if isinstance(condition, bool):
        return condition
    if condition.startswith("!"):
        return not config[condition[1:]]
    return bool(config[condition])
