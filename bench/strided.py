"""Strided regions: the issue's column slice against a contiguous region of the same number of elements.

    .venv/bin/python -m bench.strided [--rows N]

Times `Region(plan, bounds).generate()` (what /init does for a slice) for the request
{"shape": [2097152, 2097152], "scheme": "normal", "seed": 1, "slice": [[0, 1048576], [0, 1]]} beside the
contiguous slice [[0, 1], [0, 1048576]], best of 3, on the engine's threads. Appends a line to
bench/results/strided.md. The script uses only APIs that predate the batched runs, so it also measures old
commits (the first line of the results file is the code before: one engine call per run).
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

from bench._common import machine
from service.engine import parallel
from service.engine.plan import TensorRequest, make_plan
from service.engine.region import Region

RESULTS = Path(__file__).parent / "results" / "strided.md"
SIDE = 1 << 21


def best_seconds(bounds: tuple[tuple[int, int], ...], repeats: int = 3) -> float:
    plan = make_plan(TensorRequest(shape=(SIDE, SIDE), scheme="normal", seed=1))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        Region(plan, bounds).generate()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1 << 20)
    rows = parser.parse_args().rows
    best_seconds(((0, 4), (0, 1)), repeats=1)  # compile
    column = best_seconds(((0, rows), (0, 1)))
    contiguous = best_seconds(((0, 1), (0, rows)))
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    line = (
        f"| {time.strftime('%Y-%m-%d %H:%M')} | {commit} | {rows} | {column:.3f} s | {contiguous:.4f} s | "
        f"{parallel.config().threads} |"
    )
    if not RESULTS.exists():
        RESULTS.write_text(
            f"# Strided regions\n\n`python -m bench.strided`: {machine()}\n\n"
            "| when | commit | rows | column slice [[0, rows], [0, 1]] | contiguous [[0, 1], [0, rows]] | threads |\n"
            "|---|---|---|---|---|---|\n"
        )
    with RESULTS.open("a") as results:
        results.write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
