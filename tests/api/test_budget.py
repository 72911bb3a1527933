"""The memory budget under pressure (issue 8): large requests cannot starve small ones, one request gets a share
of the budget and not all of it, readiness says when nothing can be admitted; abandoned work (a 504, a client that
left) stops generating, counted in engine chunks, and gives its budget back only once its threads have stopped.

Through the real server (non-reading clients, connections reset mid-response): tests/test_slow_clients.py."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from service.api import delivery as stream_module
from service.api.budget import BudgetBusyError, MemoryBudget
from service.api.delivery import SEND_PIECE_BYTES, HeldResponse
from service.app import create_app
from service.engine import parallel
from service.engine.errors import TooLargeError
from service.engine.schemes.distributions import Uniform
from service.settings import Settings

MiB = 1 << 20


# ---- size classes, shares, readiness ---------------------------------------------------------------------------


def test_large_requests_cannot_take_the_reserve_of_small_ones():
    async def scenario() -> None:
        budget = MemoryBudget(100, wait_seconds=0.05, reserved=20, small_bytes=5)
        await budget.acquire(40)
        await budget.acquire(40)  # large requests hold all they may: capacity - reserve
        with pytest.raises(BudgetBusyError):
            await budget.acquire(10)  # 90 <= 100, but large ones never dip into the reserve
        for _ in range(4):
            await budget.acquire(5)  # small ones still get in, at once
        assert budget.used == 100
        for nbytes in (40, 40, 5, 5, 5, 5):
            budget.release(nbytes)
        assert budget.used == 0

    anyio.run(scenario)


def test_streams_are_large_whatever_their_working_set():
    # A stream's working set is a few MiB, less than a buffered [256, 784] body, but it lasts as long as its client
    # reads: streams that are never read must not fill the reserve that buffered small requests rely on.
    async def scenario() -> None:
        budget = MemoryBudget(100, wait_seconds=0.05, reserved=20, small_bytes=5)
        streams = [await budget.hold(4, streamed=True) for _ in range(20)]  # 80 = capacity - reserve
        with pytest.raises(BudgetBusyError):
            await budget.hold(4, streamed=True)
        buffered = [await budget.hold(5) for _ in range(4)]  # the reserve is still there for small buffered ones
        assert budget.used == 100
        for held in streams + buffered:
            held.release()
        assert budget.used == 0

    anyio.run(scenario)


def test_small_requests_cannot_starve_a_waiting_large_one_and_each_class_is_first_come_first_served():
    async def scenario() -> list[str]:
        budget = MemoryBudget(100, wait_seconds=5, reserved=20, small_bytes=10)
        order: list[str] = []

        async def take(name: str, nbytes: int) -> None:
            async with budget.reserve(nbytes):
                order.append(name)
                await asyncio.sleep(0.01)

        for _ in range(5):
            await budget.acquire(10)  # small requests hold 50 while no large one waits: beyond the reserve
        large = asyncio.create_task(take("large", 60))  # 50 + 60 > 100: waits
        await asyncio.sleep(0.01)
        late = [asyncio.create_task(take(f"small{i}", 10)) for i in range(3)]  # fit in 100, not in the reserve
        await asyncio.sleep(0.05)
        assert order == []  # the small ones did not overtake the large one beyond their reserve
        for _ in range(5):
            budget.release(10)
        await asyncio.gather(large, *late)
        assert budget.used == 0
        return order

    order = anyio.run(scenario)
    assert order[0] == "large" and [name for name in order if name != "large"] == ["small0", "small1", "small2"]


def test_one_large_request_gets_a_share_of_the_budget_not_all_of_it():
    budget = MemoryBudget(100, wait_seconds=0.05, reserved=10, max_share=0.5)
    with pytest.raises(TooLargeError, match="INITSERVE_BUDGET_MAX_SHARE"):
        anyio.run(budget.acquire, 51)
    anyio.run(MemoryBudget(100, 0.05, reserved=10, max_share=1.0).acquire, 90)
    with pytest.raises(TooLargeError, match="at most 90"):  # never the reserve, whatever the share
        anyio.run(MemoryBudget(100, 0.05, reserved=10, max_share=1.0).acquire, 91)


def test_a_whole_matrix_job_beyond_its_share_gets_413_naming_the_limit():
    # orthogonal [2048, 2048] holds its float64 matrix and factorisation: 64 MiB, the whole budget
    client = TestClient(create_app(Settings(memory_budget_bytes=64 * MiB, cache_bytes=0)))
    body = {"shape": [2048, 2048], "scheme": "orthogonal", "seed": 1}
    for path in ("/init", "/stats"):
        r = client.post(path, json=body)
        assert r.status_code == 413, (path, r.status_code)
        msg = r.json()["detail"][0]["msg"]
        assert "INITSERVE_BUDGET_MAX_SHARE" in msg and str(32 * MiB) in msg
    assert client.post("/init", json={**body, "shape": [256, 256]}).status_code == 200


def test_the_413_of_the_budget_gives_advice_that_can_be_followed():
    # A slice or a smaller dtype shrinks what normal holds, but not orthogonal's whole float64 matrix.
    client = TestClient(create_app(Settings(memory_budget_bytes=64 * MiB, cache_bytes=0)))
    for path in ("/init", "/stats"):
        whole = client.post(path, json={"shape": [2048, 2048], "scheme": "orthogonal", "seed": 1})
        msg = whole.json()["detail"][0]["msg"]
        assert whole.status_code == 413 and "a slice or a smaller dtype does not help" in msg, msg
        assert "ask for a slice" not in msg
    big = {"shape": [2048, 2048], "scheme": "normal", "seed": 1, "format": "json"}
    normal = client.post("/init", json=big)
    msg = normal.json()["detail"][0]["msg"]
    assert normal.status_code == 413 and msg.endswith(
        "ask for a slice of the tensor (each rank its shard) or a smaller dtype"
    )
    assert client.post("/init", json={**big, "slice": [[0, 256], [0, 2048]]}).status_code == 200  # the advice works


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_readiness_fails_while_nothing_can_be_admitted_and_recovers_when_something_can():
    clock = Clock()
    app = create_app(Settings(memory_budget_bytes=64 * MiB, budget_wait_seconds=0.05, budget_unready_seconds=5))
    budget: MemoryBudget = app.state.budget
    budget._clock = clock  # the budget's refusal clock, advanced by hand
    small = budget.small_bytes
    with TestClient(app) as client:
        # The engine warms up: on a cold numba cache an earlier app's background compile of the other rngs' kernels
        # may hold numba's compiler lock for minutes on a loaded machine (CI failed here after a silent 60 s).
        wait_for(lambda: client.get("/readyz").status_code == 200, 600)
        held = [budget.max_large]
        anyio.run(budget.acquire, held[0])  # large requests hold all they may
        while budget.used + small <= budget.capacity:  # and small ones the rest
            anyio.run(budget.acquire, small)
            held.append(small)
        tiny = {"shape": [4, 4], "scheme": "uniform", "seed": 1, "format": "json"}
        assert client.post("/init", json=tiny).status_code == 503
        assert client.get("/readyz").status_code == 200  # refused, but not for long yet
        clock.now += 5
        r = client.get("/readyz")
        assert r.status_code == 503 and "INITSERVE_BUDGET_UNREADY_SECONDS" in r.json()["reason"]
        assert client.get("/healthz").status_code == 200  # alive: it recovers without a restart
        budget.release(held.pop())  # room for a small request again
        assert client.get("/readyz").json()["status"] == "ready"
        assert client.post("/init", json=tiny).status_code == 200
        for nbytes in held:
            budget.release(nbytes)
    assert budget.used == 0


# ---- buffered bodies in pieces ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, SEND_PIECE_BYTES, SEND_PIECE_BYTES + 1, 3 * SEND_PIECE_BYTES + 5])
def test_buffered_bodies_go_out_in_pieces_with_the_same_bytes(size):
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    budget = MemoryBudget(1 << 30, wait_seconds=0)
    held = anyio.run(budget.hold, size + 1)
    anyio.run(HeldResponse(body, held), {}, None, send)
    assert budget.used == 0
    parts = [m for m in sent if m["type"] == "http.response.body"]
    assert b"".join(bytes(m["body"]) for m in parts) == body
    assert len(parts) == max(1, -(-size // SEND_PIECE_BYTES))  # uvicorn drains the client before each next one
    assert [m.get("more_body", False) for m in parts] == [True] * (len(parts) - 1) + [False]


# ---- cancellation of abandoned work --------------------------------------------------------------------------


class CountedChunks:
    """Counts the engine chunks uniform samples generate; each waits at `gate` once `entered` is set, so that a
    test can act while the work is in flight (bounded waits: a hang fails, it never blocks the suite)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.gate = threading.Event()
        self._lock = threading.Lock()
        original = Uniform.fill

        def fill(distribution: Uniform, *args: Any) -> None:
            with self._lock:
                self.calls += 1
            self.entered.set()
            self.gate.wait(10)
            original(distribution, *args)

        monkeypatch.setattr(Uniform, "fill", fill)


