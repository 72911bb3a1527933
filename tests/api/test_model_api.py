"""POST /init with many tensors: `tensors` and `model` bodies, read back through real readers."""

from __future__ import annotations

import io
import json
import struct
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors.numpy import load as load_safetensors

from service.api.admission import admit_many, fill_elements
from service.api.delivery import STREAM_CHUNK_ELEMENTS, buffered_body, etag, many, stream_bytes, streamed_body
from service.api.schemas import ModelInit
from service.app import create_app
from service.engine.plan import TensorRequest, make_plan
from service.engine.random import registry
from service.formats import FORMATS, Bundle
from service.settings import Settings
from tests.engine.test_rngs import Sequential

TENSORS = {
    "fc1.weight": {"shape": [32, 16], "scheme": "kaiming_normal", "mode": "fan_out", "nonlinearity": "relu"},
    "fc1.bias": {"shape": [32], "scheme": "torch_default", "fan_in": 16},
    "emb": {"shape": [10, 4], "scheme": "normal", "fill_rows": [{"start": 0, "stop": 1, "value": 0.0}]},
    "steps": {"shape": [], "scheme": "zeros", "dtype": "int64"},
}
BLOCK = {
    "framework": "torch",
    "layers": [
        "conv1: conv2d(8, 16, 3, stride=2, padding=1, bias=False)",
        "bn1: batchnorm2d(16)",
        "relu: relu",
        {"type": "sequential", "name": "downsample", "layers": ["conv2d(8, 16, 1, 2, bias=False)", "batchnorm2d(16)"]},
    ],
    "rules": [
        {"layer": "conv", "param": "weight", "scheme": "kaiming_normal", "mode": "fan_out", "nonlinearity": "relu"}
    ],
}


@pytest.fixture(scope="module")
def small() -> TestClient:
    settings = Settings(
        max_elements=3000, max_request_elements=4096, max_json_elements=1024, max_json_request_elements=2000
    )
    return TestClient(create_app(settings), raise_server_exceptions=False)


def _safetensors_metadata(content: bytes) -> dict[str, str]:
    (length,) = struct.unpack("<Q", content[:8])
    return json.loads(content[8 : 8 + length])["__metadata__"]


def test_each_tensor_equals_its_single_request(client):
    response = client.post("/init", json={"seed": 7, "tensors": TENSORS})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-safetensors"
    assert int(response.headers["content-length"]) == len(response.content)
    tensors = load_safetensors(response.content)
    assert sorted(tensors) == sorted(TENSORS)
    for name in ("fc1.weight", "fc1.bias"):
        single = client.post("/init", json={**TENSORS[name], "seed": 7, "name": name})
        assert tensors[name].tobytes() == load_safetensors(single.content)[name].tobytes()
    assert tensors["steps"].dtype == np.int64 and tensors["steps"].shape == () and tensors["steps"] == 0
    assert np.all(tensors["emb"][0] == 0) and np.all(tensors["emb"][1:] != 0)


def test_other_tensors_do_not_change_a_tensors_bits(client):
    alone = client.post("/init", json={"seed": 3, "tensors": {"fc1.weight": TENSORS["fc1.weight"]}})
    together = client.post("/init", json={"seed": 3, "tensors": dict(reversed(TENSORS.items()))})
    assert (
        load_safetensors(alone.content)["fc1.weight"].tobytes()
        == load_safetensors(together.content)["fc1.weight"].tobytes()
    )


