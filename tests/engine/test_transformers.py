"""The transformers tables: what each config expands to, the refusals, and (with transformers installed) the
names, shapes, order and ties against the modelling code of the pinned release."""

from __future__ import annotations

import math

import pytest

from service.engine.bundle import ModelRequest, plan_model
from service.engine.errors import InitError, TooLargeError
from service.engine.recipes.transformers import SEMANTICS, expand_transformers

LLAMA = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "vocab_size": 100,
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
GPT2 = {"model_type": "gpt2", "vocab_size": 100, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64}
BERT = {
    "model_type": "bert",
    "vocab_size": 100,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 48,
    "max_position_embeddings": 64,
}
# (model_type config, head class): the cases checked against transformers, each a variation that changes shapes,
# biases, ties or init.
CASES = [
    ({**LLAMA, "attention_bias": True, "mlp_bias": True, "pad_token_id": 3}, "LlamaForCausalLM"),
    ({**LLAMA, "head_dim": 16, "tie_word_embeddings": True, "pad_token_id": -1}, "LlamaModel"),
    ({**LLAMA, "tie_word_embeddings": True}, "LlamaForCausalLM"),
    ({**LLAMA, "model_type": "mistral", "attention_bias": True}, "MistralForCausalLM"),
    ({**LLAMA, "model_type": "mistral", "head_dim": 4}, "MistralModel"),
    ({**LLAMA, "model_type": "qwen2", "tie_word_embeddings": True}, "Qwen2ForCausalLM"),
    ({**LLAMA, "model_type": "qwen2", "head_dim": 12}, "Qwen2Model"),
    ({**GPT2, "add_cross_attention": True, "n_layer": 3}, "GPT2LMHeadModel"),
    ({**GPT2, "n_inner": 40, "tie_word_embeddings": False}, "GPT2LMHeadModel"),
    ({**GPT2, "initializer_range": 0.0}, "GPT2Model"),
    (BERT, "BertForMaskedLM"),
    ({**BERT, "is_decoder": True, "add_cross_attention": True}, "BertModel"),
    ({**BERT, "tie_word_embeddings": False, "pad_token_id": None}, "BertForPreTraining"),
    ({**BERT, "is_decoder": True, "type_vocab_size": 3}, "BertLMHeadModel"),
]


def test_llama_expands_in_state_dict_order_with_the_head_tied():
    model = expand_transformers({**LLAMA, "tie_word_embeddings": True, "pad_token_id": 0})
    names = list(model.specs)
    assert names[0] == "model.embed_tokens.weight" and names[-1] == "model.norm.weight"
    attention = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")
    rest = ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm")
    assert names[1:10] == [f"model.layers.0.{p}.weight" for p in (*attention, *rest)]
    assert "lm_head.weight" not in model.specs  # save_pretrained writes a tied parameter once
    assert model.tied == {"lm_head.weight": "model.embed_tokens.weight"}
    assert model.specs["model.layers.0.self_attn.k_proj.weight"].shape == (16, 32)  # 2 kv heads of 8
    embed = model.specs["model.embed_tokens.weight"]
    assert (embed.scheme, dict(embed.params)) == ("normal", {"mean": 0.0, "std": 0.02})
    assert [(f.start, f.stop, f.value) for f in embed.fill_rows] == [(0, 1, 0.0)]
    assert model.specs["model.norm.weight"].scheme == "ones"
    assert model.metadata()["semantics"] == SEMANTICS
    assert model.config["architectures"] == ["LlamaForCausalLM"] and model.config["dtype"] == "float32"


def test_gpt2_residual_projections_are_scaled_and_conv1d_is_in_out():
    model = expand_transformers({**GPT2, "n_layer": 8, "initializer_range": 0.04}, "GPT2LMHeadModel")
    assert model.specs["transformer.h.0.attn.c_attn.weight"].shape == (32, 96)  # Conv1D: [in, out]
    for name in ("transformer.h.7.attn.c_proj.weight", "transformer.h.7.mlp.c_proj.weight"):
        assert model.specs[name].params["std"] == pytest.approx(0.04 / math.sqrt(16))
    assert model.specs["transformer.h.0.mlp.c_fc.weight"].params["std"] == 0.04
    assert model.specs["transformer.h.0.mlp.c_fc.bias"].scheme == "zeros"


