"""JSON: the metadata fields and `data`, the flat row-major values (many tensors: `tensors`, a map name -> those).

Values are written with the shortest decimal that reads back to the same value in the tensor's dtype (orjson's
float32 and float64 writers); float16 and bfloat16 values are exact in float32 and written as such, int64 as
integers. The length is not known before the values are, so a many-tensor body goes chunked.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import numpy as np
import orjson
from numpy.typing import NDArray

from service.formats import Bundle, Format, Part, Written

# Most bytes one element takes as JSON text: float64's shortest round-trip form ("-1.2345678901234567e-300") and
# its comma; float32's is 16 (measured: 12.4 on average for a Kaiming-uniform tensor); int64's is 21.
MAX_BYTES_PER_ELEMENT = {8: 26, 4: 16, 2: 16}
_NATIVE = (np.float32, np.float64, np.int64)


def _native(chunk: NDArray) -> NDArray:
    return chunk if chunk.dtype in _NATIVE else chunk.astype(np.float32)


def _values(chunks: Iterable[NDArray]) -> Iterator[Part]:
    """`[v0,v1,...]`, chunk by chunk."""
    yield b"["
    for position, chunk in enumerate(chunks):
        if position:
            yield b","
        yield memoryview(orjson.dumps(_native(chunk), option=orjson.OPT_SERIALIZE_NUMPY))[1:-1]  # no brackets
    yield b"]"


def write(bundle: Bundle, chunk_elements: int) -> Written:
    def single() -> Iterator[Part]:
        (tensor,) = bundle.tensors
        chunks = tensor.chunks(chunk_elements)
        first = next(chunks)
        second = next(chunks, None)
        if second is None:  # one chunk: the whole document in one piece, as a buffered body needs it
            yield orjson.dumps({**bundle.metadata, "data": _native(first)}, option=orjson.OPT_SERIALIZE_NUMPY)
            return
        yield orjson.dumps(bundle.metadata)[:-1] + b',"data":'
        yield from _values(itertools.chain((first, second), chunks))
        yield b"}"

    def many() -> Iterator[Part]:
        yield orjson.dumps(bundle.top_level())[:-1] + b',"tensors":{'
        for index, tensor in enumerate(bundle.tensors):
            head = orjson.dumps(bundle.tensor_metadata(tensor))[:-1]
            yield (b"," if index else b"") + orjson.dumps(tensor.name) + b":" + head + b',"data":'
            yield from _values(tensor.chunks(chunk_elements))
            yield b"}"
        yield b"}}"

    return None, single() if bundle.single else many()


FORMAT = Format(
    name="json",
    media_type="application/json",
    extension="json",
    one=True,
    many=True,
    write=write,
    max_bytes_per_element=MAX_BYTES_PER_ELEMENT,
    openapi_schema={"type": "object", "description": "metadata fields and `data`, the flat row-major values"},
)
