"""The decoders, on bytes the service writes: every format and dtype against a reference reader (the safetensors
library, numpy.load, the raw bits for bfloat16), the metadata read back typed, and broken bodies refused."""

from __future__ import annotations

import json
import struct

import httpx
import ml_dtypes
import numpy as np
import pytest

from initserve_client.decode import DTYPES, _from_values, decode, decode_json, decode_npy, decode_safetensors
from initserve_client.errors import FormatError

safetensors = pytest.importorskip("safetensors")

DTYPE_NAMES = ["float32", "float64", "float16", "bfloat16"]


def _raw(url: str, body: dict) -> httpx.Response:
    response = httpx.post(f"{url}/init", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response


@pytest.fixture
def reference(tmp_path):
    """The safetensors library's reading (safe_open: it reads bfloat16 once ml_dtypes gave NumPy the dtype)."""

    def read(content: bytes) -> dict[str, np.ndarray]:
        path = tmp_path / "reference.safetensors"
        path.write_bytes(content)
        with safetensors.safe_open(path, "np") as f:
            return {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (not a dict)

    return read


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_every_format_gives_the_services_values_bit_for_bit(url, dtype, reference):
    body = {"shape": [33, 65], "scheme": "kaiming_normal", "seed": 2**64 - 1, "dtype": dtype, "name": "w"}
    content = _raw(url, body).content
    expected = reference(content)["w"]
    decoded = decode_safetensors(content)
    assert list(decoded) == ["w"]
    assert decoded["w"].dtype == DTYPES[dtype] and decoded["w"].tobytes() == expected.tobytes()
    as_json = decode_json(_raw(url, {**body, "format": "json"}).content)
    assert as_json["w"].dtype == DTYPES[dtype] and as_json["w"].tobytes() == expected.tobytes()
    if dtype != "bfloat16":  # .npy has no code for it (the service refuses)
        as_npy = decode_npy(_raw(url, {**body, "format": "npy"}).content, {"name": "w"})
        assert as_npy["w"].tobytes() == expected.tobytes() and as_npy["w"].dtype == expected.dtype


def test_metadata_is_read_back_typed(url):
    body = {"shape": [4, 3], "scheme": "xavier_uniform", "seed": 7, "gain": 2.0, "name": "1"}
    for fmt in ("safetensors", "json"):
        response = _raw(url, {**body, "format": fmt})
        tensors = decode(response.content, response.headers["content-type"], {})
        meta = tensors.tensor_metadata["1"]
        assert meta["name"] == "1"  # a name that reads as JSON stays the string it is
        assert meta["seed"] == 7 and meta["shape"] == [4, 3] and meta["params"] == {"gain": 2.0}
        assert meta["scheme"] == "xavier_uniform" and meta["rng"] == "philox-v1" and meta["fan_in"] == 3


def test_many_tensors_keep_the_requests_order_in_every_format(url, reference):
    tensors = {
        "z": {"shape": [3], "scheme": "normal"},
        "a": {"shape": [2, 2], "scheme": "uniform", "dtype": "float64"},
        "steps": {"shape": [], "scheme": "constant", "val": 2**63 - 1, "dtype": "int64"},
        "h": {"shape": [5], "scheme": "normal", "dtype": "bfloat16"},
    }
    content = _raw(url, {"seed": 3, "tensors": tensors}).content
    expected = reference(content)
    for fmt, media in (("safetensors", "application/x-safetensors"), ("json", "application/json")):
        decoded = decode(_raw(url, {"seed": 3, "tensors": tensors, "format": fmt}).content, media, {})
        assert list(decoded) == list(tensors), fmt
        for name, array in expected.items():
            assert decoded[name].dtype == array.dtype and decoded[name].tobytes() == array.tobytes(), (fmt, name)
        assert decoded.metadata["seed"] == 3 and decoded.metadata["count"] == 4
        assert decoded.tensor_metadata["steps"]["dtype"] == "int64"
    assert decoded["steps"][()] == 2**63 - 1  # exact: never through a float
    without_bf16 = {k: v for k, v in tensors.items() if k != "h"}
    npz = decode(_raw(url, {"seed": 3, "tensors": without_bf16, "format": "npz"}).content, "application/zip", {})
    assert list(npz) == list(without_bf16)
    assert all(npz[name].tobytes() == expected[name].tobytes() for name in without_bf16)
    assert npz.metadata["seed"] == 3 and npz.tensor_metadata["a"]["dtype"] == "float64"


def test_json_float32_decimals_read_back_exactly():
    """The service writes float32 as orjson's shortest decimal; read as float64 then rounded to float32 it must
    give the same bits (and float16/bfloat16, written as their float32 values, too): random bit patterns of every
    exponent, subnormals included."""
    orjson = pytest.importorskip("orjson")
    bits = np.random.default_rng(0).integers(0, 2**32, 400_000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    values = values[np.isfinite(values)]
    with np.errstate(over="ignore"):  # beyond float16's range: inf, dropped below
        halves = {"float16": values.astype(np.float16), "bfloat16": values.astype(ml_dtypes.bfloat16)}
    for name, array in {"float32": values, **halves}.items():
        finite = array[np.isfinite(array.astype(np.float32))]
        text = orjson.dumps(finite.astype(np.float32), option=orjson.OPT_SERIALIZE_NUMPY)
        decoded = _from_values(json.loads(text), name, [finite.size])
        assert decoded.tobytes() == finite.tobytes(), name


def test_arrays_are_writable_so_torch_can_share_them(url):
    decoded = decode_safetensors(_raw(url, {"shape": [4], "scheme": "normal", "seed": 1}).content)
    assert decoded["weight"].flags.writeable


def _safetensors(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def test_bfloat16_from_known_bits():
    bits = np.array([0x3F80, 0xC000, 0x3EAB, 0x0001], "<u2")  # 1, -2, 0.333984375, the smallest subnormal
    content = _safetensors({"x": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}, bits.tobytes())
    array = decode_safetensors(content)["x"]
    assert array.dtype == ml_dtypes.bfloat16 and array.shape == (2, 2)
    assert array.astype(np.float32).ravel().tolist()[:3] == [1.0, -2.0, 0.333984375]
    assert array.ravel().view("<u2").tolist() == bits.tolist()


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"\x10\x00", "at least 8 bytes"),
        (struct.pack("<Q", 100) + b"{}", "cut short"),
        (_safetensors({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 12), "cut short"),
        (_safetensors({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}, b"\0" * 12), "does not fit"),
        (_safetensors({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 12), "cut short"),
        (_safetensors({"x": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8), "unknown"),
    ],
)
def test_broken_safetensors_bodies_are_refused(content, words):
    with pytest.raises(FormatError, match=words):
        decode_safetensors(content)


def test_unknown_media_types_are_refused():
    with pytest.raises(FormatError, match="text/html"):
        decode(b"<html>", "text/html; charset=utf-8", {})