def test_initializer_range_zero_falls_back_for_linear_and_embedding_only():
    """PreTrainedModel._init_weights uses `initializer_range or 0.02`; GPT-2's Conv1D branch uses it as it is."""
    model = expand_transformers({**GPT2, "initializer_range": 0.0}, "GPT2Model")
    assert model.specs["wte.weight"].params["std"] == 0.02
    assert model.specs["h.0.attn.c_attn.weight"].params["std"] == 0.0


def test_dtype_from_the_request_then_the_config_then_float32():
    assert expand_transformers(LLAMA).dtype == "float32"
    assert expand_transformers({**LLAMA, "torch_dtype": "bfloat16"}).dtype == "bfloat16"
    assert expand_transformers({**LLAMA, "dtype": "float16", "torch_dtype": "bfloat16"}).dtype == "float16"
    model = expand_transformers({**LLAMA, "torch_dtype": "bfloat16"}, dtype="float32")
    assert {spec.dtype for spec in model.specs.values()} == {"float32"}
    assert "torch_dtype" not in model.config and model.config["dtype"] == "float32"


def test_aliases_resolve_as_the_config_class_attribute_map():
    named = expand_transformers({**GPT2, "hidden_size": 32, "num_hidden_layers": 2}, "GPT2Model")
    assert named.specs == expand_transformers(GPT2, "GPT2Model").specs
    with pytest.raises(InitError, match="another name of n_embd"):
        expand_transformers({**GPT2, "hidden_size": 64}, "GPT2Model")


def test_rules_match_by_kind_path_and_in_layer_path():
    rules = [
        {"layer": "linear", "param": "weight", "scheme": "kaiming_normal"},
        {"layer": "mlp.down_proj", "scheme": "zeros"},
        {"layer": "model.layers.1", "param": "bias", "scheme": "ones"},
    ]
    model = expand_transformers({**LLAMA, "mlp_bias": True}, rules=rules)
    specs = model.specs
    q = specs["model.layers.0.self_attn.q_proj.weight"]
    assert (q.scheme, q.fan_in, q.fan_out, q.origin["init"]) == ("kaiming_normal", 32, 32, "rules[0]")
    assert specs["model.layers.0.mlp.down_proj.weight"].scheme == "zeros"
    assert specs["model.layers.1.mlp.down_proj.bias"].scheme == "ones"  # the last matching rule wins
    assert specs["model.layers.0.mlp.up_proj.bias"].scheme == "zeros"  # default
    assert specs["model.embed_tokens.weight"].scheme == "normal"  # an embedding is not a linear


@pytest.mark.parametrize(
    ("config", "architecture", "field", "message"),
    [
        ({**LLAMA, "model_type": "falcon"}, None, "model.config.model_type", "unsupported model_type 'falcon'"),
        ({**LLAMA, "architectures": None}, None, "model.architecture", "lists no architectures"),
        (LLAMA, "LlamaForSequenceClassification", "model.architecture", "not supported for model_type 'llama'"),
        ({**LLAMA, "architectures": ["GPT2LMHeadModel"]}, None, "model.config.architectures[0]", "not supported"),
        ({**LLAMA, "quantization_config": {"bits": 4}}, None, "model.config.quantization_config", "quantized"),
        ({**LLAMA, "hidden_size": 30}, None, "model.config.hidden_size", "multiple of num_attention_heads"),
        ({**LLAMA, "vocab_size": 0}, None, "model.config.vocab_size", "integer >= 1"),
        ({**LLAMA, "vocab_size": 10.0}, None, "model.config.vocab_size", "integer >= 1"),
        ({**LLAMA, "attention_bias": 1}, None, "model.config.attention_bias", "true or false"),
        ({**LLAMA, "initializer_range": -1}, None, "model.config.initializer_range", ">= 0"),
        ({**LLAMA, "pad_token_id": 100}, None, "model.config.pad_token_id", r"\[-100, 100\)"),
        ({**LLAMA, "torch_dtype": "int8"}, None, "model.config.torch_dtype", "give model.dtype"),
        ({**LLAMA, "model_type": "qwen2", "head_dim": None}, "Qwen2Model", "model.config.head_dim", "null"),
        ({**BERT, "add_cross_attention": True}, "BertModel", "model.config.add_cross_attention", "is_decoder"),
    ],
)
def test_refusals_name_the_field(config, architecture, field, message):
    with pytest.raises(InitError, match=message) as caught:
        expand_transformers(config, architecture)
    assert caught.value.field == field


