"""A scalar, pure-Python port of philox-v1 written from docs/reproducibility.md, not from the engine.

It imports nothing of `service` and copies no table: every constant comes from docs/vectors/philox-v1.json, as a port
in another language would take it. Python's float is IEEE 754 binary64 with round-to-nearest-even and no implicit
fused multiply-add, so each line below is one correctly rounded operation, in the document's order.

tests/engine/test_vectors.py checks that it reproduces every vector of the file, and that each plausible wrong
variant (monkeypatched over a function here: `sin_kernel`, `cos_kernel`, `ndtr`, `as241_central`, `rint`,
`round_half`, `sparse_kept`, `truncated_moments`, `fits`) fails at least one.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

VECTORS_PATH = Path(__file__).resolve().parents[2] / "docs" / "vectors" / "philox-v1.json"
SPEC: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
_C = SPEC["constants"]

MASK64 = (1 << 64) - 1


def from_hex(bits: str) -> float:
    return struct.unpack(">d", bytes.fromhex(bits))[0]


def to_hex(x: float) -> str:
    return struct.pack(">d", x).hex()


def bits_of(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def float_of(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


K = {name: from_hex(c["bits"]) for name, c in _C["float64"].items()}
DTYPE_MAX = {name: from_hex(c["bits"]) for name, c in _C["dtype_max"].items()}
MAX_ELEMENTS = int(_C["limits"]["max_elements"])
POLY = {name: [from_hex(c["bits"]) for c in coeffs] for name, coeffs in _C["polynomials"].items()}
HW = {name: int(value, 16) for name, value in _C["high_word_thresholds"].items()}
M0, M1 = (int(m, 16) for m in _C["philox4x64_10"]["multipliers"])
W0, W1 = (int(w, 16) for w in _C["philox4x64_10"]["key_increments"])
ROUNDS = _C["philox4x64_10"]["rounds"]
KEY_DOMAIN = bytes.fromhex(_C["key_domain_hex"])
TWO_M53 = 2.0**-53
TWO_M52 = 2.0**-52


# ---- section 2: key and blocks -----------------------------------------------------------------------------


def key(seed: int, name: str) -> tuple[int, int]:
    digest = hashlib.sha256(KEY_DOMAIN + seed.to_bytes(8, "little") + name.encode("utf-8")).digest()
    return int.from_bytes(digest[0:8], "little"), int.from_bytes(digest[8:16], "little")


def philox_block(k: tuple[int, int], counter: Sequence[int]) -> list[int]:
    c0, c1, c2, c3 = counter
    k0, k1 = k
    for round_ in range(ROUNDS):
        if round_ > 0:
            k0, k1 = (k0 + W0) & MASK64, (k1 + W1) & MASK64
        p0, p1 = M0 * c0, M1 * c2
        hi0, lo0, hi1, lo1 = p0 >> 64, p0 & MASK64, p1 >> 64, p1 & MASK64
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return [c0, c1, c2, c3]


def block(k: tuple[int, int], b: int, purpose: int = 0) -> list[int]:
    return philox_block(k, (b & MASK64, b >> 64, purpose, 0))


# ---- section 4: elementary functions -------------------------------------------------------------------------


def horner(z: float, c: Sequence[float]) -> float:
    p = c[-1]
    for coefficient in reversed(c[:-1]):
        p = coefficient + z * p
    return p


def high_word(x: float) -> int:
    """Bits 62..32 of x's encoding."""
    return (bits_of(x) >> 32) & 0x7FFFFFFF


def clear_low_word(x: float) -> float:
    return float_of(bits_of(x) & 0xFFFFFFFF00000000)


def rint(y: float) -> float:
    """Round to the nearest integer, halves to even."""
    f = math.floor(y)
    d = y - f
    if d > 0.5 or (d == 0.5 and f % 2 == 1):
        f += 1
    return float(f)


def ldexp(y: float, k: int) -> float:
    return math.ldexp(y, k)  # exact, or one rounding for a subnormal result


