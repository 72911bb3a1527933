"""torch-2.13's float32 normal transform (normal_fill_avx2) against torch's own `normal_`, same run.

    .venv/bin/python -m bench.torch_normal_avx2 [--rounds 7]

Ours: the Box-Muller transform alone, in place on a float32 buffer of [4096, 4096] uniforms (restored between
rounds, untimed), one thread. torch (ATEN_CPU_CAPABILITY=avx2 unless set, `torch.set_num_threads(1)`; its
generator is serial anyway): `normal_` on a preallocated tensor of the same shape, i.e. MT19937 uniforms plus its
transform (torch has no call for the transform alone, and its `uniform_`, a per-element TensorIterator loop with
2.13's clamp, is slower than normal_'s own fill, so no difference of the two isolates it). Rounds interleave; each
side's best round counts. The target: the transform is no bottleneck, i.e. ours alone is faster than torch's whole
normal_. Checks once that ours on torch's uniforms gives torch's bits. Writes bench/results/torch_normal_avx2.md
and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from importlib import metadata
from pathlib import Path

os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")  # before torch is imported: the kernel ours reproduces

import numpy as np
import torch

from bench._common import interleaved_best, machine
from service.engine.random.torch213.normal_avx2 import normal_fill_avx2

RESULTS = Path(__file__).parent / "results"
SHAPE = (4096, 4096)
MEAN, STD = 0.0, 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    n = SHAPE[0] * SHAPE[1]

    torch.manual_seed(0)
    uniforms = torch.empty(SHAPE).uniform_().numpy().copy()
    torch.manual_seed(0)
    reference = torch.empty(SHAPE).normal_(MEAN, STD).numpy()
    work = uniforms.copy()
    normal_fill_avx2(work, MEAN, STD)  # also compiles (or loads numba's cache) before any timing
    exact = bool(np.array_equal(work.view(np.int32), reference.view(np.int32)))

    target = torch.empty(SHAPE)
    load_before = os.getloadavg()[0]
    best = interleaved_best(
        {
            "restore": lambda: np.copyto(work, uniforms),
            "ours": lambda: normal_fill_avx2(work, MEAN, STD),
            "torch normal_": lambda: target.normal_(MEAN, STD),
        },
        args.rounds,
    )
    ours, normal = (n / best[k] / 1e6 for k in ("ours", "torch normal_"))
    data = {
        "machine": machine(),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "numba": metadata.version("numba"),
        "shape": SHAPE,
        "rounds": args.rounds,
        "bit_exact": exact,
        "ours_transform_melem_s": round(ours, 1),
        "torch_normal_melem_s": round(normal, 1),
        "ratio_ours_to_torch_normal": round(ours / normal, 2),
    }
    print(json.dumps(data, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "torch_normal_avx2.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / "torch_normal_avx2.md").write_text(
        "# torch-2.13 float32 normal transform\n\n"
        f"`python -m bench.torch_normal_avx2` on {data['machine']}, {data['when']}, 1-minute load average "
        f"{data['load'][0]} before and {data['load'][1]} after; torch {data['torch']} at capability "
        f"{data['capability']}, numba {data['numba']}. float32 {SHAPE[0]}x{SHAPE[1]}, one thread each, best of "
        f"{args.rounds} interleaved rounds. Ours on torch's own uniforms gives torch's normal_ bits: "
        f"{'yes' if exact else '**NO**'}.\n\n"
        "| | M elements/s |\n|---|---|\n"
        f"| ours: the transform alone (`normal_fill_avx2`) | {ours:,.1f} |\n"
        f"| torch `normal_` (MT19937 uniforms + transform) | {normal:,.1f} |\n\n"
        f"Ours / torch normal_: **{ours / normal:.2f}x** (target > 1: the transform is not the bottleneck of a "
        "torch-2.13 normal, the serial MT19937 uniforms are).\n"
    )
    print(f"wrote {RESULTS / 'torch_normal_avx2.md'} and .json")


if __name__ == "__main__":
    main()
