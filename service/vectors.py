"""philox-v1's constants and test vectors, machine-readable: `python -m service.vectors` writes docs/vectors/.

The file is what every implementation of docs/reproducibility.md (this engine, the clients, any port) reads:
the constants and polynomial coefficients (taken here from `detmath` and `philox`, their one home in Python, so a
client reads them from the JSON instead of copying tables), and vectors chosen to discriminate: each variant that
the issue found plausible but wrong (Sun fdlibm 5.3's sin and, separately, cos kernel, ndtr = 0.5*erfc(-x/sqrt2),
AS 241 as q*(A/B), rint rounding halves away from zero, float16 rounded straight from float64, and section 9's
refusals checked another way) fails at least one of them
(tests/engine/test_vectors.py proves it on a pure-Python port written from the document). `--check` exits 1 when
the file is stale. Floats are written as the 16 hex digits of their IEEE 754 encoding ("3ff0000000000000" is 1.0),
uint64 words as 16 hex digits, so that no decimal conversion stands between the file and the bits; integers a valid
request can push beyond 2^53 (seeds, fans, block numbers, element indices) as decimal strings, which no JSON parser
rounds (JavaScript's JSON.parse would).

It lives beside the CLI, not in the engine, because its response-body vectors need the containers (service.formats).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import struct
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service.api.schemas import MAX_FAN, MAX_NAME_CHARS
from service.engine.dtypes import DTYPES
from service.engine.plan import MAX_RANK
from service.engine.random import detmath as dm
from service.engine.random import philox
from service.engine.region import MAX_ADDRESSABLE
from service.engine.schemes import distributions
from service.engine.schemes.registry import REGISTRY, SCHEMES, TRUNCATED_NORMAL_STD_2

PATH = Path(__file__).resolve().parent.parent / "docs" / "vectors" / "philox-v1.json"


def f64_hex(x: float) -> str:
    """The IEEE 754 binary64 encoding of x as 16 hex digits."""
    return struct.pack(">d", float(x)).hex()


def u64_hex(w: int) -> str:
    return f"{int(w):016x}"


def _constant(x: float) -> dict[str, Any]:
    return {"bits": f64_hex(x), "value": float(x)}


def _polynomial(coefficients: Iterable[float]) -> list[dict[str, Any]]:
    return [_constant(c) for c in coefficients]


def constants() -> dict[str, Any]:
    """Every constant of the contract, named as docs/reproducibility.md names them."""
    return {
        "key_domain_hex": philox._KEY_DOMAIN.hex(),
        "philox4x64_10": {
            "multipliers": [u64_hex(m) for m in philox._MULTIPLIERS],
            "key_increments": [u64_hex(w) for w in philox._WEYL],
            "rounds": 10,
        },
        "float64": {
            name: _constant(value)
            for name, value in (
                ("LN2_HI", dm._LN2_HI),
                ("LN2_LO", dm._LN2_LO),
                ("THIRD", dm._THIRD),
                ("LOG_HALVE_AT", dm._LOG_HALVE_AT),
                ("LOG_SMALL_LO", dm._LOG_SMALL_LO),
                ("LOG_SMALL_HI", dm._LOG_SMALL_HI),
                ("LOG_HFSQ_LO", dm._LOG_HFSQ_LO),
                ("LOG_HFSQ_HI", dm._LOG_HFSQ_HI),
                ("EXP_O_THRESHOLD", dm._EXP_O_THRESHOLD),
                ("EXP_U_THRESHOLD", dm._EXP_U_THRESHOLD),
                ("INVLN2", dm._INVLN2),
                ("PIO2", dm._PIO2),
                ("ERX", dm._ERX),
                ("ONE_MINUS_ERX", dm._ONE_MINUS_ERX),
                ("SQRT1_2", dm._SQRT1_2),
                ("TRUNCATED_NORMAL_STD_2", TRUNCATED_NORMAL_STD_2),
                ("MAX_NORMAL_RADIUS", distributions.MAX_NORMAL_RADIUS),
                ("SQRT_2PI", distributions.SQRT_2PI),
            )
        },
        # Section 9: a tensor whose largest |value| exceeds its dtype's largest finite value is refused.
        "dtype_max": {name: _constant(DTYPES[name].max) for name in DTYPE_NAMES},
        # Section 1.1's request rules (integers beyond 2^53 as decimal strings).
        "limits": {
            "max_rank": MAX_RANK,
            "max_name_chars": MAX_NAME_CHARS,
            "max_seed": str(_MAX_SEED),
            "max_fan": str(MAX_FAN),
            "max_elements": str(MAX_ADDRESSABLE),
        },
        # Coefficients in increasing powers: [c0, c1, ..., cn] is c0 + z*(c1 + z*(... + z*cn)).
        "polynomials": {
            "LG_EVEN": _polynomial((dm._LG2, dm._LG4, dm._LG6)),
            "LG_ODD": _polynomial((dm._LG1, dm._LG3, dm._LG5, dm._LG7)),
            "EXP_P": _polynomial((dm._P1, dm._P2, dm._P3, dm._P4, dm._P5)),
            "SIN_S": _polynomial((dm._S1, dm._S2, dm._S3, dm._S4, dm._S5, dm._S6)),
            "COS_C": _polynomial((dm._C1, dm._C2, dm._C3, dm._C4, dm._C5, dm._C6)),
            "ERF_PP": _polynomial(dm._PP),
            "ERF_QQ": _polynomial(dm._QQ),
            "ERF_PA": _polynomial(dm._PA),
            "ERF_QA": _polynomial(dm._QA),
            "ERFC_RA": _polynomial(dm._RA),
            "ERFC_SA": _polynomial(dm._SA),
            "ERFC_RB": _polynomial(dm._RB),
            "ERFC_SB": _polynomial(dm._SB),
            "AS241_A": _polynomial(dm._AS241_A),
            "AS241_B": _polynomial(dm._AS241_B),
            "AS241_C": _polynomial(dm._AS241_C),
            "AS241_D": _polynomial(dm._AS241_D),
            "AS241_E": _polynomial(dm._AS241_E),
            "AS241_F": _polynomial(dm._AS241_F),
        },
        # Thresholds on hw = bits 62..32 of a float64's encoding (its high word without the sign bit).
        "high_word_thresholds": {
            name: f"{value:08x}"
            for name, value in (
                ("EXP_TINY", dm._EXP_TINY_HW),
                ("EXP_REDUCE", dm._EXP_REDUCE_HW),
                ("ERFC_TINY", dm._ERFC_TINY_HW),
                ("ERFC_QUARTER", dm._ERFC_QUARTER_HW),
                ("ERFC_ERF", dm._ERFC_ERF_HW),
                ("ERFC_ERX", dm._ERFC_ERX_HW),
                ("ERFC_NEAR_TAIL", dm._ERFC_NEAR_TAIL_HW),
                ("ERFC_NEG_SIX", dm._ERFC_NEG_SIX_HW),
                ("ERFC_FAR", dm._ERFC_FAR_HW),
            )
        },
    }


def schemes() -> dict[str, Any]:
    """Every scheme's family, default layout and parameters (type, default, bounds, choices), from the registry."""
    kinds = {float: "number", int: "integer", str: "string"}  # the bare schemes (the spec's) use only these
    table: dict[str, Any] = {}
    for scheme in SCHEMES:
        params: dict[str, Any] = {}
        for p in scheme.params:
            entry: dict[str, Any] = {"type": kinds[p.type], "default": None if p.required else p.default}
            entry.update({bound: getattr(p, bound) for bound in ("ge", "gt", "le") if getattr(p, bound) is not None})
            if p.choices:
                entry["choices"] = list(p.choices)
            params[p.name] = entry
        table[scheme.name] = {"family": scheme.family, "default_layout": scheme.default_layout, "params": params}
        if scheme.alias_of:
            table[scheme.name]["alias_of"] = scheme.alias_of
    return table