def log(x: float) -> float:
    if x != x or x < 0.0:
        return math.nan
    if x == 0.0:
        return -math.inf
    if x == math.inf:
        return math.inf
    bits = bits_of(x)
    e = bits >> 52
    if e == 0:  # subnormal: scale by 2^54 (exact)
        bits = bits_of(x * 2.0**54)
        e = (bits >> 52) - 54
    u = float_of((bits & ((1 << 52) - 1)) | (1023 << 52))
    k = e - 1023
    if u >= K["LOG_HALVE_AT"]:
        f = u * 0.5 - 1.0
        k += 1
    else:
        f = u - 1.0
    dk = float(k)
    if u < K["LOG_SMALL_LO"] or u >= K["LOG_SMALL_HI"]:
        r = (f * f) * (0.5 - K["THIRD"] * f)
        return dk * K["LN2_HI"] - ((r - dk * K["LN2_LO"]) - f)
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * horner(w, POLY["LG_EVEN"])
    t2 = z * horner(w, POLY["LG_ODD"])
    r = t2 + t1
    if K["LOG_HFSQ_LO"] <= u < K["LOG_HFSQ_HI"]:
        hfsq = (0.5 * f) * f
        return dk * K["LN2_HI"] - ((hfsq - (s * (hfsq + r) + dk * K["LN2_LO"])) - f)
    return dk * K["LN2_HI"] - ((s * (f - r) - dk * K["LN2_LO"]) - f)


def exp(x: float) -> float:
    if x != x:
        return math.nan
    if x > K["EXP_O_THRESHOLD"]:
        return math.inf
    if x < K["EXP_U_THRESHOLD"]:
        return 0.0
    hw = high_word(x)
    if hw < HW["EXP_TINY"]:
        return 1.0 + x
    t = float(math.trunc(x * K["INVLN2"] + math.copysign(0.5, x))) if hw > HW["EXP_REDUCE"] else 0.0
    hi = x - t * K["LN2_HI"]
    lo = t * K["LN2_LO"]
    r = hi - lo
    tt = r * r
    c = r - tt * horner(tt, POLY["EXP_P"])
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    return ldexp(y, int(t))


def sin_kernel(x: float) -> float:
    s1, s2, s3, s4, s5, s6 = POLY["SIN_S"]
    z = x * x
    w = z * z
    r = (s2 + z * (s3 + z * s4)) + (z * w) * (s5 + z * s6)
    v = z * x
    return x + v * (s1 + z * r)


def cos_kernel(x: float) -> float:
    c1, c2, c3, c4, c5, c6 = POLY["COS_C"]
    z = x * x
    w = z * z
    r = z * (c1 + z * (c2 + z * c3)) + (w * w) * (c4 + z * (c5 + z * c6))
    hz = 0.5 * z
    g = 1.0 - hz
    return g + (((1.0 - g) - hz) + z * r)


def sincos_turns(t: float) -> tuple[float, float]:
    y = t * 4.0
    q = rint(y)
    x = (y - q) * K["PIO2"]
    s, c = sin_kernel(x), cos_kernel(x)
    n = int(q) % 4
    return {0: (s, c), 1: (c, 0.0 - s), 2: (0.0 - s, 0.0 - c), 3: (0.0 - c, s)}[n]


def erfc_core(v: float, tail_exponent: Any) -> float:
    if v != v:
        return math.nan
    neg = math.copysign(1.0, v) < 0.0
    ix = high_word(v)
    if ix >= HW["ERFC_FAR"]:  # |v| >= 28 and the infinities
        return 2.0 if neg else 0.0
    if ix < HW["ERFC_TINY"]:
        return 1.0 - v
    if ix < HW["ERFC_ERF"]:
        z = v * v
        y = horner(z, POLY["ERF_PP"]) / horner(z, POLY["ERF_QQ"])
        if neg or ix < HW["ERFC_QUARTER"]:
            return 1.0 - (v + v * y)
        return 0.5 - (v * y + (v - 0.5))
    if ix < HW["ERFC_ERX"]:
        s = abs(v) - 1.0
        pq = horner(s, POLY["ERF_PA"]) / horner(s, POLY["ERF_QA"])
        return 1.0 + (K["ERX"] + pq) if neg else K["ONE_MINUS_ERX"] - pq
    if neg and ix >= HW["ERFC_NEG_SIX"]:
        return 2.0
    a = abs(v)
    s = 1.0 / (a * a)
    if ix < HW["ERFC_NEAR_TAIL"]:
        ratio = horner(s, POLY["ERFC_RA"]) / horner(s, POLY["ERFC_SA"])
    else:
        ratio = horner(s, POLY["ERFC_RB"]) / horner(s, POLY["ERFC_SB"])
    e_hi, e_lo = tail_exponent()
    r = exp(e_hi) * exp(e_lo + ratio)
    q = r / a
    return 2.0 - q if neg else q


