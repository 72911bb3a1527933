"""philox-v2 against torch.nn.init, in-process, float32, same thread count, same run.

    .venv/bin/python -m bench.philox_v2 [--repeats N] [--quick]

For each shape ([4096, 4096] and [16384, 4096]) and family (normal: kaiming_normal, uniform: kaiming_uniform,
truncated normal: trunc_normal with a=-2, b=2) the contenders are: philox-v2 `make_plan(request).generate()`
(numba kernels on the engine's threads), philox-v1 the same way, torch `torch.empty(shape)` then the
`torch.nn.init` function under `torch.set_num_threads(engine threads)`, and the fresh-fill bound: a new float32
buffer of the same size filled with a constant (torch's threaded `torch.full`, the faster of it and NumPy's
`np.full`). Every run allocates a fresh output on every side (page faults included, as a request pays them).
Rounds interleave the contenders so that a burst of load from the rest of the machine hits them alike; each one's
MEDIAN over the rounds counts (one warm-up round first, not counted). The machine's load average is recorded: the
ratios are same-run ratios, meaningful on a shared machine where absolute times are not.

The bound: "philox words" runs philox-v2's Philox4x32-10 for the same number of 32-bit words on the same threads
and chunks, writing nothing (each tile's words folded into one word): no transform can make a narrow-dtype uniform
or normal faster than this plus a fresh fill, since each element takes one word. Reported as the ratio torch / that
(the best v2 / torch any transform could reach in this run).

The kernels measured are those the container image ships: `initserve kernels` compiles them for the best
x86-64 level this CPU runs (the Dockerfile's build step, for that level only), `startup.prepare_kernels` installs
them as `initserve serve` does in the image, and the measurement runs in a child process started with that
environment (numba fixes its target CPU when first imported); the HTTP server inherits it. `--host-kernels`
measures kernels compiled for this very CPU instead.

With --http: the fetch of kaiming_normal [16384, 4096] float32 from the real server (`initserve serve`, one
worker, loopback; safetensors read whole by the client and thrown away), philox-v2 and philox-v1, against torch
generating it in-process, interleaved; a new seed every round, so that no cache answers.

Writes bench/results/philox_v2.md and philox_v2.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench._common import machine
from bench.serving import serve
from service import startup
from service.engine import parallel
from service.engine.plan import TensorRequest, make_plan
from service.engine.random.compiled.base import jit
from service.engine.random.philox2.kernels import TILE, _tile

RESULTS = Path(__file__).parent / "results"
SHAPES = ((4096, 4096), (16384, 4096))
FAMILIES = {  # family: (scheme, params, torch init, target ratio v2 / torch)
    "normal": ("kaiming_normal", {}, torch.nn.init.kaiming_normal_, 2.5),
    "uniform": ("kaiming_uniform", {}, torch.nn.init.kaiming_uniform_, 3.0),
    "truncated normal": (
        "trunc_normal",
        {"mean": 0.0, "std": 1.0, "a": -2.0, "b": 2.0},
        lambda t: torch.nn.init.trunc_normal_(t, 0.0, 1.0, -2.0, 2.0),
        10.0,
    ),
}


def ours(scheme: str, params: dict[str, float], shape: tuple[int, int], rng: str) -> Callable[[], object]:
    plan = make_plan(TensorRequest(shape=shape, scheme=scheme, seed=1, params=params, rng=rng))
    return plan.generate


@jit
def _philox_only(k0: np.uint64, k1: np.uint64, d2: np.uint64, d3: np.uint64, start: int, stop: int) -> np.uint64:
    """philox-v2's words for elements [start, stop) (narrow: one word an element), folded into one word."""
    words = np.empty(2 * TILE, np.uint64)
    folded = np.uint64(0)
    i = start
    while i < stop:
        end, offset = _tile((k0, k1, d2, d3), 0, False, i, stop, words)
        folded ^= words[offset] ^ words[offset + end - i - 1]
        i = end
    return folded