def test_safetensors_metadata_has_request_fields_and_a_per_tensor_map(client):
    meta = _safetensors_metadata(client.post("/init", json={"seed": 7, "tensors": TENSORS}).content)
    assert meta["seed"] == "7" and meta["rng"] == "philox-v1" and meta["service"].startswith("initserve ")
    assert meta["count"] == "4" and meta["numel"] == str(32 * 16 + 32 + 40 + 1)
    per_tensor = json.loads(meta["tensors"])
    assert per_tensor["fc1.weight"]["scheme"] == "kaiming_normal"
    assert per_tensor["fc1.weight"]["fan_out"] == 32 and per_tensor["fc1.weight"]["params"]["mode"] == "fan_out"
    assert per_tensor["fc1.bias"]["fan_in"] == 16
    assert per_tensor["emb"]["fill_rows"] == [{"start": 0, "stop": 1, "value": 0.0}]
    assert per_tensor["steps"]["dtype"] == "int64"


def test_json_and_npz_hold_the_same_values(client):
    reference = load_safetensors(client.post("/init", json={"seed": 7, "tensors": TENSORS}).content)
    as_json = client.post("/init", json={"seed": 7, "tensors": TENSORS, "format": "json"}).json()
    assert as_json["seed"] == 7 and as_json["count"] == 4
    for name, tensor in reference.items():
        entry = as_json["tensors"][name]
        values = np.array(entry["data"], dtype=tensor.dtype).reshape(entry["shape"])
        assert values.tobytes() == tensor.tobytes(), name

    response = client.post("/init", json={"seed": 7, "tensors": TENSORS}, headers={"Accept": "application/zip"})
    assert response.headers["content-type"] == "application/zip"
    assert int(response.headers["content-length"]) == len(response.content)
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None  # every CRC-32 checks
        assert json.loads(archive.comment)["seed"] == 7
        assert json.loads(archive.getinfo("fc1.weight.npy").comment)["scheme"] == "kaiming_normal"
    with np.load(io.BytesIO(response.content)) as npz:
        assert sorted(npz.files) == sorted(TENSORS)
        for name, tensor in reference.items():
            assert npz[name].dtype == tensor.dtype and npz[name].tobytes() == tensor.tobytes(), name


def test_model_recipe_gives_the_torch_state_dict(client):
    response = client.post("/init", json={"seed": 1, "model": BLOCK})
    assert response.status_code == 200, response.text
    tensors = load_safetensors(response.content)
    assert set(tensors) == {
        "conv1.weight",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
        "bn1.num_batches_tracked",
        "downsample.0.weight",
        "downsample.1.weight",
        "downsample.1.bias",
        "downsample.1.running_mean",
        "downsample.1.running_var",
        "downsample.1.num_batches_tracked",
    }
    assert tensors["conv1.weight"].shape == (16, 8, 3, 3)
    per_tensor = json.loads(_safetensors_metadata(response.content)["tensors"])
    assert per_tensor["conv1.weight"]["origin"] == {
        "layer": "conv2d",
        "module": "conv1",
        "param": "weight",
        "init": "rules[0]",
    }
    assert per_tensor["conv1.weight"]["fan_out"] == 16 * 9
    assert _safetensors_metadata(response.content)["framework"] == "torch"


def test_keras_recipe_names(client):
    model = {"framework": "keras", "layers": ["linear(4, 8)", "linear(8, 2)", "lstm(2, 3)"]}
    tensors = load_safetensors(client.post("/init", json={"seed": 1, "model": model}).content)
    assert sorted(tensors) == sorted(
        [
            "dense/kernel",
            "dense/bias",
            "dense_1/kernel",
            "dense_1/bias",
            "lstm/lstm_cell/kernel",
            "lstm/lstm_cell/recurrent_kernel",
            "lstm/lstm_cell/bias",
        ]
    )
    assert tensors["dense/kernel"].shape == (4, 8)