def namespaced() -> dict[str, Any]:
    """The service's other names (torch.*, keras.*, jax.*, tf1.*: docs/faithfulness.md) with their parameters' names,
    in the service's order. This document does not define their bits; a client refuses them locally (fetch them), and
    names them where the service does: in the known schemes of an unknown one, and in whose a parameter is."""
    bare = {scheme.name for scheme in SCHEMES}
    return {
        name: {"family": scheme.family, "params": [p.name for p in scheme.params]}
        for name, scheme in REGISTRY.items()
        if name not in bare
    }


# ---- vectors ------------------------------------------------------------------------------------------------

_MAX_SEED = (1 << 64) - 1
KEYS = ((0, "weight"), (7, "weight"), (1, "conv1.weight"), (_MAX_SEED, "w/é x"), (12345678901234567890, "日本語"))
# (key, counter) of whole Philox4x64-10 blocks; the first two are Random123's known-answer tests (kat_vectors).
BLOCKS = (
    ((0, 0), (0, 0, 0, 0)),
    (
        (0x452821E638D01377, 0xBE5466CF34E90C6C),
        (0x243F6A8885A308D3, 0x13198A2E03707344, 0xA4093822299F31D0, 0x082EFA98EC4E6C89),
    ),
)
# Stream blocks (seed, name, block index b, purpose): counter (b mod 2^64, b >> 64, purpose, 0).
STREAM_BLOCKS = ((7, "weight", 0, 0), (7, "weight", 1, 1), (0, "weight", 39, 0), (7, "weight", (1 << 64) + 5, 0))
# Words fed to the transforms: extremes, a cell edge, and Box-Muller turns on the rint halves t = 1/8, 5/8 (where
# halves-away-from-zero picks the other quadrant) and on quarter turns.
_T = 1 << 11  # the word whose top 53 bits are 1
WORDS = (0, 1, _T - 1, _T, 1 << 12, 1 << 63, _MAX_SEED, 0x5EBC981691751339, 0x85EA32D07A5AC010)
NORMAL_PAIRS = (
    (0, 0),
    (_MAX_SEED, _MAX_SEED),
    (0x5EBC981691751339, 0x85EA32D07A5AC010),
    (1 << 62, (1 << 50) * _T),  # t = 1/8
    (1 << 62, (5 << 50) * _T),  # t = 5/8
    (1 << 62, (3 << 50) * _T),  # t = 3/8
    (1 << 62, (1 << 51) * _T),  # t = 1/4: exact quarter
    (1 << 62, ((1 << 51) - 1) * _T),  # just below a quarter
    (0x0123456789ABCDEF, 0xFEDCBA9876543210),
)
_TINY = 2.0**-53
LOG_POINTS = (
    2.0**-53, 1.0 - _TINY, 1.0 - 2.0**-22, 1.0 - 2.0**-15, 1.0, 1.0 + 2.0**-52, 1.0 + 2.0**-21, 1.0 + 2.0**-19,
    1.39, 1.4142135623730951, dm._LOG_HALVE_AT, dm._LOG_HALVE_AT - 2.0**-52, 0.5, 0.75, 0.1, 2.0, 10.0, 1e300,
    1.7976931348623157e308, 2.2250738585072014e-308, 1e-310, 5e-324, 0.0, -1.0, math.inf,
)  # fmt: skip
EXP_POINTS = (
    0.0, 1e-9, -1e-9, 0.3, 0.5, 1.0, -1.0, 2.5, -7.25, 10.0, -10.0, 100.0, 700.0, 709.78, 709.8, -708.0, -740.0,
    -745.0, -746.0, -0.5625, -4.5625,
)  # fmt: skip
# Turns where Sun fdlibm 5.3's __kernel_sin/__kernel_cos give other bits than the revised (FreeBSD msun, musl)
# kernels, found by search; beside them the rint halves, exact quarters and their neighbours.
SUN_KERNEL_TURNS = (
    # __kernel_sin's one Horner polynomial (Sun) against the revised split: one turn in each quadrant n = 0..3
    float.fromhex("0x1.c7d5b6ea4c8aep-1"),
    float.fromhex("0x1.2c6ed5de28a40p-3"),
    float.fromhex("0x1.2fcc189583e00p-1"),
    float.fromhex("0x1.42a03181cc730p-1"),
    # __kernel_cos's qx correction (Sun) against the revised w = 1 - hz
    float.fromhex("0x1.3611210c67fd9p-1"),
    float.fromhex("0x1.14fa878633074p-1"),
    float.fromhex("0x1.bd62675dd67dep-1"),
    float.fromhex("0x1.8b7630a470188p-2"),
    float.fromhex("0x1.171c4be93e438p-3"),
)
SINCOS_POINTS = (
    0.0, 0.25, 0.5, 0.75, 0.125, 0.375, 0.625, 0.875, _TINY, 0.25 - _TINY, 0.25 + _TINY, 0.5 - _TINY, 0.75 + _TINY,
    1.0 - _TINY, 0.1, 1.0 / 3.0, 0.2, 0.3, *SUN_KERNEL_TURNS,
)  # fmt: skip
ERFC_POINTS = (
    0.0, 1e-20, 0.1, 0.3, -0.3, 0.8, 0.9, -1.0, 1.2, 1.3, -1.3, 2.0, -2.0, 2.9, 3.0, 5.0, 10.0, 26.0, 27.0, 27.5,
    30.0, -5.0, -7.0, -math.inf, math.inf,
)  # fmt: skip
NDTR_POINTS = (
    -2.0, 2.0, -1.0, 1.0, 0.0, -0.5, -1.5, -3.0, 3.0, -5.0, -10.0, -20.0, -37.0, -38.0, 8.0, 40.0, -math.inf,
    math.inf,
)  # fmt: skip
NDTRI_POINTS = (
    0.5, 0.6, 0.7, 0.8, 0.3, 0.2, 0.15, 0.9, 0.075, 0.925, 0.07499999999999999, 0.001, 0.977, 0.02275013194817921,
    1e-10, 1e-12, 1e-300, 5e-324, 1.0 - 2.0**-53, 0.0, 1.0,
)  # fmt: skip
TRUNCATED = (  # (mean, std, a, b): not mirrored, mirrored, far tails on both sides, one-sided
    (0.0, 1.0, -2.0, 2.0),
    (0.1, 0.5, -0.5, 1.0),
    (0.0, 1.0, 8.0, 9.0),
    (0.0, 1.0, -9.0, -8.0),
    (0.0, 1.0, -38.0, -37.0),
    (0.0, 1.0, 37.0, 38.0),
    (0.0, 1.0, 0.0, 3.0),
    (0.0, 0.02, -0.04, 0.04),
)
# Full requests (every field but seed defaulted as the service does): per-dtype SHA-256 of the raw tensor bytes,
# and a few float64 elements. Small enough for a scalar port in any language to compute in a second.
REQUESTS: tuple[dict[str, Any], ...] = (
    {"shape": [64, 33], "scheme": "kaiming_normal", "seed": 0},
    {"shape": [16, 8, 3, 3], "scheme": "kaiming_uniform", "mode": "fan_out", "nonlinearity": "relu", "seed": 1},
    {"shape": [30, 50], "scheme": "xavier_normal", "gain": 1.5, "seed": 2},
    {"shape": [20, 7], "scheme": "xavier_uniform", "seed": 2, "layout": "keras"},
    {"shape": [20, 7], "scheme": "torch_default", "seed": 3, "name": "fc.weight"},
    {"shape": [8, 3, 5], "scheme": "msra", "mode": "FAN_OUT", "seed": 3},
    {"shape": [25, 40], "scheme": "trunc_normal", "mean": 0.1, "std": 0.5, "a": -0.5, "b": 1.0, "seed": 4},
    {"shape": [100], "scheme": "trunc_normal", "a": 8.0, "b": 9.0, "seed": 5},
    {"shape": [100], "scheme": "trunc_normal", "a": -38.0, "b": -37.0, "seed": 5},
    {"shape": [20, 30], "scheme": "glorot_normal", "seed": 9},
    {"shape": [3, 3, 4, 8], "scheme": "he_normal", "seed": 6},
    {"shape": [3, 3, 4, 8], "scheme": "he_uniform", "seed": 6},
    {"shape": [10], "scheme": "lecun_uniform", "seed": 7},
    {"shape": [12, 10], "scheme": "lecun_normal", "seed": 7, "fan_in": 1000},
    {"shape": [40, 60], "scheme": "variance_scaling", "scale": 2.0, "mode": "fan_geo_avg",
     "distribution": "untruncated_normal", "seed": 11, "layout": "torch"},
    {"shape": [7, 9, 2], "scheme": "variance_scaling", "scale": 0.5, "mode": "fan_avg", "seed": 11},
    {"shape": [7, 9, 2], "scheme": "variance_scaling", "mode": "Fan_Out", "distribution": "UNIFORM", "seed": 11},
    {"shape": [5, 5, 8], "scheme": "uniform_unit_scaling", "factor": 1.5, "seed": 12},
    {"shape": [33, 17], "scheme": "normal", "mean": 0.5, "std": 2.0, "seed": 8, "name": "w/é x"},
    {"shape": [1000], "scheme": "random_uniform", "seed": _MAX_SEED},
    {"shape": [50, 20], "scheme": "truncated_normal", "stddev": 0.02, "seed": 13},
    {"shape": [999], "scheme": "uniform", "a": -1.0, "b": 2.0, "seed": 6},
    {"shape": [300], "scheme": "random_normal", "mean": -1.0, "stddev": 3, "seed": 12345678901234567890},
    {"shape": [7, 9], "scheme": "constant", "val": 0.1, "seed": 0},
    {"shape": [5, 7], "scheme": "eye", "seed": 0},
    {"shape": [4, 4], "scheme": "identity", "gain": 2.0, "seed": 0},
    {"shape": [], "scheme": "ones", "seed": 0},
    {"shape": [3], "scheme": "zeros", "seed": 0},
    {"shape": [8, 4, 3, 3], "scheme": "dirac", "groups": 2, "seed": 0},
    {"shape": [50, 20], "scheme": "sparse", "sparsity": 0.3, "seed": 5},
    {"shape": [64, 33], "scheme": "kaiming_normal", "seed": 0, "slice": [[3, 40], [5, 30]]},
    {"shape": [4, 6, 5], "scheme": "trunc_normal", "seed": 1, "slice": [[1, 3], [0, 6], [2, 3]]},
    {"shape": [4, 6, 5], "scheme": "glorot_uniform", "seed": 1, "slice": [[0, 4], [5, 6], [0, 5]]},
    # -0.0 is a value of its own (section 1.1): every element -0.0; and -0.0 + (0.0 * z) is -0.0 where z < 0
    {"shape": [3], "scheme": "constant", "val": -0.0, "seed": 0},
    {"shape": [6], "scheme": "normal", "mean": -0.0, "std": 0.0, "seed": 0},
    # the last 4 elements of the largest addressable tensor (2^63 - 1 elements): flat indices and blocks near 2^63
    {"shape": [454279, 31252369, 649657], "scheme": "kaiming_normal", "seed": 5,
     "slice": [[454278, 454279], [31252368, 31252369], [649653, 649657]]},
)  # fmt: skip
ELEMENTS = (0, 1, 2, 3, 156)  # float64 elements given for each request (those < its size)
DTYPE_NAMES = ("float64", "float32", "float16", "bfloat16")
# Response bodies: the container bytes around the data (metadata, headers, padding, number formatting).
BODIES: tuple[dict[str, Any], ...] = (
    {"shape": [2, 3], "scheme": "kaiming_normal", "seed": 0},
    {"shape": [2, 3], "scheme": "kaiming_normal", "seed": 0, "format": "json"},
    {"shape": [2, 3], "scheme": "kaiming_normal", "seed": 0, "format": "npy"},
    {"shape": [67, 129], "scheme": "he_normal", "seed": 3, "dtype": "bfloat16", "name": "w/é x"},
    {"shape": [6, 5], "scheme": "trunc_normal", "seed": 1, "dtype": "float64", "format": "json",
     "slice": [[1, 3], [2, 5]]},
    {"shape": [5], "scheme": "msra", "seed": 2, "dtype": "bfloat16", "format": "json", "fan_in": 3},
    {"shape": [4, 3], "scheme": "eye", "seed": 1, "dtype": "float16", "format": "npy"},
    {"shape": [], "scheme": "normal", "seed": 1},
    # exact ties in the shortest digits (section 10): float32 0.314453125 is written 0.31445312, the even digit
    {"shape": [2], "scheme": "constant", "val": 0.314453125, "seed": 0, "format": "json"},
    {"shape": [2], "scheme": "constant", "val": 1125899906842624.25, "seed": 0, "dtype": "float64", "format": "json"},
)  # fmt: skip
_MAX = float.fromhex("0x1.fffffffffffffp+1023")
_SQUARE_MAX = float.fromhex("0x1.fffffffffffffp+511")  # the largest x whose x * x is finite


