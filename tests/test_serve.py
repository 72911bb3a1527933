"""The production command's life cycle: on SIGTERM a response already on the wire is finished, then the process
exits 0 (what `docker stop` and a Kubernetes pod termination send, and what a rolling update relies on); a corrupt
numba cache at start-up is logged and rebuilt instead of leaving the server unready."""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.server import CONSOLE_SCRIPT, serve

pytestmark = pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="initserve console script not installed")

SHAPE = [4096, 4096]  # float32: 64 MiB, far more than loopback socket buffers hold, so it is still being sent
EXIT_BOUND_SECONDS = 10.0  # generous: a hang (e.g. waiting on a keep-alive connection) is what this catches


def _safetensors_shape(body: bytes) -> tuple[list[int], str, int]:
    (header_len,) = struct.unpack("<Q", body[:8])
    entry = json.loads(body[8 : 8 + header_len])["weight"]
    return entry["shape"], entry["dtype"], 8 + header_len + entry["data_offsets"][1]


def test_sigterm_lets_the_inflight_response_finish_then_exits_zero():
    request = {"shape": SHAPE, "scheme": "kaiming_uniform", "seed": 11, "format": "safetensors"}
    with serve({"INITSERVE_LOG_LEVEL": "warning"}) as (url, process):
        with httpx.Client(timeout=30) as client, client.stream("POST", f"{url}/init", json=request) as response:
            assert response.status_code == 200
            # The response has started (headers are here) and most of its body is not yet sent: stop the server
            # now, and give it time to act on the signal before reading on.
            process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert process.poll() is None, "the server exited with a response still in flight"
            # h11 raises if the connection closes before Content-Length bytes (or the last chunk) arrive.
            body = b"".join(response.iter_raw(1 << 16))
        declared = response.headers.get("content-length")
        if declared is not None:
            assert len(body) == int(declared)
        shape, dtype, end = _safetensors_shape(body)
        assert (shape, dtype, end) == (SHAPE, "F32", len(body))
        assert len(body) > 4 * SHAPE[0] * SHAPE[1]

        try:
            returncode = process.wait(timeout=EXIT_BOUND_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"initserve serve did not exit within {EXIT_BOUND_SECONDS} s of SIGTERM")
        output = process.stdout.read().decode(errors="replace") if process.stdout else ""
        assert returncode == 0, f"exit status {returncode}; output:\n{output[-2000:]}"


def test_a_corrupt_numba_cache_is_logged_and_rebuilt_and_the_server_becomes_ready(tmp_path):
    cache = tmp_path / "numba-cache"
    env = {"NUMBA_CACHE_DIR": str(cache)}
    # philox-v1's kernels (the warm-up's, which fails on them) and philox-v2's (whose module that failed warm-up has
    # not imported: its cache must be emptied too); torch-2.13's are left out only to save their compile here.
    compile_all = "from service.engine.random.registry import compile_kernels as c; c(['philox-v1', 'philox-v2'])"
    subprocess.run([sys.executable, "-c", compile_all], env={**os.environ, **env}, check=True, timeout=300)
    files = [path for path in cache.rglob("*") if path.suffix in (".nbi", ".nbc")]
    assert files, "numba wrote no cache"
    for path in files:  # garbled the way a crash mid-write or a bad disk leaves them
        path.write_bytes(b"\x80\x05garbage" + path.read_bytes()[:16])

    request = {"shape": [3, 5], "scheme": "trunc_normal", "seed": 5, "format": "json", "dtype": "float64"}
    with serve({**env, "INITSERVE_LOG_LEVEL": "info"}, ready_timeout=300) as (url, process):
        r = httpx.post(f"{url}/init", json=request, timeout=60)
        deadline = time.monotonic() + 300
        while httpx.get(f"{url}/readyz", timeout=60).json().get("kernels") != "all" and time.monotonic() < deadline:
            time.sleep(0.1)
        torch_rng = httpx.post(f"{url}/init", json={**request, "rng": "torch-2.13"}, timeout=60)
    assert torch_rng.status_code == 200
    assert r.status_code == 200
    with TestClient(create_app()) as client:  # this process's engine: its own, intact cache
        assert r.json() == client.post("/init", json=request).json()
    output = process.stdout.read().decode(errors="replace") if process.stdout else ""
    assert "failed to load (a corrupt numba cache?)" in output and "caching.py" in output  # the error, traceback
    assert not [path for path in files if path.suffix == ".nbi" and path.read_bytes().startswith(b"\x80\x05garbage")]
    # The other rngs' kernels were compiled by a child process (numba's compile holds the GIL for up to 0.6 s at a
    # time, which starved the event loop) and only loaded here.
    others = [line for line in output.splitlines() if "the other rngs' kernels are ready too" in line]
    assert len(others) == 1 and re.search(r"\d+ loaded from numba's cache, 0 compiled here; a child process", others[0])
