"""Tensor responses: format negotiation, the bytes of each format, caching headers, and delivery at any size.

A response is buffered (and kept in the in-process cache) up to `stream_threshold` bytes; above it the container
header goes first, with Content-Length set (every size is known up front), and the data follows chunk by chunk,
each generated in a worker thread as the client reads, so memory stays bounded whatever the tensor's size.
Both routes give the same bytes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from fastapi import Response

from service.api import metrics, streaming
from service.api.budget import Held, MemoryBudget
from service.api.cache import ResponseCache
from service.engine import parallel
from service.engine.errors import InitError
from service.engine.plan import Plan
from service.engine.region import Region
from service.formats import jsonfmt, npy, safetensors

MEDIA_TYPES = {"safetensors": safetensors.MEDIA_TYPE, "json": jsonfmt.MEDIA_TYPE, "npy": npy.MEDIA_TYPE}
_ACCEPTED = {
    safetensors.MEDIA_TYPE: "safetensors",
    "application/octet-stream": "safetensors",
    jsonfmt.MEDIA_TYPE: "json",
    npy.MEDIA_TYPE: "npy",
}
_EXTENSIONS = {"safetensors": "safetensors", "json": "json", "npy": "npy"}
DEFAULT_FORMAT = "safetensors"
# Seeded tensors never change for one rng id, so any HTTP cache may keep them; drawn seeds are one-offs.
IMMUTABLE = "public, max-age=31536000, immutable"
NO_STORE = "no-store"


class NotAcceptableError(Exception):
    """No format this response comes in is in the Accept header (406, listing `media_types`: format -> type)."""

    media_types: dict[str, str] = MEDIA_TYPES

    def __init__(self, accept: str) -> None:
        super().__init__(accept)
        self.accept = accept


@dataclass(frozen=True)
class Delivery:
    """How responses are delivered in this app: its memory budget, response cache and streaming threshold."""

    budget: MemoryBudget
    cache: ResponseCache
    stream_threshold: int


def negotiate(
    explicit: str | None,
    accept: str | None,
    accepted: dict[str, str] = _ACCEPTED,
    refusal: type[NotAcceptableError] = NotAcceptableError,
) -> str:
    """The `format` field wins; else the Accept header's most preferred type in `accepted` (media type ->
    format); else safetensors. No acceptable type raises `refusal` (406)."""
    if explicit:
        return explicit
    if not accept:
        return DEFAULT_FORMAT
    ranked = []
    for position, item in enumerate(accept.split(",")):
        media, *options = (part.strip() for part in item.split(";"))
        quality = 1.0
        for option in options:
            if option.startswith("q="):
                try:
                    quality = float(option[2:])
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, position, media.lower()))
    for _, _, media in sorted(ranked):
        if media in accepted:
            return accepted[media]
        if media in ("*/*", "application/*"):
            return DEFAULT_FORMAT
    raise refusal(accept)


def as_region(source: Plan | Region) -> Region:
    return source if isinstance(source, Region) else Region(source)


def etag(source: Plan | Region, fmt: str) -> str:
    """Derived from everything that determines the bytes (request, slice, service version, format), so a 304 can
    be answered before anything is generated. Weak for orthogonal, whose bits follow the machine's LAPACK."""
    region = as_region(source)
    digest = hashlib.sha256(
        orjson.dumps({"meta": region.metadata(), "format": fmt}, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()[:32]
    return f'W/"{digest}"' if region.plan.distribution.kind == "orthogonal" else f'"{digest}"'


def safetensors_metadata(meta: dict[str, Any]) -> dict[str, str]:
    """safetensors metadata values are strings: JSON-encode the ones that are not."""
    return {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in meta.items() if v is not None}


def _filename(region: Region, fmt: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", region.plan.request.name)[:100] or "tensor"
    return f"{stem}.{_EXTENSIONS[fmt]}"


def container_header(region: Region, fmt: str) -> bytes:
    """What precedes the data in a binary format; it depends only on sizes and metadata, never on values."""
    if fmt == "npy":
        if region.dtype.npy_descr is None:
            raise InitError(
                "format",
                f"format 'npy' cannot hold {region.dtype.name} (NumPy has no standard code for "
                "it); use safetensors, or another dtype",
            )
        return npy.header(region.dtype.npy_descr, region.shape)
    entry = safetensors.TensorEntry(region.plan.request.name, region.dtype.safetensors, region.shape, region.nbytes)
    return safetensors.header([entry], safetensors_metadata(region.metadata()))


def body(source: Plan | Region, fmt: str) -> bytes | memoryview:
    """The whole response body, buffered. Binary formats are written in place after their header (one copy of
    the values, not three), hence a memoryview: bytes-like for sockets, files and the cache alike."""
    region = as_region(source)
    if fmt == "json":
        return jsonfmt.encode(region.generate(), region.metadata())
    head = container_header(region, fmt)
    buffer = bytearray(len(head) + region.nbytes)
    buffer[: len(head)] = head
    region.fill(np.frombuffer(buffer, dtype=region.dtype.numpy, offset=len(head)))
    return memoryview(buffer)


# Most bytes one element takes as JSON text: float64's shortest round-trip form ("-1.2345678901234567e-300") and
# its comma; float32's is 16 (measured: 12.4 on average for a Kaiming-uniform tensor).
JSON_BYTES_PER_ELEMENT = {8: 26, 4: 16, 2: 16}


def buffered_bytes(region: Region, fmt: str) -> int:
    """What a buffered response holds from generation until its last byte is sent: the body, plus the values
    it is encoded from (JSON), plus the engine's working set (for orthogonal and sparse: the whole matrix)."""
    engine = parallel.config()  # each engine thread works on its own chunk at a time
    working = region.plan.working_bytes(min(region.cost, engine.threads * engine.chunk_elements))
    if fmt == "json":
        return region.numel * (region.dtype.itemsize + JSON_BYTES_PER_ELEMENT[region.dtype.itemsize]) + working
    return region.nbytes + working


# Buffered bodies go out in pieces of this size: uvicorn hands each send whole to its transport and waits for the
# client to drain it only before the next send (httptools_impl/h11_impl `send`: `flow.drain()`), so one send of a
# large body would leave all of it buffered in the server, out of the budget, for as long as the client does not
# read. (Cache hits are not pieced: their bytes are the cache's, which the transport references, not copies.)
SEND_PIECE_BYTES = 256 << 10


class HeldResponse(Response):
    """A buffered response that holds its memory budget until its last piece has been handed to a client that
    reads (or the client has left): with slow clients, bodies waiting in the server outweigh the ones being
    generated."""

    def __init__(self, content: bytes | memoryview, held: Held, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._held = held

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            content = memoryview(self.body)
            last = max(len(content) - 1, 0) // SEND_PIECE_BYTES * SEND_PIECE_BYTES  # where the last piece starts
            for first in range(0, last, SEND_PIECE_BYTES):
                piece = content[first : first + SEND_PIECE_BYTES]
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            # A body of one piece goes as it is: the common small response keeps its one send of plain bytes.
            await send({"type": "http.response.body", "body": content[last:] if last else self.body})
        finally:
            self._held.release()


def headers(source: Plan | Region, fmt: str, seeded: bool = True) -> dict[str, str]:
    region = as_region(source)
    return {
        "ETag": etag(region, fmt),
        "Cache-Control": IMMUTABLE if seeded else NO_STORE,
        "X-Initserve-Seed": str(region.plan.request.seed),
        "X-Initserve-Rng": region.plan.request.rng,
        "Content-Disposition": f'attachment; filename="{_filename(region, fmt)}"',
    }


def if_none_match(header: str | None, tag: str) -> bool:
    if not header:
        return False
    candidates = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in candidates or tag.removeprefix("W/") in candidates


def cached_response(request_key: str, if_none_match_header: str | None, delivery: Delivery) -> Response | None:
    """The answer to a seeded request seen before, from its remembered headers and cached body, without resolving
    its plan again (that costs about as much as the rest of a cache hit); None when not cached."""
    remembered = delivery.cache.head(request_key)
    if remembered is None:
        return None
    head, media_type = remembered
    if if_none_match(if_none_match_header, head["ETag"]):
        return Response(status_code=304, headers=head)
    cached = delivery.cache.get(head["ETag"])
    if cached is None:
        return None
    return Response(cached, media_type=media_type, headers={**head, "X-Initserve-Cache": "hit"})


async def tensor_response(
    source: Plan | Region,
    fmt: str,
    if_none_match_header: str | None,
    delivery: Delivery,
    seeded: bool = True,
    request_key: str | None = None,
) -> Response:
    """304 if the client has it; else from the cache; else generated, buffered or streamed by size. Called on the
    event loop, where it waits for the memory budget; generation runs in a worker thread.
    `request_key` (the request's canonical form) lets `cached_response` answer the same request next time."""
    region = as_region(source)
    head = headers(region, fmt, seeded)
    # A drawn seed makes a new tensor no client can hold yet, whatever it sends (`*` included).
    if seeded and if_none_match(if_none_match_header, head["ETag"]):
        return Response(status_code=304, headers=head)
    media_type = MEDIA_TYPES[fmt]
    # Only buffered responses are ever cached, so a hit needs no size check (nor the container header).
    cacheable = seeded and delivery.cache.enabled
    cached = delivery.cache.get(head["ETag"]) if cacheable else None
    if cached is not None:
        return Response(cached, media_type=media_type, headers={**head, "X-Initserve-Cache": "hit"})
    if fmt != "json":
        prefix = container_header(region, fmt)
        length = len(prefix) + region.nbytes
        if length > delivery.stream_threshold:
            held = await delivery.budget.hold(streaming.working_bytes(region))
            metrics.record_generation(region.plan.scheme.name, region.numel, region.nbytes)
            return streaming.TensorStream(streaming.parts(region, prefix), length, media_type, head, held)
    held = await delivery.budget.hold(buffered_bytes(region, fmt))
    try:
        content = await streaming.run_in_thread(body, region, fmt)
    except BaseException:
        held.release()
        raise
    metrics.record_generation(region.plan.scheme.name, region.numel, region.nbytes)
    if cacheable:
        # One copy per miss (the buffer it replaces is freed at once), so that hits hand the socket plain bytes,
        # as the ceiling does: a memoryview costs uvicorn a copy per send.
        content = bytes(content)
        delivery.cache.put(head["ETag"], content)
        if request_key is not None:
            delivery.cache.remember(request_key, (dict(head), media_type))
        head["X-Initserve-Cache"] = "miss"
    return HeldResponse(content, held, media_type=media_type, headers=head)
