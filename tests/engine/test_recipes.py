"""Recipes: names, shapes and default inits per layer type in both frameworks, rules, and the layers' real fans."""

from __future__ import annotations

import math
import sys

import pytest

from service.engine.bundle import ModelRequest, Overwritten, RowFill, plan_model
from service.engine.errors import InitError, TooLargeError
from service.engine.recipes.expand import expand, expand_ordered
from service.engine.recipes.syntax import parse_layer


def _shapes(layers, framework="torch", **kw):
    return {name: spec.shape for name, spec in expand(layers, framework, **kw).items()}


def _inits(layers, framework="torch", **kw):
    return {name: (spec.scheme, dict(spec.params)) for name, spec in expand(layers, framework, **kw).items()}


# ---- names and shapes ----


TORCH_SHAPES = [
    ("linear(784, 256)", {"0.weight": (256, 784), "0.bias": (256,)}),
    ("linear(4, 2, bias=false)", {"0.weight": (2, 4)}),
    ("conv1d(4, 8, 5)", {"0.weight": (8, 4, 5), "0.bias": (8,)}),
    ("conv2d(6, 12, (3, 5), groups=3)", {"0.weight": (12, 2, 3, 5), "0.bias": (12,)}),
    ("conv3d(2, 4, 3, bias=False)", {"0.weight": (4, 2, 3, 3, 3)}),
    ("conv_transpose2d(8, 12, 3, groups=4)", {"0.weight": (8, 3, 3, 3), "0.bias": (12,)}),
    ("embedding(100, 16)", {"0.weight": (100, 16)}),
    ("layernorm([3, 4])", {"0.weight": (3, 4), "0.bias": (3, 4)}),
    ("layernorm(8, bias=false)", {"0.weight": (8,)}),
    (
        "batchnorm2d(5)",
        {
            "0.weight": (5,),
            "0.bias": (5,),
            "0.running_mean": (5,),
            "0.running_var": (5,),
            "0.num_batches_tracked": (),
        },
    ),
    ("batchnorm1d(5, affine=False, track_running_stats=False)", {}),
    ("groupnorm(2, 6)", {"0.weight": (6,), "0.bias": (6,)}),
    ("prelu(3)", {"0.weight": (3,)}),
    (
        "gru(4, 6, bidirectional=True)",
        {
            "0.weight_ih_l0": (18, 4),
            "0.weight_hh_l0": (18, 6),
            "0.bias_ih_l0": (18,),
            "0.bias_hh_l0": (18,),
            "0.weight_ih_l0_reverse": (18, 4),
            "0.weight_hh_l0_reverse": (18, 6),
            "0.bias_ih_l0_reverse": (18,),
            "0.bias_hh_l0_reverse": (18,),
        },
    ),
    (
        "multihead_attention(8, 2)",
        {
            "0.in_proj_weight": (24, 8),
            "0.in_proj_bias": (24,),
            "0.out_proj.weight": (8, 8),
            "0.out_proj.bias": (8,),
        },
    ),
]


@pytest.mark.parametrize(("layer", "expected"), TORCH_SHAPES)
def test_torch_names_and_shapes(layer, expected):
    if not expected:
        with pytest.raises(InitError, match="no parameters"):
            expand([layer])
        return
    assert _shapes([layer]) == expected


def test_lstm_stacks_layers_with_torch_names_and_input_sizes():
    shapes = _shapes(["lstm: lstm(10, 20, 2, bias=false)"])
    assert shapes == {
        "lstm.weight_ih_l0": (80, 10),
        "lstm.weight_hh_l0": (80, 20),
        "lstm.weight_ih_l1": (80, 20),
        "lstm.weight_hh_l1": (80, 20),
    }


def test_sequential_numbering_counts_parameterless_layers_and_names_nest():
    layers = [
        "linear(4, 8)",
        "relu",
        "dropout(0.5)",
        "head: linear(8, 2)",
        {"type": "sequential", "name": "block", "layers": ["conv1d(2, 2, 1)", "gelu", "conv1d(2, 2, 1)"]},
        {"type": "sequential", "layers": ["layernorm(2)"]},
    ]
    assert list(_shapes(layers)) == [
        "0.weight",
        "0.bias",
        "head.weight",
        "head.bias",
        "block.0.weight",
        "block.0.bias",
        "block.2.weight",
        "block.2.bias",
        "5.0.weight",
        "5.0.bias",
    ]


