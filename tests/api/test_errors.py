"""Bad input gets a 4xx naming the field and the rule, never a 500; the service keeps serving afterwards."""

from __future__ import annotations

import pytest

OK = {"shape": [4, 4], "scheme": "normal", "seed": 1}


def detail(r) -> dict:
    body = r.json()
    assert isinstance(body["detail"], list) and body["detail"], body
    return body["detail"][0]


@pytest.mark.parametrize(
    ("body", "loc", "needle"),
    [
        ({**OK, "seed": True}, ["body", "seed"], "valid integer"),
        ({**OK, "seed": "7"}, ["body", "seed"], "valid integer"),
        ({**OK, "seed": 7.0}, ["body", "seed"], "valid integer"),
        ({**OK, "seed": -1}, ["body", "seed"], "greater than or equal to 0"),
        ({**OK, "seed": 2**64}, ["body", "seed"], "less than or equal to"),
        ({**OK, "shape": ["3", 4]}, ["body", "shape", 0], "valid integer"),
        ({**OK, "shape": [3, 0]}, ["body", "shape", 1], "greater than or equal to 1"),
        ({**OK, "shape": [-2]}, ["body", "shape", 0], "greater than or equal to 1"),
        ({**OK, "shape": [1] * 9}, ["body", "shape"], "at most 8"),
        ({**OK, "shape": 5}, ["body", "shape"], "valid list"),
        ({**OK, "std": "1"}, ["body", "std"], "valid number"),
        ({**OK, "std": True}, ["body", "std"], "valid number"),
        ({**OK, "std": -1.0}, ["body", "std"], "greater than or equal to 0"),
        ({**OK, "dtype": "int8"}, ["body", "dtype"], "float32"),
        ({**OK, "layout": "jax"}, ["body", "layout"], "torch"),
        ({**OK, "rng": "mt19937"}, ["body", "rng"], "philox-v1"),
        ({**OK, "format": "csv"}, ["body", "format"], "safetensors"),
        ({**OK, "name": ""}, ["body", "name"], "at least 1"),
        ({**OK, "name": "__metadata__"}, ["body", "name"], "reserved"),
        ({**OK, "fan_in": 0}, ["body", "fan_in"], "greater than or equal to 1"),
        ({**OK, "colour": "red"}, ["body", "colour"], "unknown field 'colour'"),
        ({**OK, "gain": 2.0}, ["body", "gain"], "not a parameter of scheme 'normal'"),
        ({**OK, "scheme": "kaiming"}, ["body", "scheme"], "unknown scheme 'kaiming'"),
        ({"shape": [4]}, ["body", "scheme"], "'scheme' is required"),
        ({"scheme": "normal"}, ["body", "shape"], "Field required"),
        ({"shape": [4], "scheme": "sparse"}, ["body", "sparsity"], "Field required"),
        ({"shape": [4, 4], "scheme": "sparse", "sparsity": 1.5}, ["body", "sparsity"], "less than or equal to 1"),
        ({"shape": [4], "scheme": "constant"}, ["body", "val"], "Field required"),
    ],
)
def test_validation_errors_name_the_field(client, body, loc, needle):
    r = client.post("/init", json=body)
    assert r.status_code == 422, r.text
    d = detail(r)
    assert d["loc"] == loc
    assert needle in d["msg"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"shape": [4, 4], "scheme": "kaiming_normal", "mode": "fan_avg"},
            "mode",
            "Mode fan_avg not supported, please use one of ['fan_in', 'fan_out']",
        ),
        (
            {"shape": [4, 4], "scheme": "kaiming_uniform", "nonlinearity": "ReLU"},
            "nonlinearity",
            "Unsupported nonlinearity ReLU",
        ),
        (
            {"shape": [4], "scheme": "kaiming_normal"},
            "shape",
            "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions",
        ),
        ({"shape": [4], "scheme": "orthogonal"}, "shape", "Only tensors with 2 or more dimensions are supported"),
        ({"shape": [4, 4, 4], "scheme": "eye"}, "shape", "Only tensors with 2 dimensions are supported"),
        ({"shape": [4, 4], "scheme": "dirac"}, "shape", "Only tensors with 3, 4, or 5 dimensions are supported"),
        ({"shape": [6, 4, 3], "scheme": "dirac", "groups": 4}, "groups", "dim 0 must be divisible by groups"),
        (
            {"shape": [4, 4, 4], "scheme": "sparse", "sparsity": 0.1},
            "shape",
            "Only tensors with 2 dimensions are supported",
        ),
        (
            {"shape": [4, 4], "scheme": "uniform", "a": 2.0, "b": 1.0},
            "a",
            "uniform_ expects to return a [from, to) range, but found from=2.0 > to=1.0",
        ),
        ({"shape": [4, 4], "scheme": "variance_scaling", "distribution": "normal"}, "distribution", "ambiguous"),
        ({"shape": [4, 4], "scheme": "variance_scaling", "mode": "fan_sum"}, "mode", "Invalid `mode` argument"),
        ({"shape": [4, 4], "scheme": "trunc_normal", "a": 1.0, "b": 1.0}, "b", "a < b"),
        ({"shape": [4, 4], "scheme": "trunc_normal", "a": 60.0, "b": 61.0}, "b", "underflows"),
        ({"shape": [4, 4], "scheme": "normal", "std": 1e5, "dtype": "float16"}, "dtype", "overflows float16"),
        ({"shape": [4, 4], "scheme": "xavier_uniform", "gain": 1e300}, "gain", "non-finite"),
    ],
)
def test_semantic_errors_carry_the_framework_message(client, body, field, message):
    r = client.post("/init", json={**body, "seed": 1})
    assert r.status_code == 422, r.text
    d = detail(r)
    assert d["loc"] == ["body", field]
    assert message in d["msg"]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"[1, 2]",
        b"null",
        b"42",
        b'"shape"',
        b"\xff\xfe",
        b'{"shape":[4],"scheme":"normal","std":NaN,"seed":1}',
        b'{"shape":[4],"scheme":"normal","mean":Infinity,"seed":1}',
        b'{"shape":[4],"scheme":"normal","seed":1e400}',
        b'{"shape":[1e400],"scheme":"normal"}',
        b'{"shape":[99999999999999999999999999999],"scheme":"zeros"}',
    ],
)
def test_malformed_bodies_are_4xx(client, raw):
    r = client.post("/init", content=raw)
    assert 400 <= r.status_code < 500, (raw, r.status_code, r.text)
    assert detail(r)["msg"]


