"""The framework namespaces and `keras_version` over HTTP: the catalogue lists them, the frameworks' errors are
422s in the one error shape, and requests without keras_version keep their bytes (hashes taken before it
existed)."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from safetensors import numpy as safetensors_numpy

from service.engine.schemes.registry import ALL_SCHEMES

KERAS_MODEL = {"framework": "keras", "layers": ["multihead_attention(64, 4)", "layernorm(64)", "linear(64, 128)"]}
# sha-256 of the body and the ETag, from the commit before keras_version (2d18203): the default is 3.14's.
BEFORE = {
    "model": ("9a7dc361745d35df4516e5a17040d626e505b890bb9111261090315827513012", '"4369ddb846dd6640f2c150e8e19d2786"'),
    "model-json": (
        "3afcb326340935989940463993dbc6bbe495652a70dd59ae5753f4b01c4ba07b",
        '"b4c6b6dffbc546e5a80e7acbdc3f0c25"',
    ),
    "glorot": (
        "049f3ee3b832fcc8b03fed2316b952536e587d9fb3dcbfc761490e8f7ca5ffb2",
        '"e6b240f982d79326a6435c24f51f92b4"',
    ),
}
BODIES = {
    "model": {"seed": 5, "model": KERAS_MODEL},
    "model-json": {"seed": 5, "model": KERAS_MODEL, "format": "json"},
    "glorot": {"shape": [64, 4, 16], "scheme": "glorot_uniform", "seed": 5},
}


@pytest.mark.parametrize("case", sorted(BODIES))
def test_requests_without_keras_version_keep_their_bytes(client, case):
    response = client.post("/init", json=BODIES[case])
    assert (hashlib.sha256(response.content).hexdigest(), response.headers["etag"]) == BEFORE[case]


def test_keras_315_recipe_names_its_version_and_the_real_fans(client):
    body = {"seed": 5, "model": KERAS_MODEL, "format": "json", "keras_version": "3.15"}
    document = client.post("/init", json=body).json()
    assert document["keras_version"] == "3.15"
    query = document["tensors"]["multi_head_attention/query/kernel"]
    assert (query["scheme"], query["fan_in"], query["fan_out"]) == ("keras.glorot_uniform", 64, 64)
    assert query["params"] == {"input_axes": [0], "output_axes": [1, 2]}
    assert query["bound"] == pytest.approx(0.2165063509461097)


def test_the_catalogue_lists_the_namespaces(client):
    catalogue = client.get("/schemes").json()
    assert catalogue["namespaces"] == ["torch", "keras", "jax", "tf1"] and catalogue["keras_versions"] == [
        "3.14",
        "3.15",
    ]
    names = {s["name"]: s for s in catalogue["schemes"]}
    assert {
        "kaiming_normal",
        "torch.kaiming_normal",
        "jax.kaiming_normal",
        "keras.he_normal",
        "tf1.uniform_unit_scaling",
    } <= set(names)
    axes = {p["name"]: p for p in names["jax.variance_scaling"]["params"]}["in_axis"]
    assert (axes["type"], axes["default"]) == ("integer or array of integers", -2)


@pytest.mark.parametrize(
    ("body", "loc", "needle"),
    [
        ({"shape": [6], "scheme": "jax.he_normal"}, ["body", "shape"], "with default in_axis"),
        (
            {"shape": [4, 5], "scheme": "jax.variance_scaling", "scale": 1.0, "mode": "fan_in"},
            ["body", "distribution"],
            "Field required",
        ),
        (
            {
                "shape": [4, 5],
                "scheme": "jax.variance_scaling",
                "scale": -1.0,
                "mode": "fan_in",
                "distribution": "uniform",
            },
            ["body", "scale"],
            "greater than 0",
        ),
        ({"shape": [4, 5], "scheme": "keras.variance_scaling", "mode": "fan_geo_avg"}, ["body", "mode"], "fan_geo_avg"),
        ({"shape": [4, 5], "scheme": "jax.glorot_uniform", "in_axis": [0, "1"]}, ["body", "in_axis"], "integer"),
        ({"shape": [4, 5], "scheme": "jax.glorot_uniform", "layout": "torch"}, ["body", "layout"], "in_axis"),
        ({"shape": [4, 5], "scheme": "normal", "keras_version": "3.13"}, ["body", "keras_version"], "3.14"),
        ({"shape": [4, 5], "scheme": "trunc_normal", "a": 0.5, "b": 0.5}, ["body", "b"], "a < b"),
    ],
)
def test_framework_errors_are_422s(client, body, loc, needle):
    response = client.post("/init", json={**body, "seed": 1})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == loc and needle in detail["msg"], detail


def test_the_get_form_reads_axes_and_booleans_as_the_post_form(client):
    get = client.get(
        "/init?shape=4,5,6&scheme=jax.variance_scaling&scale=1&mode=fan_in&distribution=uniform&in_axis=0,1&seed=3"
    )
    post = client.post(
        "/init",
        json={
            "shape": [4, 5, 6],
            "scheme": "jax.variance_scaling",
            "scale": 1,
            "mode": "fan_in",
            "distribution": "uniform",
            "in_axis": [0, 1],
            "seed": 3,
        },
    )
    assert get.status_code == post.status_code == 200 and get.content == post.content
    ones = client.post(
        "/init", json={"shape": [2], "scheme": "torch.constant", "val": True, "seed": 1, "format": "json"}
    )
    assert ones.json()["data"] == [1.0, 1.0]


@pytest.mark.parametrize("val", [0, True, 2**70, -1.5])
def test_a_number_or_boolean_parameter_is_served(client, val):
    """torch.constant's val may be a boolean; a large integer is a float for a float tensor (it was a 500: an
    integer beyond 64 bits in the metadata) and exact for an int64 buffer."""
    response = client.post(
        "/init", json={"shape": [2], "scheme": "torch.constant", "val": val, "seed": 1, "format": "json"}
    )
    assert response.status_code == 200, response.text
    assert np.array_equal(np.array(response.json()["data"], dtype=np.float32), np.full(2, val, dtype=np.float32))
    exact = {"shape": [], "scheme": "torch.constant", "val": 2**62 + 1, "dtype": "int64"}
    buffer = client.post("/init", json={"seed": 1, "format": "json", "tensors": {"n": exact}}).json()
    assert buffer["tensors"]["n"]["data"] == [2**62 + 1]


@pytest.fixture(scope="module", params=[1 << 40, 1], ids=["buffered", "streamed"])
def either(request: pytest.FixtureRequest):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    return TestClient(create_app(Settings(stream_threshold_bytes=request.param)), raise_server_exceptions=False)


@pytest.mark.parametrize(
    "scheme",
    [
        "torch.kaiming_uniform",
        "torch.xavier_normal",
        "torch.orthogonal",
        "keras.he_normal",
        "jax.orthogonal",
        "torch.sparse",
    ],
)
@pytest.mark.parametrize("fmt", ["json", "npy", "safetensors"])
def test_zero_size_dimensions_give_the_empty_tensor_as_the_frameworks(either, scheme, fmt):
    params = {"sparsity": 0.5} if scheme == "torch.sparse" else {}
    response = either.post("/init", json={"shape": [0, 5], "scheme": scheme, "seed": 1, "format": fmt, **params})
    assert response.status_code == 200, response.text
    if fmt == "json":
        document = response.json()
        assert (document["data"], document["shape"]) == ([], [0, 5])
        assert document["warning"] == "Initializing zero-element tensors is a no-op"
    elif fmt == "npy":
        assert np.load(io.BytesIO(response.content)).shape == (0, 5)
    else:
        assert safetensors_numpy.load(response.content)["weight"].shape == (0, 5)


@pytest.mark.parametrize(
    ("body", "loc", "needle"),
    [
        ({"shape": [0, 0], "scheme": "torch.xavier_uniform"}, ["body", "shape"], "ZeroDivisionError"),
        ({"shape": [3, 0], "scheme": "jax.he_normal"}, ["body", "shape"], "ZeroDivisionError"),
        ({"shape": [0, 5], "scheme": "kaiming_uniform"}, ["body", "shape", 0], "greater than or equal to 1"),
    ],
)
def test_zero_size_refusals(client, body, loc, needle):
    detail = client.post("/init", json={**body, "seed": 1}).json()["detail"][0]
    assert detail["loc"] == loc and needle in detail["msg"], detail
    stats = client.post("/stats", json={"shape": [0, 5], "scheme": "torch.normal", "seed": 1})
    assert stats.status_code == 422 and "at least one element" in stats.json()["detail"][0]["msg"]


def test_an_empty_tensor_draws_nothing_under_the_torch_rng(client):
    """torch.manual_seed(7); normal_ on [3, 4]; kaiming_normal_ on [0, 4] (a no-op); uniform_ on [5]."""
    torch = pytest.importorskip("torch")
    tensors = {
        "a": {"shape": [3, 4], "scheme": "torch.normal"},
        "e": {"shape": [0, 4], "scheme": "torch.kaiming_normal"},
        "b": {"shape": [5], "scheme": "torch.uniform"},
    }
    body = {"seed": 7, "rng": "torch-2.13", "format": "npz", "tensors": tensors}
    ours = np.load(io.BytesIO(client.post("/init", json=body).content))
    torch.manual_seed(7)
    a = torch.empty(3, 4).normal_()
    torch.empty(0, 4)  # kaiming_normal_ on it returns before drawing
    b = torch.empty(5).uniform_()
    assert np.array_equal(ours["a"], a.numpy()) and np.array_equal(ours["b"], b.numpy()) and ours["e"].shape == (0, 4)


@pytest.mark.parametrize("scheme", [s for s in ALL_SCHEMES if s.namespaced], ids=lambda s: s.name)
def test_every_namespaced_scheme_answers_an_all_zero_shape_without_a_server_error(client, scheme):
    """The fuzzer's find: keras.orthogonal on [0, 0, ...] divided by max(rows, cols) = 0 in /stats (a 500)."""
    params = {k: v for k, v in scheme.example.items() if k != "shape"}
    shape = [0] * max(len(scheme.example["shape"]), 3)
    init = client.post("/init", json={"shape": shape, "scheme": scheme.name, "seed": 7, "format": "json", **params})
    assert init.status_code in (200, 422), init.text
    if init.status_code == 200:
        assert init.json()["data"] == []
    stats = client.post("/stats", json={"shape": shape, "scheme": scheme.name, "seed": 7, **params})
    assert stats.status_code == 422, stats.text
