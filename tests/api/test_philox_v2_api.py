"""Requests that name `"rng": "philox-v2"`: every request form works, and the issue's interval defect is gone."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load as st_load

ISSUE = {"seed": 5, "shape": [4096], "scheme": "uniform", "a": -1, "b": 3, "dtype": "bfloat16", "format": "json"}


def test_the_issues_request_stays_below_b_under_philox_v2_only(client):
    old = client.post("/init", json=ISSUE).json()
    assert old["rng"] == "philox-v1" and max(old["data"]) == 3.0  # the default's bytes are kept, defect included
    new = client.post("/init", json={**ISSUE, "rng": "philox-v2"}).json()
    assert new["rng"] == "philox-v2" and max(new["data"]) < 3.0 and min(new["data"]) >= -1.0


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_slices_get_and_stats_under_philox_v2(client, dtype):
    body = {"shape": [64, 48], "scheme": "kaiming_normal", "seed": 7, "dtype": dtype, "rng": "philox-v2"}
    whole = client.post("/init", json=body)
    shard = client.post("/init", json={**body, "slice": [[3, 40], [5, 9]]})
    assert whole.status_code == shard.status_code == 200
    if dtype == "float32":  # safetensors.numpy reads no bfloat16
        assert np.array_equal(st_load(shard.content)["weight"], st_load(whole.content)["weight"][3:40, 5:9])
    query = f"shape=64,48&scheme=kaiming_normal&seed=7&dtype={dtype}&rng=philox-v2"
    assert client.get(f"/init?{query}").content == whole.content
    stats = client.post("/stats", json=body).json()
    assert stats["metadata"]["rng"] == "philox-v2" and stats["ks"]["pvalue"] > 1e-3


def test_many_tensors_and_recipes_under_philox_v2(client):
    model = {"seed": 1, "rng": "philox-v2", "model": {"layers": ["linear(8, 4)"]}}
    response = client.post("/init", json=model)
    assert response.status_code == 200, response.text
    tensors = {"seed": 1, "rng": "philox-v2", "tensors": {"w": {"shape": [4, 4], "scheme": "xavier_uniform"}}}
    assert client.post("/init", json=tensors).status_code == 200


def test_an_interval_the_dtype_cannot_hold_is_a_422_naming_dtype(client):
    body = {"shape": [4], "scheme": "uniform", "a": 1.004, "b": 1.0078125, "dtype": "bfloat16", "seed": 1}
    response = client.post("/init", json={**body, "rng": "philox-v2"})
    assert response.status_code == 422  # the engine's refusals (InitError), as for any other rule
    (detail,) = response.json()["detail"]
    assert detail["loc"] == ["body", "dtype"] and "no bfloat16 value" in detail["msg"]
    assert client.post("/init", json=body).status_code == 200  # philox-v1 rounds every value onto b, as it always did