def test_etag_and_drawn_seed(client):
    first = client.post("/init", json={"seed": 9, "model": BLOCK})
    again = client.post("/init", json={"seed": 9, "model": BLOCK}, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    other = client.post("/init", json={"seed": 9, "model": BLOCK, "format": "npz"})
    assert other.headers["etag"] != first.headers["etag"]
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    drawn = client.post("/init", json={"tensors": TENSORS})
    assert _safetensors_metadata(drawn.content)["seed"] == drawn.headers["x-initserve-seed"]
    assert drawn.headers["cache-control"] == "no-store"
    assert not first.headers["etag"].startswith("W/")
    lapack = client.post("/init", json={"seed": 9, "tensors": {"q": {"shape": [4, 4], "scheme": "orthogonal"}}})
    assert lapack.headers["etag"].startswith('W/"')  # equal elsewhere only to rounding error


def test_a_request_keyed_rngs_draw_order_is_in_the_metadata_and_the_etag(monkeypatch):
    """Under an rng keyed by request a tensor's bits depend on the draws before it: two recipes with the same
    tensors built in another order must not share an ETag, and the metadata says the order, overwritten draws
    included (MultiheadAttention's out_proj.bias). A tensor-keyed rng's metadata is unchanged."""
    entry = Sequential()
    monkeypatch.setitem(registry.REGISTRY, entry.id, entry)
    fmt, settings = FORMATS["safetensors"], Settings()

    def admitted(layers: list, rng: str) -> Bundle:
        body = ModelInit.model_validate({"seed": 1, "model": {"layers": layers}}).model_copy(update={"rng": rng})
        return many(*admit_many(body, fmt, settings))

    ab, ba = ["a: linear(2, 2)", "b: linear(2, 2)"], ["b: linear(2, 2)", "a: linear(2, 2)"]
    assert admitted(ab, entry.id).metadata["draws"] == ["a.weight", "a.bias", "b.weight", "b.bias"]
    assert admitted(ab, entry.id).metadata["tensors"] == admitted(ba, entry.id).metadata["tensors"]
    assert etag(admitted(ab, entry.id), fmt) != etag(admitted(ba, entry.id), fmt)
    assert admitted(["multihead_attention(4, 2)"], entry.id).metadata["draws"] == [
        "0.out_proj.weight",
        "0.out_proj.bias (overwritten)",
        "0.in_proj_weight",
        "0.in_proj_bias",
        "0.out_proj.bias",
    ]
    assert "draws" not in admitted(ab, "philox-v1").metadata


def test_limits_apply_to_each_tensor_and_to_the_sum_of_elements(small):
    tensors = {"a": {"shape": [64, 40], "scheme": "normal"}, "b": {"shape": [40, 40], "scheme": "normal"}}
    response = small.post("/init", json={"seed": 0, "tensors": tensors})
    assert response.status_code == 413
    assert "4160 elements in total; the limit is 4096" in response.json()["detail"][0]["msg"]
    assert "INITSERVE_MAX_REQUEST_ELEMENTS" in response.json()["detail"][0]["msg"]
    one_too_big = small.post("/init", json={"seed": 0, "tensors": {"a": {"shape": [3001], "scheme": "normal"}}})
    assert one_too_big.status_code == 413
    assert "tensor 'a' has 3001 elements; the limit is 3000 per tensor (INITSERVE_MAX_ELEMENTS)" in one_too_big.text
    too_big_json = small.post("/init", json={"seed": 0, "tensors": {"a": tensors["b"]}, "format": "json"})
    assert too_big_json.status_code == 413 and "INITSERVE_MAX_JSON_ELEMENTS" in too_big_json.text
    json_sum = {"a": {"shape": [1000], "scheme": "normal"}, "b": {"shape": [1001], "scheme": "normal"}}
    too_big_sum = small.post("/init", json={"seed": 0, "tensors": json_sum, "format": "json"})
    assert too_big_sum.status_code == 413 and "INITSERVE_MAX_JSON_REQUEST_ELEMENTS" in too_big_sum.text
    model = small.post("/init", json={"seed": 0, "model": {"layers": ["linear(64, 64)"]}})
    assert model.status_code == 413


@pytest.mark.parametrize("streamed", [False, True])
def test_model_requests_hold_the_budget_and_count_in_the_metrics(streamed):
    threshold = 0 if streamed else 8 << 20
    app = create_app(Settings(memory_budget_bytes=1 << 30, stream_threshold_bytes=threshold))
    with TestClient(app) as client:
        body = {
            "seed": 3,
            "tensors": {"w": {"shape": [300, 200], "scheme": "orthogonal"}, "b": {"shape": [7], "scheme": "zeros"}},
        }
        reserved: list[int] = []
        budget = app.state.budget
        original = budget.hold

        async def spy(nbytes: int, streamed: bool = False):  # type: ignore[no-untyped-def]
            reserved.append(nbytes)
            return await original(nbytes, streamed=streamed)

        budget.hold = spy
        r = client.post("/init", json=body)
        assert r.status_code == 200
        orthogonal = make_plan(TensorRequest(shape=(300, 200), scheme="orthogonal", seed=3, name="w"))
        if streamed:  # a chunk of the tensor being generated; the orthogonal one dominates
            assert reserved == [stream_bytes(orthogonal.working_bytes(STREAM_CHUNK_ELEMENTS))]
        else:  # the body too, until it has been sent
            assert reserved == [len(r.content) + orthogonal.working_bytes(fill_elements())]
        assert budget.used == 0  # released once the stream ended
        metrics_text = client.get("/metrics").text
        assert 'initserve_generated_elements_total{scheme="orthogonal"}' in metrics_text
        assert 'initserve_generated_elements_total{scheme="zeros"}' in metrics_text


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        (
            {"seed": 1, "tensors": {"w": {"shape": [2], "scheme": "normal", "std": -1}}},
            ["body", "tensors", "w", "std"],
            "greater than or equal to 0",
        ),
        (
            {"seed": 1, "tensors": {"w": {"shape": [2], "scheme": "normal", "gain": 1}}},
            ["body", "tensors", "w", "gain"],
            "gain",
        ),
        ({"seed": 1, "tensors": {}}, ["body", "tensors"], "at least 1"),
        (
            {"seed": 1, "tensors": {"w": {"shape": [3], "scheme": "kaiming_normal"}}},
            ["body", "tensors['w'].shape"],
            "fewer than 2",
        ),
        (
            {"seed": 1, "tensors": {"w": {"shape": [2], "scheme": "normal", "dtype": "int64"}}},
            ["body", "tensors['w'].dtype"],
            "int64",
        ),
        ({"seed": 1, "tensors": {"w": {"shape": [2], "scheme": "normal"}}, "format": "npy"}, ["body", "format"], "npz"),
        (
            {"seed": 1, "tensors": {"w": {"shape": [2], "scheme": "normal", "dtype": "bfloat16"}}, "format": "npz"},
            ["body", "format"],
            "bfloat16",
        ),
        ({"seed": 1, "model": {"layers": ["linear(2)"]}}, ["body", "model.layers[0].out_features"], "out_features"),
        ({"seed": 1, "model": {"layers": ["conv9d(2, 3, 1)"]}}, ["body", "model.layers[0].type"], "unknown layer type"),
        ({"seed": 1, "model": {"layers": []}}, ["body", "model", "layers"], "at least 1"),
        (
            {"seed": 1, "model": {"layers": ["linear(2, 3)"], "rules": [{"scheme": "normal", "mode": "x"}]}},
            ["body", "model", "rules", 0, "mode"],
            "mode",
        ),
        (
            {"seed": 1, "model": {"framework": "jax", "layers": ["linear(2, 3)"]}},
            ["body", "model", "framework"],
            "torch",
        ),
        ({"seed": 1, "model": {"layers": ["linear(2, 3)"]}, "tensors": {}}, ["body", "tensors"], "tensors"),
    ],
)
def test_bad_requests_name_the_field_and_the_rule(client, body, loc, words):
    response = client.post("/init", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == loc
    assert words in detail["msg"]


def test_single_tensor_errors_keep_their_locations(client):
    response = client.post("/init", json={"shape": [2, 2], "scheme": "kaiming_normal", "gain": 2})
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "gain"] and "not a parameter of scheme 'kaiming_normal'" in detail["msg"]
    missing = client.post("/init", json={"shape": [2, 2]}).json()["detail"][0]
    assert missing["loc"] == ["body", "scheme"]


