"""Delivery at any size: above the threshold, safetensors and npy are streamed (header first, Content-Length
set) with exactly the bytes of the buffered response, however the chunks fall; the memory budget a stream
holds is returned when it ends, even when the client leaves mid-way."""

from __future__ import annotations

import io
from typing import Any

import anyio
import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from safetensors.numpy import load as st_load

from service.api import delivery as stream_module
from service.app import create_app
from service.engine.plan import TensorRequest, make_plan
from service.settings import Settings

THRESHOLD = 4096


def make_client(**settings: Any) -> TestClient:
    return TestClient(create_app(Settings(**settings)), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def streaming() -> TestClient:
    return make_client(stream_threshold_bytes=THRESHOLD, cache_bytes=0)


@pytest.fixture(scope="module")
def buffered() -> TestClient:
    return make_client(stream_threshold_bytes=1 << 40, cache_bytes=0)


def asgi_call(client: TestClient, body: bytes, disconnect_after: int | None = None) -> list[dict[str, Any]]:
    """POST /init straight through the ASGI app; the messages it sends. With disconnect_after, the client
    "leaves" (send raises OSError, as uvicorn's does) after that many body messages."""
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/init",
        "raw_path": b"/init",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": body, "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        bodies = sum(m["type"] == "http.response.body" for m in sent)
        if disconnect_after is not None and message["type"] == "http.response.body" and bodies >= disconnect_after:
            raise OSError("client went away")
        sent.append(message)

    async def run() -> None:
        try:
            await client.app(scope, receive, send)
        except Exception:  # the disconnect surfaces as ClientDisconnect; what matters is what was released
            if disconnect_after is None:
                raise

    anyio.run(run)
    return sent


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((3, 5), "float32"), ((31, 33), "float32"), ((64, 64), "float16"), ((128, 97), "float64"), ((1001,), "bfloat16")],
)
@pytest.mark.parametrize("fmt", ["safetensors", "npy"])
def test_streamed_bytes_equal_buffered_bytes_on_both_sides_of_the_threshold(streaming, buffered, shape, dtype, fmt):
    if fmt == "npy" and dtype == "bfloat16":
        pytest.skip("npy cannot hold bfloat16")
    body = {"shape": list(shape), "scheme": "kaiming_uniform", "seed": 5, "dtype": dtype, "format": fmt}
    if len(shape) == 1:
        body["fan_in"] = 16
    streamed, whole = streaming.post("/init", json=body), buffered.post("/init", json=body)
    assert streamed.status_code == whole.status_code == 200
    assert streamed.content == whole.content
    assert int(streamed.headers["content-length"]) == len(streamed.content)
    for name in ("etag", "cache-control", "content-type", "content-disposition", "x-initserve-seed"):
        assert streamed.headers[name] == whole.headers[name]


@pytest.mark.parametrize("chunk", [13, 1001, 4099])
def test_odd_chunk_boundaries_do_not_change_the_bytes(streaming, buffered, monkeypatch, chunk):
    monkeypatch.setattr(stream_module, "STREAM_CHUNK_ELEMENTS", chunk)
    body = {"shape": [67, 129], "scheme": "he_normal", "seed": 3, "dtype": "float16"}
    streamed = streaming.post("/init", json=body)
    assert streamed.content == buffered.post("/init", json=body).content
    tensor = st_load(streamed.content)["weight"]
    expected = make_plan(TensorRequest(shape=(67, 129), scheme="he_normal", seed=3, dtype="float16")).tensor()
    assert tensor.tobytes() == expected.tobytes()
    npy = streaming.post("/init", json={**body, "format": "npy"})
    assert np.load(io.BytesIO(npy.content)).tobytes() == expected.tobytes()


def test_large_responses_are_sent_in_chunks_with_content_length(streaming, monkeypatch):
    monkeypatch.setattr(stream_module, "STREAM_CHUNK_ELEMENTS", 1000)
    sent = asgi_call(streaming, orjson.dumps({"shape": [100, 100], "scheme": "uniform", "seed": 1}))
    start, bodies = sent[0], [m for m in sent if m["type"] == "http.response.body"]
    headers = dict(start["headers"])
    payload = b"".join(m["body"] for m in bodies)
    assert start["status"] == 200 and int(headers[b"content-length"]) == len(payload)
    assert len(bodies) >= 10 + 1  # the header, then 10 chunks of 1000 elements (and the closing message)
    assert streaming.app.state.budget.used == 0
    small = asgi_call(streaming, orjson.dumps({"shape": [4, 4], "scheme": "uniform", "seed": 1}))
    assert len([m for m in small if m["type"] == "http.response.body"]) == 1  # below the threshold: one piece


def test_a_client_leaving_mid_stream_returns_the_budget(streaming, monkeypatch):
    monkeypatch.setattr(stream_module, "STREAM_CHUNK_ELEMENTS", 1000)
    sent = asgi_call(streaming, orjson.dumps({"shape": [100, 100], "scheme": "uniform", "seed": 1}), 3)
    assert sent[0]["status"] == 200 and len(sent) == 4  # start, header, two chunks; then the client left
    assert streaming.app.state.budget.used == 0


def test_streamed_responses_answer_304_and_json_stays_buffered(streaming):
    body = {"shape": [64, 64], "scheme": "uniform", "seed": 2}
    tag = streaming.post("/init", json=body).headers["etag"]
    r = streaming.post("/init", json=body, headers={"if-none-match": tag})
    assert r.status_code == 304 and r.content == b""
    as_json = streaming.post("/init", json={**body, "format": "json"})
    assert as_json.status_code == 200 and len(as_json.json()["data"]) == 64 * 64