def philox_words(n: int) -> Callable[[], object]:
    key = tuple(np.uint64(w) for w in (1, 2, 3, 4))
    _philox_only(*key, 0, 8)
    return lambda: parallel.run_chunks(0, n, lambda first, last: _philox_only(*key, first, last))


def fetch(url: str, rng: str, seeds: list[int]) -> Callable[[], object]:
    def run() -> int:
        seeds[0] += 1
        query = f"shape=16384,4096&scheme=kaiming_normal&seed={seeds[0]}&rng={rng}"
        with urllib.request.urlopen(f"{url}/init?{query}", timeout=120) as reply:
            size = 0
            while chunk := reply.read(1 << 20):
                size += len(chunk)
        return size

    return run


def http_rows(repeats: int) -> list[dict[str, Any]]:
    with serve() as server:
        seeds = [1000]
        contenders = {
            "fetch v2": fetch(server.url, "philox-v2", seeds),
            "fetch v1": fetch(server.url, "philox-v1", seeds),
            "torch": lambda: torch.nn.init.kaiming_normal_(torch.empty(16384, 4096)),
        }
        t = medians(contenders, repeats)
    row = {
        "shape": [16384, 4096],
        "family": "HTTP fetch kaiming_normal (safetensors, whole body read)",
        "seconds": t,
        "fetch v2 / torch": t["torch"] / t["fetch v2"],
        "fetch v1 / torch": t["torch"] / t["fetch v1"],
        "target fetch v2 / torch": 1.0,
    }
    print(
        f"HTTP fetch kaiming_normal [16384, 4096]: v2 {row['fetch v2 / torch']:.2f}x torch in-process (target 1.0x), "
        f"v1 {row['fetch v1 / torch']:.2f}x; v2 {t['fetch v2'] * 1e3:.0f} ms, v1 {t['fetch v1'] * 1e3:.0f} ms, "
        f"torch {t['torch'] * 1e3:.0f} ms",
        flush=True,
    )
    return [row]