def test_unacceptable_accept_is_406(client):
    response = client.post("/init", json={"seed": 1, "tensors": TENSORS}, headers={"Accept": "image/png"})
    assert response.status_code == 406


def test_torch_loads_the_returned_file_strictly(client):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    model = {"layers": [{"type": "transformer_encoder_layer", "name": "", "args": [32, 4, 64]}]}
    response = client.post("/init", json={"seed": 5, "model": model})
    torch.nn.TransformerEncoderLayer(32, 4, 64).load_state_dict(safetensors_torch.load(response.content), strict=True)


@pytest.mark.parametrize("value", [9007199254740993, 123456789012345678, 2**63 - 1, -(2**63), -(2**53) - 1])
def test_int64_constants_are_exact_in_every_format(client, value):
    """Once parsed as float64: 2^53 + 1 came back as 2^53, 2^63 - 1 was refused as 2^63."""
    body = {"seed": 1, "tensors": {"n": {"shape": [3], "scheme": "constant", "val": value, "dtype": "int64"}}}
    r = client.post("/init", json=body)
    assert r.status_code == 200, r.text
    assert load_safetensors(r.content)["n"].tolist() == [value] * 3
    r = client.post("/init", json={**body, "format": "npz"})
    with np.load(io.BytesIO(r.content)) as npz:
        assert npz["n"].dtype == np.int64 and npz["n"].tolist() == [value] * 3
    r = client.post("/init", json={**body, "format": "json"})
    tensor = r.json()["tensors"]["n"]
    assert tensor["data"] == [value] * 3 and tensor["value"] == value and tensor["params"] == {"val": value}


