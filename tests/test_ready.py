"""Time to ready (issue 10 item 4): the log line a worker writes when /readyz turns 200, what the start-up warm-up
compiles, and kernels compiled ahead of time (`initserve kernels`, the image build) for a CPU target chosen at start,
copied into a writable NUMBA_CACHE_DIR. The image's own start is emulated: the same command and environment on a
kernel directory built by the same command (there is no container engine here)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service import startup
from service.app import create_app
from service.engine import parallel
from service.engine.parallel import KernelCounts
from tests.api.test_response_bytes import CASES, GOLDEN
from tests.server import CONSOLE_SCRIPT, serve

needs_server = pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="initserve console script not installed")
needs_jit = pytest.mark.skipif(not parallel.JIT_AVAILABLE, reason="numba not installed")

SERVING_KERNELS = 7  # uniform, normal, truncated_normal, each for float32 and float64 output; bfloat16 rounding
READY = re.compile(
    r"ready in (?P<age>\d+\.\d+) s since the process started.*; kernels (?P<kernels>\d+\.\d+) s "
    r"\((?P<loaded>\d+) loaded from numba's cache, (?P<compiled>\d+) compiled, for CPU (?P<cpu>[\w.-]+)\)"
)
V3_HOST = startup._V3 | {"sse2"}


def _log(process: subprocess.Popen) -> list[dict]:
    output = process.stdout.read().decode(errors="replace") if process.stdout else ""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def _ready_line(log: list[dict]) -> tuple[int, re.Match]:
    found = [(i, READY.search(entry["msg"])) for i, entry in enumerate(log) if entry["msg"].startswith("ready in")]
    assert len(found) == 1 and found[0][1], f"expected one parseable ready line, got {[log[i] for i, _ in found]}"
    return found[0]  # type: ignore[return-value]


@needs_server
@needs_jit
def test_the_ready_line_comes_as_readyz_turns_200_with_the_time_it_took(tmp_path):
    started = time.monotonic()
    with serve({"INITSERVE_LOG_FORMAT": "json"}) as (url, process):
        elapsed = time.monotonic() - started
        assert httpx.get(f"{url}/readyz").status_code == 200
    log = _log(process)
    index, ready = _ready_line(log)
    assert log[index]["logger"] == "service.app" and log[index]["level"] == "info"
    probes = [(i, entry["status"]) for i, entry in enumerate(log) if entry.get("path") == "/readyz"]
    assert all(status == 503 for i, status in probes if i < index), "a 200 before the ready line"
    assert all(status == 200 for i, status in probes if i > index) and any(i > index for i, _ in probes)
    # The process started after the test launched it, and its warm-up is part of its life.
    assert 0 < float(ready["kernels"]) <= float(ready["age"]) <= elapsed
    assert int(ready["loaded"]) + int(ready["compiled"]) >= SERVING_KERNELS


@needs_jit
def test_the_warm_up_compiles_what_requests_use_and_nothing_else():
    with TestClient(create_app()) as client:
        deadline = time.monotonic() + 300
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        while not client.app.state.all_kernels and time.monotonic() < deadline:  # the other rngs', after
            time.sleep(0.05)
        before = parallel.kernel_counts()
        for dtype in ("float32", "float64", "bfloat16"):
            for scheme, params in (
                ("uniform", {}),
                ("normal", {}),
                ("trunc_normal", {}),
                ("sparse", {"sparsity": 0.5}),
            ):
                for extra in (
                    {},
                    {"slice": [[1, 3], [2, 9]]},
                    {"rng": "torch-2.13"},
                    {"shape": [3], "rng": "torch-2.13"},
                ):
                    body = {
                        "shape": [4, 33],
                        "scheme": scheme,
                        "seed": 1,
                        "dtype": dtype,
                        "format": "json",
                        **params,
                        **extra,
                    }
                    if scheme == "sparse" and len(body["shape"]) < 2:
                        continue
                    assert client.post("/init", json=body).status_code == 200, body
        after = parallel.kernel_counts()
    assert before is not None and after == before, "a request compiled a kernel the warm-up did not"
    # The tests' own Philox check (`words`) stays out of the warm-up: compiling it cost a third of a cold start.
    code = f"{startup.COMPILE}; from service.engine.random.compiled.samplers import words; print(len(words.overloads))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "0"


def test_the_best_target_the_host_runs_is_chosen(monkeypatch):
    monkeypatch.setattr(startup.platform, "machine", lambda: "x86_64")
    every = ["x86-64-v4", "x86-64-v3", "x86-64"]
    assert startup.choose(every, startup._V4).name == "x86-64-v4"
    assert startup.choose(every, V3_HOST).name == "x86-64-v3"  # AVX2 and FMA, no AVX-512
    assert startup.choose(every, V3_HOST - {"fma"}).name == "x86-64"
    assert startup.choose(["x86-64"], startup._V4).name == "x86-64"  # only what was built
    assert startup.choose(["x86-64-v4"], V3_HOST) is None  # nothing runs here: compile for the host
    monkeypatch.setattr(startup.platform, "machine", lambda: "aarch64")
    assert startup.choose(every, startup._V4) is None


def _numba_env(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    for name in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES"):  # prepare_kernels sets them: undone after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(cache))


def _shipped(directory: Path, targets: list[str]) -> Path:
    (directory / "compiled_0123").mkdir(parents=True)
    (directory / "compiled_0123" / "samplers.uniform-1.py311.nbi").write_bytes(b"index")
    (directory / "compiled_0123" / "samplers.uniform-1.py311.1.nbc").write_bytes(b"code")
    (directory / startup.MANIFEST).write_text(json.dumps({"targets": targets}))
    return directory


def test_prepare_copies_the_chosen_kernels_into_the_cache_and_keeps_what_is_there(tmp_path, monkeypatch, caplog):
    shipped = _shipped(tmp_path / "shipped", ["x86-64-v3", "x86-64"])
    cache = tmp_path / "cache"
    (cache / "compiled_0123").mkdir(parents=True)
    (cache / "compiled_0123" / "samplers.uniform-1.py311.nbi").write_bytes(b"newer")  # compiled since: kept
    _numba_env(monkeypatch, cache)
    monkeypatch.setattr(startup.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(startup, "host_features", lambda: V3_HOST)
    with caplog.at_level(logging.INFO, logger="service"):
        startup.prepare_kernels(shipped)
    assert (os.environ["NUMBA_CPU_NAME"], os.environ["NUMBA_CPU_FEATURES"]) == ("x86-64-v3", "")
    assert (cache / "compiled_0123" / "samplers.uniform-1.py311.1.nbc").read_bytes() == b"code"
    assert (cache / "compiled_0123" / "samplers.uniform-1.py311.nbi").read_bytes() == b"newer"
    assert "kernels for x86-64-v3" in caplog.text and "1 files" in caplog.text


def test_an_unwritable_cache_dir_or_a_foreign_cpu_falls_back_with_a_log_line(tmp_path, monkeypatch, caplog):
    shipped = _shipped(tmp_path / "shipped", ["x86-64-v4"])
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _numba_env(monkeypatch, blocker / "numba-cache")  # not creatable, even by root (a read-only root filesystem)
    monkeypatch.setattr(startup.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(startup, "host_features", lambda: startup._V4)
    with caplog.at_level(logging.INFO, logger="service"):
        startup.prepare_kernels(shipped)
    assert "cannot copy the compiled kernels" in caplog.text and "each worker compiles them" in caplog.text

    caplog.clear()
    _numba_env(monkeypatch, tmp_path / "cache")
    monkeypatch.setattr(startup, "host_features", lambda: V3_HOST)
    with caplog.at_level(logging.INFO, logger="service"):
        startup.prepare_kernels(shipped)
    assert "NUMBA_CPU_NAME" not in os.environ and not (tmp_path / "cache").exists()
    assert "none of the compiled kernels" in caplog.text and "x86-64-v4" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="service"):
        startup.prepare_kernels(tmp_path / "missing")
    assert "no compiled kernels in" in caplog.text


def test_the_ready_line_says_when_nothing_can_be_cached():
    counts = KernelCounts(loaded=0, compiled=8, cpu="x86-64", cached=False)
    message = startup.ready_message(1.5, counts)
    assert READY.search(message) is None or "no writable NUMBA_CACHE_DIR" in message
    assert "no writable NUMBA_CACHE_DIR: compiled again at every start" in message
    assert "NumPy reference path" in startup.ready_message(0.1, None)


@needs_server
@needs_jit
@pytest.mark.skipif(startup.targets() == (), reason="no shipped targets for this architecture")
def test_an_image_start_loads_every_kernel_from_the_build_and_serves_the_golden_bytes(tmp_path):
    """What the Dockerfile does: `initserve kernels` at build (here the baseline target only, to keep the test
    short), then `initserve serve` with INITSERVE_KERNEL_CACHE on it and NUMBA_CACHE_DIR elsewhere (the image's is
    under /tmp). Not one kernel is compiled at start, the build is left as it was (it is read-only in the image),
    and the bits are the golden ones: code for another CPU than the host's computes the same values."""
    shipped = tmp_path / "kernels"
    baseline = startup.targets()[-1].name
    subprocess.run([str(CONSOLE_SCRIPT), "kernels", str(shipped), "--target", baseline], check=True, timeout=600)
    built = {path: path.read_bytes() for path in shipped.rglob("*") if path.is_file()}
    assert json.loads((shipped / startup.MANIFEST).read_text()) == {"targets": [baseline]}

    env = {
        "INITSERVE_LOG_FORMAT": "json",
        "INITSERVE_KERNEL_CACHE": str(shipped),
        "NUMBA_CACHE_DIR": str(tmp_path / "tmp" / "numba-cache"),
    }
    with serve(env) as (url, process), httpx.Client(base_url=url, timeout=60) as client:
        for case, body in sorted(CASES.items()):
            response = client.post("/init", json=body)
            assert hashlib.sha256(response.content).hexdigest() == GOLDEN[case][0], case
    log = _log(process)
    _, ready = _ready_line(log)
    assert (int(ready["loaded"]), int(ready["compiled"]), ready["cpu"]) == (SERVING_KERNELS, 0, baseline)
    assert any(f"kernels for {baseline}" in entry["msg"] for entry in log)
    assert {path: path.read_bytes() for path in shipped.rglob("*") if path.is_file()} == built


