"""docs/vectors/philox-v1.json: current, reproduced by the engine and by a port written from the document, and
discriminating: each plausible wrong reading of the document fails at least one vector.

The port (tests/engine/spec_port.py) is plain scalar Python reading every constant from the JSON. A vector the port
matches and a wrong variant of it does not is one that would catch that mistake in a port to any language.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from service import __version__, vectors
from service.engine import parallel
from service.engine.random import detmath, philox, variates
from tests.engine import spec_port

SPEC = json.loads(vectors.PATH.read_text(encoding="utf-8"))
V = SPEC["vectors"]
needs_jit = pytest.mark.skipif(not parallel.JIT_AVAILABLE, reason="numba not installed: only the reference path")


def h(bits: str) -> float:
    return spec_port.from_hex(bits)


def test_the_file_is_what_the_generator_writes():
    assert vectors.render() == vectors.PATH.read_text(encoding="utf-8"), "stale: run python -m service.vectors"


def test_constants_are_the_engines():
    # The table the clients read is detmath's own (no copy can drift): every constant round-trips from its hex.
    for name, c in SPEC["constants"]["float64"].items():
        assert c["bits"] == vectors.f64_hex(c["value"]), name
    assert [h(c["bits"]) for c in SPEC["constants"]["polynomials"]["AS241_A"]] == list(detmath._AS241_A)
    assert [h(c["bits"]) for c in SPEC["constants"]["polynomials"]["ERFC_SB"]] == list(detmath._SB)


# ---- the port reproduces every vector; each wrong variant fails one --------------------------------------------


def mismatches(port: Any) -> Iterator[str]:
    """The id of every vector `port` (spec_port, possibly with a variant patched in) gets wrong."""
    for case in V["key_derivation"]:
        if [f"{k:016x}" for k in port.key(int(case["seed"]), case["name"])] != case["key"]:
            yield f"key {case['seed']} {case['name']}"
    for case in V["philox_blocks"]:
        key = tuple(int(k, 16) for k in case["key"])
        if [f"{w:016x}" for w in port.philox_block(key, [int(c, 16) for c in case["counter"]])] != case["output"]:
            yield f"philox {case['counter']}"
    for case in V["stream_blocks"]:
        words = port.block(port.key(int(case["seed"]), case["name"]), int(case["block"]), case["purpose"])
        if [f"{w:016x}" for w in words] != case["output"]:
            yield f"stream block {case['block']}"
    for name in ("uniform01", "uniform_open"):
        for word, u in V["variates"][name]:
            if port.to_hex(getattr(port, name)(int(word, 16))) != u:
                yield f"{name} {word}"
    for w0, w1, z0, z1 in V["variates"]["normal_pair"]:
        if [port.to_hex(z) for z in port.normal_pair(int(w0, 16), int(w1, 16))] != [z0, z1]:
            yield f"normal_pair {w0} {w1}"
    for name, table in V["elementary"].items():
        for x, *expected in table:
            got = port.sincos_turns(h(x)) if name == "sincos_turns" else (getattr(port, name)(h(x)),)
            if [port.to_hex(y) for y in got] != expected:
                yield f"elementary {name}({h(x)!r})"
    for case in V["truncated_normal"]:
        setup = port.truncated_setup(h(case["mean"]), h(case["std"]), h(case["a"]), h(case["b"]))
        if [port.to_hex(setup[k]) for k in ("lo", "hi", "p_lo", "mass")] != [
            case[k] for k in ("lo", "hi", "p_lo", "mass")
        ]:
            yield f"truncated setup {case['a']} {case['b']}"
        dist = {"kind": "truncated_normal", **{k: h(case[k]) for k in ("mean", "std", "a", "b")}}
        stream = port.Stream(port.key(int(case["seed"]), case["name"]))
        if [port.to_hex(port.element(dist, stream, i)) for i in range(8)] != case["first_8"]:
            yield f"truncated values {case['a']} {case['b']}"
    for case in V["requests"]:
        values = port.tensor_values(case["request"])
        for index, bits in case["float64"].items():
            if port.to_hex(values[int(index)]) != bits:
                yield f"request {case['request']} element {index}"
        for dtype, digest in case["sha256"].items():
            if hashlib.sha256(b"".join(port.encode(x, dtype) for x in values)).hexdigest() != digest:
                yield f"request {case['request']} {dtype}"
    rounding = V["double_rounding"]
    stream = port.Stream(port.key(int(rounding["request"]["seed"]), rounding["request"]["name"]))
    normal = {"kind": "normal", "mean": 0.0, "std": 1.0}
    for case in rounding["elements"]:
        x = port.element(normal, stream, int(case["index"]))
        if port.to_hex(x) != case["float64"] or port.encode(x, case["dtype"])[::-1].hex() != case["right"]:
            yield f"double rounding {case['dtype']} {case['index']}"
    for case in V["admission"]:
        if port.refused_at(case["request"]) != case["refused_at"]:
            yield f"admission {case['request']}"


def test_the_port_reproduces_every_vector():
    assert list(mismatches(spec_port)) == []


def _sun_sin(x: float) -> float:
    """Sun fdlibm 5.3 __kernel_sin(x, 0, 0): one Horner polynomial (the revised kernel splits it)."""
    s1, s2, s3, s4, s5, s6 = spec_port.POLY["SIN_S"]
    if spec_port.high_word(x) < 0x3E400000 and int(x) == 0:
        return x
    z = x * x
    v = z * x
    r = s2 + z * (s3 + z * (s4 + z * (s5 + z * s6)))
    return x + v * (s1 + z * r)


def _sun_cos(x: float) -> float:
    """Sun fdlibm 5.3 __kernel_cos(x, 0): the qx correction (the revised kernel uses w = 1 - hz instead)."""
    c1, c2, c3, c4, c5, c6 = spec_port.POLY["COS_C"]
    ix = spec_port.high_word(x)
    if ix < 0x3E400000 and int(x) == 0:
        return 1.0
    z = x * x
    r = z * (c1 + z * (c2 + z * (c3 + z * (c4 + z * (c5 + z * c6)))))
    if ix < 0x3FD33333:
        return 1.0 - (0.5 * z - z * r)
    qx = 0.28125 if ix > 0x3FE90000 else spec_port.float_of((ix - 0x00200000) << 32)
    return (1.0 - qx) - ((0.5 * z - qx) - z * r)


def _half_away(y: float) -> float:
    return math.copysign(math.floor(abs(y) + 0.5), y)


def _normal_moments_only(dist: dict[str, Any]) -> tuple[float, float]:
    """A truncated normal checked like a normal: std * std, not its own mean and variance."""
    return dist["mean"], dist["std"] * dist["std"]


def _fits_rounded(largest: float, dtype: str) -> bool:
    """The value rounded to the dtype compared, not the float64 value (65504.00000000001 rounds to 65504)."""
    try:
        struct.pack({"float16": "<e", "float32": "<f", "bfloat16": "<f"}.get(dtype, "<d"), largest)
    except OverflowError:
        return False
    return True


# Each wrong variant and the group of vectors that must catch it.
WRONG_VARIANTS: dict[str, tuple[str, dict[str, Callable[..., Any]]]] = {
    "Sun fdlibm 5.3 __kernel_sin": ("elementary", {"sin_kernel": _sun_sin}),
    "Sun fdlibm 5.3 __kernel_cos": ("elementary", {"cos_kernel": _sun_cos}),
    "ndtr = 0.5 * erfc(-x / sqrt(2))": ("elementary", {"ndtr": lambda x: 0.5 * spec_port.erfc(-x / math.sqrt(2.0))}),
    "ndtr = 0.5 * erfc(-x * SQRT1_2)": (
        "elementary",
        {"ndtr": lambda x: 0.5 * spec_port.erfc(0.0 - x * spec_port.K["SQRT1_2"])},
    ),
    "AS 241 as q * (A / B)": (
        "elementary",
        {
            "as241_central": lambda q, r: (
                q * (spec_port.horner(r, spec_port.POLY["AS241_A"]) / spec_port.horner(r, spec_port.POLY["AS241_B"]))
            )
        },
    ),
    "rint halves away from zero": ("elementary", {"rint": _half_away}),
    "sparse kept = (rows - zeros) / rows": ("admission", {"sparse_kept": lambda zeros, rows: (rows - zeros) / rows}),
    "truncated normal checked by std * std only": ("admission", {"truncated_moments": _normal_moments_only}),
    "dtype range checked after rounding": ("admission", {"fits": _fits_rounded}),
}


@pytest.mark.parametrize("variant", sorted(WRONG_VARIANTS))
def test_each_wrong_variant_fails_a_vector(monkeypatch, variant):
    group, replacements = WRONG_VARIANTS[variant]
    for name, replacement in replacements.items():
        monkeypatch.setattr(spec_port, name, replacement)
    caught = list(mismatches(spec_port))
    assert any(m.startswith(group) for m in caught), f"no {group} vector catches: {variant} (only {caught[:3]})"


def test_rounding_straight_from_float64_fails_a_vector(monkeypatch):
    def direct(x: float, dtype: str) -> bytes:
        if dtype not in ("float16", "bfloat16"):
            return encode(x, dtype)
        bits = 10 if dtype == "float16" else 7
        m, e = math.frexp(x)
        rounded = math.ldexp(round(math.ldexp(m, bits + 1)), e - bits - 1)  # exact in float32
        return encode(rounded, dtype)

    encode = spec_port.encode
    monkeypatch.setattr(spec_port, "encode", direct)
    assert {"float16", "bfloat16"} <= {m.split()[2] for m in mismatches(spec_port) if m.startswith("double")}


# ---- the engine reproduces every vector: the NumPy reference, the numba kernels it serves, and the HTTP bodies ----


def test_engine_keys_and_blocks():
    for case in V["key_derivation"]:
        assert [f"{k:016x}" for k in philox.stream_key(int(case["seed"]), case["name"])] == case["key"]
    for case in V["stream_blocks"]:
        words = philox.Stream.for_tensor(int(case["seed"]), case["name"]).blocks(int(case["block"]), 1, case["purpose"])
        assert [f"{int(w):016x}" for w in words] == case["output"]


@pytest.mark.parametrize("name", sorted(V["elementary"]))
def test_engine_elementary_functions(name):
    table = V["elementary"][name]
    x = np.array([h(row[0]) for row in table])
    got = detmath.sincos_turns(x) if name == "sincos_turns" else (getattr(detmath, name)(x),)
    assert [[vectors.f64_hex(v) for v in column] for column in got] == [list(col) for col in zip(*table, strict=True)][
        1:
    ]


@needs_jit
def test_kernel_elementary_functions():
    # The kernels' own scalar ports of log, sin/cos and ndtri: what the service computes with.
    from service.engine.random.compiled import detmath as jit

    for x, y in V["elementary"]["log"]:
        assert vectors.f64_hex(jit.log(h(x))) == y, h(x)
    for x, y in V["elementary"]["ndtri"]:
        assert vectors.f64_hex(jit.ndtri(h(x))) == y, h(x)
    for t, s, c in V["elementary"]["sincos_turns"]:
        if 0.0 <= h(t) < 1.0:
            assert [vectors.f64_hex(v) for v in jit.sincos_turns(h(t))] == [s, c], h(t)


def test_engine_variates():
    words = np.array([int(w, 16) for w, _ in V["variates"]["uniform01"]], dtype=np.uint64)
    assert [vectors.f64_hex(u) for u in variates.uniform01(words)] == [u for _, u in V["variates"]["uniform01"]]
    assert [vectors.f64_hex(u) for u in variates.uniform_open(words)] == [u for _, u in V["variates"]["uniform_open"]]
    pairs = np.array([int(w, 16) for row in V["variates"]["normal_pair"] for w in row[:2]], dtype=np.uint64)
    expected = [z for row in V["variates"]["normal_pair"] for z in row[2:]]
    assert [vectors.f64_hex(z) for z in variates.standard_normal(pairs)] == expected


@needs_jit
def test_kernel_variates():
    from service.engine.random.compiled import samplers

    table = V["variates"]["normal_pair"]
    source = np.array([int(w, 16) for row in table for w in row[:2]] + [0, 0], dtype=np.uint64)  # whole blocks
    out = np.empty(2 * len(table), np.float64)
    samplers.normal(np.uint64(0), np.uint64(0), np.zeros(1, np.int64), out.size, 0.0, 1.0, out, source)
    # Normal(0, 1) serves 0.0 + 1.0 * z: z's -0.0 (radius sqrt(-0.0) at u1 = 1) becomes +0.0
    assert [vectors.f64_hex(z) for z in out] == [vectors.f64_hex(0.0 + h(z)) for row in table for z in row[2:]]
    table = V["variates"]["uniform01"]
    source = np.array([int(w, 16) for w, _ in table] + [0] * (-len(table) % 4), dtype=np.uint64)
    out = np.empty(len(table), np.float64)
    samplers.uniform(np.uint64(0), np.uint64(0), np.zeros(1, np.int64), out.size, 0.0, 1.0, out, source)
    assert [vectors.f64_hex(u) for u in out] == [u for _, u in table]


@pytest.mark.parametrize("jit", [False, pytest.param(True, marks=needs_jit)], ids=["reference", "kernels"])
def test_engine_requests(jit):
    with parallel.configured(threads=2, chunk_elements=256, jit=jit):
        for case in V["requests"]:
            for dtype, digest in case["sha256"].items():
                assert hashlib.sha256(vectors.tensor_bytes(case["request"], dtype)).hexdigest() == digest, case
            values = np.frombuffer(vectors.tensor_bytes(case["request"], "float64"), dtype="<f8")
            assert {i: vectors.f64_hex(values[int(i)]) for i in case["float64"]} == case["float64"]


def test_http_bodies(client):
    assert V["bodies"]["service"] == f"initserve {__version__}"  # the metadata names the version: bytes change with it
    for case in V["bodies"]["cases"]:
        response = client.post("/init", json=vectors.sent(case["request"]))
        assert response.status_code == 200, response.text
        assert (len(response.content), hashlib.sha256(response.content).hexdigest()) == (case["length"], case["sha256"])


def test_admission_is_the_services(client):
    # Each request is refused (422) at the field the vectors name, or served: the API's element count and the
    # engine's float64 and dtype checks, on both sides of each boundary.
    for case in V["admission"]:
        response = client.post("/init", json=vectors.sent(case["request"]))
        if case["refused_at"] is None:
            assert response.status_code == 200, (case, response.text)
        else:
            assert response.status_code == 422, (case, response.text)
            assert response.json()["detail"][0]["loc"] == ["body", case["refused_at"]], case


def test_float_text_is_the_services(client):
    # Section 10's digits, ties to even included, as the JSON format writes them (its float32 and float64 writers).
    for dtype, bits, text in V["float_text"]:
        value = np.frombuffer(bytes.fromhex(bits)[::-1], dtype=dtype)[0]
        request = {"shape": [1], "scheme": "constant", "val": float(value), "seed": 0, "dtype": dtype, "format": "json"}
        response = client.post("/init", json=request)
        assert response.status_code == 200, response.text
        assert response.content.endswith(b'"data":[' + text.encode() + b"]}"), (dtype, bits, text)


def test_no_json_number_loses_digits():
    # Seeds, fans, block numbers and element indices reach 2^64 - 1 and 2^63 - 1: decimal strings, since a JSON
    # parser may read a number as a float64 (JavaScript's JSON.parse does); every JSON integer stays below 2^53.
    big = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")
        elif isinstance(node, int) and not isinstance(node, bool) and abs(node) >= 1 << 53:
            big.append(path)

    walk(SPEC, "")
    assert big == []
    for case in [*V["requests"], *V["admission"], *V["bodies"]["cases"], V["double_rounding"], *V["key_derivation"]]:
        request = case.get("request", case)
        assert all(isinstance(request[k], str) for k in ("seed", "fan_in", "fan_out") if k in request), case


def test_double_rounding_witnesses_are_served():
    request = V["double_rounding"]["request"]
    for case in V["double_rounding"]["elements"]:
        index = int(case["index"])
        piece = {**request, "slice": [[index, index + 1]]}
        assert vectors.tensor_bytes(piece, "float64")[::-1].hex() == case["float64"]
        assert vectors.tensor_bytes(piece, case["dtype"])[::-1].hex() == case["right"] != case["wrong_direct"]


DOCUMENT = (vectors.PATH.parents[1] / "reproducibility.md").read_text(encoding="utf-8")


def test_the_document_carries_every_constant():
    # docs/reproducibility.md is self-sufficient: each constant of the JSON is in its section 11, bit for bit.
    constants = SPEC["constants"]
    listed = [c["bits"] for c in constants["float64"].values()]
    listed += [c["bits"] for coefficients in constants["polynomials"].values() for c in coefficients]
    listed += [c["bits"] for c in constants["dtype_max"].values()]
    listed += [f"0x{hw}" for hw in constants["high_word_thresholds"].values()]
    listed += [f"| {value} |" for value in constants["limits"].values()]
    philox = constants["philox4x64_10"]
    listed += [constants["key_domain_hex"], *philox["multipliers"], *philox["key_increments"]]
    missing = [bits for bits in listed if bits.lower() not in DOCUMENT.lower()]
    assert missing == []


def test_every_constant_of_the_document_is_in_the_json():
    # The other way: every float64 encoding section 11 prints (16 hex digits) is one the JSON carries, so a port
    # reading the JSON misses none of them.
    section = DOCUMENT[DOCUMENT.index("## 11. Constants") : DOCUMENT.index("## 12. Test vectors")]
    printed = set(re.findall(r"(?:`|= )([0-9a-f]{16})\b", section))  # `bits` in tables, `c0 = bits` in lists
    constants = SPEC["constants"]
    carried = {c["bits"] for group in ("float64", "dtype_max") for c in constants[group].values()}
    carried |= {c["bits"] for coefficients in constants["polynomials"].values() for c in coefficients}
    assert len(printed) > 100
    assert printed - carried == set()