def test_an_integer_val_of_a_float_tensor_is_still_the_rounded_number(client):
    single = client.post(
        "/init",
        json={"shape": [2], "scheme": "constant", "val": 2**53 + 1, "seed": 1, "dtype": "float64", "format": "json"},
    )
    assert single.json()["params"] == {"val": float(2**53)} and single.json()["data"] == [float(2**53)] * 2


@pytest.mark.parametrize(("dtype", "value"), [("float32", 1e39), ("float16", -70000.0), ("bfloat16", 3.5e38)])
def test_fill_rows_values_beyond_the_dtype_are_refused(client, dtype, value):
    """Once rounded to inf (null in JSON) with a 200, where the same constant in a single tensor is a 422."""
    fill = {"shape": [2, 2], "scheme": "normal", "dtype": dtype, "fill_rows": [{"start": 0, "stop": 1, "value": 0.5}]}
    fill["fill_rows"].append({"start": 1, "stop": 2, "value": value})
    r = client.post(
        "/init", json={"seed": 1, "tensors": {"emb": fill}, "format": "npz" if dtype != "bfloat16" else None}
    )
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", "tensors['emb'].fill_rows"]
    assert "fill_rows[1].value" in detail["msg"] and f"overflows {dtype}" in detail["msg"]


def test_many_small_tensors_stream_in_few_parts():
    """Every streamed part costs a thread hop: 4,000 one-element tensors were 4,000 parts (4.5 s of hops)."""
    layers = ["linear(1, 1)"] * 2000
    body = ModelInit.model_validate({"seed": 1, "model": {"layers": layers}})
    for fmt in ("safetensors", "npz", "json"):
        bundle = many(*admit_many(body, FORMATS[fmt], Settings()))  # type: ignore[arg-type]
        parts = list(streamed_body(bundle, FORMATS[fmt])[1])
        assert len(bundle.tensors) == 4000 and len(parts) <= 3, fmt  # the header, then the data
        assert b"".join(parts) == buffered_body(bundle, FORMATS[fmt])
