"""A canonical safetensors writer: same tensors and metadata, same bytes.

Layout: u64 little-endian header length N, N bytes of JSON header (padded with spaces to a multiple of 8),
then the raw little-endian data of each tensor in header order. We write the header ourselves because the
library's `save()` orders `__metadata__` keys at random (safetensors #584) and mishandles non-contiguous
arrays (#825); keys here are sorted and separators fixed, so identical requests give identical bytes.
`__metadata__` holds the bundle's metadata, each value as a string (JSON-encoded unless it is one).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from service.formats import Bundle, Format, Part, Written, data, metadata_strings

METADATA_KEY = "__metadata__"


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str  # safetensors code: F32, F64, F16, BF16, I64
    shape: tuple[int, ...]
    nbytes: int


def header(tensors: Sequence[TensorEntry], metadata: Mapping[str, str]) -> bytes:
    """Length prefix and JSON header; the data of `tensors` must follow in the same order."""
    entries: dict[str, object] = {METADATA_KEY: dict(metadata)} if metadata else {}
    offset = 0
    for tensor in tensors:
        if tensor.name == METADATA_KEY or tensor.name in entries:
            raise ValueError(f"tensor name {tensor.name!r} is reserved or repeated")
        entries[tensor.name] = {
            "dtype": tensor.dtype,
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + tensor.nbytes],
        }
        offset += tensor.nbytes
    text = json.dumps(entries, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def write(bundle: Bundle, chunk_elements: int) -> Written:
    entries = [TensorEntry(t.name, t.dtype.safetensors, t.shape, t.nbytes) for t in bundle.tensors]
    head = header(entries, metadata_strings(bundle.metadata))

    def parts() -> Iterator[Part]:
        yield head
        for tensor in bundle.tensors:
            yield from data(tensor, chunk_elements)

    return len(head) + sum(e.nbytes for e in entries), parts()


FORMAT = Format(
    name="safetensors",
    media_type="application/x-safetensors",
    aliases=("application/octet-stream",),
    extension="safetensors",
    one=True,
    many=True,
    write=write,
)
