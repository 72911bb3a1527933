"""generate() against every vector of docs/vectors/philox-v1.json (docs/reproducibility.md section 12), group by group
in the spec's order, read from the package's own copy, which must be the docs' file byte for byte. No server."""

from __future__ import annotations

import hashlib
import importlib.resources
from pathlib import Path

import numpy as np
import pytest

from initserve_client import RequestError, elementary, generate, philox
from initserve_client import generation as gen
from initserve_client.contract import document, float_of

DOCS_VECTORS = Path(__file__).resolve().parents[3] / "docs" / "vectors" / "philox-v1.json"
VECTORS = document()["vectors"]


def _hex(x: float | np.floating) -> str:
    return f"{int(np.float64(x).view(np.uint64)):016x}"


def _sent(request: dict) -> dict:
    """A request of the file as the service takes it: its seeds and fans are decimal strings (docs/vectors/)."""
    return {key: int(value) if key in ("seed", "fan_in", "fan_out") else value for key, value in request.items()}


def _words(*hex_words: str) -> list[np.ndarray]:
    return [np.array([int(word, 16)], dtype=np.uint64) for word in hex_words]


def test_the_shipped_json_is_the_docs_file():
    shipped = importlib.resources.files("initserve_client").joinpath("philox-v1.json").read_bytes()
    assert shipped == DOCS_VECTORS.read_bytes(), "copy docs/vectors/philox-v1.json into src/initserve_client/"


@pytest.mark.parametrize("case", VECTORS["key_derivation"], ids=lambda case: f"{case['seed']}-{case['name']}")
def test_key_derivation(case):
    seed = int(case["seed"])
    assert philox.key_input(seed, case["name"]).hex() == case["sha256_input_hex"]
    assert [f"{k:016x}" for k in philox.key(seed, case["name"])] == case["key"]


@pytest.mark.parametrize("case", VECTORS["philox_blocks"])
def test_philox_blocks(case):
    key = tuple(int(k, 16) for k in case["key"])
    output = philox.blocks(key, *_words(*case["counter"]))
    assert [f"{int(w[0]):016x}" for w in output] == case["output"]


@pytest.mark.parametrize("case", VECTORS["stream_blocks"], ids=lambda case: case["block"])
def test_stream_blocks(case):
    block, key = int(case["block"]), philox.key(int(case["seed"]), case["name"])
    counter = [np.array([x], dtype=np.uint64) for x in (block % 2**64, block >> 64, case["purpose"], 0)]
    assert [f"{int(w[0]):016x}" for w in philox.blocks(key, *counter)] == case["output"]
    if block < 2**64:  # the path generate() takes
        words = philox.stream_words(key, np.array([block], dtype=np.uint64), case["purpose"])
        assert [f"{int(w):016x}" for w in words[0]] == case["output"]


def test_variates():
    variates = VECTORS["variates"]
    for word, want in variates["uniform01"]:
        assert _hex(gen.uniform01(*_words(word))[0]) == want, word
    for word, want in variates["uniform_open"]:
        assert _hex(gen.uniform_open(*_words(word))[0]) == want, word
    for w0, w1, even, odd in variates["normal_pair"]:
        x, y = gen.normal_pair(*_words(w0, w1))
        assert (_hex(x[0]), _hex(y[0])) == (even, odd), (w0, w1)


@pytest.mark.parametrize("function", ["log", "exp", "erfc", "ndtr", "ndtri"])
def test_elementary(function):
    cases = VECTORS["elementary"][function]
    x = np.array([float_of(arg) for arg, _ in cases])
    got = [_hex(y) for y in getattr(elementary, function)(x)]
    assert got == [want for _, want in cases]
    for arg, want in cases:  # one at a time too: the masks must not depend on the neighbours
        assert _hex(getattr(elementary, function)(float_of(arg))[0]) == want, arg


def test_sincos_turns():
    cases = VECTORS["elementary"]["sincos_turns"]
    s, c = elementary.sincos_turns(np.array([float_of(t) for t, _, _ in cases]))
    assert [(_hex(a), _hex(b)) for a, b in zip(s, c, strict=True)] == [(sin, cos) for _, sin, cos in cases]


@pytest.mark.parametrize("case", VECTORS["truncated_normal"], ids=lambda case: f"{case['a']}-{case['b']}")
def test_truncated_normal(case):
    mean, std, a, b = (float_of(case[key]) for key in ("mean", "std", "a", "b"))
    truncation = gen._truncation(mean, std, a, b)
    assert truncation.mirrored == case["mirrored"]
    assert (_hex(truncation.p_lo), _hex(truncation.mass)) == (case["p_lo"], case["mass"])
    request = {"shape": [8], "scheme": "trunc_normal", "mean": mean, "std": std, "a": a, "b": b}
    tensor = generate({**request, "seed": int(case["seed"]), "name": case["name"], "dtype": "float64"})
    assert [_hex(x) for x in tensor.array] == case["first_8"]


@pytest.mark.parametrize("case", VECTORS["requests"], ids=lambda case: str(case["request"])[:60])
def test_requests_in_every_dtype(case):
    request = _sent(case["request"])
    for dtype, digest in case["sha256"].items():
        tensor = generate({**request, "dtype": dtype})
        assert hashlib.sha256(tensor.array.tobytes()).hexdigest() == digest, dtype
    whole = generate({**request, "dtype": "float64"})
    flat = whole.array.reshape(-1)
    assert {i: _hex(flat[int(i)]) for i in case["float64"]} == case["float64"]
    distribution = case["distribution"]
    assert whole.metadata["distribution"] == distribution["kind"]
    for key, bits in distribution.items():
        if key == "kind":
            continue
        if key in ("low", "high") and "bound" in whole.metadata:
            assert _hex(whole.metadata["bound"] * (-1 if key == "low" else 1)) == bits
        else:
            assert _hex(whole.metadata[key]) == bits, key
    assert {key: str(whole.metadata[key]) for key in case["fans"]} == case["fans"]
    assert all(whole.metadata[key] is None for key in ("fan_in", "fan_out") if key not in case["fans"])


def test_double_rounding():
    case = VECTORS["double_rounding"]
    for element in case["elements"]:
        i = int(element["index"])
        request = {**_sent(case["request"]), "slice": [[i, i + 1]]}
        assert _hex(generate({**request, "dtype": "float64"}).array[0]) == element["float64"]
        assert f"{int(generate(request).array.view(np.uint32)[0]):08x}" == element["float32"]
        half = generate({**request, "dtype": element["dtype"]}).array.view(np.uint16)[0]
        assert f"{int(half):04x}" == element["right"] != element["wrong_direct"]


@pytest.mark.parametrize(
    "case", VECTORS["admission"], ids=lambda case: f"{case['request']['scheme']}-{case['refused_at']}"
)
def test_admission(case):
    request = _sent(case["request"])
    if case["refused_at"] is None:
        generate({**request, "slice": request.get("slice") or [[0, 1]] * len(request["shape"])})
        return
    with pytest.raises(RequestError) as caught:
        generate(request)
    assert caught.value.detail[0]["loc"][-1] == case["refused_at"]
