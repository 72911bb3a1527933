"""Clients that stop reading, through the real server (issue 8 items 2, 3, 7): every response kind keeps its memory
budget while its bytes wait for the client and gives it back when the client goes (connection reset mid-response);
buffered bodies cannot pile up beyond the budget; large requests cannot starve small ones; readiness says when the
server admits nothing.

A stalled client sends its request, reads the status line and nothing more, with a tiny receive buffer so the
server's writes stall at once; it leaves by resetting the connection (SO_LINGER 0: RST)."""

from __future__ import annotations

import json
import re
import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from service.api.delivery import STREAM_CHUNK_ELEMENTS, stream_bytes
from service.engine.plan import TensorRequest, make_plan
from tests.server import CONSOLE_SCRIPT, serve

pytestmark = pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="initserve console script not installed")

MiB = 1 << 20
BOUND_SECONDS = 30.0  # waits end as soon as their condition holds; this only bounds a failure
QUIET = {"INITSERVE_LOG_LEVEL": "warning", "INITSERVE_CACHE_BYTES": "0"}
TINY = {"shape": [4, 4], "scheme": "uniform", "seed": 1, "format": "json"}


class Stalled:
    """A client that sent `body` to POST /init, read the status line, and reads nothing more."""

    def __init__(self, url: str, body: dict[str, Any]) -> None:
        parts = urlsplit(url)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
        self.sock.settimeout(BOUND_SECONDS)
        self.sock.connect((parts.hostname, parts.port))
        payload = json.dumps(body).encode()
        head = f"POST /init HTTP/1.1\r\nhost: {parts.netloc}\r\ncontent-type: application/json\r\n"
        self.sock.sendall(f"{head}content-length: {len(payload)}\r\n\r\n".encode() + payload)
        line = b""
        while len(line) < 12:
            piece = self.sock.recv(12 - len(line))
            assert piece, "connection closed before the status line"
            line += piece
        self.status = int(line[9:12])

    def reset(self) -> None:
        """Leave mid-response: close with an RST, as a client that crashed or gave up does."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


@contextmanager
def stalled_clients() -> Iterator[list[Stalled]]:
    clients: list[Stalled] = []
    try:
        yield clients
    finally:
        for client in clients:
            client.reset()


def metric(url: str, name: str, labels: str = "") -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def inflight(url: str) -> float:
    return metric(url, "initserve_inflight_bytes")


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"not reached: {what}"
        time.sleep(0.05)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def stall_until_refused(url: str, body: dict[str, Any], clients: list[Stalled], most: int = 40) -> None:
    """Open stalled clients of `body` until the budget refuses one (503), or fail after `most`."""
    for seed in range(most):
        client = Stalled(url, {**body, "seed": seed})
        clients.append(client)
        if client.status == 503:
            return
        assert client.status == 200
    pytest.fail(f"{most} stalled clients and still no 503")


KINDS = {
    "buffered JSON": {"shape": [1024, 1024], "scheme": "uniform", "format": "json"},  # ~12 MB of text
    "streamed tensor": {"shape": [4096, 4096], "scheme": "uniform"},  # 64 MiB safetensors
    "many-tensor stream": {
        "tensors": {name: {"shape": [2048, 2048], "scheme": "uniform"} for name in ("a", "b", "c", "d")},
    },
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_response_kind_holds_its_budget_while_stalled_and_frees_it_when_the_client_resets(kind):
    with serve(QUIET) as (url, _):
        cancelled = 'initserve_cancelled_total{reason="disconnect"}'
        before = metric(url, cancelled)
        with stalled_clients() as clients:
            clients.append(Stalled(url, {**KINDS[kind], "seed": 1}))
            assert clients[0].status == 200
            time.sleep(0.5)  # let the server fill the socket buffers and stall (the check below needs no timing)
            assert inflight(url) > 0, "a response whose bytes still wait for the client must hold its budget"
        wait_until(lambda: inflight(url) == 0, "the budget released after the reset")
        wait_until(lambda: metric(url, cancelled) == before + 1, "the abandoned request counted as cancelled")
        assert httpx.post(f"{url}/init", json=TINY, timeout=10).status_code == 200


def test_stalled_buffered_responses_stay_within_the_budget():
    budget = 256 * MiB
    body = {"shape": [2048, 2048], "scheme": "uniform", "format": "json"}  # ~50 MB of JSON text each
    env = {**QUIET, "INITSERVE_MEMORY_BUDGET_BYTES": str(budget), "INITSERVE_BUDGET_WAIT_SECONDS": "0.5"}
    with serve(env) as (url, process):
        assert len(httpx.post(f"{url}/init", json={**body, "seed": 99}, timeout=60).content) > 40 * MiB  # warm
        baseline = rss_bytes(process.pid)
        with stalled_clients() as clients:
            for seed in range(8):  # 8 x 50 MB: far beyond the budget if each left its body in the server uncounted
                clients.append(Stalled(url, {**body, "seed": seed}))
            statuses = [client.status for client in clients]
            assert 200 in statuses and 503 in statuses, statuses  # what did not fit was refused, not buffered
            assert inflight(url) > 0  # the stalled bodies are still counted
            grown = rss_bytes(process.pid) - baseline
            assert grown <= budget, f"RSS grew by {grown / MiB:.0f} MiB with a budget of {budget / MiB:.0f} MiB"
        wait_until(lambda: inflight(url) == 0, "the budget released after the resets")


def test_large_requests_that_never_read_cannot_starve_small_ones():
    env = {**QUIET, "INITSERVE_MEMORY_BUDGET_BYTES": str(128 * MiB), "INITSERVE_BUDGET_WAIT_SECONDS": "0.2"}
    with serve(env) as (url, _):
        with stalled_clients() as clients:
            stall_until_refused(url, {"shape": [4096, 4096], "scheme": "uniform"}, clients)
            for _ in range(3):
                assert httpx.post(f"{url}/init", json=TINY, timeout=10).status_code == 200
            assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200  # it still admits small requests
        wait_until(lambda: inflight(url) == 0, "the budget released after the resets")


def test_readiness_fails_while_the_budget_admits_nothing_and_liveness_does_not():
    # Room for 4 stalled streams of [4096, 4096] and not one byte more: the fifth, and then any request, is refused.
    stream = {"shape": [4096, 4096], "scheme": "uniform"}
    hold = stream_bytes(make_plan(TensorRequest((4096, 4096), "uniform", 0)).working_bytes(STREAM_CHUNK_ELEMENTS))
    env = {
        **QUIET,
        "INITSERVE_MEMORY_BUDGET_BYTES": str(4 * hold),
        "INITSERVE_BUDGET_WAIT_SECONDS": "0.1",
        "INITSERVE_BUDGET_RESERVED_FRACTION": "0",  # no reserve: stalled large requests can take everything
        "INITSERVE_BUDGET_MAX_SHARE": "1",
        "INITSERVE_BUDGET_UNREADY_SECONDS": "0.5",
    }
    with serve(env) as (url, _):
        with stalled_clients() as clients:
            stall_until_refused(url, stream, clients)

            def unready() -> bool:
                assert httpx.post(f"{url}/init", json=TINY, timeout=10).status_code == 503
                return httpx.get(f"{url}/readyz", timeout=10).status_code == 503

            wait_until(unready, "/readyz 503 while every request is refused")
            assert "INITSERVE_BUDGET_UNREADY_SECONDS" in httpx.get(f"{url}/readyz", timeout=10).json()["reason"]
            assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        wait_until(lambda: httpx.get(f"{url}/readyz", timeout=10).status_code == 200, "ready once the budget frees")
        assert httpx.post(f"{url}/init", json=TINY, timeout=10).status_code == 200