WEIRD = [None, True, 0, -1, 1.5, 10**30, 10**400, float("inf"), float("nan"), "x", [], [1], {}, {"a": 1}]


@pytest.mark.parametrize(
    "base", [LLAMA, {**GPT2, "architectures": ["GPT2Model"]}, {**BERT, "architectures": ["BertModel"]}]
)
def test_any_json_value_of_any_field_is_expanded_or_refused_by_name(base):
    """Never a TypeError (a 500): a null dimension, a list as model_type or dtype, an int beyond float."""
    extra = ("dtype", "torch_dtype", "head_dim", "pad_token_id", "initializer_range", "n_inner", "is_decoder")
    for key in (*base, *extra, "tie_word_embeddings", "add_cross_attention"):
        for value in WEIRD:
            try:
                expand_transformers({**base, key: value}, max_tensors=64)
            except InitError as error:
                assert error.field.startswith(("model.config.", "model.architecture")), (key, value)


def test_layer_count_is_bounded_before_expanding():
    """A config of a million layers is refused by counting, not by building a million-entry dict."""
    with pytest.raises(TooLargeError, match="1000000 layers of 9 tensors"):
        expand_transformers({**LLAMA, "num_hidden_layers": 10**6})
    assert len(expand_transformers({**LLAMA, "num_hidden_layers": 1000}, max_tensors=10**4).specs) == 9003


def test_each_tensor_is_the_single_tensor_request_of_its_name():
    """Keyed by (seed, transformers name): a checkpoint's tensor can be fetched alone, bit for bit."""
    model = expand_transformers(LLAMA)
    tensors = plan_model(ModelRequest(7, model.specs))
    name = "model.layers.1.mlp.up_proj.weight"
    whole = next(t for t in tensors if t.name == name).tensor()
    alone = plan_model(ModelRequest(7, {name: model.specs[name]}))[0].tensor()
    assert whole.tobytes() == alone.tobytes()


transformers = pytest.importorskip("transformers")  # below: against the modelling code itself


@pytest.mark.parametrize(("config", "architecture"), CASES, ids=[f"{a}-{i}" for i, (_, a) in enumerate(CASES)])
def test_tables_match_transformers(config, architecture):
    """Names, shapes and order of the state dict transformers builds, less and naming its tied parameters, and
    every constant exactly as its _init_weights leaves it."""
    assert transformers.__version__ == SEMANTICS.removeprefix("transformers-")
    fields = {k: v for k, v in config.items() if k not in ("model_type", "architectures")}
    built = getattr(transformers, architecture)(transformers.AutoConfig.for_model(config["model_type"], **fields))
    tied = dict(built.all_tied_weights_keys)
    expected = [(name, tuple(t.shape)) for name, t in built.state_dict().items() if name not in tied]
    model = expand_transformers(config, architecture)
    assert [(name, spec.shape) for name, spec in model.specs.items()] == expected
    assert model.tied == tied
    state = built.state_dict()
    for name, spec in model.specs.items():
        values = state[name].float()
        if spec.scheme in ("zeros", "ones"):
            assert bool((values == (spec.scheme == "ones")).all()), name
        if spec.scheme == "normal" and spec.params["std"] > 0:  # its zero rows are padding_idx's, and only those
            zero_rows = {i for i, row in enumerate(values.reshape(len(values), -1)) if not row.any()}
            assert zero_rows == {i for f in spec.fill_rows for i in range(f.start, f.stop)}, name
