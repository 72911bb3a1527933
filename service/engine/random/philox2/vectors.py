"""docs/vectors/philox-v2.json: philox-v2's constants and the vectors a port of docs/philox-v2.md must reproduce
(the convention of docs/vectors/philox-v1.json: floats as the 16 hex digits of their binary64 encoding).

`python -m service.vectors` writes it with philox-v1's file (`--check`: exit 1 when either is stale);
tests/engine/test_philox_v2.py checks that the file is what the engine computes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from service.engine.dtypes import DTYPES
from service.engine.plan import TensorRequest, make_plan
from service.engine.random.philox2 import samplers, ziggurat
from service.engine.random.philox2.stream import (
    _KEY_DOMAIN,
    MULTIPLIERS,
    ROUNDS,
    WEYL,
    Stream,
    digest_words,
    philox4x32,
)

PATH = Path(__file__).resolve().parents[4] / "docs" / "vectors" / "philox-v2.json"
DTYPE_NAMES = ("float64", "float32", "float16", "bfloat16")
# Each family at the bounds where philox-v1 broke its interval, in every dtype: first 8 values after rounding.
TENSORS = (
    ("uniform", {"a": -1.0, "b": 3.0}, (8,)),
    ("uniform", {"a": 0.0, "b": 0.05}, (8,)),
    ("kaiming_uniform", {}, (2, 4)),
    ("normal", {"mean": 0.5, "std": 2.0}, (8,)),
    ("trunc_normal", {"std": 1.5, "a": -2.0, "b": 1.0}, (8,)),
)
CUTS = ((3.0, False), (-1.0, False), (0.05, False), (-0.216506, True), (0.216506, False), (1e-30, False))
REQUESTS = (
    ("kaiming_normal", {}, (256, 784)),
    ("kaiming_uniform", {}, (256, 784)),
    ("trunc_normal", {}, (256, 784)),
    ("xavier_normal", {}, (64, 33)),
    ("uniform", {"a": -1.0, "b": 3.0}, (4096,)),
    ("sparse", {"sparsity": 0.3}, (16, 8)),
)


def f64_hex(x: float) -> str:
    return f"{int(np.float64(x).view(np.uint64)):016x}"


def build() -> dict[str, Any]:
    seed, name = 7, "weight"
    stream = Stream.for_tensor(seed, name)

    def request(scheme: str, params: dict[str, float], shape: tuple[int, ...], dtype: str) -> TensorRequest:
        return TensorRequest(shape=shape, scheme=scheme, seed=seed, params=params, dtype=dtype, rng="philox-v2")

    def kat(counter: tuple[int, ...], key: tuple[int, int]) -> dict[str, Any]:
        out = philox4x32(tuple(np.array([c], np.uint64) for c in counter), key)[0]
        return {
            "key": [f"{k:08x}" for k in key],
            "counter": [f"{c:08x}" for c in counter],
            "output": [f"{int(w):08x}" for w in out],
        }

    return {
        "rng": "philox-v2",
        "spec": "docs/philox-v2.md",
        "generated_by": "python -m service.vectors",
        "encoding": "floats: the 16 hex digits of their IEEE 754 binary64 encoding; uint32 words: 8 hex digits",
        "constants": {
            "key_domain_hex": _KEY_DOMAIN.hex(),
            "philox4x32_10": {
                "multipliers": [f"{m:08x}" for m in MULTIPLIERS],
                "key_increments": [f"{w:08x}" for w in WEYL],
                "rounds": ROUNDS,
            },
            "elementary_functions": "philox-v1's log, ndtr, ndtri: docs/vectors/philox-v1.json",
            "ziggurat": {
                "layers": ziggurat.LAYERS,
                "X": [f64_hex(x) for x in ziggurat.X],
                "F": [f64_hex(y) for y in ziggurat.F],
            },
        },
        "vectors": {
            "philox_blocks": [  # Random123's known answers for philox4x32_10
                kat((0, 0, 0, 0), (0, 0)),
                kat((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2),
                kat((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0)),
            ],
            "key_derivation": [
                {
                    "seed": str(s),
                    "name": n,
                    "sha256_input_hex": (_KEY_DOMAIN + s.to_bytes(8, "little") + n.encode()).hex(),
                    "words": [f"{w:08x}" for w in digest_words(s, n)],
                }
                for s, n in ((0, "weight"), (7, "weight"), (2**64 - 1, "layers.0.attn.in_proj_weight"), (5, "é"))
            ],
            "stream_blocks": [
                {
                    "seed": str(seed),
                    "name": name,
                    "block": str(block),
                    "purpose": purpose,
                    "output": [f"{int(w):08x}" for w in stream.block_words(np.array([block]), purpose)[0]],
                }
                for block, purpose in ((0, 0), (1, 0), ((1 << 32) + 5, 0), (3, 1))
            ],
            "retry_blocks": [
                {
                    "seed": str(seed),
                    "name": name,
                    "element": str(element),
                    "n": n,
                    "output": [f"{int(w):08x}" for w in stream.retry_blocks(np.array([element]), n)[0]],
                }
                for element, n in ((0, 0), (5, 1), ((1 << 40) + 3, 2))
            ],
            "cuts": [
                {
                    "bound": f64_hex(bound),
                    "dtype": dtype,
                    "strict": strict,
                    "first_at_least": f64_hex(samplers.first_at_least(bound, DTYPES[dtype], strict)),
                }
                for bound, strict in CUTS
                for dtype in DTYPE_NAMES
            ],
            "normal_paths": normal_paths(),
            "tensors": [
                {
                    "seed": seed,
                    "name": name,
                    "scheme": scheme,
                    "params": params,
                    "shape": list(shape),
                    "dtype": dtype,
                    "values": [
                        f64_hex(v)
                        for v in make_plan(request(scheme, params, shape, dtype)).generate().astype(np.float64)
                    ],
                }
                for scheme, params, shape in TENSORS
                for dtype in DTYPE_NAMES
            ],
            "requests": [
                {
                    "request": {"seed": seed, "name": name, "scheme": scheme, "params": params, "shape": list(shape)},
                    "sha256": {
                        dtype: hashlib.sha256(
                            make_plan(request(scheme, params, shape, dtype)).generate().tobytes()
                        ).hexdigest()
                        for dtype in DTYPE_NAMES
                    },
                }
                for scheme, params, shape in REQUESTS
            ],
        },
    }


def normal_paths() -> list[dict[str, Any]]:
    """The standard normal z (float64, before mean, std and rounding) of elements that take each way through the
    ziggurat (docs/philox-v2.md section 7), narrow and wide draws: a port whose fast path is right but whose wedge
    test, second try, tail or step-by-step retry is wrong fails one of these, which the first values of a tensor
    (nearly all on the fast path) would not show. Seed 11, tensor "weight", the first 3 elements of each way among
    elements 0 .. 2^18 - 1 (for "redo", those not in the tail)."""
    stream = Stream.for_tensor(11, "weight")
    index = np.arange(1 << 18, dtype=np.int64)
    groups = []
    for wide in (False, True):
        draws = samplers.draws(stream, index, wide)
        ways = ziggurat.paths(stream, index, draws, wide)
        ways["redo"] &= ~ways["tail"]  # a redo that is not the tail's: a second try off the fast path
        for way, mask in ways.items():
            picked = index[mask][:3]
            z = ziggurat.standard_normal(stream, picked, draws[picked], wide)
            groups.append(
                {
                    "seed": "11",
                    "name": "weight",
                    "draw": "64-bit" if wide else "32-bit",
                    "path": way,
                    "elements": [str(i) for i in picked.tolist()],
                    "z": [f64_hex(v) for v in z],
                }
            )
    return groups


def render() -> str:
    return json.dumps(build(), indent=1, ensure_ascii=False) + "\n"
