"""Llama and its close kin Mistral and Qwen2 (transformers 5.24.0: models/{llama,mistral,qwen2}/modeling_*.py).

    {X}Model: embed_tokens, layers.{i}.(self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj, input_layernorm,
              post_attention_layernorm), norm  (RMSNorms: weight only; rotary inv_freq is a non-persistent buffer)
    {X}ForCausalLM: model.* and lm_head (no bias), tied to model.embed_tokens.weight under tie_word_embeddings

They differ in biases and in how head_dim is found: Llama's q/k/v/o take `attention_bias` and its MLP `mlp_bias`;
Mistral has no biases whatever the config says; Qwen2 has q/k/v biases and none on o_proj. Llama and Mistral read
`head_dim` when set (null: hidden_size // num_attention_heads); Qwen2 reads it only when present, and fails on null.
"""

from __future__ import annotations

from typing import Any

from service.engine.errors import InitError
from service.engine.recipes.transformers.table import Architecture, Condition, Embedding, Head, Linear, Module, Norm

_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


def _layer(qkv_bias: Condition, o_bias: Condition, mlp_bias: Condition) -> tuple[Module, ...]:
    return (
        Linear("self_attn.q_proj", "hidden_size", "num_attention_heads*head_dim", qkv_bias),
        Linear("self_attn.k_proj", "hidden_size", "num_key_value_heads*head_dim", qkv_bias),
        Linear("self_attn.v_proj", "hidden_size", "num_key_value_heads*head_dim", qkv_bias),
        Linear("self_attn.o_proj", "num_attention_heads*head_dim", "hidden_size", o_bias),
        Linear("mlp.gate_proj", "hidden_size", "intermediate_size", mlp_bias),
        Linear("mlp.up_proj", "hidden_size", "intermediate_size", mlp_bias),
        Linear("mlp.down_proj", "intermediate_size", "hidden_size", mlp_bias),
        Norm("input_layernorm", "hidden_size", bias=False),
        Norm("post_attention_layernorm", "hidden_size", bias=False),
    )


def _heads(prefix: str) -> dict[str, Head]:
    lm_head = Linear("lm_head", "hidden_size", "vocab_size", bias=False)
    return {
        f"{prefix}Model": Head(""),
        f"{prefix}ForCausalLM": Head("model.", (lm_head,), {"lm_head.weight": "model.embed_tokens.weight"}),
    }


def _head_dim_or_default(config: dict[str, Any]) -> None:
    """Llama, Mistral: head_dim when set, else hidden_size // num_attention_heads; kv heads default to heads."""
    if config["head_dim"] is None:
        config["head_dim"] = config["hidden_size"] // config["num_attention_heads"]
    if config["num_key_value_heads"] is None:
        config["num_key_value_heads"] = config["num_attention_heads"]


def _qwen2_head_dim(config: dict[str, Any]) -> None:
    """Qwen2Config declares no head_dim: `getattr(config, "head_dim", default)` takes one given in config.json, and
    a null one breaks the model's construction."""
    if "head_dim" not in config:
        config["head_dim"] = config["hidden_size"] // config["num_attention_heads"]
    elif config["head_dim"] is None:
        raise InitError("model.config.head_dim", "model.config.head_dim: qwen2 cannot be built with head_dim null")
    if config["num_key_value_heads"] is None:
        config["num_key_value_heads"] = config["num_attention_heads"]


def _architecture(
    model_type: str, prefix: str, defaults: dict[str, Any], layer: tuple[Module, ...], derive: Any
) -> Architecture:
    common = {"initializer_range": 0.02, "pad_token_id": None, "tie_word_embeddings": False}
    return Architecture(
        model_type=model_type,
        defaults={**common, **defaults},
        ints=(*_FIELDS, "num_key_value_heads", "head_dim"),
        before=(Embedding("embed_tokens", "vocab_size", "hidden_size", padding="pad_token_id"),),
        layers="layers",
        layer=layer,
        after=(Norm("norm", "hidden_size", bias=False),),
        heads=_heads(prefix),
        derive=derive,
        divisible=(("hidden_size", "num_attention_heads"),) if model_type == "llama" else (),
    )


LLAMA = _architecture(
    "llama",
    "Llama",
    {
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": None,
        "head_dim": None,
        "attention_bias": False,
        "mlp_bias": False,
    },
    _layer("attention_bias", "attention_bias", "mlp_bias"),
    _head_dim_or_default,
)
MISTRAL = _architecture(
    "mistral",
    "Mistral",
    {
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": None,
    },
    _layer(False, False, False),
    _head_dim_or_default,
)
QWEN2 = _architecture(
    "qwen2",
    "Qwen2",
    {
        "vocab_size": 151936,
        "hidden_size": 4096,
        "intermediate_size": 22016,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
    },
    _layer(True, False, False),
    _qwen2_head_dim,
)
ARCHITECTURES = (LLAMA, MISTRAL, QWEN2)