def erfc(x: float) -> float:
    def tail() -> tuple[float, float]:
        a = abs(x)
        zt = clear_low_word(a)
        return (-zt) * zt - 0.5625, (zt - a) * (zt + a)

    return erfc_core(x, tail)


def ndtr(x: float) -> float:
    def tail() -> tuple[float, float]:
        a = abs(x)
        xt = clear_low_word(a)
        return ((-xt) * xt) * 0.5 - 0.5625, ((xt - a) * (xt + a)) * 0.5

    v = 0.0 - x * K["SQRT1_2"]
    return 0.5 * erfc_core(v, tail)


def as241_central(q: float, r: float) -> float:
    return (q * horner(r, POLY["AS241_A"])) / horner(r, POLY["AS241_B"])


def ndtri(p: float) -> float:
    if p != p or p < 0.0 or p > 1.0:
        return math.nan
    if p == 0.0:
        return -math.inf
    if p == 1.0:
        return math.inf
    q = p - 0.5
    if abs(q) <= 0.425:
        return as241_central(q, 0.180625 - q * q)
    r = p if q < 0.0 else 1.0 - p
    r = math.sqrt(0.0 - log(r))
    if r <= 5.0:
        r = r - 1.6
        val = horner(r, POLY["AS241_C"]) / horner(r, POLY["AS241_D"])
    else:
        r = r - 5.0
        val = horner(r, POLY["AS241_E"]) / horner(r, POLY["AS241_F"])
    return -val if q < 0.0 else val


# ---- section 3: words to numbers ---------------------------------------------------------------------------


def uniform01(w: int) -> float:
    return float(w >> 11) * TWO_M53


def uniform_open(w: int) -> float:
    return (float(w >> 12) + 0.5) * TWO_M52


def normal_pair(w0: int, w1: int) -> tuple[float, float]:
    u1 = (float(w0 >> 11) + 1.0) * TWO_M53
    t = float(w1 >> 11) * TWO_M53
    radius = math.sqrt(-2.0 * log(u1))
    s, c = sincos_turns(t)
    return radius * c, radius * s


# ---- section 5: distributions --------------------------------------------------------------------------------


class Stream:
    """Stream words of one tensor, block by block (cached: elements of a block share it)."""

    def __init__(self, k: tuple[int, int]) -> None:
        self.k = k
        self._blocks: dict[tuple[int, int], list[int]] = {}

    def word(self, i: int, purpose: int = 0) -> int:
        b = i // 4
        if (b, purpose) not in self._blocks:
            self._blocks[(b, purpose)] = block(self.k, b, purpose)
        return self._blocks[(b, purpose)][i % 4]


def truncated_setup(mean: float, std: float, a: float, b: float) -> dict[str, Any]:
    alpha = (a - mean) / std
    beta = (b - mean) / std
    mirrored = alpha + beta > 0.0
    lo, hi = (-beta, -alpha) if mirrored else (alpha, beta)  # negation flips the sign bit (-0.0 for 0.0)
    p_lo = ndtr(lo)
    mass = ndtr(hi) - p_lo
    return {"mirrored": mirrored, "lo": lo, "hi": hi, "p_lo": p_lo, "mass": mass}