def _up(x: float) -> float:
    """The next float64 above x."""
    return math.nextafter(x, math.inf)


# Requests the service refuses (section 1.1's element count; section 9's float64 overflow of a distribution's numbers,
# its mean or variance, and the dtype's range), most beside the accepted request across the boundary. The field
# each is refused at comes from the engine (`refused_at`), and the HTTP test checks the service says the same.
ADMISSION: tuple[dict[str, Any], ...] = (
    {"shape": [454279, 31252369, 649658], "scheme": "normal", "seed": 0, "slice": [[0, 1], [0, 1], [0, 1]]},
    {"shape": [454279, 31252369, 649657], "scheme": "normal", "seed": 0, "slice": [[0, 1], [0, 1], [0, 1]]},
    # uniform: low + high, then (high - low) * (high - low)
    {"shape": [4], "scheme": "uniform", "a": _MAX / 2, "b": _MAX / 2, "seed": 0, "dtype": "float64"},
    {"shape": [4], "scheme": "uniform", "a": _up(_MAX / 2), "b": _up(_MAX / 2), "seed": 0, "dtype": "float64"},
    {"shape": [4], "scheme": "random_uniform", "minval": 0.0, "maxval": _SQUARE_MAX, "seed": 0, "dtype": "float64"},
    {"shape": [4], "scheme": "random_uniform", "minval": 0.0, "maxval": _up(_SQUARE_MAX), "seed": 0,
     "dtype": "float64"},
    {"shape": [4], "scheme": "uniform_unit_scaling", "factor": _MAX, "seed": 0, "dtype": "float64"},
    # normal: std * std; overflow is refused before the dtype is looked at
    {"shape": [4], "scheme": "normal", "std": _SQUARE_MAX, "seed": 0, "dtype": "float64"},
    {"shape": [4], "scheme": "normal", "std": _up(_SQUARE_MAX), "seed": 0, "dtype": "float64"},
    {"shape": [4], "scheme": "random_normal", "stddev": _up(_SQUARE_MAX), "seed": 0, "dtype": "float16"},
    # truncated normal: its a and b, and the mean and variance of section 9 (wild in a far tail of tiny mass)
    {"shape": [4], "scheme": "trunc_normal", "std": 1.0, "a": -38.57000000000001, "b": -38.47000000000001, "seed": 0,
     "dtype": "float64"},
    {"shape": [4], "scheme": "trunc_normal", "std": _SQUARE_MAX, "a": -38.57000000000001 * _SQUARE_MAX,
     "b": -38.47000000000001 * _SQUARE_MAX, "seed": 0, "dtype": "float64"},
    {"shape": [4], "scheme": "trunc_normal", "a": -40.0, "b": -39.0, "seed": 0},
    # identity: (gain * gain) * min(rows, cols)
    {"shape": [2, 3], "scheme": "identity", "gain": float.fromhex("0x1.6a09e667f3bccp+511"), "seed": 0,
     "dtype": "float64"},
    {"shape": [2, 3], "scheme": "identity", "gain": float.fromhex("0x1.6a09e667f3bcdp+511"), "seed": 0,
     "dtype": "float64"},
    # sparse: (kept * std) * std with kept = 1.0 - zeros / rows, not (rows - zeros) / rows (they differ here)
    {"shape": [3, 2], "scheme": "sparse", "sparsity": 0.5, "std": float.fromhex("0x1.bb67ae8584caap+512"),
     "seed": 0, "dtype": "float64"},
    {"shape": [5, 2], "scheme": "sparse", "sparsity": 0.8, "std": float.fromhex("0x1.1e3779b97f4a8p+513"),
     "seed": 0, "dtype": "float64"},
    # sparse with no value kept: its variance is 0, and std * MAX_NORMAL_RADIUS is what overflows
    {"shape": [3, 2], "scheme": "sparse", "sparsity": 1.0, "std": float.fromhex("0x1.ddda5be51dd53p+1020"),
     "seed": 0, "dtype": "float64"},
    {"shape": [3, 2], "scheme": "sparse", "sparsity": 1.0, "std": float.fromhex("0x1.ddda5be51dd54p+1020"),
     "seed": 0, "dtype": "float64"},
    # the dtype's largest finite value, compared with the float64 value (65504.00000000001 would round to 65504)
    {"shape": [4], "scheme": "constant", "val": 65504.0, "seed": 0, "dtype": "float16"},
    {"shape": [4], "scheme": "constant", "val": _up(65504.0), "seed": 0, "dtype": "float16"},
    {"shape": [4], "scheme": "normal", "std": float.fromhex("0x1.dd9ea099a1318p+12"), "seed": 0, "dtype": "float16"},
    {"shape": [4], "scheme": "normal", "std": float.fromhex("0x1.dd9ea099a1319p+12"), "seed": 0, "dtype": "float16"},
    {"shape": [4], "scheme": "uniform", "a": -3.3895313892515355e38, "b": 0.0, "seed": 0, "dtype": "bfloat16"},
    {"shape": [4], "scheme": "uniform", "a": -_up(3.3895313892515355e38), "b": 0.0, "seed": 0, "dtype": "bfloat16"},
    {"shape": [4], "scheme": "constant", "val": 3.4028234663852886e38, "seed": 0, "dtype": "float32"},
    {"shape": [4], "scheme": "constant", "val": _up(3.4028234663852886e38), "seed": 0, "dtype": "float32"},
)  # fmt: skip
# The float text of section 10: exact ties (both ways to the even digit) and the notation's edges.
FLOAT_TEXT = (
    ("float32", 0.314453125), ("float32", 0.130859375), ("float64", 1125899906842624.25),
    ("float64", 1125899906842624.75), ("float64", -0.0), ("float64", 1e-5), ("float64", 1e-6), ("float64", 1e15),
    ("float64", 1e16), ("float64", 1.2345678901234568e17), ("float64", 5e-324), ("float64", _MAX),
    ("float32", 1e-6), ("float32", 1e-7), ("float32", 1e12), ("float32", 1e13), ("float32", 2.0**-149),
    ("float32", 3.4028234663852886e38), ("float32", -0.0), ("float32", 123.5),
)  # fmt: skip
# Where float64 -> float16 (or bfloat16) rounded directly differs from the float32 route: elements of this request.
DOUBLE_ROUNDING_REQUEST = {"shape": [1 << 20], "scheme": "normal", "seed": 0, "name": "double-rounding"}


