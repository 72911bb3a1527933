"""rng torch-2.13 against torch's own in-process generation of the same tensors, in the same run.

    ATEN_CPU_CAPABILITY=avx2 .venv/bin/python -m bench.torch_rng [--shapes 4096x4096,16384x4096]

For each shape (float32): kaiming_uniform (uniform_) and kaiming_normal (normal_), best of 5 interleaved rounds, as
`make_plan(...).tensor()` (the engine's whole-tensor path) beside `torch.manual_seed(1); torch.nn.init.<fn>_`
into a preallocated tensor; prints Melem/s and ours/torch. Needs the torch extra.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")

import torch

from bench._common import interleaved_best, machine
from service.engine.plan import TensorRequest, make_plan

RESULTS = Path(__file__).parent / "results"

SCHEMES = {"kaiming_uniform": torch.nn.init.kaiming_uniform_, "kaiming_normal": torch.nn.init.kaiming_normal_}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", default="4096x4096,16384x4096")
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    print(f"torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}")
    for text in args.shapes.split(","):
        shape = tuple(int(side) for side in text.split("x"))
        numel = math.prod(shape)
        for scheme, fill in SCHEMES.items():
            request = TensorRequest(shape, scheme, 1, rng="torch-2.13")
            tensor = torch.empty(*shape)

            def theirs(tensor=tensor, fill=fill) -> None:
                torch.manual_seed(1)
                fill(tensor)

            best = interleaved_best({"ours": lambda request=request: make_plan(request).tensor(), "torch": theirs}, 5)
            row = {"shape": text, "scheme": scheme, **{k: round(numel / v / 1e6, 1) for k, v in best.items()}}
            row["ratio"] = round(best["torch"] / best["ours"], 2)
            rows.append(row)
            print(
                f"{text:>12} {scheme:<16} ours {row['ours']:8.1f} Melem/s  torch {row['torch']:8.1f} Melem/s"
                f"  ratio {row['ratio']:5.2f}"
            )
    load = os.getloadavg()[0]
    lines = [
        "# rng torch-2.13 against torch 2.13 in-process",
        "",
        f"`python -m bench.torch_rng` on {machine()}, {time.ctime()}, 1-minute load {load:.2f} (shared machine).",
        "float32, whole tensor through the engine (`make_plan(...).tensor()`, the path /init takes) beside",
        "`torch.manual_seed(1); torch.nn.init.<fn>_` into a preallocated tensor; best of 5 interleaved rounds;",
        "Melem/s.",
        "",
        "| shape | scheme | ours | torch | ours/torch |",
        "|---|---|---|---|---|",
        *(f"| {r['shape']} | {r['scheme']} | {r['ours']} | {r['torch']} | {r['ratio']} |" for r in rows),
    ]
    (RESULTS / "torch_rng.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "torch_rng.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