def element(dist: dict[str, Any], stream: Stream, i: int) -> float:
    """float64 value of flat element i of distribution `dist` (kind and float parameters)."""
    kind = dist["kind"]
    if kind == "uniform":
        return dist["low"] + (dist["high"] - dist["low"]) * uniform01(stream.word(i))
    if kind == "normal":
        k = i // 2
        z0, z1 = normal_pair(stream.word(2 * k), stream.word(2 * k + 1))
        return dist["mean"] + dist["std"] * (z0 if i % 2 == 0 else z1)
    if kind == "truncated_normal":
        mean, std, a, b = dist["mean"], dist["std"], dist["a"], dist["b"]
        setup = dist.get("_setup") or truncated_setup(mean, std, a, b)
        dist["_setup"] = setup
        z = ndtri(setup["p_lo"] + uniform_open(stream.word(i)) * setup["mass"])
        if setup["mirrored"]:
            z = -z
        x = mean + std * z
        x = x if x > a else a
        return x if x < b else b
    if kind == "constant":
        return dist["value"]
    if kind == "eye":
        cols = dist["cols"]
        return dist["gain"] if i // cols == i % cols else 0.0
    if kind == "dirac":
        shape, groups = dist["shape"], dist["groups"]
        index = []
        for dim in reversed(shape):
            index.append(i % dim)
            i //= dim
        o, c, *spatial = reversed(index)
        per_group = shape[0] // groups
        centred = all(s == k // 2 for s, k in zip(spatial, shape[2:], strict=True))
        return 1.0 if centred and c < min(per_group, shape[1]) and o % per_group == c else 0.0
    raise ValueError(f"the port has no element-wise {kind}")


# ---- section 6: schemes ------------------------------------------------------------------------------------


def gain(nonlinearity: str, slope: float) -> float:
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1.0 + slope * slope))
    if nonlinearity == "selu":
        return 3.0 / 4.0
    return 1.0


def fans(shape: Sequence[int], layout: str) -> tuple[int, int]:
    if layout == "torch":
        rf = math.prod(shape[2:])
        return shape[1] * rf, shape[0] * rf
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    rf = math.prod(shape[:-2])
    return shape[-2] * rf, shape[-1] * rf


def variance_scaling(scale: float, mode: str, distribution: str, fan_in: int, fan_out: int) -> dict[str, Any]:
    if mode == "fan_in":
        n = float(fan_in)
    elif mode == "fan_out":
        n = float(fan_out)
    elif mode == "fan_avg":
        n = float(fan_in + fan_out) / 2.0
    else:
        n = math.sqrt(float(fan_in) * float(fan_out))
    variance = scale / max(1.0, n)
    if distribution == "uniform":
        bound = math.sqrt(3.0 * variance)
        return {"kind": "uniform", "low": -bound, "high": bound}
    if distribution == "untruncated_normal":
        return {"kind": "normal", "mean": 0.0, "std": math.sqrt(variance)}
    std = math.sqrt(variance) / K["TRUNCATED_NORMAL_STD_2"]
    return {"kind": "truncated_normal", "mean": 0.0, "std": std, "a": -2.0 * std, "b": 2.0 * std}


KERAS_FIXED = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
}
TORCH_FAMILY = {
    "uniform", "normal", "trunc_normal", "constant", "zeros", "ones", "eye", "dirac", "xavier_uniform",
    "xavier_normal", "kaiming_uniform", "kaiming_normal", "msra", "orthogonal", "sparse", "torch_default",
}  # fmt: skip


