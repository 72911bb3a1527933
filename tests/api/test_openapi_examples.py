"""Every operation of the OpenAPI document has examples that work at the first click of "Try it out": each body
example and each operation's parameter examples, sent as they are, get 200; no sample a viewer generates from the
schema (ReDoc) starts from a seed the service refuses."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.schemas import MAX_SEED
from service.app import create_app

SCHEMA = create_app().openapi()
# /readyz answers 200 once the engine has warmed up (a lifespan this client does not run), whatever it is sent.
OPERATIONS = [
    (path, method, op) for path, ops in SCHEMA["paths"].items() for method, op in ops.items() if path != "/readyz"
]


def _parameter_example(parameter: dict[str, Any]) -> Any:
    if "example" in parameter:
        return parameter["example"]
    examples = parameter.get("examples")
    return next(iter(examples.values()))["value"] if examples else None


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS, ids=[f"{m} {p}" for p, m, _ in OPERATIONS])
def test_every_operations_examples_get_200(client: TestClient, path: str, method: str, operation: dict) -> None:
    query = {}
    for parameter in operation.get("parameters", []):
        if parameter["in"] != "query":
            continue
        example = _parameter_example(parameter)
        assert example is not None or not parameter["required"], f"required {parameter['name']} has no example"
        if example is not None:
            query[parameter["name"]] = str(example)
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if body is None:
        assert client.request(method, path, params=query).status_code == 200
        return
    assert body.get("examples"), "a request body needs an example: Swagger's default is {}"
    for name, example in body["examples"].items():
        response = client.request(method, path, params=query, json=example["value"])
        assert response.status_code == 200, (name, response.text)


def _seed_schemas(node: Any) -> list[dict]:
    if isinstance(node, dict):
        found = [node["properties"]["seed"]] if "seed" in node.get("properties", {}) else []
        return found + [s for value in node.values() for s in _seed_schemas(value)]
    if isinstance(node, list):
        return [s for value in node for s in _seed_schemas(value)]
    return []


def test_every_seed_has_an_example_the_service_takes() -> None:
    seeds = _seed_schemas(SCHEMA["components"]["schemas"])
    assert seeds
    for seed in seeds:
        # anyOf [integer, null]: the integer's examples are what a viewer uses
        integer = next(s for s in seed.get("anyOf", [seed]) if s.get("type") == "integer")
        assert integer.get("examples") or seed.get("examples"), seed
        assert all(0 <= e <= MAX_SEED for e in integer.get("examples") or seed["examples"])
