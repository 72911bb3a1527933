"""Time to ready: fresh clone, warm restart, the container image's start (emulated), and the speed of the kernels the
image ships for each CPU level against the host-compiled ones.

    .venv/bin/python -m bench.ready [--rounds 3]

1. Fresh clone: `git clone` of this repository (local), `python3 -m venv`, `pip install -e .` (pip's cache as it is),
   then the README's `initserve serve` on an empty numba cache until /readyz answers 200, and what the first
   requests of each kernel cost after that.
2. Warm restart: the same command again (numba's cache now warm).
3. The image: `initserve kernels DIR` (the Dockerfile's build step), then `initserve serve` with the image's
   environment (INITSERVE_KERNEL_CACHE=DIR, NUMBA_CACHE_DIR an empty directory: a new container's /tmp). There is no
   container engine here, so this runs on the host, in the clone's virtualenv.
4. Cold-start anatomy: each kernel's compile in the warm-up's order, and the NumPy reference path's time for the
   same requests (what serving them before their kernel is compiled would cost).
5. Kernel speed per CPU level: float32 uniform / normal / trunc_normal, one thread, 2^22 elements, best of the
   rounds, in a process per level (numba fixes its target per process); the ratio to the host-compiled kernels.
Writes bench/results/ready.md and ready.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import machine
from service import startup
from tests.server import free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
KERNELS = ("uniform", "normal", "trunc_normal")

_SPEED = """
import json, sys, time
import numpy as np
from service.engine.random.compiled import samplers as s
key, n = np.uint64(12345), 1 << 22
starts, out = np.zeros(1, np.int64), np.empty(n, np.float32)
runs = {
    "uniform": lambda: s.uniform(key, key, starts, n, 0.0, 1.0, out, s.PHILOX),
    "normal": lambda: s.normal(key, key, starts, n, 0.0, 1.0, out, s.PHILOX),
    "trunc_normal": lambda: s.truncated_normal(key, key, starts, n, 0.0228, 0.9545, False, 0.0, 1.0, -2.0, 2.0, out,
                                               s.PHILOX),
}
best = {}
for name, run in runs.items():
    run()
    times = []
    for _ in range(int(sys.argv[1])):
        t = time.perf_counter(); run(); times.append(time.perf_counter() - t)
    best[name] = n / min(times) / 1e6
print(json.dumps(best))
"""

_ANATOMY = """
import json, time
t = time.perf_counter()
from service.engine.random.compiled import samplers
steps = [("import numba and the kernels", time.perf_counter() - t)]
for name, kernel, signature in samplers.serving_signatures():
    t = time.perf_counter()
    kernel.compile(signature)
    steps.append((name, time.perf_counter() - t))
print(json.dumps(steps))
"""

_REFERENCE = """
import json, time
from service.engine import parallel
from service.engine.plan import TensorRequest, make_plan
out = {}
parallel.configure(jit=False)
for scheme in ("kaiming_uniform", "kaiming_normal", "trunc_normal"):
    for shape in ((256, 784), (4096, 4096)):
        plan = make_plan(TensorRequest(shape=shape, scheme=scheme, seed=1, dtype="float64"))
        t = time.perf_counter(); plan.generate(); out[f"{scheme} {shape[0]}x{shape[1]}"] = time.perf_counter() - t
