"""Hugging Face `transformers` models from their config.json: every parameter a head class holds, with
transformers' names, shapes, tied weights and `_init_weights` semantics, as of one pinned release (SEMANTICS).

    expand_transformers(config, "LlamaForCausalLM", rules, dtype) -> TransformersModel(specs, tied, ...)

`specs` is what `save_pretrained` writes, in the state dict's order: a tied parameter (lm_head.weight under
tie_word_embeddings) is left out, as save_pretrained leaves it out, and `tied` names it and what it is tied to
(from_pretrained ties it again on load). The tables (llama.py, gpt2.py, bert.py) are data read off the modelling
code; neither torch nor transformers is imported. Each tensor is an ordinary TensorSpec keyed by (seed, its name),
so it streams in bounded memory like any other, whatever the model's size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.engine.bundle import MAX_TENSORS, RowFill, TensorSpec
from service.engine.dtypes import DTYPES
from service.engine.errors import InitError, TooLargeError
from service.engine.recipes.expand import Rule, find_rule, index_rules, parse_rules
from service.engine.recipes.transformers import bert, gpt2, llama
from service.engine.recipes.transformers.table import SEMANTICS, Architecture, Head, Module, dim, holds

FRAMEWORK = "transformers"
ARCHITECTURES: dict[str, Architecture] = {
    architecture.model_type: architecture for module in (llama, gpt2, bert) for architecture in module.ARCHITECTURES
}
# Config fields that change what from_pretrained expects of the weights, which these tables do not produce.
REFUSED_FIELDS = {"quantization_config": "quantized weights"}
_WHERE = "model.config"


@dataclass(frozen=True)
class TransformersModel:
    specs: dict[str, TensorSpec]  # what save_pretrained writes, in state-dict order
    tied: dict[str, str]  # a tied parameter -> the written one it is tied to
    model_type: str
    architecture: str
    dtype: str
    config: dict[str, Any]  # the checkpoint's config.json: the request's, with its head class and dtype

    def metadata(self) -> dict[str, Any]:
        """Request-level metadata: with the seed and rng, what determines every byte (the ETag hashes it)."""
        return {
            "framework": FRAMEWORK,
            "semantics": SEMANTICS,
            "model_type": self.model_type,
            "architecture": self.architecture,
            "tied": self.tied,
        }


@dataclass(frozen=True)
class _Param:
    name: str
    module: Module
    module_path: str  # from the root
    in_layer: str | None  # the module's path inside its layer (self_attn.q_proj), None outside the layers
    role: str  # weight or bias


def _fail(field: str, message: str) -> InitError:
    return InitError(f"{_WHERE}.{field}", f"{_WHERE}.{field}: {message}")


def _architecture(config: Mapping[str, Any]) -> Architecture:
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in ARCHITECTURES:
        supported = ", ".join(sorted(ARCHITECTURES))
        raise _fail("model_type", f"unsupported model_type {model_type!r}; supported: {supported}")
    return ARCHITECTURES[model_type]


def _head(architecture: Architecture, config: Mapping[str, Any], name: str | None) -> str:
    if name is None:
        named = config.get("architectures")
        if not isinstance(named, list) or not named or not isinstance(named[0], str):
            raise InitError(
                "model.architecture", "model.architecture: the config lists no architectures; name the head class"
            )
        name, where = named[0], f"{_WHERE}.architectures[0]"
    else:
        where = "model.architecture"
    if name not in architecture.heads:
        supported = ", ".join(sorted(architecture.heads))
        raise InitError(
            where,
            f"{where}: head class {name!r} is not supported for model_type {architecture.model_type!r}; "
            f"supported: {supported}",
        )
    return name


def _fields(architecture: Architecture, config: Mapping[str, Any], head: Head) -> dict[str, Any]:
    """The fields the modules read: the config class's defaults, the config's values (aliases resolved), checked
    as transformers would need them to build the model, and the derived ones."""
    for field, what in REFUSED_FIELDS.items():
        if config.get(field) is not None:
            raise _fail(field, f"{what} are not generated; remove {field} for a full-precision checkpoint")
    fields = dict(architecture.defaults)
    for key, value in config.items():
        canonical = architecture.aliases.get(key, key)
        if canonical != key and canonical in config and config[canonical] != value:
            raise _fail(key, f"{key} is another name of {canonical}, which the config sets to {config[canonical]!r}")
        if canonical in architecture.defaults or canonical in architecture.ints:
            fields[canonical] = value
    for field, default in architecture.defaults.items():
        value = fields[field]
        if isinstance(default, bool) and not isinstance(value, bool):
            raise _fail(field, f"{field} must be true or false, got {value!r}")
    _check_ints(architecture, fields, derived=False)
    std = fields["initializer_range"]
    if isinstance(std, bool) or not isinstance(std, int | float) or not 0 <= std < 1e300:
        raise _fail("initializer_range", f"initializer_range must be a finite number >= 0, got {std!r}")
    if architecture.derive:
        architecture.derive(fields)
    _check_ints(architecture, fields, derived=True)
    for a, b in architecture.divisible:
        if fields[a] % fields[b]:
            raise _fail(a, f"{a} ({fields[a]}) must be a multiple of {b} ({fields[b]}), as transformers requires")
    fields.update(head.fields)
    return fields


def _check_ints(architecture: Architecture, fields: Mapping[str, Any], derived: bool) -> None:
    """Dimensions are integers >= 1; before the derived fields are filled in, null where the config class lets a
    field default to a derived value (head_dim, num_key_value_heads, n_inner) or does not declare it."""
    for field in architecture.ints:
        value = fields.get(field)
        if value is None and not derived and architecture.defaults.get(field) is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _fail(field, f"{field} must be an integer >= 1, got {value!r}")


def _padding_row(module: Module, fields: Mapping[str, Any]) -> tuple[RowFill, ...]:
    """nn.Embedding's padding_idx row, zeroed by _init_weights; a negative index counts from the end, as in torch."""
    if module.padding is None or fields[module.padding] is None:
        return ()
    index, rows = fields[module.padding], dim(module.fan_in, fields)
    if isinstance(index, bool) or not isinstance(index, int) or not -rows <= index < rows:
        raise _fail(module.padding, f"{module.padding} must be null or an integer in [-{rows}, {rows}), got {index!r}")
    row = index % rows
    return (RowFill(row, row + 1, 0.0),)