# Request fields a valid request can push beyond 2^53: decimal strings in the file, JSON integers on the wire.
_DECIMAL_FIELDS = ("seed", "fan_in", "fan_out")


def written(request: dict[str, Any]) -> dict[str, Any]:
    """The request as the file stores it: seed, fan_in and fan_out as decimal strings (they reach 2^64 - 1)."""
    return {k: str(v) if k in _DECIMAL_FIELDS else v for k, v in request.items()}


def sent(request: dict[str, Any]) -> dict[str, Any]:
    """A request of the file as the service takes it: seed, fan_in and fan_out as JSON integers."""
    return {k: int(v) if k in _DECIMAL_FIELDS else v for k, v in request.items()}


def plan_of(request: dict[str, Any], dtype: str | None = None) -> Any:
    """The engine's plan of a request of a vectors file (either rng's: its `rng` field, philox-v1 when absent), in
    `dtype` if given; raises InitError as the service refuses it."""
    from service.engine.plan import TensorRequest, make_plan
    from service.engine.schemes.registry import get_scheme

    request = sent(request)
    fields = ("shape", "scheme", "seed", "dtype", "layout", "fan_in", "fan_out", "name", "slice", "format", "rng")
    params = {k: v for k, v in request.items() if k not in fields}
    scheme = get_scheme(request["scheme"])
    return make_plan(
        TensorRequest(
            shape=tuple(request["shape"]),
            scheme=scheme.name,
            seed=request["seed"],
            params=params,
            dtype=dtype or request.get("dtype", "float32"),
            layout=request.get("layout"),
            fan_in=request.get("fan_in"),
            fan_out=request.get("fan_out"),
            name=request.get("name", "weight"),
            rng=request.get("rng", "philox-v1"),
        )
    )


