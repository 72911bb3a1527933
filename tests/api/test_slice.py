"""Sharded fetch: `slice` returns exactly that region of the full tensor, bit for bit, in every format, so the
shards of a tensor-parallel job put together are the full tensor."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors import safe_open
from safetensors.numpy import load as st_load

from service.app import create_app
from service.engine import parallel
from service.engine.plan import TensorRequest, make_plan
from service.engine.region import Region
from service.settings import Settings
from tests.server import CONSOLE_SCRIPT, serve

BODY = {"shape": [256, 784], "scheme": "kaiming_normal", "seed": 7}


def tensor(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return st_load(response.content)["weight"]


def region(full: np.ndarray, bounds: list[list[int]]) -> np.ndarray:
    return full[tuple(slice(a, b) for a, b in bounds)]


@pytest.mark.parametrize(
    ("body", "bounds"),
    [
        (BODY, [[0, 128], [0, 784]]),
        (BODY, [[0, 256], [392, 784]]),
        (BODY, [[17, 201], [3, 5]]),
        (
            {"shape": [64, 3, 3, 3], "scheme": "he_uniform", "seed": 2, "layout": "torch"},
            [[8, 24], [1, 3], [0, 3], [1, 2]],
        ),
        ({"shape": [300], "scheme": "trunc_normal", "seed": 4}, [[101, 299]]),
        ({"shape": [40, 24], "scheme": "orthogonal", "seed": 1}, [[10, 30], [0, 12]]),
        ({"shape": [40, 24], "scheme": "sparse", "sparsity": 0.25, "seed": 1}, [[10, 30], [5, 12]]),
        ({"shape": [12, 20], "scheme": "eye", "seed": 1, "dtype": "float16"}, [[0, 12], [6, 18]]),
    ],
)
def test_slice_is_the_same_region_of_the_full_tensor_bit_for_bit(client, body, bounds):
    full = tensor(client.post("/init", json=body))
    part = client.post("/init", json={**body, "slice": bounds})
    assert tensor(part).tobytes() == region(full, bounds).tobytes()


def test_slice_in_every_format(client):
    bounds = [[5, 77], [100, 333]]
    full = tensor(client.post("/init", json=BODY))
    expected = region(full, bounds)
    npy = client.post("/init", json={**BODY, "slice": bounds, "format": "npy"})
    assert np.load(io.BytesIO(npy.content)).tobytes() == expected.tobytes()
    doc = client.post("/init", json={**BODY, "slice": bounds, "format": "json"}).json()
    assert doc["shape"] == [72, 233] and doc["full_shape"] == [256, 784] and doc["slice"] == bounds
    assert np.array(doc["data"], dtype=np.float32).tobytes() == expected.tobytes()


def test_shards_of_a_tensor_parallel_job_reassemble_the_full_tensor(client):
    full = tensor(client.post("/init", json=BODY))
    ranks = 4
    columns = [
        tensor(client.post("/init", json={**BODY, "slice": [[0, 256], [r * 196, (r + 1) * 196]]})) for r in range(ranks)
    ]
    rows = [
        tensor(client.post("/init", json={**BODY, "slice": [[r * 64, (r + 1) * 64], [0, 784]]})) for r in range(ranks)
    ]
    assert np.concatenate(columns, axis=1).tobytes() == full.tobytes()
    assert np.concatenate(rows, axis=0).tobytes() == full.tobytes()


def test_metadata_and_etag_of_a_slice(client, tmp_path):
    whole = client.post("/init", json=BODY)
    part = client.post("/init", json={**BODY, "slice": [[0, 128], [0, 784]]})
    assert part.headers["etag"] != whole.headers["etag"]
    path = tmp_path / "shard.safetensors"
    path.write_bytes(part.content)
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
        assert f.get_slice("weight").get_shape() == [128, 784]
    assert meta["slice"] == "[[0,128],[0,784]]" and meta["full_shape"] == "[256,784]" and meta["shape"] == "[128,784]"
    assert meta["fan_in"] == "784"  # the fans of the full tensor
    again = client.post(
        "/init", json={**BODY, "slice": [[0, 128], [0, 784]]}, headers={"if-none-match": part.headers["etag"]}
    )
    assert again.status_code == 304


@pytest.mark.parametrize(
    ("bounds", "loc", "fragment"),
    [
        ([[0, 128]], ["body", "slice"], "one [start, stop) per dimension of shape [256, 784], got 1"),
        ([[0, 128], [0, 785]], ["body", "slice"], "slice[1] = [0, 785) must satisfy 0 <= start < stop <= 784"),
        ([[5, 5], [0, 784]], ["body", "slice"], "slice[0] = [5, 5)"),
        ([[-1, 5], [0, 784]], ["body", "slice", 0, 0], "greater than or equal to 0"),
        ([[0, 1, 2], [0, 784]], ["body", "slice", 0], "at most 2 items"),
        ([["0", 5], [0, 784]], ["body", "slice", 0, 0], "valid integer"),
        ("0:5,0:784", ["body", "slice"], "valid list"),
    ],
)
def test_bad_slices_are_422_naming_the_field_and_the_rule(client, bounds, loc, fragment):
    r = client.post("/init", json={**BODY, "slice": bounds})
    assert r.status_code == 422
    detail = r.json()["detail"][0]
    assert detail["loc"] == loc and fragment in detail["msg"], detail


def test_limits_apply_to_the_slice_not_the_tensor():
    client = TestClient(
        create_app(Settings(max_elements=1 << 16, max_json_elements=1 << 10)), raise_server_exceptions=False
    )
    huge = {"shape": [1 << 20, 1 << 20], "scheme": "uniform", "seed": 1}
    r = client.post("/init", json={**huge, "slice": [[5, 6], [1000, 5000]]})
    assert tensor(r).shape == (1, 4000)
    r = client.post("/init", json={**huge, "slice": [[0, 100], [0, 1000]]})
    assert r.status_code == 413 and "slice" in r.json()["detail"][0]["loc"] and "INITSERVE_MAX_ELEMENTS" in r.text
    r = client.post("/init", json={**huge, "slice": [[0, 10], [0, 100]], "format": "json"})
    assert r.status_code == 200 and len(r.json()["data"]) == 1000
    # orthogonal computes the whole matrix to cut any slice of it, so the whole must fit
    r = client.post("/init", json={"shape": [512, 512], "scheme": "orthogonal", "seed": 1, "slice": [[0, 2], [0, 2]]})
    assert (
        r.status_code == 413
        and "orthogonal computes 262144 elements to cut this slice (the whole tensor)" in r.json()["detail"][0]["msg"]
    )
    # dirac lists its ones (up to shape[0] of them) whatever the slice
    r = client.post(
        "/init", json={"shape": [1 << 31, 1 << 31, 1], "scheme": "dirac", "seed": 1, "slice": [[0, 1], [0, 1], [0, 1]]}
    )
    assert r.status_code == 413 and "dirac computes" in r.json()["detail"][0]["msg"]
    r = client.post(
        "/init", json={"shape": [1 << 40, 1 << 40], "scheme": "uniform", "seed": 1, "slice": [[0, 1], [0, 1]]}
    )
    assert r.status_code == 422 and "2^63" in r.json()["detail"][0]["msg"]


def test_json_refusal_names_the_limit_and_the_ways_out(client):
    r = client.post("/init", json={"shape": [4096, 4096], "scheme": "zeros", "seed": 1, "format": "json"})
    msg = r.json()["detail"][0]["msg"]
    assert r.status_code == 413 and "INITSERVE_MAX_JSON_ELEMENTS" in msg and "4194304" in msg
    assert "safetensors" in msg and "npy" in msg and "slice" in msg


@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="initserve console script not installed")
def test_the_last_addressable_elements_through_the_real_server():
    """Once a segfault of the worker (int64 overflow in the numba tile arithmetic): now the reference's values."""
    last = (1 << 63) - 1
    query = f"shape={last}&scheme=normal&seed=1&slice={last - 1}:{last}&format=json"
    with serve({"INITSERVE_LOG_LEVEL": "warning"}) as (url, process):
        r = httpx.get(f"{url}/init?{query}", timeout=60)
        assert r.status_code == 200, r.text
        body = {"shape": [7, 7, 73, 127, 337, 92737, 649657], "scheme": "trunc_normal", "seed": 1, "format": "json"}
        body["slice"] = [[d - 1, d] for d in body["shape"]]
        r2 = httpx.post(f"{url}/init", json=body, timeout=60)
        assert r2.status_code == 200, r2.text
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        assert process.poll() is None
    with parallel.configured(jit=False):
        plan = make_plan(TensorRequest(shape=(last,), scheme="normal", seed=1))
        want = Region(plan, ((last - 1, last),)).generate()
    assert np.array(r.json()["data"], dtype=np.float32).tobytes() == want.tobytes()


def test_a_strided_slice_is_limited_by_its_work_not_only_its_elements():
    client = TestClient(create_app(Settings(max_elements=1 << 16)), raise_server_exceptions=False)
    column = {"shape": [1 << 21, 1 << 21], "scheme": "normal", "seed": 1}
    r = client.post("/init", json={**column, "slice": [[0, 1 << 11], [0, 1]]})
    assert tensor(r).shape == (1 << 11, 1)
    # 2^16 elements, within the limit, but as many runs: each costs its Philox block and a setup
    r = client.post("/init", json={**column, "slice": [[0, 1 << 16], [0, 1]]})
    msg = r.json()["detail"][0]["msg"]
    assert r.status_code == 413 and "65536 runs of 1" in msg and "INITSERVE_MAX_ELEMENTS" in msg, msg
