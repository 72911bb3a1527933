"""POST /diagnose: the numbers come from /init's tensors, requests are admitted like every other (work limit, memory
budget), and bad ones get 4xx naming the field and the rule."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

BODY = {"widths": [32, 48, 16], "activation": "tanh", "init": {"scheme": "xavier_uniform"}, "batch": 8, "seed": 5}


def make_client(**settings) -> TestClient:
    return TestClient(create_app(Settings(**settings)), raise_server_exceptions=False)


def npy(client: TestClient, body: dict) -> np.ndarray:
    response = client.post("/init", json={**body, "format": "npy"})
    assert response.status_code == 200, response.text
    return np.load(io.BytesIO(response.content))


@pytest.mark.parametrize("layout", ["torch", "keras"])
def test_the_stack_is_made_of_inits_tensors(client, layout):
    """The first layer's product, recomputed from /init's input and weight tensors, has the statistics reported."""
    body = {**BODY, "init": [{"scheme": "kaiming_normal", "layout": layout}, {"scheme": "he_uniform"}]}
    response = client.post("/diagnose", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    first = result["layers"][0]
    shape = [48, 32] if layout == "torch" else [32, 48]
    assert first["weight"]["shape"] == shape and first["weight"]["name"] == "layers.0.weight"
    x = npy(
        client, {"shape": [8, 32], "scheme": "normal", "seed": 5, "name": result["input"]["name"], "dtype": "float64"}
    )
    weight = npy(
        client, {"shape": shape, "scheme": "kaiming_normal", "layout": layout, "seed": 5, "name": "layers.0.weight"}
    )
    linear = x @ (weight.T if layout == "torch" else weight).astype(np.float64)
    assert first["linear"]["variance"] == pytest.approx(linear.var(), rel=1e-12)
    assert first["output"]["mean"] == pytest.approx(np.tanh(linear).mean(), rel=1e-12)
    # keras' family: its own layout by default
    assert result["layers"][1]["weight"]["shape"] == [48, 16] and result["layers"][1]["weight"]["layout"] == "keras"


def test_deterministic_with_an_etag_and_a_drawn_seed_is_returned(client):
    first, second = client.post("/diagnose", json=BODY), client.post("/diagnose", json=BODY)
    assert first.content == second.content and first.headers["etag"] == second.headers["etag"]
    assert client.post("/diagnose", json=BODY, headers={"if-none-match": first.headers["etag"]}).status_code == 304
    drawn = client.post("/diagnose", json={k: v for k, v in BODY.items() if k != "seed"})
    assert drawn.status_code == 200 and isinstance(drawn.json()["seed"], int)


@pytest.mark.parametrize(
    ("change", "loc", "words"),
    [
        ({"widths": [32]}, ["body", "widths"], "at least 2"),
        ({"widths": [32, 0]}, ["body", "widths", 1], "greater than or equal to 1"),
        ({"activation": "swish"}, ["body", "activation"], "'tanh'"),
        ({"activation": ["relu", "tanh", "relu"]}, ["body", "activation"], "3 values of activation for 2 layers"),
        ({"init": {"scheme": "he_normall"}}, ["body", "init", "scheme"], "did you mean 'he_normal'"),
        (
            {"init": [{"scheme": "he_normal"}, {"scheme": "kaiming_normal", "gain": 2}]},
            ["body", "init", 1, "gain"],
            "not a parameter of scheme 'kaiming_normal'",
        ),
        (
            {"init": [{"scheme": "he_normal"}, {"scheme": "kaiming_normal", "mode": "fan_avg"}]},
            ["body", "init.1.mode"],
            "layer 1 (48 -> 16): Mode fan_avg not supported",
        ),
        ({"init": {"scheme": "dirac"}}, ["body", "init.scheme"], "layer 0"),
        ({"norm": "group"}, ["body", "norm"], "'batch'"),
        ({"norm": "batch", "batch": 1}, ["body", "batch"], "at least 2"),
        ({"negative_slope": 2}, ["body", "negative_slope"], "less than or equal to 1"),
        ({"bins": 0}, ["body", "bins"], "greater than or equal to 1"),
        ({"seed": -1}, ["body", "seed"], "greater than or equal to 0"),
        ({"depth": 3}, ["body", "depth"], "unknown field 'depth'"),
    ],
)
def test_bad_requests_name_the_field_and_the_rule(client, change, loc, words):
    response = client.post("/diagnose", json={**BODY, **change})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == loc and words in error["msg"], error


def test_weights_with_a_mean_run_with_a_null_theory(client):
    response = client.post("/diagnose", json={**BODY, "widths": [4, 4, 4], "init": {"scheme": "eye"}})
    assert response.status_code == 200
    assert all(v is None for layer in response.json()["layers"] for v in layer["theory"].values())


def test_the_work_limit_is_a_413_naming_its_setting():
    client = make_client(max_diagnose_work=8 * 32 * 48 + 8 * 48 * 16 - 1)
    response = client.post("/diagnose", json=BODY)
    assert response.status_code == 413
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "widths"] and "INITSERVE_MAX_DIAGNOSE_WORK" in error["msg"]
    assert make_client(max_diagnose_work=8 * 32 * 48 + 8 * 48 * 16).post("/diagnose", json=BODY).status_code == 200


def test_memory_beyond_the_budget_is_a_413_naming_it():
    client = make_client(memory_budget_bytes=1 << 20)
    body = {**BODY, "widths": [512, 512], "batch": 16}  # 2 MiB of float64 weights alone
    response = client.post("/diagnose", json=body)
    assert response.status_code == 413
    (error,) = response.json()["detail"]
    assert "INITSERVE_MEMORY_BUDGET_BYTES" in error["msg"] and "fewer or narrower layers" in error["msg"]
    assert client.post("/diagnose", json={**body, "widths": [128, 128]}).status_code == 200


def test_the_budget_is_held_while_it_runs_and_given_back(client):
    budget = client.app.state.budget
    seen = []
    original = budget.hold

    async def hold(nbytes, streamed=False):
        seen.append(nbytes)
        return await original(nbytes, streamed)

    budget.hold = hold
    try:
        assert client.post("/diagnose", json=BODY).status_code == 200
    finally:
        del budget.hold
    assert len(seen) == 1 and seen[0] > 8 * (32 * 48 + 48 * 16)
    assert budget.used == 0


def test_keys_guard_it_like_every_endpoint():
    client = make_client(api_keys=["k"])
    assert client.post("/diagnose", json=BODY).status_code == 401
    assert client.post("/diagnose", json=BODY, headers={"authorization": "Bearer k"}).status_code == 200