# Hashes of each rng's samplers in every dtype (the ziggurat's retries and the truncated normal's cuts included).
_BITS = """
import hashlib, json
from service.engine.plan import TensorRequest, make_plan
hashes = {}
for rng in ("philox-v1", "philox-v2"):
    for scheme, params in (
        ("uniform", {"a": -1.0, "b": 3.0}),
        ("normal", {"mean": 0.25, "std": 0.5}),
        ("trunc_normal", {"std": 0.5, "a": -0.4, "b": 0.9}),
    ):
        for dtype in ("float64", "float32", "float16", "bfloat16"):
            request = TensorRequest((257, 1031), scheme, 11, params, dtype, rng=rng)
            hashes[f"{rng} {scheme} {dtype}"] = hashlib.sha256(make_plan(request).generate().tobytes()).hexdigest()
print(json.dumps(hashes))
"""


@needs_jit
@pytest.mark.parametrize("target", [t for t in startup.targets() if t.tuning], ids=lambda t: t.name)
def test_a_target_with_its_own_tuning_computes_the_same_bits(target, tmp_path):
    """A target whose code generation is tuned (x86-64-v4: 512-bit vectors) gives the bits numba's default code
    for this host gives (the golden hashes' own, tests/api/test_response_bytes.py)."""
    if not target.needs <= startup.host_features():
        pytest.skip(f"this CPU cannot run {target.name}'s code")
    host = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")}

    def hashes(env: dict[str, str]) -> dict[str, str]:
        done = subprocess.run([sys.executable, "-c", _BITS], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)

    tuned = hashes({**host, **startup.numba_env(tmp_path / "numba-cache", target)})
    assert tuned == hashes(host) and len(tuned) == 24