def _default(param: _Param, fields: Mapping[str, Any]) -> tuple[str, dict[str, float]]:
    """The scheme and parameters `_init_weights` gives this parameter (table.py's docstring)."""
    kind, std = param.module.kind, float(fields["initializer_range"])
    if param.role == "bias" or kind == "bias":
        return "zeros", {}
    if kind == "norm":
        return "ones", {}
    if kind == "conv1d":
        if param.module.residual:
            std /= math.sqrt(2 * fields["n_layer"])
        return "normal", {"mean": 0.0, "std": std}
    return "normal", {"mean": 0.0, "std": std or 0.02}  # the base class's `initializer_range or 0.02`


def _params(architecture: Architecture, head: Head, fields: Mapping[str, Any], max_tensors: int) -> list[_Param]:
    """Every parameter of the head class in state-dict order (each module's weight before its bias)."""
    layers = fields[architecture.layer_count]
    per_layer = sum(1 + holds(m.bias, fields) for m in architecture.layer if holds(m.when, fields))
    if per_layer * layers > max_tensors:
        raise TooLargeError(
            f"{_WHERE}.{architecture.layer_count}",
            f"{layers} layers of {per_layer} tensors; the limit is {max_tensors} tensors",
        )
    placed = [(head.prefix + m.path, None, m) for m in architecture.before]
    for i in range(layers):
        stem = f"{head.prefix}{architecture.layers}.{i}."
        placed += [(stem + m.path, m.path, m) for m in architecture.layer]
    placed += [(head.prefix + m.path, None, m) for m in architecture.after]
    placed += [(m.path, None, m) for m in head.modules]
    params = []
    for path, in_layer, module in placed:
        if not holds(module.when, fields):
            continue
        if module.kind == "bias":
            params.append(_Param(path, module, path.rpartition(".")[0], in_layer, "bias"))
            continue
        params.append(_Param(f"{path}.weight", module, path, in_layer, "weight"))
        if holds(module.bias, fields):
            params.append(_Param(f"{path}.bias", module, path, in_layer, "bias"))
    return params