def tensor_bytes(request: dict[str, Any], dtype: str) -> bytes:
    """The raw little-endian bytes of the request's tensor (or slice) in `dtype`, as the service computes them."""
    from service.engine.region import Region

    bounds = tuple(tuple(pair) for pair in request["slice"]) if "slice" in request else None
    return Region(plan_of(request, dtype), bounds).generate().tobytes()  # type: ignore[arg-type]


def refused_at(request: dict[str, Any]) -> str | None:
    """The field the service refuses `request` at (422), or None: the element count of a whole tensor (checked by
    the API before the plan, as here), then the engine's rules."""
    from service.engine.errors import InitError

    if math.prod(request["shape"]) > MAX_ADDRESSABLE:
        return "shape"
    try:
        plan_of(request)
    except InitError as error:
        return error.field
    return None


def _distribution_fields(distribution: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"kind": distribution.kind}
    for name in ("low", "high", "mean", "std", "a", "b", "value", "gain"):
        if hasattr(distribution, name):
            fields[name] = f64_hex(getattr(distribution, name))
    return fields


def _f64s(values: Iterable[float]) -> list[str]:
    return [f64_hex(v) for v in values]


def _elementary() -> dict[str, Any]:
    def table(points: Sequence[float], f: Any) -> list[list[str]]:
        return [[f64_hex(x), f64_hex(y)] for x, y in zip(points, f(np.array(points, dtype=np.float64)), strict=True)]

    sin, cos = dm.sincos_turns(np.array(SINCOS_POINTS))
    return {
        "log": table(LOG_POINTS, dm.log),
        "exp": table(EXP_POINTS, dm.exp),
        "sincos_turns": [[f64_hex(t), f64_hex(s), f64_hex(c)] for t, s, c in zip(SINCOS_POINTS, sin, cos, strict=True)],
        "erfc": table(ERFC_POINTS, dm.erfc),
        "ndtr": table(NDTR_POINTS, dm.ndtr),
        "ndtri": table(NDTRI_POINTS, dm.ndtri),
    }