def test_transformer_encoder_layer_has_torch_names():
    assert list(_shapes([{"type": "transformer_encoder_layer", "name": "", "args": [16, 4, 32]}])) == [
        "self_attn.in_proj_weight",
        "self_attn.in_proj_bias",
        "self_attn.out_proj.weight",
        "self_attn.out_proj.bias",
        "linear1.weight",
        "linear1.bias",
        "linear2.weight",
        "linear2.bias",
        "norm1.weight",
        "norm1.bias",
        "norm2.weight",
        "norm2.bias",
    ]


def test_keras_names_layouts_and_auto_numbering():
    shapes = _shapes(
        [
            "linear(3, 4)",
            "relu",
            "linear(4, 5, bias=false)",
            "conv2d(3, 8, (3, 5), groups=1)",
            "conv_transpose2d(8, 4, 3)",
            "embedding(10, 6)",
            "batchnorm2d(4)",
            "layernorm(6)",
            "lstm(6, 8, 2)",
            "gru(8, 5)",
            "rnn(5, 3)",
            "multihead_attention(8, 2)",
            "out: linear(8, 1)",
        ],
        "keras",
    )
    assert shapes == {
        "dense/kernel": (3, 4),
        "dense/bias": (4,),
        "dense_1/kernel": (4, 5),
        "conv2d/kernel": (3, 5, 3, 8),
        "conv2d/bias": (8,),
        "conv2d_transpose/kernel": (3, 3, 4, 8),
        "conv2d_transpose/bias": (4,),
        "embedding/embeddings": (10, 6),
        "batch_normalization/gamma": (4,),
        "batch_normalization/beta": (4,),
        "batch_normalization/moving_mean": (4,),
        "batch_normalization/moving_variance": (4,),
        "layer_normalization/gamma": (6,),
        "layer_normalization/beta": (6,),
        "lstm/lstm_cell/kernel": (6, 32),
        "lstm/lstm_cell/recurrent_kernel": (8, 32),
        "lstm/lstm_cell/bias": (32,),
        "lstm_1/lstm_cell/kernel": (8, 32),
        "lstm_1/lstm_cell/recurrent_kernel": (8, 32),
        "lstm_1/lstm_cell/bias": (32,),
        "gru/gru_cell/kernel": (8, 15),
        "gru/gru_cell/recurrent_kernel": (5, 15),
        "gru/gru_cell/bias": (2, 15),
        "simple_rnn/simple_rnn_cell/kernel": (5, 3),
        "simple_rnn/simple_rnn_cell/recurrent_kernel": (3, 3),
        "simple_rnn/simple_rnn_cell/bias": (3,),
        "multi_head_attention/query/kernel": (8, 2, 4),
        "multi_head_attention/query/bias": (2, 4),
        "multi_head_attention/key/kernel": (8, 2, 4),
        "multi_head_attention/key/bias": (2, 4),
        "multi_head_attention/value/kernel": (8, 2, 4),
        "multi_head_attention/value/bias": (2, 4),
        "multi_head_attention/attention_output/kernel": (2, 4, 8),
        "multi_head_attention/attention_output/bias": (8,),
        "out/kernel": (8, 1),
        "out/bias": (1,),
    }


# ---- default inits ----