CHUNK = 1024
SHAPE = [256, 256]  # 64 engine chunks of CHUNK elements


@pytest.fixture
def small_chunks() -> Iterator[None]:
    with parallel.configured(chunk_elements=CHUNK):
        yield


def cancelled(reason: str) -> float:
    return REGISTRY.get_sample_value("initserve_cancelled_total", {"reason": reason}) or 0.0


def wait_for(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.mark.parametrize("path", ["/init", "/stats"])
def test_a_timed_out_request_stops_generating_and_holds_its_budget_until_its_threads_stop(
    monkeypatch, small_chunks, path
):
    app = create_app(Settings(timeout_seconds=0.2, cache_bytes=0))
    budget = app.state.budget
    with TestClient(app) as client:
        before = cancelled("timeout")
        counted = CountedChunks(monkeypatch)
        r = client.post(path, json={"shape": SHAPE, "scheme": "uniform", "seed": 1})
        assert r.status_code == 504
        assert counted.entered.is_set()
        assert budget.used > 0  # the abandoned work still runs: its memory is still counted
        counted.gate.set()
        wait_for(lambda: budget.used == 0)
    total = SHAPE[0] * SHAPE[1] // CHUNK
    assert counted.calls <= parallel.config().threads < total  # each thread finished the chunk it was in, no more
    assert cancelled("timeout") == before + 1


def raw_request(path: str, body: bytes) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip


async def leave_mid_request(
    app: Any, path: str, body: dict[str, Any], in_flight: Any, unblock: Any
) -> list[dict[str, Any]]:
    """Run one request through the app as uvicorn would; once `in_flight(sent)` says the work is under way, the client
    leaves (receive says http.disconnect; sends block until then, and are dropped after, as uvicorn's are), then
    `unblock()` lets the work go on. What the app sent."""
    payload = orjson.dumps(body)
    gone = asyncio.Event()
    sent: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if gone.is_set():
            return
        sent.append(message)
        if sum(m["type"] == "http.response.body" for m in sent) >= 3:
            await gone.wait()  # a client that stopped reading

    before = cancelled("disconnect")
    task = asyncio.create_task(app(raw_request(path, payload), receive, send))
    await asyncio.to_thread(wait_for, lambda: in_flight(sent))
    gone.set()
    await asyncio.to_thread(wait_for, lambda: cancelled("disconnect") == before + 1)
    unblock()
    await asyncio.wait_for(task, 10)
    return sent


def test_a_client_leaving_during_buffered_generation_stops_it_and_frees_its_budget(monkeypatch, small_chunks):
    app = create_app(Settings(cache_bytes=0))
    counted = CountedChunks(monkeypatch)
    body = {"shape": SHAPE, "scheme": "uniform", "seed": 1, "format": "json"}
    closed = {"route": "/init", "method": "POST", "status": "499"}
    before = REGISTRY.get_sample_value("initserve_requests_total", closed) or 0.0
    sent = anyio.run(leave_mid_request, app, "/init", body, lambda _: counted.entered.is_set(), counted.gate.set)
    assert counted.calls <= parallel.config().threads < SHAPE[0] * SHAPE[1] // CHUNK
    assert app.state.budget.used == 0
    assert sent == []  # nothing reached the client, which had left
    assert REGISTRY.get_sample_value("initserve_requests_total", closed) == before + 1  # logged 499, not 500


def test_a_client_leaving_mid_stream_stops_its_generation(monkeypatch, small_chunks):
    monkeypatch.setattr(stream_module, "STREAM_CHUNK_ELEMENTS", CHUNK)  # one engine chunk per streamed chunk
    monkeypatch.setattr(stream_module, "SEND_GROUP_BYTES", 1)  # one streamed chunk per hop to the event loop
    app = create_app(Settings(cache_bytes=0, stream_threshold_bytes=4096))
    counted = CountedChunks(monkeypatch)
    counted.gate.set()

    def stalled(sent: list[dict[str, Any]]) -> bool:  # the header and two chunks sent, the third waits to be
        return sum(m["type"] == "http.response.body" for m in sent) >= 3

    body = {"shape": SHAPE, "scheme": "uniform", "seed": 1}
    sent = anyio.run(leave_mid_request, app, "/init", body, stalled, lambda: None)
    assert counted.calls <= 2 + 1 < SHAPE[0] * SHAPE[1] // CHUNK  # at most the chunk under way when it left
    assert sent[0]["status"] == 200
    assert app.state.budget.used == 0