def _shape(param: _Param, fields: Mapping[str, Any]) -> tuple[int, ...]:
    module = param.module
    fan_in, fan_out = dim(module.fan_in, fields), dim(module.fan_out, fields)
    if module.kind in ("norm", "bias") or param.role == "bias":
        return (fan_out,)
    if module.kind == "linear":
        return (fan_out, fan_in)  # nn.Linear: [out, in]
    return (fan_in, fan_out)  # Conv1D: [in, out]; Embedding: [num, dim]


def _prefixes(path: str | None) -> list[str]:
    if not path:
        return []
    parts = path.split(".")
    return [".".join(parts[: n + 1]) for n in range(len(parts))]


def _rule(index: dict[str, dict[str, Rule]], param: _Param) -> Rule | None:
    """The last rule naming this parameter (*, its role, its name) and its module (*, its kind, linear for a
    Conv1D too, a prefix of its path, or of its path inside its layer: `mlp.down_proj` in every layer)."""
    kind = param.module.kind
    layers = {"*", kind, *_prefixes(param.module_path), *_prefixes(param.in_layer)}
    if kind == "conv1d":
        layers.add("linear")
    return find_rule(index, {"*", param.role, param.name}, layers)


def _spec(param: _Param, fields: Mapping[str, Any], rule: Rule | None, dtype: str) -> TensorSpec:
    shape = _shape(param, fields)
    fills = _padding_row(param.module, fields) if param.role == "weight" else ()
    origin = {
        "module": param.module_path,
        "class": param.module.kind,
        "param": param.role,
        "init": "default" if rule is None else f"rules[{rule.index}]",
    }
    if rule is None:
        scheme, params = _default(param, fields)
        return TensorSpec(shape, scheme, params, dtype, "torch", fill_rows=fills, origin=origin)
    fans: tuple[int | None, int | None] = (None, None)
    if rule.fans == "layer" and param.module.kind in ("linear", "conv1d", "embedding"):
        fans = (dim(param.module.fan_in, fields), dim(param.module.fan_out, fields))
    return TensorSpec(
        shape, rule.scheme, dict(rule.params), rule.dtype or dtype, "torch", fans[0], fans[1], fills, origin
    )


def _dtype(config: Mapping[str, Any], dtype: str | None) -> str:
    """The dtype asked for, else the config's (`dtype`, or the older `torch_dtype`), else float32."""
    if dtype is not None:
        return dtype
    for field in ("dtype", "torch_dtype"):
        named = config.get(field)
        if named is None:
            continue
        name = named.removeprefix("torch.") if isinstance(named, str) else None
        if name not in DTYPES:
            raise _fail(field, f"{field} {named!r} is not one of {', '.join(DTYPES)}; give model.dtype")
        return str(name)
    return "float32"


def expand_transformers(
    config: Mapping[str, Any],
    architecture: str | None = None,
    rules: Sequence[Mapping[str, Any]] = (),
    dtype: str | None = None,
    max_tensors: int = MAX_TENSORS,
) -> TransformersModel:
    """The checkpoint of head class `architecture` (default: the config's first) built from `config`."""
    if not isinstance(config, Mapping):
        raise InitError(_WHERE, f"{_WHERE} must be a config.json object")
    table = _architecture(config)
    head_name = _head(table, config, architecture)
    head = table.heads[head_name]
    fields = _fields(table, config, head)
    out_dtype = _dtype(config, dtype)
    index = index_rules(parse_rules(rules))
    tied = {target: source for target, source in head.tied.items()} if fields["tie_word_embeddings"] else {}
    specs = {
        param.name: _spec(param, fields, _rule(index, param), out_dtype)
        for param in _params(table, head, fields, max_tensors)
        if param.name not in tied
    }
    written = {k: v for k, v in config.items() if k != "torch_dtype"}
    written.update(architectures=[head_name], dtype=out_dtype)
    return TransformersModel(specs, dict(tied), table.model_type, head_name, out_dtype, written)
