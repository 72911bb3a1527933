"""Delivery of tensors at any size, one pipeline for one tensor and for many: a single tensor is a bundle of one.

A request is resolved to a `Bundle` of tensor sources (a region of one tensor, the tensors of a `tensors` or
`model` request, ...) and a format of the registry (service/formats), negotiated once. Its ETag and headers are
derived from the bundle's metadata before anything is generated, so a 304 or a cache hit costs no generation.
A body up to `stream_threshold` bytes is buffered (and kept in the in-process cache when seeded); above it, or of
unknown length with many tensors (JSON), it is streamed: the format's header first (with Content-Length when the
length is known up front), then the data chunk by chunk, each generated in a worker thread as the client reads,
so memory stays bounded whatever the size. Both routes give the same bytes. The memory budget (admission.py) is
taken before the response starts, so a busy server answers 503, not a cut 200, and held until the last byte is
handed over or the client has left.

Work in worker threads goes through `run_in_thread`: when the request is abandoned (the client left, the deadline
passed) its engine work is cancelled (service.engine.cancel) and whatever it holds is released only once its thread
has stopped, so abandoned work neither keeps running nor runs outside the memory budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread
import numpy as np
import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from service.api import admission, metrics
from service.api.budget import Held, MemoryBudget
from service.api.cache import Head, ResponseCache
from service.engine import cancel
from service.engine.errors import TooLargeError
from service.formats import DEFAULT, Bundle, Format, Part, Tensor, holding

# Elements per streamed chunk: 1 MiB of bfloat16, 2 of float32. A stream's working set (the chunk and the
# engine's per-thread intermediates) stays a few MiB, and the per-chunk costs (a generator step, a send through
# the middlewares, a fresh output array) are paid once a MiB or more: a 2.2 GB bfloat16 checkpoint is 2,100 sends,
# not 4,200. (The server's CPU seconds for it, 7.3-8.0 before this and the changes of service/malloc.py and
# distributions._float32_scratch, 6.7-8.7 after, vary more from run to run on the benchmark's VM than between them.)
STREAM_CHUNK_ELEMENTS = 1 << 19
# A stream's worker thread returns parts in groups of at least this many bytes: each return is a hop between the
# thread and the event loop, which waits for the GIL at every one.
SEND_GROUP_BYTES = 4 << 20
# A stream holds, besides the working set of the chunk being generated, the group being sent meanwhile: at most
# the group size plus one part (the coalescing size, `coalesced`: 4 bytes per chunk element, plus a float64 chunk).
PART_IN_FLIGHT_BYTES = SEND_GROUP_BYTES + 12 * STREAM_CHUNK_ELEMENTS
# Buffered bodies go out in pieces of this size: uvicorn hands each send whole to its transport and waits for the
# client to drain it only before the next send (httptools_impl/h11_impl `send`: `flow.drain()`), so one send of a
# large body would leave all of it buffered in the server, out of the budget, for as long as the client does not
# read. (Cache hits are not pieced: their bytes are the cache's, which the transport references, not copies.)
SEND_PIECE_BYTES = 256 << 10
# Seeded tensors never change for one rng id, so any HTTP cache may keep them; drawn seeds are one-offs.
IMMUTABLE = "public, max-age=31536000, immutable"
NO_STORE = "no-store"


class TensorSource(Tensor, Protocol):
    """One tensor of a response, generated on demand: a region of a planned tensor, a tensor of a bundle."""

    def metadata(self) -> dict[str, Any]:
        """What was generated and how (JSON-native values)."""
        ...

    def working_bytes(self, chunk_elements: int) -> int:
        """Memory `chunks(chunk_elements)` holds at once."""
        ...

    @property
    def cost(self) -> int:
        """Work to generate it, in elements (admission sorts requests into small and heavy by it)."""
        ...

    @property
    def machine_exact(self) -> bool:
        """Bit-identical on every machine (False: to rounding error, e.g. LAPACK's orthogonal)."""
        ...


# Fields every tensor of one request shares: written once, at the request level, in a many-tensor file.
REQUEST_LEVEL = ("seed", "rng", "service")


def single(source: TensorSource) -> Bundle:
    return Bundle((source,), source.metadata(), single=True)


def many(sources: list[TensorSource], request_meta: dict[str, Any]) -> Bundle:
    """The request-level fields, the count and size, and `tensors`: each one's metadata without them."""
    tensors = {s.name: {k: v for k, v in s.metadata().items() if k not in (*REQUEST_LEVEL, "name")} for s in sources}
    meta = {**request_meta, "count": len(sources), "numel": sum(math.prod(s.shape) for s in sources)}
    return Bundle(tuple(sources), {**meta, "tensors": tensors}, single=False)


class NotAcceptableError(Exception):
    """No format this response comes in is in the Accept header (406, listing `media_types`: format -> type)."""

    def __init__(self, accept: str, media_types: dict[str, str]) -> None:
        super().__init__(accept)
        self.accept = accept
        self.media_types = media_types


def negotiate(explicit: str | None, accept: str | None, one: bool) -> Format:
    """The `format` field wins; else the Accept header's most preferred type of a format that holds the response
    (one tensor or many); else safetensors. No acceptable type raises NotAcceptableError (406)."""
    formats = holding(one)
    if explicit:
        return formats[explicit]
    if not accept:
        return formats[DEFAULT]
    accepted = {media: f for f in formats.values() for media in (f.media_type, *f.aliases)}
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
            return formats[DEFAULT]
    raise NotAcceptableError(accept, {name: f.media_type for name, f in formats.items()})


def etag(bundle: Bundle, fmt: Format) -> str:
    """Derived from everything that determines the bytes (request, slice, service version, format), so a 304 can
    be answered before anything is generated. Weak when a tensor's bits are equal across machines only to
    rounding error."""
    text = orjson.dumps({"meta": bundle.metadata, "format": fmt.name}, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(text).hexdigest()[:32]
    exact = all(source.machine_exact for source in bundle.tensors)  # type: ignore[attr-defined]
    return f'"{digest}"' if exact else f'W/"{digest}"'


def headers(bundle: Bundle, fmt: Format, seeded: bool) -> dict[str, str]:
    stem = (re.sub(r"[^A-Za-z0-9._-]", "_", bundle.tensors[0].name)[:100] or "tensor") if bundle.single else "model"
    return {
        "ETag": etag(bundle, fmt),
        "Cache-Control": IMMUTABLE if seeded else NO_STORE,
        "X-Initserve-Seed": str(bundle.metadata["seed"]),
        "X-Initserve-Rng": str(bundle.metadata["rng"]),
        "Content-Disposition": f'attachment; filename="{stem}.{fmt.extension}"',
    }


def if_none_match(header: str | None, tag: str) -> bool:
    if not header:
        return False
    candidates = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in candidates or tag.removeprefix("W/") in candidates


def buffered_body(bundle: Bundle, fmt: Format) -> bytes | memoryview:
    """The whole body in memory. Parts of a known length are written in place after the header (one copy of the
    values), hence a memoryview: bytes-like for sockets, files and the cache alike."""
    length, parts = fmt.write(bundle, admission.fill_elements())
    if length is None:
        first = next(parts)
        if (second := next(parts, None)) is None:
            return first  # a whole document in one piece (JSON of one chunk): not copied
        grown = bytearray(first)
        for part in itertools.chain((second,), parts):
            grown += part
        return memoryview(grown)
    buffer = np.empty(length, dtype=np.uint8)
    filled = 0
    for part in parts:
        raw = part if isinstance(part, np.ndarray) else np.frombuffer(part, dtype=np.uint8)
        buffer[filled : filled + raw.size] = raw
        filled += raw.size
    return memoryview(buffer)


def streamed_body(bundle: Bundle, fmt: Format) -> tuple[int | None, Iterator[bytes | memoryview]]:
    """The body's length if known up front, and its parts as bytes, each generated when it is asked for."""
    length, parts = fmt.write(bundle, STREAM_CHUNK_ELEMENTS)
    return length, coalesced(parts, 4 * STREAM_CHUNK_ELEMENTS)


@dataclass(frozen=True)
class Delivery:
    """How responses are delivered in this app: its memory budget, response cache and streaming threshold."""

    budget: MemoryBudget
    cache: ResponseCache
    stream_threshold: int
    lanes: admission.Lanes

    def cached(self, request_key: str, if_none_match_header: str | None) -> Response | None:
        """The answer to a seeded request seen before, from its remembered head and cached body, without resolving
        it again (that costs about as much as the rest of a cache hit); None when not cached."""
        head = self.cache.head(request_key)
        if head is None:
            return None
        if if_none_match(if_none_match_header, head.etag):
            return Response(status_code=304, headers=head.headers)
        body = self.cache.get(head.etag)
        if body is None:
            return None
        return Response(body, media_type=head.media_type, headers={**head.headers, "X-Initserve-Cache": "hit"})

    def head(self, bundle: Bundle, fmt: Format, if_none_match_header: str | None, seeded: bool) -> Response:
        """What `respond` would answer to a HEAD request, from the bundle's plan, without generating it: 304 when
        the client holds it, else 200 with the body's length when the format knows it up front (not JSON's, unless
        its body is in the cache)."""
        head = headers(bundle, fmt, seeded)
        if seeded and if_none_match(if_none_match_header, head["ETag"]):
            return Response(status_code=304, headers=head)
        fmt.refuse_unholdable(bundle)
        length, _ = fmt.write(bundle, STREAM_CHUNK_ELEMENTS)  # a lazy writer: its parts are never asked for
        if length is None and seeded and self.cache.enabled and (cached := self.cache.get(head["ETag"])) is not None:
            length = len(cached)
        response = Response(media_type=fmt.media_type, headers=head)
        response.raw_headers = [(k, v) for k, v in response.raw_headers if k != b"content-length"]
        if length is not None:
            response.raw_headers.append((b"content-length", str(length).encode("latin-1")))
        return response

    async def respond(
        self, bundle: Bundle, fmt: Format, if_none_match_header: str | None, seeded: bool, request_key: str | None
    ) -> Response:
        """304 if the client has it; else from the cache; else generated, buffered or streamed by size. Called on
        the event loop, where it waits for the memory budget; generation runs in worker threads. `request_key`
        (the request's canonical form) lets `cached` answer the same request next time."""
        head = headers(bundle, fmt, seeded)
        # A drawn seed makes a new tensor no client can hold yet, whatever it sends (`*` included).
        if seeded and if_none_match(if_none_match_header, head["ETag"]):
            return Response(status_code=304, headers=head)
        fmt.refuse_unholdable(bundle)
        cacheable = seeded and self.cache.enabled
        # Only buffered responses are ever cached, so a hit needs no size check.
        if cacheable and (cached := self.cache.get(head["ETag"])) is not None:
            return Response(cached, media_type=fmt.media_type, headers={**head, "X-Initserve-Cache": "hit"})
        threads = self.lanes.job(admission.work(bundle))

        def prepared() -> tuple[int | None, Iterator[bytes | memoryview], bool, int]:
            """The body's length and parts, whether it streams, and the budget it holds."""
            length, parts = streamed_body(bundle, fmt)
            # A body of unknown length (JSON) is buffered when it is one tensor, which INITSERVE_MAX_JSON_ELEMENTS
            # bounds, so that it is cached as the others are; many tensors' JSON streams.
            streams = (length is None and not bundle.single) or (length is not None and length > self.stream_threshold)
            if streams:
                return length, parts, streams, stream_bytes(admission.streamed_bytes(bundle, STREAM_CHUNK_ELEMENTS))
            return length, parts, streams, admission.buffered_bytes(bundle, fmt)

        # For many tensors that is Python work per tensor (the format's header, each one's size): tens of ms for a
        # model of thousands, off the event loop.
        length, parts, streams, needed = prepared() if bundle.single else await run_in_thread(prepared)
        try:
            held = await self.budget.hold(needed, streamed=streams)
        except TooLargeError as error:
            plans = (tensor.plan for tensor in bundle.tensors)  # type: ignore[attr-defined]
            raise admission.advised(error, admission.whole_matrix_schemes(plans)) from None
        if streams:
            _record(bundle)
            return TensorStream(parts, length, fmt.media_type, head, held, threads)
        try:
            content = await run_in_thread(buffered_body, bundle, fmt, limiter=threads)
        except BaseException:
            held.release()
            raise
        _record(bundle)
        if cacheable:
            # One copy per miss (the buffer it replaces is freed at once), so that hits hand the socket plain
            # bytes, as the ceiling does: a memoryview costs uvicorn a copy per send.
            content = bytes(content)
            self.cache.put(head["ETag"], content)
            if request_key is not None:
                self.cache.remember(request_key, Head(head, fmt.media_type))
            head["X-Initserve-Cache"] = "miss"
        return HeldResponse(content, held, media_type=fmt.media_type, headers=head)


def _record(bundle: Bundle) -> None:
    """Generation metrics, one update per scheme (a model has thousands of tensors), from the bundle's metadata."""
    metas = [bundle.metadata] if bundle.single else bundle.metadata["tensors"].values()
    totals: dict[str, list[int]] = {}
    for source, meta in zip(bundle.tensors, metas, strict=True):
        total = totals.setdefault(meta["scheme"], [0, 0])
        total[0] += math.prod(source.shape)
        total[1] += source.nbytes
    for scheme, (elements, nbytes) in totals.items():
        metrics.record_generation(scheme, elements, nbytes)


def stream_bytes(working: int) -> int:
    """The budget a TensorStream holds, given the working set of one chunk of the largest tensor it generates."""
    return working + PART_IN_FLIGHT_BYTES


def coalesced(parts: Iterator[Part], size: int) -> Iterator[bytes | memoryview]:
    """The first part (the format's header: nothing generated yet), then consecutive parts joined into bytes until
    they reach `size`: every part streamed costs a send, so a model of 4096 one-element tensors must not be
    thousands of sends. A tensor's chunk of `size / 4` or more passes through uncopied, as a memoryview of its array
    (a fresh array that nothing writes to again: `formats.data`): the transport sends from it, and a copy to bytes
    made a 268 MB fetch (kaiming_normal [16384, 4096]) 1.2x slower: 1.42 s against 1.17 s, same run."""
    pending: list[Part] = []
    held = 0
    for index, part in enumerate(parts):
        if index == 0:
            yield bytes(part)
            continue
        if isinstance(part, np.ndarray) and part.nbytes >= size // 4:
            # Large enough to send alone (a bfloat16 chunk is half the size): joining it would copy every byte.
            if pending:
                yield b"".join(pending)
                pending, held = [], 0
            yield memoryview(part)
            continue
        pending.append(part)
        held += len(part)
        if held >= size:
            yield b"".join(pending)
            pending, held = [], 0
    if pending:
        yield b"".join(pending)


T = TypeVar("T")


async def run_in_thread(func: Callable[..., T], *args: object, limiter: anyio.CapacityLimiter | None = None) -> T:
    """`func(*args)` in a worker thread (of `limiter`'s, else of the server's shared ones). If the awaiting task is
    cancelled, so is the work (the context's cancel token: the engine stops at its next chunk), and the
    cancellation is raised only once the thread has ended: a thread cannot be killed, and what its caller holds
    (a memory budget, a slot) must outlive it."""
    work = asyncio.ensure_future(anyio.to_thread.run_sync(func, *args, limiter=limiter))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        token = cancel.current()
        if token is not None:
            token.cancel()
        while not work.done():
            with contextlib.suppress(asyncio.CancelledError):  # cancelled again: the thread still runs
                await asyncio.wait({work})
        if not work.cancelled():
            work.exception()  # retrieved: how the work ended (often WorkCancelledError) is not this task's error
        raise


class HeldResponse(Response):
    """A buffered response that holds its memory budget until its last piece has been handed to a client that
    reads (or the client has left): with slow clients, bodies waiting in the server outweigh the ones being
    generated."""

    def __init__(self, content: bytes | memoryview, held: Held, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._held = held

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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


class TensorStream(Response):
    """A streamed response. `held` (its memory budget) is released when the response ends, even if the client
    left mid-way, and never while a chunk is still being generated. A client that leaves cancels the request
    (middleware/timeout.py), which ends this loop at its next await."""

    def __init__(
        self,
        parts: Iterator[bytes | memoryview],
        length: int | None,
        media_type: str,
        headers: dict[str, str],
        held: Held,
        threads: anyio.CapacityLimiter | None,
    ) -> None:
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        # Known up front for the binary formats; JSON goes chunked.
        self.init_headers({**headers, **({"content-length": str(length)} if length is not None else {})})
        self._parts = parts
        self._held = held
        self._threads = threads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The next part is generated while this one is sent: one after the other, a 2.2 GB checkpoint spent 45% of
        # its time with the engine idle, waiting for the socket (bench/checkpoint.py). The budget `held` covers
        # both (stream_bytes).
        upcoming: asyncio.Future[list[bytes | memoryview]] | None = None
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            upcoming = self._next()
            while group := await upcoming:
                upcoming = self._next()
                for part in group:
                    await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client left, as a server of ASGI spec 2.4 says it: nothing more to send
            pass
        finally:
            if upcoming is not None:
                upcoming.cancel()  # stops the engine at its next chunk (run_in_thread), and ends with its thread
                while not upcoming.done():
                    with contextlib.suppress(asyncio.CancelledError):  # cancelled again: the thread still runs
                        await asyncio.wait({upcoming})
                if not upcoming.cancelled():
                    upcoming.exception()  # retrieved: the part nobody will send, or how its generation ended
            close = getattr(self._parts, "close", None)
            if close is not None:
                close()  # no thread runs it now: run_in_thread returns only once its thread has ended
            self._held.release()

    def _next(self) -> asyncio.Future[list[bytes | memoryview]]:
        return asyncio.ensure_future(run_in_thread(_group, self._parts, limiter=self._threads))


def _group(parts: Iterator[bytes | memoryview]) -> list[bytes | memoryview]:
    """The next parts, until they hold SEND_GROUP_BYTES or the stream ends (empty: it has ended)."""
    group: list[bytes | memoryview] = []
    held = 0
    while held < SEND_GROUP_BYTES and (part := next(parts, None)) is not None:
        group.append(part)
        held += part.nbytes if isinstance(part, memoryview) else len(part)
    return group


def json_document(http: Any, content: Callable[[], Any], tag: str | None = None, fresh: bool = False) -> Response:
    """`content()` as a JSON document (/stats, /schemes, /gain) with an ETag: `tag` when it is known before the
    work (a 304 then skips the work), else the hash of the body. `fresh` content (from a drawn seed) is never
    answered 304."""
    wanted = None if fresh else http.headers.get("if-none-match")
    if tag is not None and if_none_match(wanted, tag):
        return Response(status_code=304, headers={"ETag": tag})
    body = orjson.dumps(content(), option=orjson.OPT_SERIALIZE_NUMPY)
    tag = tag or document_tag(body)
    if if_none_match(wanted, tag):
        return Response(status_code=304, headers={"ETag": tag})
    return Response(body, media_type="application/json", headers={"ETag": tag})


def document_tag(data: bytes) -> str:
    return f'"{hashlib.sha256(data).hexdigest()[:32]}"'
