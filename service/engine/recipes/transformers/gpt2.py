"""GPT-2 (transformers 5.24.0: models/gpt2/modeling_gpt2.py).

    GPT2Model: wte, wpe, h.{i}.(ln_1, attn.c_attn, attn.c_proj, ln_2, [crossattention.c_attn, crossattention.q_attn,
               crossattention.c_proj, ln_cross_attn], mlp.c_fc, mlp.c_proj), ln_f
    GPT2LMHeadModel: transformer.* and lm_head (no bias), tied to transformer.wte.weight under tie_word_embeddings

The projections are Conv1D: weight [in, out], initialised normal(0, initializer_range) by GPT2PreTrainedModel's
own branch (no 0.02 fallback). Each attention's and MLP's c_proj is then drawn again with std
initializer_range / sqrt(2 * n_layer) (the GPT-2 paper's scaled residual init): that second draw is what stays.
The embeddings take no padding_idx. The MLP is n_inner wide, 4 * n_embd when null.
"""

from __future__ import annotations

from typing import Any

from service.engine.recipes.transformers.table import Architecture, Conv1D, Embedding, Head, Linear, Norm


def _inner(config: dict[str, Any]) -> None:
    if config["n_inner"] is None:
        config["n_inner"] = 4 * config["n_embd"]


GPT2 = Architecture(
    model_type="gpt2",
    defaults={
        "vocab_size": 50257,
        "n_positions": 1024,
        "n_embd": 768,
        "n_layer": 12,
        "n_head": 12,
        "n_inner": None,
        "initializer_range": 0.02,
        "add_cross_attention": False,
        "tie_word_embeddings": True,
    },
    ints=("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner"),
    aliases={
        "hidden_size": "n_embd",
        "max_position_embeddings": "n_positions",
        "num_attention_heads": "n_head",
        "num_hidden_layers": "n_layer",
    },
    before=(Embedding("wte", "vocab_size", "n_embd"), Embedding("wpe", "n_positions", "n_embd")),
    layers="h",
    layer=(
        Norm("ln_1", "n_embd"),
        Conv1D("attn.c_attn", "n_embd", "3*n_embd"),
        Conv1D("attn.c_proj", "n_embd", "n_embd", residual=True),
        Norm("ln_2", "n_embd"),
        Conv1D("crossattention.c_attn", "n_embd", "2*n_embd", when="add_cross_attention"),
        Conv1D("crossattention.q_attn", "n_embd", "n_embd", when="add_cross_attention"),
        Conv1D("crossattention.c_proj", "n_embd", "n_embd", residual=True, when="add_cross_attention"),
        Norm("ln_cross_attn", "n_embd", when="add_cross_attention"),
        Conv1D("mlp.c_fc", "n_embd", "n_inner"),
        Conv1D("mlp.c_proj", "n_inner", "n_embd", residual=True),
    ),
    after=(Norm("ln_f", "n_embd"),),
    heads={
        "GPT2Model": Head(""),
        "GPT2LMHeadModel": Head(
            "transformer.",
            (Linear("lm_head", "n_embd", "vocab_size", bias=False),),
            {"lm_head.weight": "transformer.wte.weight"},
        ),
    },
    layer_count="n_layer",
    derive=_inner,
    divisible=(("n_embd", "n_head"),),
)
ARCHITECTURES = (GPT2,)
