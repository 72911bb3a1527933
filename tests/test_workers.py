"""Several uvicorn workers: every request is counted once in /metrics, whichever worker served it; a worker killed
while holding memory budget leaves no phantom share of the gauge behind; SIGTERM refuses new connections at once
while the responses in flight finish."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from tests.server import CONSOLE_SCRIPT, serve

pytestmark = pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="initserve console script not installed")

BOUND_SECONDS = 30.0  # a worker restart (spawn, import, warm numba cache) takes a few seconds on a busy machine


def test_metrics_aggregate_across_workers(tmp_path):
    env = {"INITSERVE_WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with serve(env) as (url, _):
        for seed in range(20):
            with httpx.Client() as fresh:  # a new connection each time, so both workers take requests
                r = fresh.post(f"{url}/init", json={"shape": [16, 16], "scheme": "lecun_normal", "seed": seed})
                assert r.status_code == 200
        for _ in range(4):  # /metrics answers from either worker, always with the totals of both
            text = httpx.get(f"{url}/metrics").text
            count = re.search(r'initserve_requests_total\{method="POST",route="/init",status="200"\} (\S+)', text)
            assert count and float(count.group(1)) == 20.0
            elements = re.search(r'initserve_generated_elements_total\{scheme="lecun_normal"\} (\S+)', text)
            assert elements and float(elements.group(1)) == 20.0 * 256
    assert len(list(tmp_path.glob("*.db"))) >= 2, "each worker writes its own metrics file"


def _inflight_bytes(url: str) -> float:
    match = re.search(r"^initserve_inflight_bytes (\S+)$", httpx.get(f"{url}/metrics").text, re.MULTILINE)
    assert match, "no initserve_inflight_bytes in /metrics"
    return float(match.group(1))


def _inflight_by_pid(directory: Path) -> dict[int, float]:
    """Each worker's own initserve_inflight_bytes, from its live-gauge file."""
    shares = {}
    for path in directory.glob("gauge_livesum_*.db"):
        for metric in MultiProcessCollector.merge([str(path)], accumulate=False):
            for sample in metric.samples:
                if sample.name == "initserve_inflight_bytes":
                    shares[int(path.stem.rsplit("_", 1)[1])] = sample.value
    return shares


def _stalled_stream(url: str) -> socket.socket:
    """A client that asks for a 64 MiB stream and never reads it: its worker holds the stream's budget."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    body = b'{"shape":[4096,4096],"scheme":"normal","seed":1,"format":"safetensors"}'
    sock.sendall(b"POST /init HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    return sock


def _wait(condition, what: str) -> None:
    deadline = time.monotonic() + BOUND_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {BOUND_SECONDS} s: {what}")
        time.sleep(0.1)


def test_a_killed_workers_share_of_the_inflight_gauge_is_dropped(tmp_path):
    env = {"INITSERVE_WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "INITSERVE_LOG_LEVEL": "warning"}
    with serve(env) as (url, _):
        with _stalled_stream(url):
            _wait(lambda: any(_inflight_by_pid(tmp_path).values()), "the stalled stream holds budget")
            shares = _inflight_by_pid(tmp_path)
            (holder,) = [pid for pid, held in shares.items() if held > 0]
            os.kill(holder, signal.SIGKILL)
            _wait(lambda: _inflight_by_pid(tmp_path).keys() - shares.keys(), "a new worker replaced the killed one")
        _wait(lambda: _inflight_bytes(url) == 0, "initserve_inflight_bytes back to 0 after the holder's death")
        r = httpx.post(f"{url}/init", json={"shape": [4, 4], "scheme": "normal", "seed": 1, "format": "json"})
        assert r.status_code == 200


def test_sigterm_with_several_workers_refuses_new_connections_and_finishes_the_inflight_response(tmp_path):
    env = {"INITSERVE_WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "INITSERVE_LOG_LEVEL": "warning"}
    request = {"shape": [4096, 4096], "scheme": "normal", "seed": 3, "format": "safetensors"}  # 64 MiB
    with serve(env) as (url, process):
        host, port = url.removeprefix("http://").split(":")
        with httpx.Client(timeout=30) as client, client.stream("POST", f"{url}/init", json=request) as response:
            assert response.status_code == 200
            process.send_signal(signal.SIGTERM)
            refused = False
            for _ in range(50):  # 5 s: connections made before the workers heard of the signal are still served
                try:
                    socket.create_connection((host, int(port)), timeout=2).close()
                except ConnectionRefusedError:
                    refused = True
                    break
                time.sleep(0.1)
            assert refused, "new connections were still accepted (and left hanging) during the drain"
            body = b"".join(response.iter_raw(1 << 16))
        assert len(body) == int(response.headers["content-length"])
        try:
            assert process.wait(timeout=BOUND_SECONDS) == 0
        except subprocess.TimeoutExpired:
            pytest.fail("initserve serve did not exit after its drain")
