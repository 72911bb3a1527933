"""torch's stacks of deep-copied layers (nn.TransformerEncoder, nn.TransformerDecoder, nn.Transformer), keyed by
tensor (philox-v1): every copy starts with the first copy's values, as torch's deep copies do, because a copy's
stream is keyed by the first copy's tensor name; nn.Transformer then redraws every matrix (xavier_uniform), each
under its own name. Torch's own construction is checked draw for draw and bit for bit in test_torch_order.py."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine.bundle import Copy, ModelRequest, TensorSpec, plan_model, plan_tensor
from service.engine.errors import InitError
from service.engine.recipes.expand import expand, expand_ordered

ENCODER = ["transformer_encoder('transformer_encoder_layer(8, 2, 16)', 3, 'layernorm(8)')"]


def _values(specs: dict[str, TensorSpec], seed: int = 5) -> dict[str, np.ndarray]:
    return {t.name: t.tensor() for t in plan_model(ModelRequest(seed, specs))}


def test_encoder_stack_names_follow_torch():
    specs = expand(ENCODER)
    assert list(specs)[:2] == ["0.layers.0.self_attn.in_proj_weight", "0.layers.0.self_attn.in_proj_bias"]
    assert [n for n in specs if n.startswith("0.norm")] == ["0.norm.weight", "0.norm.bias"]
    assert len([n for n in specs if n.startswith("0.layers.")]) == 3 * 12


def test_copies_have_the_first_copys_bits_keyed_by_its_name():
    specs = expand(ENCODER)
    values = _values(specs)
    copied = [n for n in specs if n.startswith("0.layers.1.") or n.startswith("0.layers.2.")]
    assert copied and all(
        specs[n].copy_of == n.replace(".layers.1.", ".layers.0.").replace(".layers.2.", ".layers.0.") for n in copied
    )
    for name in copied:
        first = specs[name].copy_of
        assert np.array_equal(values[name], values[first]), name
        assert specs[first].copy_of is None
    # keyed by the first copy's name: the single-tensor request with that name has these bits
    name = "0.layers.2.linear1.weight"
    alone = plan_tensor(5, "0.layers.0.linear1.weight", expand(ENCODER)["0.layers.0.linear1.weight"]).tensor()
    assert np.array_equal(values[name], alone)
    meta = next(t for t in plan_model(ModelRequest(5, specs)) if t.name == name).metadata()
    assert meta["origin"]["copy_of"] == "0.layers.0.linear1.weight"


def test_a_rule_draws_each_copy_under_its_own_name():
    specs = expand(ENCODER, rules=[{"layer": "linear", "param": "weight", "scheme": "normal", "std": 0.02}])
    values = _values(specs)
    assert specs["0.layers.1.linear1.weight"].copy_of is None
    assert not np.array_equal(values["0.layers.1.linear1.weight"], values["0.layers.0.linear1.weight"])
    assert np.array_equal(values["0.layers.1.linear1.bias"], values["0.layers.0.linear1.bias"])


def test_transformer_redraws_every_matrix_and_copies_the_rest():
    specs = expand([{"type": "transformer", "name": "", "args": [8, 2, 2, 2, 12]}])
    values = _values(specs)
    matrix, bias = "encoder.layers.1.linear1.weight", "decoder.layers.1.linear2.bias"
    assert specs[matrix].scheme == "xavier_uniform" and specs[matrix].copy_of is None
    assert not np.array_equal(values[matrix], values[matrix.replace(".1.", ".0.")])
    assert specs[bias].copy_of == "decoder.layers.0.linear2.bias"
    assert np.array_equal(values[bias], values["decoder.layers.0.linear2.bias"])
    assert [n for n in specs if "norm." in n and "layers" not in n] == [
        "encoder.norm.weight",
        "encoder.norm.bias",
        "decoder.norm.weight",
        "decoder.norm.bias",
    ]


def test_the_request_keyed_order_copies_after_the_prototype_draws():
    _, order = expand_ordered(["transformer_encoder('linear(3, 4)', 2)"])
    assert order == (
        "0.layers.0.weight",
        "0.layers.0.bias",
        Copy("0.layers.1.weight", "0.layers.0.weight"),
        Copy("0.layers.1.bias", "0.layers.0.bias"),
    )
    request = ModelRequest(1, expand(["transformer_encoder('linear(3, 4)', 2)"]), "torch-2.13", order)
    assert request.draw_order()[2] == "0.layers.1.weight (copy of 0.layers.0.weight)"
    values = {t.name: t.tensor() for t in plan_model(request)}
    assert np.array_equal(values["0.layers.1.weight"], values["0.layers.0.weight"])


@pytest.mark.parametrize(
    ("layers", "framework", "field"),
    [
        (["transformer_encoder('transformer_encoder_layer(8, 3)', 2)"], "torch", "model.layers[0].encoder_layer.nhead"),
        (["transformer_encoder('transformer_encoder_layer(8, 2)', 0)"], "torch", "model.layers[0].num_layers"),
        (["transformer_encoder(3, 2)"], "torch", "model.layers[0].encoder_layer"),
        (["transformer_decoder('linear(2, 2)', 2, 'bogus(1)')"], "torch", "model.layers[0].norm.type"),
        (["transformer(8, 2, activation='tanh')"], "torch", "model.layers[0].activation"),
        (["transformer_encoder('linear(2, 2)', 2000)"], "torch", "model.layers[0].num_layers"),
        (["transformer_encoder('linear(2, 2)', 2)"], "keras", "model.layers[0].type"),
    ],
)
def test_stack_errors_name_the_argument(layers, framework, field):
    with pytest.raises(InitError) as caught:
        expand(layers, framework)
    assert caught.value.field == field


@pytest.mark.parametrize("rng", ["philox-v1", "philox-v2", "torch-2.13"])
def test_copies_start_equal_under_every_rng(rng):
    specs, order = expand_ordered(ENCODER)
    values = {t.name: t.tensor() for t in plan_model(ModelRequest(9, specs, rng, order))}
    copies = [n for n in specs if ".layers.2." in n]
    assert copies and all(np.array_equal(values[n], values[n.replace(".layers.2.", ".layers.0.")]) for n in copies)
