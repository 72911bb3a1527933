"""docs/vectors/philox-v2.json: philox-v2's constants and the vectors a port of docs/philox-v2.md must reproduce
(the convention of docs/vectors/philox-v1.json: floats as the 16 hex digits of their binary64 encoding).

`python -m service.vectors` writes it with philox-v1's file (`--check`: exit 1 when either is stale);
tests/engine/test_philox_v2.py checks that the file is what the engine computes.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from service.engine.dtypes import DTYPES
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
_MAX = float.fromhex("0x1.fffffffffffffp+1023")


def _request(shape: list[int], scheme: str, seed: int = 7, name: str = "weight", **params: Any) -> dict[str, Any]:
    """A request as POST /init takes it (parameters beside the common fields), the rng named; the file writes it as
    philox-v1.json does, its seed and fans as decimal strings (service.vectors.written)."""
    return {"shape": shape, "scheme": scheme, **params, "seed": seed, "name": name, "rng": "philox-v2"}


# Each family at the bounds where philox-v1 broke its interval, then the zeros whose sign is their own (section 7:
# U[a, a) is a, -0.0 kept; -0.0 + 0.0 * z; the clip of a truncated normal at a' = -0.0, which x = +0.0 does not
# pass: `x if x > a' else a'`), in every dtype: its first values after rounding.
TENSORS = (
    _request([8], "uniform", a=-1.0, b=3.0),
    _request([8], "uniform", a=0.0, b=0.05),
    _request([2, 4], "kaiming_uniform"),
    _request([8], "normal", mean=0.5, std=2.0),
    _request([8], "trunc_normal", std=1.5, a=-2.0, b=1.0),
    _request([4], "uniform", a=-0.0, b=0.0),
    _request([4], "uniform", a=0.0, b=0.0),
    _request([4], "uniform", a=-0.0, b=-0.0),
    _request([4], "uniform", a=1.004, b=1.004),
    _request([8], "normal", mean=-0.0, std=0.0),
    _request([8], "trunc_normal", mean=0.0, std=5e-324, a=-0.0, b=1e-300),
)
# (bound, strict); the zeros' cuts are never -0.0 in a narrow dtype (section 6's rank 0 is +0.0).
CUTS = (
    (3.0, False), (-1.0, False), (0.05, False), (-0.216506, True), (0.216506, False), (1e-30, False),
    (0.0, False), (-0.0, False), (0.0, True), (-0.0, True),
)  # fmt: skip
REQUESTS = (
    _request([256, 784], "kaiming_normal"),
    _request([256, 784], "kaiming_uniform"),
    _request([256, 784], "trunc_normal"),
    _request([64, 33], "xavier_normal"),
    _request([4096], "uniform", a=-1.0, b=3.0),
    _request([16, 8], "sparse", sparsity=0.3),
)
# Regions of a tensor (section 8): every value of the region in every dtype. The last is the last 4 elements of the
# largest addressable tensor: blocks beyond 2^32, retry counters whose element index needs both words.
SLICES = (
    {**_request([6, 5], "trunc_normal", seed=1), "slice": [[1, 3], [2, 5]]},
    {**_request([64, 33], "kaiming_normal", seed=0), "slice": [[3, 5], [28, 33]]},
    {
        **_request([454279, 31252369, 649657], "kaiming_normal", seed=5),
        "slice": [[454278, 454279], [31252368, 31252369], [649653, 649657]],
    },
)
# Metadata version 2 (section 8): fans of each layout and rank, one fan given, none read, a slice, an alias.
METADATA = (
    _request([256, 784], "kaiming_normal", seed=1),
    _request([3, 3, 16, 32], "glorot_uniform", seed=1),
    _request([7], "he_normal", seed=1),
    _request([], "lecun_normal", seed=1),
    _request([5], "kaiming_uniform", seed=1, fan_in=3),
    _request([5], "uniform", seed=1, a=-0.0, b=1.0),
    _request([4, 6], "variance_scaling", seed=1, mode="fan_avg", layout="torch", fan_out=10),
    _request([8, 4, 3], "msra", seed=1, dtype="bfloat16"),
    {**_request([6, 5], "trunc_normal", seed=1, dtype="float64"), "slice": [[1, 3], [2, 5]]},
)


def _up(x: float) -> float:
    return math.nextafter(x, math.inf)


# Section 7's refusals, in their order, each beside the accepted request across its boundary (the last float64
# that passes, found by bisection); the service's `loc` and `msg` come from the engine, and
# tests/engine/test_philox_v2.py checks the HTTP API says the same.
_F16_STD = float.fromhex("0x1.2aaaa7f475a8ep+12")  # the greatest std of a float16 normal: 4778.666004619225
_BF16_STD = float.fromhex("0x1.29a531f2bf8b2p+124")
_F32_STD = float.fromhex("0x1.2ad000c9e43d7p+124")
_F32_STD_AT_MEAN = float.fromhex("0x1.1afc468d7b001p+121")  # with mean -3e38
_F64_SPARSE_STD = float.fromhex("0x1.2ad001f4b43f6p+1020")  # sparsity 1: variance 0, only the tail bound is left
ADMISSION = (
    # philox-v1's section 9 first: its largest |x| (|mean| + std * MAX_NORMAL_RADIUS), its message (the scheme's name)
    _request([4], "normal", seed=0, std=7642.0, dtype="float16"),
    _request([4], "random_normal", seed=0, stddev=7642.0, dtype="float16"),
    _request([4], "trunc_normal", seed=0, a=40.0, b=41.0),
    # the tail bound: |mean| + std * MAX_Z > DTYPE_MAX, at dtype, the message naming the distribution
    _request([4], "normal", seed=0, std=_F16_STD, dtype="float16"),
    _request([4], "normal", seed=0, std=_up(_F16_STD), dtype="float16"),
    _request([4], "random_normal", seed=0, stddev=_up(_F16_STD), dtype="float16"),
    _request([4], "normal", seed=0, std=_BF16_STD, dtype="bfloat16"),
    _request([4], "normal", seed=0, std=_up(_BF16_STD), dtype="bfloat16"),
    _request([4], "normal", seed=0, std=_F32_STD, dtype="float32"),
    _request([4], "normal", seed=0, std=_up(_F32_STD), dtype="float32"),
    _request([4], "random_normal", seed=0, mean=-3e38, stddev=_F32_STD_AT_MEAN, dtype="float32"),
    _request([4], "random_normal", seed=0, mean=-3e38, stddev=_up(_F32_STD_AT_MEAN), dtype="float32"),
    # sparse's float64 normals of mean 0, rounded to the dtype: the same bound
    _request([4, 2], "sparse", seed=0, sparsity=0.5, std=_F16_STD, dtype="float16"),
    _request([4, 2], "sparse", seed=0, sparsity=0.5, std=_up(_F16_STD), dtype="float16"),
    _request([4, 2], "sparse", seed=0, sparsity=0.5, std=_BF16_STD, dtype="bfloat16"),
    _request([4, 2], "sparse", seed=0, sparsity=0.5, std=_up(_BF16_STD), dtype="bfloat16"),
    _request([4, 2], "sparse", seed=0, sparsity=0.5, std=_F32_STD, dtype="float32"),
    _request([4, 2], "sparse", seed=0, sparsity=0.5, std=_up(_F32_STD), dtype="float32"),
    _request([3, 2], "sparse", seed=0, sparsity=1.0, std=_F64_SPARSE_STD, dtype="float64"),
    _request([3, 2], "sparse", seed=0, sparsity=1.0, std=_up(_F64_SPARSE_STD), dtype="float64"),
    # orthogonal is not bound by it: its values are at most |gain|
    _request([4, 4], "orthogonal", seed=0, gain=65504.0, dtype="float16"),
    # the uniform's empty cut interval, and U[a, a), which has no cut
    _request([4], "uniform", seed=0, a=1.004, b=1.0078125, dtype="bfloat16"),
    _request([4], "uniform", seed=0, a=1.004, b=_up(1.0078125), dtype="bfloat16"),
    _request([4], "random_uniform", seed=0, minval=65500.0, maxval=65504.0, dtype="float16"),
    _request([4], "random_uniform", seed=0, minval=65472.0, maxval=65504.0, dtype="float16"),
    _request([4], "uniform", seed=0, a=1.004, b=1.004, dtype="bfloat16"),
    _request([4], "uniform", seed=0, a=-1e-8, b=1e-8, dtype="float16"),
    # the truncated normal's empty cut interval, then mass > 0 on (a', b') (the message gives a' and b')
    _request([4], "trunc_normal", seed=0, a=1.004, b=1.0078, dtype="bfloat16"),
    _request([4], "trunc_normal", seed=0, a=1.004, b=1.0078125, dtype="bfloat16"),
    _request([4], "trunc_normal", seed=0, a=38.46, b=38.52, dtype="float16"),
    _request([4], "trunc_normal", seed=0, a=38.47, b=38.52, dtype="float16"),
)


def f64_hex(x: float) -> str:
    return f"{int(np.float64(x).view(np.uint64)):016x}"


def build() -> dict[str, Any]:
    # The request helpers are philox-v1's file's (imported here: service.vectors imports this module to write both).
    from service import __version__
    from service.engine.errors import InitError
    from service.engine.region import Region
    from service.vectors import plan_of, tensor_bytes, written

    seed, name = 7, "weight"
    stream = Stream.for_tensor(seed, name)

    def values(request: dict[str, Any], dtype: str) -> list[str]:
        """The request's values (its region's, for a slice) in `dtype`, as float64 encodings."""
        return [f64_hex(v) for v in np.frombuffer(tensor_bytes(request, dtype), DTYPES[dtype].numpy).astype(np.float64)]

    def admitted(request: dict[str, Any]) -> dict[str, Any] | None:
        """None when the service serves `request`, else the error item of its 422 (the API's `detail[0]`)."""
        try:
            plan_of(request)
        except InitError as error:
            return {"loc": [error.where, error.field], "msg": error.message, "type": "value_error"}
        return None

    def metadata(request: dict[str, Any]) -> dict[str, Any]:
        bounds = tuple(tuple(pair) for pair in request["slice"]) if "slice" in request else None
        return Region(plan_of(request), bounds).metadata()  # type: ignore[arg-type]

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
                # the tail bound's |z| (section 7): X[1] + (53.0 * 0.6931471805599453) / X[1]
                "MAX_Z": f64_hex(ziggurat.MAX_Z),
            },
            "dtype_max": "philox-v1's constants.dtype_max: docs/vectors/philox-v1.json",
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
                {"request": written({**request, "dtype": dtype}), "values": values(request, dtype)}
                for request in TENSORS
                for dtype in DTYPE_NAMES
            ],
            "requests": [
                {
                    "request": written(request),
                    "sha256": {
                        dtype: hashlib.sha256(tensor_bytes(request, dtype)).hexdigest() for dtype in DTYPE_NAMES
                    },
                }
                for request in REQUESTS
            ],
            "slices": [
                {"request": written(request), "values": {dtype: values(request, dtype) for dtype in DTYPE_NAMES}}
                for request in SLICES
            ],
            "metadata": {
                "service": f"initserve {__version__}",
                "cases": [{"request": written(request), "metadata": metadata(request)} for request in METADATA],
            },
            "admission": [{"request": written(request), "refused": admitted(request)} for request in ADMISSION],
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