print(json.dumps(out))
"""


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    subprocess.run(command, cwd=cwd, env={**os.environ, **(env or {})}, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def _start(venv: Path, env: dict[str, str]) -> tuple[float, str]:
    """Seconds from launching `initserve serve` to its first /readyz 200, and its ready line."""
    import httpx

    port = free_port()
    full = {**os.environ, **env, "INITSERVE_HOST": "127.0.0.1", "INITSERVE_PORT": str(port), "INITSERVE_WORKERS": "1"}
    full["INITSERVE_LOG_FORMAT"] = "json"
    started = time.monotonic()
    process = subprocess.Popen(
        [str(venv / "bin" / "initserve"), "serve"], env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        while time.monotonic() - started < 600:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                break
            time.sleep(0.02)
        ready = time.monotonic() - started
    finally:
        process.terminate()
        process.wait(30)
    lines = (process.stdout.read() if process.stdout else b"").decode().splitlines()
    said = [json.loads(line)["msg"] for line in lines if line.startswith("{") and '"ready in' in line]
    return ready, said[0] if said else "(no ready line)"


def _python(venv: Path, code: str, env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code, *args],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3, help="warm and image starts, and kernel speed rounds")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine(), "load_before": os.getloadavg()[0], "when": time.ctime()}
    with tempfile.TemporaryDirectory(prefix="initserve-ready-") as scratch:
        work = Path(scratch)
        clone, venv = work / "initserve", work / "initserve" / ".venv"
        # The README's first command, step by step. NUMBA_CACHE_DIR unset: numba's in-tree cache, empty in a clone.
        os.environ.pop("NUMBA_CACHE_DIR", None)
        os.environ.pop("INITSERVE_KERNEL_CACHE", None)
        fresh = {"clone": _run(["git", "clone", "-q", str(ROOT), str(clone)], work)}
        fresh["venv"] = _run([sys.executable, "-m", "venv", str(venv)], clone)
        fresh["pip install -e ."] = _run([str(venv / "bin" / "pip"), "install", "-q", "-e", "."], clone)
        fresh["first start"], fresh_line = _start(venv, {})
        anatomy_cache = work / "anatomy-cache"
        results["anatomy"] = _python(venv, _ANATOMY, {"NUMBA_CACHE_DIR": str(anatomy_cache)})
        results["reference"] = _python(venv, _REFERENCE, {})
        results["fresh"], results["fresh_line"] = fresh, fresh_line
        warm = [_start(venv, {}) for _ in range(args.rounds)]
        results["warm"], results["warm_line"] = [w[0] for w in warm], warm[-1][1]

        shipped = work / "kernels"
        results["build"] = _run([str(venv / "bin" / "initserve"), "kernels", str(shipped)], clone)
        results["build_bytes"] = sum(path.stat().st_size for path in shipped.rglob("*") if path.is_file())
        image = []
        for i in range(args.rounds):
            tmp = work / f"container-tmp-{i}"  # a new container's empty /tmp
            image.append(_start(venv, {"INITSERVE_KERNEL_CACHE": str(shipped), "NUMBA_CACHE_DIR": str(tmp / "nc")}))
        results["image"], results["image_line"] = [i[0] for i in image], image[-1][1]

        speed: dict[str, dict[str, float]] = {}
        target = {t.name: t for t in startup.targets()}
        levels = ["host", *target]
        for _ in range(args.rounds):
            for level in levels:
                # the image's kernels; the host's compile on first use
                level_env = (
                    {"NUMBA_CACHE_DIR": str(shipped)} if level == "host" else startup.numba_env(shipped, target[level])
                )
                measured = _python(venv, _SPEED, level_env, "5")
                speed[level] = {k: max(v, speed.get(level, {}).get(k, 0.0)) for k, v in measured.items()}
        results["speed"] = speed
        shutil.rmtree(work, ignore_errors=True)
    results["load_after"] = os.getloadavg()[0]
    results["host_cpu"] = _host_cpu()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ready.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "ready.md").write_text(report(results))
    print(report(results))


def _host_cpu() -> str:
    from llvmlite.binding import get_host_cpu_name

    chosen = startup.choose([t.name for t in startup.targets()], startup.host_features())
    return f"{get_host_cpu_name()} (the image picks {chosen.name if chosen else 'none: compiles'})"


def _listed(seconds: list[float]) -> str:
    return ", ".join(f"{s:.1f}" for s in seconds)


def report(r: dict[str, Any]) -> str:
    fresh = r["fresh"]
    lines = [
        "# Time to ready",
        "",
        f"`python -m bench.ready` on {r['machine']}, LLVM CPU {r['host_cpu']}, {r['when']}; 1-minute load average "
        f"{r['load_before']:.2f} before and {r['load_after']:.2f} after (2 cores shared with other work: the "
        "compile times are CPU-bound and grow with the load). One worker; seconds from launching `initserve serve` "
        "to the first `/readyz` 200, polled every 20 ms.",
        "",
        "| scenario | seconds | what |",
        "|---|---|---|",
        f"| fresh clone: install | {fresh['clone'] + fresh['venv'] + fresh['pip install -e .']:.1f} | git clone "
        f"{fresh['clone']:.1f}, venv {fresh['venv']:.1f}, `pip install -e .` {fresh['pip install -e .']:.1f} "
        "(pip's cache warm) |",
        f"| fresh clone: first start | {fresh['first start']:.1f} | empty numba cache: every kernel compiles |",
        f"| warm restart | {min(r['warm']):.1f} | best of {len(r['warm'])} ({_listed(r['warm'])}) |",
        f"| image (emulated) | {min(r['image']):.1f} | best of {len(r['image'])} ({_listed(r['image'])}); a new "
        "container: kernels copied from the build |",
        f"| image build step | {r['build']:.1f} | `initserve kernels` for every level, "
        f"{r['build_bytes'] / 1e6:.1f} MB |",
        "",
        "The ready lines:",
        "",
        f"- fresh clone: `{r['fresh_line']}`",
        f"- warm restart: `{r['warm_line']}`",
        f"- image: `{r['image_line']}`",
        "",
        "## Cold start: what compiles, in the warm-up's order",
        "",
        "| step | seconds |",
        "|---|---|",
        *(f"| {name} | {seconds:.2f} |" for name, seconds in r["anatomy"]),
        "",
        "The NumPy reference path (the same bits, no compile) for float64 requests, seconds:",
        "",
        "| request | seconds |",
        "|---|---|",
        *(f"| {name} | {seconds:.3f} |" for name, seconds in r["reference"].items()),
        "",
        "## Kernel speed by CPU level (float32, one thread, M elements/s, best of the rounds)",
        "",
        "| level | " + " | ".join(KERNELS) + " | vs host |",
        "|---|" + "---|" * (len(KERNELS) + 1),
    ]
    host = r["speed"]["host"]
    for level, speeds in r["speed"].items():
        ratios = ", ".join(f"{speeds[k] / host[k]:.2f}" for k in KERNELS)
        lines.append(f"| {level} | " + " | ".join(f"{speeds[k]:.0f}" for k in KERNELS) + f" | {ratios} |")
    compiles = dict(r["anatomy"][1:])
    later = sum(seconds for name, seconds in compiles.items() if name.endswith("float64"))
    lines += [
        "",
        "## Notes",
        "",
        f"- **Readiness before the float64 kernels?** They are {later:.1f} s of the {sum(compiles.values()):.1f} s "
        "of compiles. /readyz could turn 200 that much sooner with them compiling behind, but a float64 request in "
        f"that window would wait for its kernel's compile (up to {later:.1f} s) or take the NumPy path (table above: "
        f"{r['reference']['kaiming_normal 4096x4096']:.1f} s for a 4096x4096 normal): a slow first request either "
        "way, for at most a few seconds gained once per clone. Not done.",
        "- **What compiles first** is the first kernel (uniform float32): it carries numba's own first-compile "
        "set-up. The tests' Philox check (`words`) is no longer compiled at start: it was the slowest kernel of all "
        "(about 4 s of a cold start measured beside the others).",
        "- The image start is emulated (no container engine with a base image here): the clone's virtualenv, "
        "`initserve kernels` into a directory, then `initserve serve` with INITSERVE_KERNEL_CACHE on it and an "
        "empty NUMBA_CACHE_DIR. In a container, the interpreter and imports cost the same; the copy is 2 MB.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
