"""Response bodies to NumPy arrays: safetensors, .npy, JSON and .npz, as the service writes them.

Arrays are decoded into memory the client owns (writable, so `torch.from_numpy` shares it without a warning).
float16 is NumPy's own; bfloat16 is ml_dtypes'. JSON writes float16 and bfloat16 values as their exact float32
decimals, float32 as the shortest decimal that reads back to it: values are read as float64, rounded to float32,
then to the tensor's dtype (exact at every step for what the service writes).
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ml_dtypes
import numpy as np

from initserve_client.errors import FormatError

if TYPE_CHECKING:
    import torch

SAFETENSORS, NPY, JSON, NPZ = "application/x-safetensors", "application/x-npy", "application/json", "application/zip"
MEDIA_TYPES = {"safetensors": SAFETENSORS, "npy": NPY, "json": JSON, "npz": NPZ}

# safetensors' dtype codes, and the dtype names the service's metadata uses.
_SAFETENSORS_DTYPES = {
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype("<i8"),
}
DTYPES = {
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "int64": np.dtype("<i8"),
}
_NAMES = {dtype: name for name, dtype in DTYPES.items()}


def dtype_name(array: np.ndarray) -> str:
    return _NAMES.get(array.dtype.newbyteorder("<"), str(array.dtype))


def to_torch(array: np.ndarray) -> torch.Tensor:
    """The array as a torch tensor sharing its memory (bfloat16 through its bits: NumPy's has no torch twin)."""
    import torch

    if array.dtype == DTYPES["bfloat16"]:
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


@dataclass(frozen=True)
class Tensor:
    """One tensor: its values, and the metadata the service wrote beside them (scheme, parameters, fans, seed, ...)."""

    name: str
    array: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> str:
        """float32, float64, float16, bfloat16 or int64."""
        return dtype_name(self.array)

    def torch(self) -> torch.Tensor:
        return to_torch(self.array)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return self.array if dtype is None else self.array.astype(dtype)


class Tensors(Mapping[str, np.ndarray]):
    """Many tensors, in the file's order: a mapping name -> array, plus the request-level `metadata` (seed, rng,
    count, numel, framework, draws) and each tensor's own (`tensor_metadata[name]`)."""

    def __init__(
        self, arrays: dict[str, np.ndarray], metadata: dict[str, Any], tensor_metadata: dict[str, dict[str, Any]]
    ) -> None:
        self._arrays = arrays
        self.metadata = metadata
        self.tensor_metadata = tensor_metadata

    def __getitem__(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name!r}: {dtype_name(a)}{list(a.shape)}" for name, a in self._arrays.items())
        return f"Tensors({{{inner}}})"

    def tensor(self, name: str) -> Tensor:
        return Tensor(name, self._arrays[name], self.tensor_metadata.get(name, {}))

    def torch(self) -> dict[str, torch.Tensor]:
        """name -> torch tensor (sharing memory): a state dict for `load_state_dict`."""
        return {name: to_torch(array) for name, array in self._arrays.items()}


# ---- the formats -------------------------------------------------------------------------------------------


def _metadata_value(text: str) -> Any:
    """safetensors metadata holds strings: the service JSON-encodes every value that is not one."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _split(metadata: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]] | None]:
    """(request-level metadata, the per-tensor map) of a many-tensor file; (the tensor's metadata, None) of one."""
    if isinstance(metadata.get("tensors"), dict):
        return {k: v for k, v in metadata.items() if k != "tensors"}, metadata["tensors"]
    return metadata, None


def _tensors(
    arrays: dict[str, np.ndarray], metadata: dict[str, Any], per_tensor: dict[str, dict[str, Any]] | None
) -> Tensors:
    if per_tensor is None:  # one tensor: its metadata is the file's
        return Tensors(arrays, {}, {name: metadata for name in arrays})
    return Tensors(arrays, metadata, per_tensor)


def decode_safetensors(content: bytes) -> Tensors:
    if len(content) < 8:
        raise FormatError(f"a safetensors body has at least 8 bytes, got {len(content)}")
    (length,) = struct.unpack("<Q", content[:8])
    if 8 + length > len(content):
        raise FormatError(f"safetensors header of {length} bytes in a body of {len(content)}: cut short?")
    try:
        header = json.loads(content[8 : 8 + length])
    except ValueError as error:
        raise FormatError(f"safetensors header is not JSON: {error}") from None
    raw = header.pop("__metadata__", None) or {}
    metadata = {key: _metadata_value(value) for key, value in raw.items()}
    buffer = bytearray(content[8 + length :])  # one copy: the arrays are views of memory the client owns
    arrays = {}
    end = 0
    # In data order, which is the request's (the state dict's for a recipe); the header's keys are sorted by name.
    for name, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
        dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
        if dtype is None:
            raise FormatError(f"tensor {name!r}: unknown safetensors dtype {entry['dtype']!r}")
        start, stop = entry["data_offsets"]
        shape = tuple(entry["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        if start != end or stop - start != count * dtype.itemsize:
            raise FormatError(f"tensor {name!r}: data [{start}, {stop}) does not fit {shape} {entry['dtype']}")
        if stop > len(buffer):
            raise FormatError(f"tensor {name!r} ends at byte {stop} of {len(buffer)} bytes of data: cut short?")
        arrays[name] = np.frombuffer(buffer, dtype, count, start).reshape(shape)
        end = stop
    if end != len(buffer):
        raise FormatError(f"safetensors data is {len(buffer)} bytes, the header describes {end}: cut short?")
    top, per_tensor = _split(metadata)
    if per_tensor is None and len(arrays) == 1:
        top = {**top, "name": next(iter(arrays))}  # the key is the name, even one that reads as JSON ("1")
    return _tensors(arrays, top, per_tensor)


def _from_values(values: list[Any], dtype: str, shape: list[int]) -> np.ndarray:
    if dtype not in DTYPES:
        raise FormatError(f"unknown dtype {dtype!r}")
    if dtype in ("int64", "float64"):
        return np.array(values, dtype=DTYPES[dtype]).reshape(shape)
    return np.array(values, dtype=np.float64).astype(np.float32).astype(DTYPES[dtype]).reshape(shape)


def decode_json(content: bytes) -> Tensors:
    try:
        document = json.loads(content)
    except ValueError as error:
        raise FormatError(f"the body is not JSON: {error}") from None
    if "tensors" in document:
        arrays, per_tensor = {}, {}
        for name, entry in document.pop("tensors").items():
            values = entry.pop("data")
            arrays[name] = _from_values(values, entry["dtype"], entry["shape"])
            per_tensor[name] = entry
        return Tensors(arrays, document, per_tensor)
    values = document.pop("data")
    name = document.get("name", "weight")
    return _tensors({name: _from_values(values, document["dtype"], document["shape"])}, document, None)


def decode_npy(content: bytes, metadata: dict[str, Any]) -> Tensors:
    """.npy carries no metadata: `metadata` is what the response headers say (name, seed, rng)."""
    try:
        array = np.load(io.BytesIO(content), allow_pickle=False)
    except ValueError as error:
        raise FormatError(f"not a .npy body: {error}") from None
    return _tensors({metadata["name"]: array}, metadata, None)


def decode_npz(content: bytes) -> Tensors:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            metadata = json.loads(archive.comment) if archive.comment else {}
            comments = {info.filename: info.comment for info in archive.infolist()}
        with np.load(io.BytesIO(content), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, ValueError) as error:
        raise FormatError(f"not an .npz body: {error}") from None
    per_tensor = {name: json.loads(comments[f"{name}.npy"]) for name in arrays if comments.get(f"{name}.npy")}
    return Tensors(arrays, metadata, per_tensor)


def decode(content: bytes, media_type: str, npy_metadata: dict[str, Any]) -> Tensors:
    """A response body by its Content-Type."""
    kind = media_type.split(";", 1)[0].strip().lower()
    if kind == SAFETENSORS:
        return decode_safetensors(content)
    if kind == JSON:
        return decode_json(content)
    if kind == NPY:
        return decode_npy(content, npy_metadata)
    if kind in (NPZ, "application/x-npz"):
        return decode_npz(content)
    raise FormatError(f"unexpected Content-Type {media_type!r}: not a tensor format")