def _variates() -> dict[str, Any]:
    from service.engine.random import variates

    words = np.array(WORDS, dtype=np.uint64)
    pairs = np.array(NORMAL_PAIRS, dtype=np.uint64).reshape(-1)
    normals = variates.standard_normal(pairs).reshape(-1, 2)
    return {
        "uniform01": [[u64_hex(w), f64_hex(u)] for w, u in zip(WORDS, variates.uniform01(words), strict=True)],
        "uniform_open": [[u64_hex(w), f64_hex(u)] for w, u in zip(WORDS, variates.uniform_open(words), strict=True)],
        "normal_pair": [
            [u64_hex(w0), u64_hex(w1), f64_hex(z0), f64_hex(z1)]
            for (w0, w1), (z0, z1) in zip(NORMAL_PAIRS, normals, strict=True)
        ],
    }


def _truncated() -> list[dict[str, Any]]:
    from service.engine.random.philox import Stream
    from service.engine.schemes.distributions import TruncatedNormal

    out = []
    for mean, std, a, b in TRUNCATED:
        t = TruncatedNormal(mean, std, a, b)
        out.append(
            {
                "mean": f64_hex(mean),
                "std": f64_hex(std),
                "a": f64_hex(a),
                "b": f64_hex(b),
                "mirrored": t._mirrored,
                "lo": f64_hex(t._lo),
                "hi": f64_hex(t._hi),
                "p_lo": f64_hex(t._p_lo),
                "mass": f64_hex(t._mass),
                "seed": "1",
                "name": "t",
                "first_8": _f64s(t.sample(Stream.for_tensor(1, "t"), (8,), 0, 8)),
            }
        )
    return out


