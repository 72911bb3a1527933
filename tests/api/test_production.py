"""Settings-driven behaviour: auth, CORS, request ids and logs, body limit, memory budget, timeout, metrics,
readiness, offline docs."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time

import anyio
import orjson
import pytest
from fastapi.testclient import TestClient

from service.api.budget import BudgetBusyError, MemoryBudget
from service.app import create_app
from service.engine import parallel
from service.settings import Settings

BODY = {"shape": [64, 64], "scheme": "kaiming_normal", "seed": 1}


def make_client(**settings) -> TestClient:
    return TestClient(create_app(Settings(**settings)), raise_server_exceptions=False)


def test_api_keys_guard_everything_but_health_and_metrics():
    client = make_client(api_keys=["k1-secret", "k2-secret"])
    r = client.post("/init", json=BODY)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="initserve"'
    assert r.json()["detail"][0]["loc"] == ["header", "authorization"]
    assert client.post("/init", json=BODY, headers={"authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/init", json=BODY, headers={"authorization": "Basic k1-secret"}).status_code == 401
    assert client.get("/schemes").status_code == 401
    assert client.get("/openapi.json").status_code == 401
    for key in ("k1-secret", "k2-secret"):
        assert client.post("/init", json=BODY, headers={"authorization": f"Bearer {key}"}).status_code == 200
    for open_path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(open_path).status_code in (200, 503), open_path


def test_with_keys_the_static_shells_of_the_page_and_docs_are_open_and_nothing_else():
    client = make_client(api_keys=["k"])
    for path in ("/", "/ui/app.js", "/ui/docs.js", "/docs", "/redoc", "/docs-assets/swagger-ui-bundle.js"):
        assert client.get(path).status_code == 200, path
    assert "/ui/docs.js" in client.get("/docs").text  # which fetches the document with the key
    for shell in ("/", "/docs", "/redoc"):  # the browser fetches nothing from elsewhere (tests/test_page.py)
        assert client.get(shell).headers["content-security-policy"].startswith("default-src 'self';"), shell
    for path in ("/openapi.json", "/schemes", "/ui/../settings.py", "/uifoo", "/docs/x"):
        assert client.get(path).status_code == 401, path
    assert client.post("/", json={}).status_code == 401


def test_no_keys_means_no_auth_and_env_parsing():
    assert make_client().post("/init", json=BODY).status_code == 200
    assert Settings(_env_file=None, api_keys=" a , b ,").api_keys == ["a", "b"]


def test_cors_off_by_default_and_on_for_configured_origins():
    r = make_client().post("/init", json=BODY, headers={"origin": "https://app.example"})
    assert "access-control-allow-origin" not in r.headers
    client = make_client(cors_origins=["https://app.example"], api_keys=["k"])
    preflight = client.options(
        "/init", headers={"origin": "https://app.example", "access-control-request-method": "POST"}
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    denied = client.post("/init", json=BODY, headers={"origin": "https://app.example"})
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == "https://app.example"
    other = client.options("/init", headers={"origin": "https://evil.example", "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in other.headers


def test_request_id_is_echoed_or_made_and_logged(caplog):
    client = make_client()
    with caplog.at_level(logging.INFO, logger="initserve.access"):
        given = client.post("/init", json=BODY, headers={"x-request-id": "job-42.rank-3"})
        made = client.get("/healthz", headers={"x-request-id": "bad id with spaces"})
    assert given.headers["x-request-id"] == "job-42.rank-3"
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    records = [r for r in caplog.records if r.name == "initserve.access"]
    first = next(r for r in records if r.request_id == "job-42.rank-3")
    assert (first.method, first.path, first.status) == ("POST", "/init", 200)
    assert first.bytes_sent == len(given.content) and first.duration_ms > 0


def test_json_log_formatter_emits_one_object_per_line():
    from service.logging_config import JsonFormatter

    record = logging.LogRecord("initserve.access", logging.INFO, __file__, 1, "request", (), None)
    record.request_id, record.status = "abc", 200
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert json.loads(line) | {"ts": None} == {
        "ts": None,
        "level": "info",
        "logger": "initserve.access",
        "msg": "request",
        "request_id": "abc",
        "status": 200,
    }


def test_body_size_limit_by_header_and_by_counting():
    client = make_client(max_body_bytes=2048)
    big = json.dumps({**BODY, "name": "x" * 4000}).encode()
    r = client.post("/init", content=big)
    assert r.status_code == 413 and "INITSERVE_MAX_BODY_BYTES" in r.json()["detail"][0]["msg"]

    def chunks():  # no Content-Length: the limit must count what arrives
        for i in range(0, len(big), 500):
            yield big[i : i + 500]

    r = client.post("/init", content=chunks())
    assert r.status_code == 413
    assert client.post("/init", json=BODY).status_code == 200


def test_memory_budget_refuses_oversized_and_sheds_load():
    client = make_client(memory_budget_bytes=1 << 20, budget_wait_seconds=0.05)
    r = client.post("/init", json={**BODY, "shape": [1024, 1024]})  # 4 MiB > 1 MiB budget
    assert r.status_code == 413 and "INITSERVE_MEMORY_BUDGET_BYTES" in r.json()["detail"][0]["msg"]

    budget = client.app.state.budget
    anyio.run(budget.acquire, 1_040_000)  # another request holds nearly all of it
    try:
        busy = client.post("/init", json=BODY)  # 16 KiB no longer fits
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        busy_stats = client.post("/stats", json=BODY)
        assert busy_stats.status_code == 503
    finally:
        budget.release(1_040_000)
    assert client.post("/init", json=BODY).status_code == 200
    assert budget.used == 0


def test_budget_serves_waiters_first_come_first_served_and_a_leaver_lets_the_next_in():
    async def scenario() -> list[str]:
        budget = MemoryBudget(100, wait_seconds=5)
        order: list[str] = []

        async def take(name: str, nbytes: int) -> None:
            async with budget.reserve(nbytes):
                order.append(name)

        await budget.acquire(60)  # the budget is busy
        large = asyncio.create_task(take("large", 80))
        await asyncio.sleep(0.01)  # the large request is first in line
        small = asyncio.create_task(take("small", 30))  # would fit now (60 + 30 <= 100), but is second
        await asyncio.sleep(0.05)
        assert order == []  # the small one did not jump the line
        budget.release(60)
        await asyncio.gather(large, small)
        assert budget.used == 0

        impatient = MemoryBudget(100, wait_seconds=0.05)
        await impatient.acquire(90)
        with pytest.raises(BudgetBusyError):
            await impatient.acquire(50)  # waits 0.05 s, then leaves the line
        async with impatient.reserve(10):  # not blocked by the one that left
            order.append("after")
        impatient.release(90)
        assert impatient.used == 0
        return order

    assert anyio.run(scenario) == ["large", "small", "after"]


def test_a_buffered_response_holds_its_budget_until_it_is_sent():
    app = create_app(Settings(cache_bytes=0))
    budget = app.state.budget
    seen: list[int] = []
    body = orjson.dumps({**BODY, "shape": [64, 64], "format": "json"})

    async def run() -> None:
        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.body":
                seen.append(budget.used)  # while the body is being sent

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/init", "raw_path": b"/init", "root_path": "", "query_string": b"",
            "headers": [(b"content-length", str(len(body)).encode())], "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }  # fmt: skip
        await app(scope, receive, send)

    anyio.run(run)
    assert seen and seen[0] >= 64 * 64 * (4 + 16)  # the values and their JSON text
    assert budget.used == 0  # released once sent


def test_timeout_gives_504_and_the_service_keeps_serving():
    client = make_client(timeout_seconds=0.01)
    r = client.post("/init", json={"shape": [512, 512], "scheme": "orthogonal", "seed": 1})
    assert r.status_code == 504 and "INITSERVE_TIMEOUT_SECONDS" in r.json()["detail"][0]["msg"]
    assert make_client().get("/healthz").status_code == 200


def test_metrics_count_requests_by_route_and_generation_by_scheme():
    client = make_client()
    client.post("/init", json={**BODY, "scheme": "he_uniform"})
    client.post("/init", json={"shape": [2], "scheme": "nope"})
    text = client.get("/metrics").text
    assert re.search(r'initserve_requests_total\{method="POST",route="/init",status="200"\} [1-9]', text)
    assert re.search(r'initserve_requests_total\{method="POST",route="/init",status="422"\} [1-9]', text)
    assert re.search(r'initserve_generated_elements_total\{scheme="he_uniform"\} [1-9]', text)
    assert re.search(r'initserve_generated_bytes_total\{scheme="he_uniform"\} [1-9]', text)
    assert "initserve_request_duration_seconds_bucket" in text and "initserve_inflight_bytes" in text


def test_readiness_follows_the_lifespan_and_the_engine_warm_up(monkeypatch):
    warmed = threading.Event()
    release = threading.Event()

    def slow_warm_up() -> None:
        release.wait(10)
        warmed.set()

    monkeypatch.setattr(parallel, "warm_up", slow_warm_up)
    app = create_app(Settings())
    assert TestClient(app).get("/readyz").status_code == 503  # lifespan not started
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200  # live at once
        assert client.get("/readyz").status_code == 503  # not ready while the kernels compile
        release.set()
        assert warmed.wait(10)
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.get("/readyz").json()["status"] == "ready"
    assert TestClient(app).get("/readyz").status_code == 503  # shut down


@pytest.mark.parametrize(
    ("page", "assets"), [("/docs", ["swagger-ui-bundle.js", "swagger-ui.css"]), ("/redoc", ["redoc.standalone.js"])]
)
def test_docs_work_offline(page, assets):
    client = make_client()
    html = client.get(page).text
    assert not re.search(r"(src|href)=[\"']https?://", html), "docs must not load anything from a CDN"
    for asset in assets:
        path = f"/docs-assets/{asset}"
        assert path in html
        r = client.get(path)
        assert r.status_code == 200 and len(r.content) > 100_000
