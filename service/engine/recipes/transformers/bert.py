"""BERT (transformers 5.24.0: models/bert/modeling_bert.py).

    BertModel: embeddings.(word_embeddings [padding_idx = pad_token_id], position_embeddings, token_type_embeddings,
               LayerNorm), encoder.layer.{i}.(attention.self.{query,key,value}, attention.output.(dense, LayerNorm),
               [crossattention.*, the same], intermediate.dense, output.(dense, LayerNorm)), pooler.dense
    BertForMaskedLM, BertLMHeadModel: bert.* without the pooler, then cls.predictions.(bias, transform.dense,
               transform.LayerNorm, decoder); BertForPreTraining: with the pooler, and cls.seq_relationship
    Under tie_word_embeddings, cls.predictions.decoder.weight is tied to bert.embeddings.word_embeddings.weight and
    cls.predictions.decoder.bias to cls.predictions.bias.

Every Linear has a bias (zeros); cls.predictions.bias is a bare parameter, zeros. position_ids and token_type_ids
are non-persistent buffers: not in the state dict. Cross-attention exists with add_cross_attention, which
transformers accepts only for a decoder (is_decoder).
"""

from __future__ import annotations

from typing import Any

from service.engine.errors import InitError
from service.engine.recipes.transformers.table import Architecture, Bias, Embedding, Head, Linear, Module, Norm


def _attention(prefix: str, when: str | bool = True) -> tuple[Module, ...]:
    return (
        Linear(f"{prefix}.self.query", "hidden_size", "hidden_size", when=when),
        Linear(f"{prefix}.self.key", "hidden_size", "hidden_size", when=when),
        Linear(f"{prefix}.self.value", "hidden_size", "hidden_size", when=when),
        Linear(f"{prefix}.output.dense", "hidden_size", "hidden_size", when=when),
        Norm(f"{prefix}.output.LayerNorm", "hidden_size", when=when),
    )


def _cross_attention_needs_decoder(config: dict[str, Any]) -> None:
    if config["add_cross_attention"] and not config["is_decoder"]:
        raise InitError(
            "model.config.add_cross_attention",
            "model.config.add_cross_attention: BERT adds cross-attention only to a decoder (is_decoder: true)",
        )


_PREDICTIONS = (
    Bias("cls.predictions.bias", "vocab_size"),
    Linear("cls.predictions.transform.dense", "hidden_size", "hidden_size"),
    Norm("cls.predictions.transform.LayerNorm", "hidden_size"),
    Linear("cls.predictions.decoder", "hidden_size", "vocab_size"),
)
_NEXT_SENTENCE = Linear("cls.seq_relationship", "hidden_size", 2)
_TIED = {
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}
_POOLER, _NO_POOLER = {"add_pooling_layer": True}, {"add_pooling_layer": False}

BERT = Architecture(
    model_type="bert",
    defaults={
        "vocab_size": 30522,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "pad_token_id": 0,
        "is_decoder": False,
        "add_cross_attention": False,
        "tie_word_embeddings": True,
    },
    ints=(
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "max_position_embeddings",
        "type_vocab_size",
    ),
    before=(
        Embedding("embeddings.word_embeddings", "vocab_size", "hidden_size", padding="pad_token_id"),
        Embedding("embeddings.position_embeddings", "max_position_embeddings", "hidden_size"),
        Embedding("embeddings.token_type_embeddings", "type_vocab_size", "hidden_size"),
        Norm("embeddings.LayerNorm", "hidden_size"),
    ),
    layers="encoder.layer",
    layer=(
        *_attention("attention"),
        *_attention("crossattention", when="add_cross_attention"),
        Linear("intermediate.dense", "hidden_size", "intermediate_size"),
        Linear("output.dense", "intermediate_size", "hidden_size"),
        Norm("output.LayerNorm", "hidden_size"),
    ),
    after=(Linear("pooler.dense", "hidden_size", "hidden_size", when="add_pooling_layer"),),
    heads={
        "BertModel": Head("", fields=_POOLER),
        "BertForMaskedLM": Head("bert.", _PREDICTIONS, _TIED, _NO_POOLER),
        "BertLMHeadModel": Head("bert.", _PREDICTIONS, _TIED, _NO_POOLER),
        "BertForPreTraining": Head("bert.", (*_PREDICTIONS, _NEXT_SENTENCE), _TIED, _POOLER),
    },
    derive=_cross_attention_needs_decoder,
    divisible=(("hidden_size", "num_attention_heads"),),
)
ARCHITECTURES = (BERT,)