def _requests() -> list[dict[str, Any]]:
    out = []
    for request in REQUESTS:
        plan = plan_of(request)
        values = np.frombuffer(tensor_bytes(request, "float64"), dtype="<f8")
        out.append(
            {
                "request": written(request),
                "distribution": _distribution_fields(plan.distribution),
                "fans": {which: str(fan) for which, fan in plan.fans.items()},
                "sha256": {dtype: hashlib.sha256(tensor_bytes(request, dtype)).hexdigest() for dtype in DTYPE_NAMES},
                "float64": {str(i): f64_hex(values[i]) for i in ELEMENTS if i < values.size},
            }
        )
    return out


def _round_direct(x: float, mantissa_bits: int) -> float:
    """x rounded straight to `mantissa_bits` fraction bits, to nearest, ties to even (normal range only)."""
    m, e = math.frexp(x)
    return math.ldexp(round(math.ldexp(m, mantissa_bits + 1)), e - mantissa_bits - 1)  # round(): ties to even


def _double_rounding() -> list[dict[str, Any]]:
    import ml_dtypes

    values = np.frombuffer(tensor_bytes(DOUBLE_ROUNDING_REQUEST, "float64"), dtype="<f8")
    route = values.astype(np.float32)
    found = []
    for name, dtype, mantissa_bits in (
        ("float16", np.dtype(np.float16), 10),
        ("bfloat16", np.dtype(ml_dtypes.bfloat16), 7),
    ):
        # A double rounding can differ only where the float32 value lies on a midpoint of the narrower type.
        midpoints = np.flatnonzero(
            (route.view(np.uint32) & np.uint32((1 << (23 - mantissa_bits)) - 1)) == 1 << (22 - mantissa_bits)
        )
        wrong = [
            i
            for i in midpoints
            if abs(values[i]) >= 2.0**-14
            and _round_direct(values[i], mantissa_bits) != float(route[i : i + 1].astype(dtype)[0])
        ][:2]
        for index in wrong:
            direct = np.array([_round_direct(values[index], mantissa_bits)], dtype=np.float32).astype(dtype)
            found.append(
                {
                    "dtype": name,
                    "index": str(index),
                    "float64": f64_hex(values[index]),
                    "float32": route[index : index + 1].tobytes()[::-1].hex(),
                    "right": route[index : index + 1].astype(dtype).tobytes()[::-1].hex(),
                    "wrong_direct": direct.tobytes()[::-1].hex(),
                }
            )
    return found