def test_limits_give_413_naming_the_limit(client):
    r = client.post("/init", json={"shape": [2**20, 2**20], "scheme": "zeros", "seed": 1})
    assert r.status_code == 413 and "INITSERVE_MAX_ELEMENTS" in detail(r)["msg"]
    r = client.post("/init", json={"shape": [4096, 4096], "scheme": "zeros", "seed": 1, "format": "json"})
    assert r.status_code == 413 and "INITSERVE_MAX_JSON_ELEMENTS" in detail(r)["msg"]
    r = client.post("/stats", json={"shape": [2**14, 2**14], "scheme": "zeros", "seed": 1})
    assert r.status_code == 413 and "INITSERVE_MAX_STATS_ELEMENTS" in detail(r)["msg"]


def test_gain_errors(client):
    r = client.get("/gain", params={"nonlinearity": "leaky_relu", "param": "true"})
    assert r.status_code == 422 and detail(r)["msg"] == "negative_slope true not a valid number"
    assert detail(r)["loc"] == ["query", "param"]
    r = client.get("/gain", params={"nonlinearity": "Tanh"})
    assert r.status_code == 422 and detail(r)["msg"].startswith("Unsupported nonlinearity Tanh; accepted: linear,")
    assert client.get("/gain").status_code == 422


def test_still_serving_after_abuse(client):
    assert client.post("/init", json={**OK, "format": "json"}).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"scheme": "uniform", "a": -1e308, "b": 1e308, "dtype": "float64"},
        {"scheme": "random_uniform", "minval": -1e308, "maxval": 1e308, "dtype": "float64"},
        {"scheme": "normal", "std": 1e300, "dtype": "float64"},
        {"scheme": "uniform_unit_scaling", "factor": 1e308, "dtype": "float64"},
    ],
)
def test_parameters_that_overflow_float64_are_refused(client, body):
    r = client.post("/init", json={"shape": [4, 4], "seed": 1, **body})
    assert r.status_code == 422, r.text
    assert "overflow" in detail(r)["msg"] or "non-finite" in detail(r)["msg"]
