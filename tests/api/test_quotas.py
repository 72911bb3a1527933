"""Per-client quotas (INITSERVE_QUOTA_*): a token-bucket rate and a number of requests in flight, per API key or,
without keys, per client address; 429 with Retry-After and the error body naming the limit; off by default."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from service.api.middleware.quotas import QuotaMiddleware
from service.app import create_app
from service.settings import Settings
from tests.server import CONSOLE_SCRIPT, serve

BODY = {"shape": [4, 4], "scheme": "normal", "seed": 1, "format": "json"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Held:
    """An application whose requests stay in flight until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _scope(key: str | None = None, client: str = "10.0.0.1", path: str = "/init") -> dict[str, Any]:
    headers = [(b"authorization", f"Bearer {key}".encode())] if key else []
    return {"type": "http", "method": "POST", "path": path, "headers": headers, "client": (client, 5000)}


async def _call(app: Any, scope: dict[str, Any]) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


def _status(app: Any, scope: dict[str, Any]) -> int:
    return asyncio.run(_call(app, scope))[0]


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_rate_limit_is_a_token_bucket_per_key():
    clock = Clock()
    app = QuotaMiddleware(_ok, rate=2.0, burst=3, concurrency=0, keyed=True, clock=clock)
    assert [_status(app, _scope("a")) for _ in range(3)] == [200, 200, 200]  # the burst
    status, headers, body = asyncio.run(_call(app, _scope("a")))
    assert status == 429 and headers[b"retry-after"] == b"1"
    error = httpx.Response(429, content=body).json()["detail"][0]
    assert error["type"] == "rate_limit" and error["loc"] == ["header", "authorization"]
    assert "2 requests/s" in error["msg"] and "INITSERVE_QUOTA_RATE" in error["msg"]
    assert _status(app, _scope("b")) == 200  # another key has its own bucket
    clock.now += 0.5  # one token back at 2/s
    assert [_status(app, _scope("a")) for _ in range(2)] == [200, 429]
    clock.now += 10  # refills to the burst, no further
    assert [_status(app, _scope("a")) for _ in range(4)] == [200, 200, 200, 429]
    for path in ("/healthz", "/readyz", "/metrics"):  # probes and scrapes are never limited
        assert _status(app, _scope("a", path=path)) == 200


def test_retry_after_says_when_a_token_is_back():
    app = QuotaMiddleware(_ok, rate=0.1, burst=1, concurrency=0, keyed=True, clock=Clock())
    assert _status(app, _scope("a")) == 200
    status, headers, _ = asyncio.run(_call(app, _scope("a")))
    assert status == 429 and headers[b"retry-after"] == b"10"


def test_concurrency_limit_per_client_address_without_keys():
    async def scenario() -> list[int]:
        held = Held()
        app = QuotaMiddleware(held, rate=0, burst=1, concurrency=2, keyed=False)
        first = [asyncio.create_task(_call(app, _scope(client="10.0.0.1"))) for _ in range(2)]
        await asyncio.sleep(0)  # both are in flight now
        third, headers, body = await _call(app, _scope(client="10.0.0.1"))
        assert headers[b"retry-after"] == b"1" and b"INITSERVE_QUOTA_CONCURRENCY" in body and b'"request"' in body
        other = asyncio.create_task(_call(app, _scope(client="10.0.0.2")))  # another address: its own count
        await asyncio.sleep(0)
        held.release.set()
        statuses = [status for status, _, _ in await asyncio.gather(*first, other)]
        after, _, _ = await _call(app, _scope(client="10.0.0.1"))  # the slots are free again
        return [*statuses, third, after]

    assert asyncio.run(scenario()) == [200, 200, 200, 429, 200]


def test_idle_clients_are_forgotten():
    clock = Clock()
    app = QuotaMiddleware(_ok, rate=1.0, burst=1, concurrency=0, keyed=False, clock=clock)
    sizes = []
    for i in range(5000):  # a new address every 10 ms, each full again 1 s later: ~100 of them not yet idle
        assert _status(app, _scope(client=f"10.1.{i // 256}.{i % 256}")) == 200
        sizes.append(len(app._clients))
        clock.now += 0.01
    assert max(sizes) <= 1024 and min(sizes[1024:]) < 200


def test_quotas_are_off_by_default_and_wired_from_settings():
    settings = Settings()
    assert settings.quota_rate == 0 and settings.quota_concurrency == 0
    client = TestClient(create_app(Settings(quota_rate=0.001, quota_burst=2, api_keys=["k1", "k2"])))
    k1, k2 = ({"authorization": f"Bearer {key}"} for key in ("k1", "k2"))
    assert [client.post("/init", json=BODY, headers=k1).status_code for _ in range(3)] == [200, 200, 429]
    assert client.post("/init", json=BODY, headers=k2).status_code == 200
    assert client.post("/init", json=BODY).status_code == 401  # authentication first: no key, no quota spent
    assert client.get("/healthz").status_code == 200


@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="initserve console script not installed")
def test_quotas_on_the_real_server():
    env = {
        "INITSERVE_LOG_LEVEL": "warning",
        "INITSERVE_API_KEYS": "k1,k2",
        "INITSERVE_QUOTA_CONCURRENCY": "1",
        "INITSERVE_QUOTA_RATE": "0.01",
        "INITSERVE_QUOTA_BURST": "3",
    }
    k1, k2 = ({"authorization": f"Bearer {key}"} for key in ("k1", "k2"))
    with serve(env) as (url, _):
        host, port = url.removeprefix("http://").split(":")
        # k1 holds a 64 MiB stream it does not read: one request in flight.
        stalled = socket.create_connection((host, int(port)))
        body = b'{"shape":[4096,4096],"scheme":"normal","seed":1}'
        stalled.sendall(
            b"POST /init HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k1\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        with stalled:
            assert stalled.recv(12) == b"HTTP/1.1 200"
            busy = httpx.post(f"{url}/init", json=BODY, headers=k1)
            assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
            assert busy.json()["detail"][0]["type"] == "concurrency_limit"
            assert httpx.post(f"{url}/init", json=BODY, headers=k2).status_code == 200
        # The stream spent one of k1's 3 tokens, the refused request none: two more pass, then the rate refuses.
        assert [_post_when_free(url, k1) for _ in range(3)] == [200, 200, 429]


def _post_when_free(url: str, headers: dict[str, str]) -> int:
    """POST once the key's previous request has ended on the server (a reset stream ends a moment later)."""
    for _ in range(100):
        r = httpx.post(f"{url}/init", json=BODY, headers=headers)
        if r.status_code != 429 or r.json()["detail"][0]["type"] != "concurrency_limit":
            return r.status_code
        time.sleep(0.1)
    pytest.fail("the key's request in flight never ended")
