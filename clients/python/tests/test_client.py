"""Client against the real server: one tensor and many in every format, the same values whatever the format,
torch tensors, and errors as ServiceError with the service's own detail; broken answers via a mock transport."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

import initserve_client
from initserve_client import Client, FormatError, InitserveError, ServiceError, Tensor, Tensors

BODY = {"shape": [64, 33], "scheme": "kaiming_uniform", "mode": "fan_out", "seed": 11, "name": "fc.weight"}


@pytest.mark.parametrize("fmt", ["safetensors", "npy", "json"])
def test_fetch_tensor_in_every_format(client, fmt):
    reference = client.fetch_tensor(BODY)
    tensor = client.fetch_tensor({**BODY, "format": fmt})
    assert isinstance(tensor, Tensor) and tensor.name == "fc.weight"
    assert tensor.shape == (64, 33) and tensor.dtype == "float32"
    assert tensor.array.tobytes() == reference.array.tobytes()
    assert tensor.metadata["seed"] == 11 and tensor.metadata["rng"] == "philox-v1"
    if fmt != "npy":  # .npy holds no metadata: name, seed and rng come from the request and headers
        assert tensor.metadata["scheme"] == "kaiming_uniform" and tensor.metadata["params"]["mode"] == "fan_out"
    assert np.asarray(tensor).tobytes() == reference.array.tobytes()


def test_bfloat16_slices_and_large_seeds(client):
    body = {"shape": [40, 30], "scheme": "trunc_normal", "seed": 2**64 - 1, "dtype": "bfloat16"}
    whole = client.fetch_tensor(body)
    assert whole.dtype == "bfloat16" and whole.array.dtype.name == "bfloat16"
    shard = client.fetch_tensor({**body, "slice": [[10, 20], [0, 30]], "format": "json"})
    assert shard.array.tobytes() == whole.array[10:20].tobytes()


def test_fetch_tensors_for_tensors_and_models(client):
    tensors = {"b": {"shape": [4], "scheme": "zeros"}, "a": {"shape": [2, 3], "scheme": "normal"}}
    for fmt in ("safetensors", "json", "npz"):
        found = client.fetch_tensors({"seed": 1, "tensors": tensors, "format": fmt})
        assert isinstance(found, Tensors) and list(found) == ["b", "a"], fmt
        assert found.metadata["seed"] == 1 and found.tensor_metadata["a"]["scheme"] == "normal"
        assert found.tensor("a").shape == (2, 3)
    model = client.fetch_tensors({"seed": 2, "model": {"layers": ["linear(3, 4)", "relu", "fc: linear(4, 1)"]}})
    assert list(model) == ["0.weight", "0.bias", "fc.weight", "fc.bias"]
    assert model.metadata["framework"] == "torch"
    assert model.tensor_metadata["fc.weight"]["origin"]["module"] == "fc"
    assert "fc.weight" in repr(model)
    one = client.fetch_tensors(BODY)  # a single tensor answers as a mapping of one
    assert list(one) == ["fc.weight"] and one.tensor_metadata["fc.weight"]["seed"] == 11


def test_fetch_tensor_refuses_many(client):
    with pytest.raises(InitserveError, match="holds 2 tensors: use fetch_tensors"):
        client.fetch_tensor({"seed": 1, "model": {"layers": ["linear(2, 2)"]}})


def test_errors_carry_the_services_detail_and_status(client):
    with pytest.raises(ServiceError) as refused:
        client.fetch_tensor({"shape": [2, 3], "scheme": "normal", "std": -1})
    error = refused.value
    assert error.status == 422 and error.request_id
    assert error.detail[0]["loc"] == ["body", "std"] and error.detail[0]["type"] == "greater_than_equal"
    assert "std" in str(error) and error.messages == [error.detail[0]["msg"]]
    with pytest.raises(ServiceError) as too_big:
        client.fetch_tensor({"shape": [2**20, 2**20], "scheme": "normal"})
    assert too_big.value.status == 413 and "INITSERVE_MAX_ELEMENTS" in too_big.value.detail[0]["msg"]


def test_module_level_helpers(url):
    tensor = initserve_client.fetch_tensor(url, BODY)
    tensors = initserve_client.fetch_tensors(url, {"seed": 1, "tensors": {"w": {"shape": [2], "scheme": "ones"}}})
    assert tensor.shape == (64, 33) and tensors["w"].tolist() == [1.0, 1.0]


def test_torch_tensors(client, url):
    torch = pytest.importorskip("torch")
    weight = client.fetch_tensor({**BODY, "dtype": "bfloat16"}, as_torch=True)
    assert isinstance(weight, torch.Tensor) and weight.dtype == torch.bfloat16 and weight.shape == (64, 33)
    assert torch.equal(weight, client.fetch_tensor({**BODY, "dtype": "bfloat16"}).torch())
    state = initserve_client.fetch_tensors(url, {"seed": 2, "model": {"layers": ["linear(3, 4)"]}}, as_torch=True)
    layer = torch.nn.Sequential(torch.nn.Linear(3, 4))
    layer.load_state_dict(state, strict=True)
    torch.manual_seed(0)
    assert torch.equal(layer[0].weight, state["0.weight"])


def _mock(handler) -> Client:
    return Client("http://initserve.test", transport=httpx.MockTransport(handler))


def test_an_error_that_is_not_the_services_shape():
    client = _mock(lambda request: httpx.Response(502, text="<html>Bad gateway</html>"))
    with pytest.raises(ServiceError) as refused:
        client.fetch_tensor(BODY)
    assert refused.value.status == 502 and refused.value.detail[0]["msg"] == "<html>Bad gateway</html>"


def test_retry_after_and_the_api_key_header():
    seen = []

    def busy(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        detail = [{"loc": ["body", "model"], "msg": "busy", "type": "busy"}]
        return httpx.Response(503, json={"detail": detail}, headers={"Retry-After": "2"})

    client = Client("http://initserve.test", api_key="k", transport=httpx.MockTransport(busy))
    with pytest.raises(ServiceError) as refused:
        client.fetch_tensors({"seed": 1, "model": {"layers": ["linear(2, 2)"]}})
    assert refused.value.retry_after == 2.0 and seen == ["Bearer k"]


def test_a_cut_body_is_a_format_error(client):
    whole = client._http.post("/init", json=BODY).content
    cut = _mock(
        lambda request: httpx.Response(200, content=whole[:-4], headers={"content-type": "application/x-safetensors"})
    )
    with pytest.raises(FormatError, match="cut short"):
        cut.fetch_tensor(BODY)
    page = _mock(
        lambda request: httpx.Response(
            200, content=json.dumps({"ok": 1}).encode(), headers={"content-type": "text/plain"}
        )
    )
    with pytest.raises(FormatError, match="text/plain"):
        page.fetch_tensor(BODY)
