"""rng torch-2.13 against torch's own in-process generation of the same tensors, in the same run.

    ATEN_CPU_CAPABILITY=avx2 .venv/bin/python -m bench.torch_rng [--shapes 4096x4096,16384x4096]

For each shape (float32): kaiming_uniform (uniform_) and kaiming_normal (normal_), best of 3, as
`make_plan(...).tensor()` (the engine's whole-tensor path) beside `torch.manual_seed(1); torch.nn.init.<fn>_`
into a preallocated tensor; prints Melem/s and ours/torch. Needs the torch extra.
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")

import torch

from service.engine.plan import TensorRequest, make_plan

SCHEMES = {"kaiming_uniform": torch.nn.init.kaiming_uniform_, "kaiming_normal": torch.nn.init.kaiming_normal_}


def best(run, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", default="4096x4096,16384x4096")
    args = parser.parse_args()
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

            ours = best(lambda request=request: make_plan(request).tensor())
            reference = best(theirs)
            print(
                f"{text:>12} {scheme:<16} ours {numel / ours / 1e6:8.1f} Melem/s  torch {numel / reference / 1e6:8.1f}"
                f" Melem/s  ratio {reference / ours:5.2f}"
            )


if __name__ == "__main__":
    main()
