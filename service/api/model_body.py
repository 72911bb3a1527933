"""Whole-model responses: one file holding many tensors, streamed tensor by tensor in bounded memory.

safetensors: `__metadata__` holds the request-level fields plus `tensors`, a JSON map name -> that tensor's
metadata. npz: each member's ZIP comment holds its tensor's metadata, the archive comment the request-level
fields. JSON: the request-level fields plus `tensors`, a map name -> metadata and `data`. The container's sizes
are known before anything is generated, so safetensors and npz carry a Content-Length.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from fastapi import Response

from service.api import metrics, responses, streaming
from service.api.budget import MemoryBudget
from service.api.responses import IMMUTABLE, NO_STORE, NotAcceptableError
from service.engine.bundle import ModelTensor
from service.engine.errors import InitError
from service.formats import jsonfmt, npy, npz, safetensors

MODEL_FORMATS = ("safetensors", "json", "npz")
MEDIA_TYPES = {"safetensors": safetensors.MEDIA_TYPE, "json": jsonfmt.MEDIA_TYPE, "npz": npz.MEDIA_TYPE}
_ACCEPTED = {
    safetensors.MEDIA_TYPE: "safetensors",
    "application/octet-stream": "safetensors",
    jsonfmt.MEDIA_TYPE: "json",
    npz.MEDIA_TYPE: "npz",
    "application/x-npz": "npz",
}
# Fields every tensor of one request shares: written once, at the request level.
REQUEST_LEVEL = ("seed", "rng", "service")
STREAM_CHUNK_ELEMENTS = 1 << 18  # 1 MiB of float32 per chunk
_UNSAFE_MEMBER = re.compile(r"^/|(^|/)\.\.(/|$)|\\")


def _npz_name_problem(name: str, names: set[str]) -> str | None:
    """Why `numpy.load(archive)[name]` would not give back the tensor of that name (None: it would)."""
    if _UNSAFE_MEMBER.search(name):
        return (
            "an absolute path, a '..' segment or a backslash would be a path outside the archive when unzipped; "
            "use safetensors"
        )
    if "\x00" in name:
        return "a ZIP reader (Python's zipfile, so numpy.load) cuts a member's name at a NUL character; use safetensors"
    if name.endswith(".npy") and name.removesuffix(".npy") in names:
        return (
            f"numpy.load reads the key {name!r} as the member of tensor {name.removesuffix('.npy')!r} (its file is "
            f"{name!r}); rename one of them, or use safetensors"
        )
    if len(npz.member_filename(name)) > npz.MAX_NAME:
        return f"a ZIP member's name is at most {npz.MAX_NAME} bytes of UTF-8 (with '.npy'); use safetensors"
    return None


class ModelNotAcceptableError(NotAcceptableError):
    """No format of a many-tensor response in the Accept header (answered 406 by the single-tensor handler)."""

    media_types = MEDIA_TYPES


def negotiate(explicit: str | None, accept: str | None) -> str:
    """The `format` field wins; else the Accept header's most preferred type we produce; else safetensors."""
    if explicit == "npy":
        raise InitError("format", "a .npy holds one tensor; many tensors come as npz, safetensors or json")
    return responses.negotiate(explicit, accept, _ACCEPTED, ModelNotAcceptableError)


