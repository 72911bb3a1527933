"""Layer arguments are refused as the framework refuses them (torch 2.13's constructors): a 422 naming the field
and the framework's rule, where the service used to accept them and hand out weights for a module torch would
never build. With torch installed, each case is checked against torch itself: it refuses too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from service.engine.errors import InitError
from service.engine.recipes.expand import expand

# layer, field, words of the message, torch's own constructor (it must raise too)
REFUSED: list[tuple[str, str, str, Callable[[Any], Any]]] = [
    (
        "rnn(4, 3, nonlinearity='gelu')",
        "nonlinearity",
        "select from 'tanh' or 'relu'",
        lambda nn: nn.RNN(4, 3, nonlinearity="gelu"),
    ),
    ("lstm(4, 8, dropout=1.5)", "dropout", "range [0, 1]", lambda nn: nn.LSTM(4, 8, dropout=1.5)),
    ("gru(4, 8, dropout=-0.1)", "dropout", "range [0, 1]", lambda nn: nn.GRU(4, 8, dropout=-0.1)),
    ("gru(4, 8, dropout=true)", "dropout", "range [0, 1]", lambda nn: nn.GRU(4, 8, dropout=True)),
    (
        "conv2d(3, 4, 3, padding_mode='bogus')",
        "padding_mode",
        "must be one of",
        lambda nn: nn.Conv2d(3, 4, 3, padding_mode="bogus"),
    ),
    (
        "conv1d(3, 4, 3, padding='full')",
        "padding",
        "invalid padding string",
        lambda nn: nn.Conv1d(3, 4, 3, padding="full"),
    ),
    (
        "conv2d(3, 4, 3, stride=2, padding='same')",
        "padding",
        "strided",
        lambda nn: nn.Conv2d(3, 4, 3, stride=2, padding="same"),
    ),
    (
        "conv_transpose2d(3, 4, 3, padding_mode='reflect')",
        "padding_mode",
        "'zeros'",
        lambda nn: nn.ConvTranspose2d(3, 4, 3, padding_mode="reflect"),
    ),
    ("lstm(4, 8, proj_size=8)", "proj_size", "smaller than hidden_size", lambda nn: nn.LSTM(4, 8, proj_size=8)),
    ("lstm(4, 8, proj_size=-1)", "proj_size", "positive integer or zero", lambda nn: nn.LSTM(4, 8, proj_size=-1)),
    (
        "transformer_encoder_layer(16, 2, activation='bogus')",
        "activation",
        "relu/gelu",
        lambda nn: nn.TransformerEncoderLayer(16, 2, activation="bogus"),
    ),
    (
        "transformer_decoder_layer(16, 2, 32, 0.1, 'tanh')",
        "activation",
        "relu/gelu",
        lambda nn: nn.TransformerDecoderLayer(16, 2, 32, 0.1, "tanh"),
    ),
]


@pytest.mark.parametrize(("layer", "field", "words", "theirs"), REFUSED, ids=[case[0] for case in REFUSED])
def test_refused_as_torch_refuses(layer, field, words, theirs):
    with pytest.raises(InitError) as caught:
        expand([layer], "torch")
    assert caught.value.field == f"model.layers[0].{field}"
    assert words in caught.value.message and "PyTorch's rule" in caught.value.message
    torch = pytest.importorskip("torch")
    with pytest.raises((ValueError, RuntimeError)):
        theirs(torch.nn)


# Accepted as torch accepts them (refused before only by our stricter reading, or never refused).
ACCEPTED = [
    "rnn(4, 3, nonlinearity='relu')",
    "lstm(4, 8, 2, dropout=1)",
    "conv2d(3, 4, 3, padding='same')",
    "conv1d(3, 4, 3, padding='valid', stride=2)",
    "conv2d(3, 4, 3, padding_mode='circular')",
    "transformer_encoder_layer(16, 2, activation='gelu')",
]


@pytest.mark.parametrize("layer", ACCEPTED)
def test_accepted_as_torch_accepts(layer):
    assert expand([layer], "torch")


def test_conv_kernel_of_the_wrong_rank_stays_refused_saying_why():
    """torch 2.13 builds Conv2d(3, 4, (3, 3, 3)) with a 5-D weight its forward refuses: a deliberate difference."""
    with pytest.raises(InitError, match="5-D weight") as caught:
        expand(["conv2d(3, 4, (3, 3, 3))"], "torch")
    assert caught.value.field == "model.layers[0].kernel_size"


def test_keras_embedding_padding_idx_says_it_is_torchs():
    with pytest.raises(InitError, match="padding_idx is PyTorch's") as caught:
        expand(["embedding(50, 4, padding_idx=0)"], "keras")
    assert caught.value.field == "model.layers[0].padding_idx"


def test_the_api_answers_422_naming_the_field_and_rule(client):
    body = {"seed": 1, "model": {"framework": "torch", "layers": ["relu", "lstm(4, 8, dropout=1.5)"]}}
    response = client.post("/init", json=body)
    assert response.status_code == 422
    (detail,) = response.json()["detail"]
    assert detail["loc"] == ["body", "model.layers[1].dropout"]
    assert "range [0, 1]" in detail["msg"] and "PyTorch's rule" in detail["msg"]


@pytest.mark.parametrize(
    ("layer", "field", "words"),
    [
        ("lstm(4, 8, proj_size=3)", "proj_size", "no projection"),
        ("multihead_attention(8, 2, kdim=4)", "kdim", "not supported for Keras"),
        ("multihead_attention(8, 2, add_bias_kv=True)", "add_bias_kv", "PyTorch's"),
        ("bilinear(2, 3, 4)", "type", "Keras has no bilinear"),
        ("instancenorm2d(3)", "type", "groupnorm"),
        ("embedding_bag(5, 2)", "type", "EmbeddingBag"),
        ("lstm_cell(2, 3)", "type", "Keras has no"),
    ],
)
def test_torch_only_arguments_and_layers_are_refused_for_keras_saying_so(layer, field, words):
    with pytest.raises(InitError, match=words) as caught:
        expand([layer], "keras")
    assert caught.value.field == f"model.layers[0].{field}"


@pytest.mark.parametrize(
    ("layer", "framework", "field", "words"),
    [
        ("prelu()", "keras", "input_shape", "give input_shape"),
        ("prelu(4, input_shape=(3, 4))", "keras", "num_parameters", "no num_parameters"),
        ("prelu(input_shape=(3, 4), shared_axes=3)", "keras", "shared_axes", "beyond input_shape"),
        ("prelu(input_shape=(3, 4))", "torch", "input_shape", "Keras's"),
        ("depthwise_conv2d(3, 3)", "torch", "type", "no torch equivalent"),
        ("einsum_dense('ab,bc', 4, 3)", "keras", "equation", "invalid einsum equation"),
        ("einsum_dense('ab,bcd->acd', 4, 3)", "keras", "output_shape", "must have 2 dims"),
        ("einsum_dense('ab,bc->ac', [None], 3)", "keras", "output_shape", "needs a size"),
        ("einsum_dense('abc,cd->abd', (None, 4), 3)", "keras", "input_shape", "must have 3 dims"),
        ("einsum_dense('ab,bc->ac', 4, 3, 'x')", "keras", "bias_axes", "output spec"),
        ("einsum_dense('ab,bz->ac', 4, 3)", "keras", "equation", "neither"),
    ],
)
def test_keras_layer_arguments_are_checked(layer, framework, field, words):
    with pytest.raises(InitError, match=words) as caught:
        expand([layer], framework)
    assert caught.value.field == f"model.layers[0].{field}"
