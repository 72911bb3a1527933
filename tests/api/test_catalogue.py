"""GET /schemes, /gain, /healthz, and the docs that must match them (README table, OpenAPI export, CI)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from service.cli import openapi_text
from service.engine.schemes.registry import REGISTRY

ROOT = Path(__file__).resolve().parents[2]


def test_schemes_lists_every_scheme_with_its_parameters(client):
    listed = {s["name"]: s for s in client.get("/schemes").json()["schemes"]}
    assert set(listed) == set(REGISTRY)
    kaiming = listed["kaiming_normal"]
    assert kaiming["family"] == "torch" and kaiming["default_layout"] == "torch"
    assert {p["name"]: p["default"] for p in kaiming["params"]} == {
        "a": 0.0,
        "mode": "fan_in",
        "nonlinearity": "leaky_relu",
    }
    assert listed["msra"]["alias_of"] == "kaiming_normal"
    sparse = {p["name"]: p for p in listed["sparse"]["params"]}
    assert sparse["sparsity"]["required"] and sparse["sparsity"]["le"] == 1.0
    assert listed["he_normal"]["default_layout"] == "keras"


@pytest.mark.parametrize(
    ("nonlinearity", "param", "gain"),
    [
        ("linear", None, 1.0),
        ("conv2d", None, 1.0),
        ("conv_transpose3d", None, 1.0),
        ("sigmoid", None, 1.0),
        ("tanh", None, 5 / 3),
        ("relu", None, math.sqrt(2)),
        ("selu", None, 0.75),
        ("leaky_relu", None, 1.4141428569978354),
        ("leaky_relu", "0.2", math.sqrt(2 / 1.04)),
        ("leaky_relu", "0", math.sqrt(2)),
    ],
)
def test_gain_table(client, nonlinearity, param, gain):
    params = {"nonlinearity": nonlinearity, **({"param": param} if param is not None else {})}
    assert client.get("/gain", params=params).json()["gain"] == gain


def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_exported_openapi_matches_the_app():
    exported = (ROOT / "openapi" / "openapi.json").read_text()
    assert exported == openapi_text(), "openapi/openapi.json is stale: run `initserve openapi`"
    spec = json.loads(exported)
    assert {"/init", "/stats", "/schemes", "/gain", "/healthz"} <= set(spec["paths"])
    assert {"413", "422"} <= set(spec["paths"]["/init"]["post"]["responses"])


def test_readme_documents_every_scheme_and_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    for name in REGISTRY:
        assert f"`{name}" in readme, f"README's scheme table misses {name}"
    first_lines = readme.splitlines()[:5]
    serve = "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/initserve serve"
    test = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest"
    assert any(line.strip() == serve for line in first_lines)
    assert any(line.strip() == test for line in first_lines)
    assert test in (ROOT / ".ci" / "run").read_text(), ".ci/run must run the README's test command"


def test_readme_documents_every_setting():
    from service.settings import Settings

    readme = (ROOT / "README.md").read_text()
    missing = [name for name in Settings.model_fields if f"`INITSERVE_{name.upper()}`" not in readme]
    assert not missing, f"README's configuration table misses {missing}"
