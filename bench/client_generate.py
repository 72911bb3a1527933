"""The Python client's local generation: `initserve_client.generate` throughput in million elements a second.

    .venv/bin/python -m bench.client_generate [--side N]

Times generate() (pure NumPy, one core) on [side, side] float32 tensors of normal, uniform and truncated-normal
schemes, and a column slice of a normal one, interleaved best of 3. Appends a line to
bench/results/client_generate.md. The issue's target: at least 5 Melem/s on float32 normal.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

from initserve_client import generate

from bench._common import interleaved_best, machine

RESULTS = Path(__file__).parent / "results" / "client_generate.md"
SCHEMES = ("normal", "uniform", "trunc_normal")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=1024)
    side = parser.parse_args().side
    requests = {scheme: {"shape": [side, side], "scheme": scheme, "seed": 1} for scheme in SCHEMES}
    requests["normal column"] = {**requests["normal"], "slice": [[0, side], [side // 2, side // 2 + 1]]}
    counts = {name: side * side for name in SCHEMES} | {"normal column": side}
    best = interleaved_best({name: lambda r=request: generate(r) for name, request in requests.items()}, repeats=3)
    rates = " | ".join(f"{counts[name] / best[name] / 1e6:.2f}" for name in requests)
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    line = f"| {time.strftime('%Y-%m-%d %H:%M')} | {commit} | {side} | {rates} |"
    if not RESULTS.exists():
        RESULTS.write_text(
            f"# Python client: local generation\n\n`python -m bench.client_generate`: {machine()}, one core, "
            "while other work shared the machine\n\n"
            f"| when | commit | side | {' | '.join(f'{name} Melem/s' for name in requests)} |\n"
            f"|---|---|---|{'---|' * len(requests)}\n"
        )
    with RESULTS.open("a") as results:
        results.write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