def medians(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(repeats + 1):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            if round_:  # the first round warms up
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="the smaller shape only")
    parser.add_argument("--http", action="store_true", help="also the HTTP fetch of kaiming_normal [16384, 4096]")
    parser.add_argument("--host-kernels", action="store_true", help="kernels compiled for this CPU, not the image's")
    parser.add_argument("--kernels", help=argparse.SUPPRESS)  # set by the parent for its child: what it measures
    args = parser.parse_args()
    if not args.host_kernels and args.kernels is None:
        sys.exit(_in_image_kernels(sys.argv[1:]))
    threads = parallel.config().threads
    torch.set_num_threads(threads)
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    for shape in SHAPES[:1] if args.quick else SHAPES:
        n = math.prod(shape)
        for family, (scheme, params, init, target) in FAMILIES.items():
            contenders = {
                "v2": ours(scheme, params, shape, "philox-v2"),
                "v1": ours(scheme, params, shape, "philox-v1"),
                "torch": lambda init=init, shape=shape: init(torch.empty(shape)),
                "fill torch": lambda shape=shape: torch.full(shape, 0.5),
                "fill numpy": lambda shape=shape: np.full(shape, 0.5, np.float32),
                "philox words": philox_words(n),
            }
            t = medians(contenders, args.repeats)
            fill = min(t["fill torch"], t["fill numpy"])
            row = {
                "shape": list(shape),
                "family": family,
                "scheme": scheme,
                "seconds": t,
                "v2 / torch": t["torch"] / t["v2"],
                "v1 / torch": t["torch"] / t["v1"],
                "v2 / v1": t["v1"] / t["v2"],
                "v2 fraction of fresh fill": fill / t["v2"],
                "torch fraction of fresh fill": fill / t["torch"],
                "target v2 / torch": target,
                "v2 elements/s": n / t["v2"],
                "bound v2 / torch (philox words + fresh fill)": t["torch"] / (t["philox words"] + fill),
            }
            rows.append(row)
            print(
                f"{shape} {family:17} v2 {row['v2 / torch']:.2f}x torch (target {target}x), v1 "
                f"{row['v1 / torch']:.2f}x, v2 at {row['v2 fraction of fresh fill']:.0%} of fresh fill, bound "
                f"{row['bound v2 / torch (philox words + fresh fill)']:.2f}x; "
                f"v2 {t['v2'] * 1e3:.0f} ms, torch {t['torch'] * 1e3:.0f} ms, fill {fill * 1e3:.0f} ms",
                flush=True,
            )
    fetched = http_rows(args.repeats) if args.http else []
    load_after = os.getloadavg()
    meta = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "threads": threads,
        "torch": torch.__version__,
        "repeats": args.repeats,
        "kernels": args.kernels or f"compiled for this host's CPU ({os.environ.get('NUMBA_CPU_NAME', 'host')})",
        "load average before (1, 5, 15 min)": load_before,
        "load average after": load_after,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "philox_v2.json").write_text(json.dumps({"meta": meta, "rows": rows, "http": fetched}, indent=2) + "\n")
    lines = [
        "# philox-v2 against torch.nn.init (float32, in-process)",
        "",
        "`.venv/bin/python -m bench.philox_v2` (see its docstring for the method).",
        "",
        f"{meta['when']}; {meta['machine']}; {threads} engine threads = torch threads; torch {torch.__version__}; "
        f"kernels {meta['kernels']}; median of {args.repeats} warm rounds; load average {load_before[0]:.2f} "
        f"before, {load_after[0]:.2f} after (the machine is shared: 2 cores, other work running).",
        "",
        "| shape | family | v2 / torch | target | v1 / torch | v2 / v1 | v2 of fresh fill | torch of fresh fill "
        "| bound: torch / (philox words + fill) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['shape'][0]}x{row['shape'][1]} | {row['family']} | {row['v2 / torch']:.2f}x | "
            f">= {row['target v2 / torch']}x | {row['v1 / torch']:.2f}x | {row['v2 / v1']:.2f}x | "
            f"{row['v2 fraction of fresh fill']:.0%} | {row['torch fraction of fresh fill']:.0%} | "
            f"{row['bound v2 / torch (philox words + fresh fill)']:.2f}x |"
        )
    for row in fetched:
        t = row["seconds"]
        lines += [
            "",
            f"HTTP fetch of kaiming_normal [16384, 4096] float32 (`initserve serve`, 1 worker, loopback, whole body "
            f"read): philox-v2 {row['fetch v2 / torch']:.2f}x torch in-process (target >= 1.0x), philox-v1 "
            f"{row['fetch v1 / torch']:.2f}x; medians {t['fetch v2'] * 1e3:.0f} ms, {t['fetch v1'] * 1e3:.0f} ms "
            f"and {t['torch'] * 1e3:.0f} ms.",
        ]
    (RESULTS / "philox_v2.md").write_text("\n".join(lines) + "\n")


def _in_image_kernels(argv: list[str]) -> int:
    """Build the image's kernels for the best level this CPU runs, install them as the image's start does, and run
    the measurement in a child process that inherits that environment; its exit status."""
    best = startup.choose([t.name for t in startup.targets()], startup.host_features())
    if best is None:
        print("no x86-64 level the image ships runs here: use --host-kernels", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="initserve-bench-kernels-") as work:
        shipped = Path(work) / "shipped"
        startup.build(shipped, [best.name])
        os.environ["NUMBA_CACHE_DIR"] = str(Path(work) / "cache")  # a new container's empty cache directory
        os.environ.pop("NUMBA_CPU_NAME", None)
        startup.prepare_kernels(shipped)
        os.environ["INITSERVE_KERNEL_CACHE"] = str(shipped)  # the HTTP server's start installs them the same way
        label = f"shipped in the image for {best.name} (initserve kernels), as installed at its start"
        return subprocess.run([sys.executable, "-m", "bench.philox_v2", *argv, "--kernels", label]).returncode


if __name__ == "__main__":
    main()