def test_torch_defaults():
    specs = expand(
        [
            "conv_transpose2d(8, 12, 3, groups=4)",
            "embedding(10, 4, padding_idx=-1)",
            "batchnorm2d(3)",
            "lstm(4, 16)",
            "multihead_attention(8, 2)",
            "prelu(2, init=0.1)",
        ]
    )
    assert specs["0.weight"].scheme == "torch_default" and specs["0.weight"].fan_in is None
    # torch's bias bound reads fan_in off the transposed weight [in, out/groups, k, k]: 3 * 9.
    assert (specs["0.bias"].scheme, specs["0.bias"].fan_in) == ("torch_default", 27)
    assert (specs["1.weight"].scheme, specs["1.weight"].fill_rows) == ("normal", (RowFill(9, 10, 0.0),))
    assert [specs[f"2.{p}"].scheme for p in ("weight", "bias", "running_mean", "running_var")] == [
        "ones",
        "zeros",
        "zeros",
        "ones",
    ]
    assert (specs["2.num_batches_tracked"].scheme, specs["2.num_batches_tracked"].dtype) == ("zeros", "int64")
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        assert (specs[f"3.{name}"].scheme, dict(specs[f"3.{name}"].params)) == ("uniform", {"a": -0.25, "b": 0.25})
    assert [specs[f"4.{p}"].scheme for p in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")] == [
        "xavier_uniform",
        "zeros",
        "torch_default",
        "zeros",
    ]
    assert (specs["5.weight"].scheme, dict(specs["5.weight"].params)) == ("constant", {"val": 0.1})


def test_keras_defaults():
    inits = _inits(
        ["linear(3, 4)", "embedding(10, 6)", "batchnorm1d(4)", "lstm(6, 8)", "multihead_attention(4, 2)"], "keras"
    )
    assert inits["dense/kernel"] == ("glorot_uniform", {})
    assert inits["dense/bias"] == ("zeros", {})
    assert inits["embedding/embeddings"] == ("random_uniform", {"minval": -0.05, "maxval": 0.05})
    assert [inits[f"batch_normalization/{p}"][0] for p in ("gamma", "beta", "moving_mean", "moving_variance")] == [
        "ones",
        "zeros",
        "zeros",
        "ones",
    ]
    assert inits["lstm/lstm_cell/recurrent_kernel"][0] == "orthogonal"
    assert inits["multi_head_attention/query/kernel"][0] == "glorot_uniform"
    specs = expand(["lstm(6, 8)"], "keras")
    assert all(spec.layout == "keras" for spec in specs.values())
    # unit_forget_bias: the forget gate's slice [h, 2h) of the bias is 1.
    bias = {t.name: t.tensor() for t in plan_model(ModelRequest(0, specs))}["lstm/lstm_cell/bias"]
    assert bias.tolist() == [0.0] * 8 + [1.0] * 8 + [0.0] * 16
    no_forget = expand(["lstm(6, 8, unit_forget_bias=false)"], "keras")["lstm/lstm_cell/bias"]
    assert no_forget.fill_rows == ()


# ---- rules ----


def test_rules_later_wins_by_type_group_path_and_param():
    layers = [
        "conv2d(3, 8, 3)",
        "bn: batchnorm2d(8)",
        {"type": "sequential", "name": "head", "layers": ["linear(8, 2)"]},
    ]
    rules = [
        {"layer": "*", "param": "*", "scheme": "normal", "std": 0.1},
        {"layer": "conv", "param": "weight", "scheme": "kaiming_normal", "mode": "fan_out", "nonlinearity": "relu"},
        {"param": "bias", "scheme": "zeros"},
        {"layer": "head", "param": "weight", "scheme": "xavier_uniform"},
        {"layer": "bn", "param": "running_var", "scheme": "constant", "val": 2.0},
    ]
    inits = _inits(layers, rules=rules)
    assert inits["0.weight"] == ("kaiming_normal", {"mode": "fan_out", "nonlinearity": "relu"})
    assert inits["0.bias"] == ("zeros", {})
    assert inits["bn.weight"] == ("normal", {"std": 0.1})
    assert inits["bn.bias"] == ("zeros", {})
    assert inits["bn.running_mean"] == ("zeros", {})  # "*" leaves buffers alone
    assert inits["bn.running_var"] == ("constant", {"val": 2.0})
    assert inits["bn.num_batches_tracked"] == ("zeros", {})
    assert inits["head.0.weight"] == ("xavier_uniform", {})
    assert inits["head.0.bias"] == ("zeros", {})
    origins = {name: spec.origin["init"] for name, spec in expand(layers, rules=rules).items()}
    assert origins["0.weight"] == "rules[1]" and origins["bn.running_mean"] == "default"