@dataclass(frozen=True)
class ModelBody:
    """A model response before any value is generated: its tensors, request-level fields and format."""

    tensors: Sequence[ModelTensor]
    request_meta: dict[str, Any]
    fmt: str

    def tensor_meta(self, tensor: ModelTensor) -> dict[str, Any]:
        return {k: v for k, v in tensor.metadata().items() if k not in (*REQUEST_LEVEL, "name")}

    def metadata(self) -> dict[str, Any]:
        return {
            **self.request_meta,
            "count": len(self.tensors),
            "numel": sum(t.numel for t in self.tensors),
            "tensors": {t.name: self.tensor_meta(t) for t in self.tensors},
        }

    def etag(self) -> str:
        """From everything that determines the bytes, so a 304 needs no generation; weak if any tensor is
        orthogonal (LAPACK: equal across machines only to rounding error)."""
        text = orjson.dumps({"meta": self.metadata(), "format": self.fmt}, option=orjson.OPT_SORT_KEYS)
        digest = hashlib.sha256(text).hexdigest()[:32]
        return f'W/"{digest}"' if any(not t.machine_exact for t in self.tensors) else f'"{digest}"'

    def check(self) -> None:
        if self.fmt == "npz":
            names = {t.name for t in self.tensors}
            for tensor in self.tensors:
                if (problem := _npz_name_problem(tensor.name, names)) is not None:
                    raise InitError("format", f"format 'npz' cannot name a member {tensor.name!r}: {problem}")
                if tensor.npy_descr is None:
                    raise InitError(
                        "format",
                        f"format 'npz' cannot hold {tensor.name!r} as {tensor.dtype_name} (NumPy has no standard "
                        "code for it); use safetensors, or another dtype",
                    )

    # ---- the formats ----

    def _data(self, tensor: ModelTensor) -> Iterator[bytes]:
        for chunk in tensor.chunks(STREAM_CHUNK_ELEMENTS):
            yield chunk.tobytes()

    def _safetensors(self) -> tuple[Iterator[bytes], int]:
        entries = [safetensors.TensorEntry(t.name, t.safetensors_dtype, t.shape, t.nbytes) for t in self.tensors]
        meta = self.metadata()
        strings = {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in meta.items() if v is not None}
        head = safetensors.header(entries, strings)

        def chunks() -> Iterator[bytes]:
            yield head
            for tensor in self.tensors:
                yield from self._data(tensor)

        return chunks(), len(head) + sum(e.nbytes for e in entries)

    def _npz(self) -> tuple[Iterator[bytes], int]:
        members = [
            npz.Member(
                t.name,
                npy.header(t.npy_descr or "", t.shape),
                t.nbytes,
                orjson.dumps(self.tensor_meta(t), option=orjson.OPT_SORT_KEYS),
            )
            for t in self.tensors
        ]
        top = {k: v for k, v in self.metadata().items() if k != "tensors"}
        comment = orjson.dumps(top, option=orjson.OPT_SORT_KEYS)
        try:
            length = npz.content_length(members, comment)
            if length > npz.MAX_BYTES or any(len(m.comment) > npz.MAX_COMMENT for m in members):
                raise ValueError("too large")
        except ValueError:
            raise InitError("format", "an npz response is limited to 4 GiB; use safetensors") from None
        return npz.stream(members, (self._data(t) for t in self.tensors), comment), length

    def _json(self) -> Iterator[bytes]:
        meta = self.metadata()
        tensors = meta.pop("tensors")
        yield orjson.dumps(meta)[:-1] + b',"tensors":{'
        for index, tensor in enumerate(self.tensors):
            head = orjson.dumps(tensors[tensor.name])[:-1]
            yield (b"," if index else b"") + orjson.dumps(tensor.name) + b":" + head + b',"data":['
            for position, chunk in enumerate(tensor.chunks(STREAM_CHUNK_ELEMENTS)):
                if chunk.dtype not in (np.float32, np.float64, np.int64):
                    chunk = chunk.astype(np.float32)  # float16 and bfloat16 values are exact in float32
                text = orjson.dumps(chunk, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
                yield (b"," if position else b"") + text
            yield b"]}"
        yield b"}}"

    def stream(self) -> tuple[Iterator[bytes], int | None]:
        """The bytes as they are generated, and their length when known up front (not for JSON)."""
        self.check()
        if self.fmt == "safetensors":
            chunks, length = self._safetensors()
        elif self.fmt == "npz":
            chunks, length = self._npz()
        else:
            chunks, length = self._json(), None
        return _coalesced(chunks, 4 * STREAM_CHUNK_ELEMENTS), length

    def bytes(self) -> bytes:
        chunks, _ = self.stream()
        return b"".join(chunks)


def _coalesced(parts: Iterator[bytes], size: int) -> Iterator[bytes]:
    """The first part (the container's header: nothing generated yet), then consecutive parts joined until they
    reach `size` bytes: every part streamed costs a thread hop, so a model of 4096 one-element tensors must not be
    thousands of hops (a part of `size` or more passes through uncopied)."""
    yield from itertools.islice(parts, 1)
    pending: list[bytes] = []
    held = 0
    for part in parts:
        pending.append(part)
        held += len(part)
        if held >= size:
            yield b"".join(pending)
            pending, held = [], 0
    if pending:
        yield b"".join(pending)


def _filename(fmt: str) -> str:
    return f"model.{re.sub(r'[^a-z]', '', fmt)}"


def headers(body: ModelBody) -> dict[str, str]:
    return {
        "ETag": body.etag(),
        "X-Initserve-Seed": str(body.request_meta["seed"]),
        "X-Initserve-Rng": str(body.request_meta["rng"]),
        "Content-Disposition": f'attachment; filename="{_filename(body.fmt)}"',
    }


async def model_response(
    body: ModelBody, if_none_match: str | None, budget: MemoryBudget, seeded: bool = True
) -> Response:
    """304 when the ETag matches; else the file, streamed tensor by tensor. Cacheable as single tensors are:
    immutable when seeded, never stored when the seed was drawn. The memory budget (the largest tensor's working
    set) is taken before the response starts, so a busy server answers 503, not a cut 200, and it is held until
    the stream ends or the client leaves."""
    head = {**headers(body), "Cache-Control": IMMUTABLE if seeded else NO_STORE}
    if seeded and responses.if_none_match(if_none_match, head["ETag"]):  # a drawn seed: new, whatever is held
        return Response(status_code=304, headers=head)
    chunks, length = body.stream()
    held = await budget.hold(max(t.working_bytes(STREAM_CHUNK_ELEMENTS) for t in body.tensors))
    for tensor in body.tensors:
        metrics.record_generation(tensor.scheme_name, tensor.numel, tensor.nbytes)
    return streaming.TensorStream(chunks, length, MEDIA_TYPES[body.fmt], head, held)