def _bodies() -> list[dict[str, Any]]:
    from service.api.delivery import single
    from service.engine.region import Region
    from service.formats import FORMATS

    out = []
    for request in BODIES:
        bounds = tuple(tuple(pair) for pair in request["slice"]) if "slice" in request else None
        region = Region(plan_of(request), bounds)  # type: ignore[arg-type]
        fmt = FORMATS[request.get("format", "safetensors")]
        _, parts = fmt.write(single(region), 1 << 20)
        body = b"".join(bytes(part) for part in parts)
        out.append({"request": written(request), "length": len(body), "sha256": hashlib.sha256(body).hexdigest()})
    return out


def _float_text(dtype: str, x: float) -> list[str]:
    """[dtype, encoding, text]: the value as the service writes it in JSON (its float32 or float64 writer)."""
    import orjson

    value = np.array([x], dtype=dtype)
    text = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].decode()
    return [dtype, value.tobytes()[::-1].hex(), text]


def build() -> dict[str, Any]:
    """The whole file's content."""
    from service import __version__
    from service.engine.random.philox import Stream, stream_key

    return {
        "rng": "philox-v1",
        "spec": "docs/reproducibility.md",
        "generated_by": "python -m service.vectors",
        "encoding": (
            "floats: the 16 hex digits of their IEEE 754 binary64 encoding; uint64 words: 16 hex digits; seeds, fans, "
            "block numbers and element indices: decimal strings"
        ),
        "constants": constants(),
        "schemes": schemes(),
        "namespaced_schemes": namespaced(),
        "vectors": {
            "key_derivation": [
                {
                    "seed": str(seed),
                    "name": name,
                    "sha256_input_hex": (philox._KEY_DOMAIN + seed.to_bytes(8, "little") + name.encode()).hex(),
                    "key": [u64_hex(k) for k in stream_key(seed, name)],
                }
                for seed, name in KEYS
            ],
            "philox_blocks": [
                {
                    "key": [u64_hex(k) for k in key],
                    "counter": [u64_hex(c) for c in counter],
                    "output": [u64_hex(w) for w in _numpy_block(key, counter)],
                }
                for key, counter in BLOCKS
            ],
            "stream_blocks": [
                {
                    "seed": str(seed),
                    "name": name,
                    "block": str(b),
                    "purpose": purpose,
                    "output": [u64_hex(w) for w in Stream.for_tensor(seed, name).blocks(b, 1, purpose)],
                }
                for seed, name, b, purpose in STREAM_BLOCKS
            ],
            "variates": _variates(),
            "elementary": _elementary(),
            "truncated_normal": _truncated(),
            "requests": _requests(),
            "double_rounding": {"request": written(DOUBLE_ROUNDING_REQUEST), "elements": _double_rounding()},
            "admission": [{"request": written(r), "refused_at": refused_at(r)} for r in ADMISSION],
            "float_text": [_float_text(dtype, x) for dtype, x in FLOAT_TEXT],
            "bodies": {"service": f"initserve {__version__}", "cases": _bodies()},
        },
    }


def _numpy_block(key: tuple[int, int], counter: Sequence[int]) -> list[int]:
    """One Philox4x64-10 block of any 256-bit counter, by NumPy's Philox (the bit generator `philox.Stream` uses)."""
    value = sum(c << (64 * i) for i, c in enumerate(counter))
    generator = np.random.Philox(key=np.array(key, dtype=np.uint64), counter=(value - 1) % (1 << 256))
    return [int(w) for w in generator.random_raw(4)]


def render() -> str:
    return json.dumps(build(), indent=1, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Writes (or with --check, compares) every rng's vectors file: philox-v1's (this module) and philox-v2's."""
    from service.engine.random.philox2 import vectors as v2

    parser = argparse.ArgumentParser(prog="python -m service.vectors", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file differs from what would be written")
    args = parser.parse_args(argv)
    stale = 0
    for path, text in ((PATH, render()), (v2.PATH, v2.render())):
        if args.check:
            if (path.read_text(encoding="utf-8") if path.exists() else "") != text:
                print(f"{path} is stale: run python -m service.vectors", file=sys.stderr)
                stale = 1
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return stale


if __name__ == "__main__":
    sys.exit(main())