def test_rules_match_keras_names_and_parameter_keys():
    rules = [
        {"layer": "lstm", "param": "weight_hh", "scheme": "orthogonal", "gain": 0.5},
        {"param": "kernel", "scheme": "he_uniform"},
    ]
    keras = _inits(["linear(2, 3)", "lstm(3, 4)"], "keras", rules=rules)
    assert keras["dense/kernel"] == ("he_uniform", {})
    assert keras["lstm/lstm_cell/kernel"] == ("he_uniform", {})
    assert keras["lstm/lstm_cell/recurrent_kernel"] == ("orthogonal", {"gain": 0.5})
    torch = _inits(["lstm(3, 4, 2)"], rules=rules[:1])
    assert torch["0.weight_hh_l1"] == ("orthogonal", {"gain": 0.5}) and torch["0.weight_ih_l1"][0] == "uniform"


# ---- real fans ----


def _rule_fans(layer, framework="torch", fans="layer"):
    rules = [{"param": "weight", "scheme": "kaiming_normal", "fans": fans}]
    if framework == "keras":
        rules = [{"param": "weight", "scheme": "he_normal", "fans": fans}]
    spec = next(iter(expand([layer], framework, rules=rules).values()))
    return spec.fan_in, spec.fan_out


@pytest.mark.parametrize("framework", ["torch", "keras"])
@pytest.mark.parametrize(
    ("layer", "fans"),
    [
        ("linear(784, 256)", (784, 256)),
        ("conv2d(16, 32, 3)", (144, 288)),
        ("conv2d(16, 32, 3, groups=4)", (36, 72)),  # grouped: torch's fan_out says 288
        ("conv2d(16, 16, 3, groups=16)", (9, 9)),  # depthwise: torch's fan_out says 144
        ("conv1d(8, 24, 5, groups=8)", (5, 15)),  # depthwise with multiplier 3
        ("conv_transpose2d(16, 32, 3)", (144, 288)),  # transposed: torch reads (288, 144)
        ("embedding(1000, 64)", (1000, 64)),
        ("multihead_attention(64, 8)", (64, 64)),  # per projection: torch's xavier reads (64, 192)
    ],
)
def test_rules_get_the_layers_real_fans(layer, framework, fans):
    if framework == "keras" and "groups" in layer and "transpose" in layer:
        pytest.skip("Keras has no grouped transposed convolution")
    assert _rule_fans(layer, framework) == fans


def test_real_fans_of_recurrent_gates():
    specs = expand(["lstm(10, 20, 2)"], rules=[{"scheme": "xavier_uniform"}])
    assert (specs["0.weight_ih_l0"].fan_in, specs["0.weight_ih_l0"].fan_out) == (10, 20)  # per gate, not 80
    assert (specs["0.weight_ih_l1"].fan_in, specs["0.weight_ih_l1"].fan_out) == (20, 20)
    assert (specs["0.weight_hh_l0"].fan_in, specs["0.weight_hh_l0"].fan_out) == (20, 20)


def test_framework_fans_read_the_shape_as_the_framework_does():
    assert _rule_fans("conv_transpose2d(16, 32, 3)", fans="framework") == (None, None)
    spec = expand(
        ["conv_transpose2d(16, 32, 3)"], rules=[{"param": "weight", "scheme": "kaiming_normal", "fans": "framework"}]
    )
    tensor = plan_model(ModelRequest(0, spec))[0]
    assert (tensor.metadata()["fan_in"], spec["0.weight"].shape) == (32 * 9, (16, 32, 3, 3))
    real = plan_model(
        ModelRequest(
            0, expand(["conv_transpose2d(16, 32, 3)"], rules=[{"param": "weight", "scheme": "kaiming_normal"}])
        )
    )[0]
    assert real.metadata()["fan_in"] == 16 * 9
    assert real.metadata()["std"] == pytest.approx(math.sqrt(2 / 144))  # gain sqrt(2) (leaky_relu, a=0) / sqrt(fan_in)


# ---- errors ----


