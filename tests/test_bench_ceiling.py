"""The HTTP benchmark's ceiling is benchmark code: served by bench.ceiling's app, absent from the service's."""

from __future__ import annotations

from fastapi.testclient import TestClient

from bench.ceiling import with_ceiling
from service.app import create_app
from service.settings import Settings

BODY = {"shape": [256, 784], "scheme": "kaiming_normal", "seed": 7}


def test_ceiling_endpoint_only_in_the_benchmarks_app():
    assert TestClient(create_app(Settings())).post("/_bench/ceiling?size=10").status_code == 404
    client = TestClient(with_ceiling(create_app(Settings())))
    r = client.post("/_bench/ceiling?size=1000", json=BODY)
    assert r.status_code == 200 and len(r.content) == 1000
    assert "/_bench/ceiling" not in client.get("/openapi.json").json()["paths"]
