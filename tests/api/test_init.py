"""POST /init: formats through their real readers, content types, negotiation, caching headers, seeds."""

from __future__ import annotations

import io
import json

import ml_dtypes
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load as st_load

from service.engine.plan import TensorRequest, make_plan

BODY = {"shape": [256, 784], "scheme": "kaiming_normal", "seed": 7}


def engine_tensor(**overrides) -> np.ndarray:
    fields = {"shape": (256, 784), "scheme": "kaiming_normal", "seed": 7, **overrides}
    fields["shape"] = tuple(fields["shape"])
    return make_plan(TensorRequest(**fields)).tensor()


def read_safetensors(content: bytes, tmp_path, name: str = "weight") -> tuple[np.ndarray, dict[str, str]]:
    path = tmp_path / "t.safetensors"
    path.write_bytes(content)
    with safe_open(str(path), framework="numpy") as f:
        return f.get_tensor(name), f.metadata()


@pytest.mark.parametrize("content_type", [None, "application/json", "application/x-www-form-urlencoded", "text/plain"])
def test_body_is_json_whatever_the_content_type(client, content_type):
    headers = {"content-type": content_type} if content_type else {}
    r = client.post("/init", content=json.dumps(BODY).encode(), headers=headers)
    assert r.status_code == 200, r.text
    assert st_load(r.content)["weight"].tobytes() == engine_tensor().tobytes()


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_safetensors_round_trip(client, tmp_path, dtype):
    r = client.post("/init", json={**BODY, "dtype": dtype})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-safetensors"
    tensor, meta = read_safetensors(r.content, tmp_path)
    expected = engine_tensor(dtype=dtype)
    assert tensor.dtype == (ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype))
    assert tensor.shape == (256, 784)
    assert tensor.tobytes() == expected.tobytes()
    assert meta["scheme"] == "kaiming_normal" and meta["seed"] == "7" and meta["dtype"] == dtype
    assert meta["fan_in"] == "784" and meta["layout"] == "torch" and meta["rng"] == "philox-v1"
    assert float(meta["gain"]) == pytest.approx(2**0.5, rel=1e-15)
    assert float(meta["std"]) == pytest.approx(2**0.5 / 28, rel=1e-15)
    assert json.loads(meta["params"]) == {"a": 0.0, "mode": "fan_in", "nonlinearity": "leaky_relu"}
    assert meta["service"].startswith("initserve ")


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_npy_round_trip(client, dtype):
    r = client.post("/init", json={**BODY, "dtype": dtype, "format": "npy"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-npy"
    array = np.load(io.BytesIO(r.content))
    assert array.dtype == np.dtype(dtype) and array.shape == (256, 784)
    assert array.tobytes() == engine_tensor(dtype=dtype).tobytes()


def test_npy_refuses_bfloat16(client):
    r = client.post("/init", json={**BODY, "dtype": "bfloat16", "format": "npy"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "format"]
    assert "bfloat16" in r.json()["detail"][0]["msg"]


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_json_round_trip_is_exact(client, dtype):
    body = {"shape": [16, 24], "scheme": "xavier_uniform", "seed": 3, "dtype": dtype, "format": "json"}
    r = client.post("/init", json=body)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    expected = engine_tensor(shape=(16, 24), scheme="xavier_uniform", seed=3, dtype=dtype)
    numpy_dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    data = np.array(doc["data"], dtype=np.float64).astype(numpy_dtype).reshape(doc["shape"])
    assert data.tobytes() == expected.tobytes()
    assert doc["name"] == "weight" and doc["shape"] == [16, 24] and doc["dtype"] == dtype
    assert doc["fan_in"] == 24 and doc["fan_out"] == 16 and doc["gain"] == 1.0
    assert doc["bound"] == pytest.approx((6 / 40) ** 0.5, rel=1e-15)


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        ("application/json", "application/json"),
        ("application/x-npy", "application/x-npy"),
        ("application/x-safetensors", "application/x-safetensors"),
        ("*/*", "application/x-safetensors"),
        ("text/html;q=0.9, application/json;q=0.5", "application/json"),
        ("application/x-npy;q=0.2, application/json;q=0.8", "application/json"),
    ],
)
def test_accept_header_picks_format(client, accept, media):
    r = client.post("/init", json={"shape": [4, 4], "scheme": "ones", "seed": 1}, headers={"accept": accept})
    assert r.status_code == 200 and r.headers["content-type"] == media


def test_format_field_beats_accept_and_unproducible_accept_is_406(client):
    r = client.post(
        "/init",
        json={"shape": [4], "scheme": "ones", "seed": 1, "format": "json"},
        headers={"accept": "application/x-npy"},
    )
    assert r.headers["content-type"] == "application/json"
    r = client.post("/init", json={"shape": [4], "scheme": "ones", "seed": 1}, headers={"accept": "text/html"})
    assert r.status_code == 406 and r.json()["detail"][0]["loc"] == ["header", "accept"]


def test_repeated_requests_are_identical_and_carry_an_etag(client):
    first, second = client.post("/init", json=BODY), client.post("/init", json=BODY)
    assert first.content == second.content
    assert first.headers["etag"] == second.headers["etag"] and first.headers["etag"].startswith('"')
    other = client.post("/init", json={**BODY, "seed": 8})
    assert other.headers["etag"] != first.headers["etag"] and other.content != first.content
    as_json = client.post("/init", json={**BODY, "format": "json"})
    assert as_json.headers["etag"] != first.headers["etag"]


def test_if_none_match_gives_304(client):
    tag = client.post("/init", json=BODY).headers["etag"]
    r = client.post("/init", json=BODY, headers={"if-none-match": tag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == tag
    r = client.post("/init", json=BODY, headers={"if-none-match": '"something-else"'})
    assert r.status_code == 200


def test_orthogonal_etag_is_weak(client):
    r = client.post("/init", json={"shape": [8, 8], "scheme": "orthogonal", "seed": 1})
    assert r.headers["etag"].startswith('W/"')


def test_omitted_seed_is_drawn_and_returned(client, tmp_path):
    r = client.post("/init", json={"shape": [32, 32], "scheme": "kaiming_uniform"})
    seed = int(r.headers["x-initserve-seed"])
    assert 0 <= seed < 2**53
    _, meta = read_safetensors(r.content, tmp_path)
    assert meta["seed"] == str(seed)
    again = client.post("/init", json={"shape": [32, 32], "scheme": "kaiming_uniform", "seed": seed})
    assert again.content == r.content
    assert client.post("/init", json={"shape": [32, 32], "scheme": "kaiming_uniform"}).content != r.content


def test_largest_seed_and_custom_name(client, tmp_path):
    body = {"shape": [3, 5], "scheme": "normal", "seed": 2**64 - 1, "name": "fc1.weight"}
    r = client.post("/init", json=body)
    assert r.status_code == 200
    assert 'filename="fc1.weight.safetensors"' in r.headers["content-disposition"]
    tensor, meta = read_safetensors(r.content, tmp_path, "fc1.weight")
    assert meta["seed"] == str(2**64 - 1)
    assert tensor.tobytes() == engine_tensor(shape=(3, 5), scheme="normal", seed=2**64 - 1, name="fc1.weight").tobytes()
    # the name keys the stream: same seed, other name, other values
    assert client.post("/init", json={**body, "name": "fc2.weight"}).content[-60:] != r.content[-60:]


def test_zero_dim_tensor_and_keras_layout(client):
    r = client.post("/init", json={"shape": [], "scheme": "glorot_uniform", "seed": 1, "format": "json"})
    assert r.status_code == 200
    doc = r.json()
    assert doc["shape"] == [] and len(doc["data"]) == 1 and doc["fan_in"] == 1 and doc["fan_out"] == 1
    r = client.post(
        "/init",
        json={"shape": [3, 3, 16, 32], "scheme": "kaiming_normal", "layout": "keras", "seed": 1, "format": "json"},
    )
    assert (r.json()["fan_in"], r.json()["layout"]) == (144, "keras")


def test_explicit_fans_for_a_bias(client):
    r = client.post(
        "/init", json={"shape": [256], "scheme": "torch_default", "fan_in": 784, "seed": 1, "format": "json"}
    )
    doc = r.json()
    assert r.status_code == 200 and doc["fan_in"] == 784
    assert doc["bound"] == pytest.approx(1 / 28, rel=1e-15)
    assert max(abs(v) for v in doc["data"]) <= 1 / 28