@pytest.mark.parametrize(
    ("layers", "framework", "field", "words"),
    [
        (["linaer(2, 3)"], "torch", "model.layers[0].type", "unknown layer type 'linaer'"),
        (["linear(2)"], "torch", "model.layers[0].out_features", "needs argument 'out_features'"),
        (["linear(2, 3, bogus=1)"], "torch", "model.layers[0].bogus", "has no argument 'bogus'"),
        (["linear(2, -1)"], "torch", "model.layers[0].out_features", "integer >= 0"),
        (["linear(3, 0)"], "keras", "model.layers[0].out_features", "must be >= 1 for Keras's Dense (its units)"),
        (["linear(2, 3, true, 4)"], "torch", "model.layers[0]", "at most 3 positional"),
        (["conv2d(6, 4, 3, groups=4)"], "torch", "model.layers[0].groups", "in_channels must be divisible by groups"),
        (["conv2d(6, 6, (3, 3, 3))"], "torch", "model.layers[0].kernel_size", "one integer or 2"),
        (
            ["relu", "linear(2, 3)", {"type": "linear", "name": "1", "args": [3, 4]}],
            "torch",
            "model.layers[2].name",
            "also produced",
        ),
        (["multihead_attention(10, 3)"], "torch", "model.layers[0].num_heads", "divisible"),
        (["gru(2, 3, reset_after=false)"], "torch", "model.layers[0].reset_after", "reset_after=True"),
        (["transformer_encoder_layer(8, 2)"], "keras", "model.layers[0].type", "Keras has no transformer"),
        (["embedding(5, 2, padding_idx=5)"], "torch", "model.layers[0].padding_idx", "within num_embeddings"),
        ([{"type": "sequential", "layers": ["linear(2, 3"]}], "torch", "model.layers[0].layers[0]", "expected"),
        ([{"name": "x"}], "torch", "model.layers[0].type", "'type'"),
        ([], "torch", "model.layers", "non-empty"),
    ],
)
def test_errors_name_the_layer_and_argument(layers, framework, field, words):
    with pytest.raises(InitError) as caught:
        expand(layers, framework)
    assert caught.value.field == field
    assert words in caught.value.message


def test_rule_errors_name_the_rule_and_field():
    with pytest.raises(InitError) as caught:
        expand(["linear(2, 3)"], rules=[{"scheme": "normal"}, {"scheme": "kaiming_normal", "gain": 2}])
    assert caught.value.field == "model.rules[1].gain"
    with pytest.raises(InitError) as caught:
        expand(["linear(2, 3)"], rules=[{"scheme": "normal", "fans": "shape"}])
    assert caught.value.field == "model.rules[0].fans"


def test_size_limits_hold_during_expansion():
    with pytest.raises(TooLargeError, match="at most 4096 layers"):
        expand(["relu"] * 5000)
    with pytest.raises(InitError, match="at most 64 layers"):
        expand(["lstm(2, 2, 1000000000)"])


def _nested(depth: int, leaves: int, name: str = "s") -> list:
    layers: list = ["linear(1, 1)"] * leaves
    for level in range(depth):
        layers = [{"type": "sequential", "name": f"{name}{level}", "layers": layers}]
    return layers


def _calls(function) -> int:
    """Python and builtin function calls made by function(): a count of work that no machine load changes."""
    calls = 0

    def profile(frame, event, arg) -> None:
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(profile)
    try:
        function()
    finally:
        sys.setprofile(None)
    return calls


def test_expansion_work_is_linear_in_layers_and_rules():
    """The issue's recipe shape (31 nested sequentials, linear(1, 1) leaves, 256 rules that match nothing) took
    rules x parameters x depth string joins (14 s at 2,000 leaves); now a parameter looks its rule up."""
    layers, leaves = _nested(31, 200), 200
    rules = [{"layer": f"nomatch{i}", "param": "weight", "scheme": "zeros"} for i in range(256)]
    specs = expand(layers, rules=rules)
    assert len(specs) == 2 * leaves and all(spec.origin["init"] == "default" for spec in specs.values())
    assert _calls(lambda: expand(layers, rules=rules)) <= 400 * (31 + leaves + len(rules))