def distribution(request: dict[str, Any]) -> dict[str, Any]:
    """The distribution of a request (parameters given in the request, defaults from the vectors' scheme table)."""
    scheme = request["scheme"]
    table = SPEC["schemes"][scheme]["params"]
    p = {name: request.get(name, spec["default"]) for name, spec in table.items()}
    p = {name: float(v) if table[name]["type"] == "number" else v for name, v in p.items()}
    shape = request["shape"]
    layout = request.get("layout") or ("torch" if scheme in TORCH_FAMILY else "keras")

    def fan(which: str) -> int:
        if which in request:
            return int(request[which])
        return fans(shape, layout)[0 if which == "fan_in" else 1]

    def vs(scale: float, mode: str, dist: str) -> dict[str, Any]:
        needs_in = mode != "fan_out"
        needs_out = mode != "fan_in"
        return variance_scaling(scale, mode, dist, fan("fan_in") if needs_in else 0, fan("fan_out") if needs_out else 0)

    if scheme in ("uniform",):
        return {"kind": "uniform", "low": p["a"], "high": p["b"]}
    if scheme == "random_uniform":
        return {"kind": "uniform", "low": p["minval"], "high": p["maxval"]}
    if scheme == "normal":
        return {"kind": "normal", "mean": p["mean"], "std": p["std"]}
    if scheme == "random_normal":
        return {"kind": "normal", "mean": p["mean"], "std": p["stddev"]}
    if scheme == "trunc_normal":
        return {"kind": "truncated_normal", "mean": p["mean"], "std": p["std"], "a": p["a"], "b": p["b"]}
    if scheme == "truncated_normal":
        mean, sd = p["mean"], p["stddev"]
        return {"kind": "truncated_normal", "mean": mean, "std": sd, "a": mean - 2.0 * sd, "b": mean + 2.0 * sd}
    if scheme in ("constant", "zeros", "ones"):
        return {"kind": "constant", "value": {"zeros": 0.0, "ones": 1.0}.get(scheme, p.get("val"))}
    if scheme == "dirac":
        return {"kind": "dirac", "groups": p["groups"], "shape": shape}
    if scheme == "sparse":
        return {"kind": "sparse", "sparsity": p["sparsity"], "std": p["std"], "rows": shape[0], "cols": shape[1]}
    if scheme in ("eye", "identity"):
        return {"kind": "eye", "gain": p.get("gain", 1.0), "rows": shape[0], "cols": shape[1]}
    if scheme in ("xavier_uniform", "xavier_normal"):
        dist = "uniform" if scheme == "xavier_uniform" else "untruncated_normal"
        return vs(p["gain"] * p["gain"], "fan_avg", dist)
    if scheme in ("kaiming_uniform", "kaiming_normal", "msra", "torch_default"):
        if scheme == "torch_default":
            p = {"a": math.sqrt(5.0), "mode": "fan_in", "nonlinearity": "leaky_relu"}
        g = gain(p["nonlinearity"], p["a"])
        return vs(g * g, p["mode"].lower(), "uniform" if scheme.endswith("uniform") or scheme == "torch_default"
                  else "untruncated_normal")  # fmt: skip
    if scheme in KERAS_FIXED:
        return vs(*KERAS_FIXED[scheme])
    if scheme == "variance_scaling":
        return vs(p["scale"], p["mode"].lower(), p["distribution"].lower())
    if scheme == "uniform_unit_scaling":
        explicit = "fan_in" in request
        input_size = float(fan("fan_in")) if len(shape) >= 2 or explicit else 1.0
        bound = math.sqrt(3.0 / max(input_size, 1.0)) * p["factor"]
        return {"kind": "uniform", "low": -abs(bound), "high": abs(bound)}
    raise ValueError(f"the port has no scheme {scheme}")


# ---- sections 1.1 and 9: requests refused ---------------------------------------------------------------------


def sparse_kept(zeros: int, rows: int) -> float:
    return 1.0 - float(zeros) / float(rows)


def truncated_moments(dist: dict[str, Any]) -> tuple[float, float]:
    """Section 9's mean and variance of a truncated normal (section 5.1's set-up done)."""
    setup = truncated_setup(dist["mean"], dist["std"], dist["a"], dist["b"])
    lo, hi, mass = setup["lo"], setup["hi"], setup["mass"]
    pdf_lo = exp(-0.5 * (lo * lo)) / K["SQRT_2PI"]
    pdf_hi = exp(-0.5 * (hi * hi)) / K["SQRT_2PI"]
    shift = (pdf_lo - pdf_hi) / mass
    v = 1.0 + (lo * pdf_lo - hi * pdf_hi) / mass - shift * shift
    m = -shift if setup["mirrored"] else shift
    return dist["mean"] + dist["std"] * m, (dist["std"] * dist["std"]) * (v if v > 0.0 else 0.0)


def fits(largest: float, dtype: str) -> bool:
    return largest <= DTYPE_MAX[dtype]