def test_rule_lookup_keeps_last_match_wins_across_patterns():
    rules = [
        {"layer": "s1", "param": "weight", "scheme": "ones"},  # a module path prefix
        {"layer": "linear", "param": "*", "scheme": "zeros"},  # a type, every parameter
        {"layer": "s1.s0", "param": "bias", "scheme": "normal"},  # a longer prefix, one role
        {"layer": "sequential", "param": "0.weight", "scheme": "constant", "val": 2.0},  # an ancestor, no such name
    ]
    inits = _inits(_nested(2, 1), rules=rules)
    assert inits == {"s1.s0.0.weight": ("zeros", {}), "s1.s0.0.bias": ("normal", {})}


def test_names_are_bounded():
    deep = _nested(3, 1, name="x" * 100)  # module paths of 100, 201 and 302 characters
    with pytest.raises(InitError, match="exceeds 256 characters") as caught:
        expand(deep)
    assert caught.value.field == "model.layers[0].layers[0].layers[0].name"
    assert len(expand(_nested(2, 1, name="x" * 100))) == 2


# ---- the compact syntax ----


def test_syntax_reads_python_and_json_spellings():
    call = parse_layer("conv1: conv2d(3, 64, (3, 3), stride=2, padding='same', bias=False, eps=1e-5, x=None)")
    assert (call.name, call.type, call.positional) == ("conv1", "conv2d", [3, 64, [3, 3]])
    assert call.keyword == {"stride": 2, "padding": "same", "bias": False, "eps": 1e-5, "x": None}
    assert parse_layer("0: relu").name == "0"
    assert parse_layer("linear(2, 3, bias=true,)").keyword == {"bias": True}


@pytest.mark.parametrize(
    "text",
    ["linear(2,,3)", "linear(a=1, 2)", "linear(2", "linear(2) x", "lin ear", "f([[[[[[1]]]]]])", "f(__import__)"],
)
def test_syntax_refuses_what_it_cannot_read(text):
    with pytest.raises(InitError):
        parse_layer(text)


def test_docs_describe_every_layer_type():
    from pathlib import Path

    from service.engine.recipes.layers import LAYER_TYPES

    text = (Path(__file__).resolve().parents[2] / "docs" / "models.md").read_text()
    for layer in LAYER_TYPES:
        family = f"`{layer.name[:-2]}1d/2d/3d`"  # conv_transpose1d/2d/3d and the like are listed together
        assert f"`{layer.name}`" in text or family in text, layer.name


# ---- draw order (for an rng keyed by request; tests/engine/test_torch_order.py checks it against torch) ----


@pytest.mark.parametrize(
    "layer", [layer for layer, expected in TORCH_SHAPES if expected] + ["transformer_decoder_layer(8, 2, 4)"]
)
def test_torch_order_draws_every_tensor_once_after_any_overwritten_draw(layer):
    specs, order = expand_ordered([layer])
    drawn = [step for step in order if isinstance(step, str)]
    assert sorted(drawn) == sorted(specs)  # each tensor's own draw once, integer buffers included (they draw nothing)
    for index, step in enumerate(order):
        if isinstance(step, Overwritten):
            assert index < order.index(step.name)  # an overwritten draw comes before the tensor's own


def test_rules_draw_after_construction_in_state_dict_order_over_the_models_dtype():
    rules = [
        {"param": "bias", "scheme": "zeros"},
        {"layer": "0", "param": "weight", "scheme": "normal", "dtype": "float64"},
    ]
    specs, order = expand_ordered(["linear(3, 2)", "linear(2, 1)"], rules=rules, dtype="float16")
    assert [(s.name, s.spec.scheme, s.spec.dtype) for s in order if isinstance(s, Overwritten)] == [
        ("0.weight", "torch_default", "float16"),  # built in the model's dtype, then the rule converts and draws
        ("0.bias", "torch_default", "float16"),
        ("1.bias", "torch_default", "float16"),
    ]
    assert [s for s in order if isinstance(s, str)] == ["1.weight", "0.weight", "0.bias", "1.bias"]
    assert specs["0.weight"].dtype == "float64" and specs["1.weight"].dtype == "float16"


def test_keras_draws_each_tensor_once_in_state_dict_order():
    assert expand_ordered(["linear(3, 2)", "multihead_attention(4, 2)"], "keras")[1] is None