def refused_at(request: dict[str, Any]) -> str | None:
    """The field a request is refused at (HTTP 422), or None: section 1.1's element count, section 5.1's set-up,
    then section 9 (only the rules the vectors exercise; the port trusts the request's other fields)."""
    shape = request["shape"]
    if math.prod(shape) > MAX_ELEMENTS:
        return "shape"
    dist = distribution(request)
    first = next(iter(SPEC["schemes"][request["scheme"]]["params"]), "scheme")
    kind = dist["kind"]
    if kind == "truncated_normal":
        if not dist["std"] > 0.0:
            return "std"
        if not dist["a"] < dist["b"]:
            return "b"
        if not truncated_setup(dist["mean"], dist["std"], dist["a"], dist["b"])["mass"] > 0.0:
            return "b"
    numbers = [v for k, v in dist.items() if k in ("low", "high", "mean", "std", "a", "b", "value", "gain")]
    if kind == "uniform":
        low, high = dist["low"], dist["high"]
        largest = max(abs(low), abs(high))
        numbers += [low + high, (high - low) * (high - low)]
    elif kind == "normal":
        largest = abs(dist["mean"]) + dist["std"] * K["MAX_NORMAL_RADIUS"]
        numbers += [dist["std"] * dist["std"]]
    elif kind == "truncated_normal":
        largest = max(abs(dist["a"]), abs(dist["b"]))
        numbers += list(truncated_moments(dist))
    elif kind == "constant":
        largest = abs(dist["value"])
    elif kind == "eye":
        largest = abs(dist["gain"])
        numbers += [(dist["gain"] * dist["gain"]) * float(min(dist["rows"], dist["cols"]))]
    elif kind == "sparse":
        zeros = min(math.ceil(dist["sparsity"] * float(dist["rows"])), dist["rows"])
        largest = dist["std"] * K["MAX_NORMAL_RADIUS"]
        numbers += [(sparse_kept(zeros, dist["rows"]) * dist["std"]) * dist["std"]]
    else:
        largest = 1.0
    if not all(math.isfinite(x) for x in [*numbers, largest]):
        return first
    return None if fits(largest, request.get("dtype", "float32")) else "dtype"


# ---- section 7: rounding to the output dtype ----------------------------------------------------------------


def round_half(f32_bits: int) -> int:
    """float16 bits of the float32 value with encoding f32_bits, to nearest, ties to even."""
    return struct.unpack("<H", struct.pack("<e", struct.unpack("<f", struct.pack("<I", f32_bits))[0]))[0]


def round_bfloat16(f32_bits: int) -> int:
    return (f32_bits + 0x7FFF + ((f32_bits >> 16) & 1)) >> 16


def encode(x: float, dtype: str) -> bytes:
    """The little-endian bytes of float64 value x in the output dtype."""
    if dtype == "float64":
        return struct.pack("<d", x)
    f32 = struct.pack("<f", x)  # float64 -> float32, to nearest, ties to even
    if dtype == "float32":
        return f32
    bits = struct.unpack("<I", f32)[0]
    if dtype == "float16":
        return struct.pack("<H", round_half(bits))
    return struct.pack("<H", round_bfloat16(bits))


def region_indices(shape: Sequence[int], bounds: Sequence[Sequence[int]] | None) -> list[int]:
    """Flat row-major indices of the region, in row-major order of the region."""
    if bounds is None:
        return list(range(math.prod(shape)))
    indices = [0]
    for (start, stop), dim in zip(bounds, shape, strict=True):
        indices = [i * dim + j for i in indices for j in range(start, stop)]
    return indices


def tensor_values(request: dict[str, Any]) -> list[float]:
    """float64 values of the request's region (element-wise schemes, eye and constants)."""
    dist = distribution(request)
    stream = Stream(key(int(request["seed"]), request.get("name", "weight")))
    indices = region_indices(request["shape"], request.get("slice"))
    if dist["kind"] == "sparse":
        whole = sparse(dist, stream)
        return [whole[i] for i in indices]
    return [element(dist, stream, i) for i in indices]


def sparse(dist: dict[str, Any], stream: Stream) -> list[float]:
    """The whole [rows, cols] matrix: Normal(0, std), then in each column the ceil(sparsity * rows) rows with the
    smallest mask words (purpose 1, word r * cols + j), ties by row, set to 0."""
    rows, cols = dist["rows"], dist["cols"]
    values = [element({"kind": "normal", "mean": 0.0, "std": dist["std"]}, stream, i) for i in range(rows * cols)]
    zeros = min(math.ceil(dist["sparsity"] * rows), rows)
    for j in range(cols):
        order = sorted(range(rows), key=lambda r: (stream.word(r * cols + j, purpose=1), r))
        for r in order[:zeros]:
            values[r * cols + j] = 0.0
    return values


def tensor_bytes(request: dict[str, Any], dtype: str) -> bytes:
    return b"".join(encode(x, dtype) for x in tensor_values(request))
