"""A streamed tensor response: the container header first with Content-Length set (every size is known up front),
then the data chunk by chunk, each generated in a worker thread when the previous one has been sent, so a
response of any size costs the server one chunk's working memory (bench/stream_memory.py measures it).

Work in worker threads goes through `run_in_thread`: when the request is abandoned (the client left, the deadline
passed) its engine work is cancelled (service.engine.cancel) and whatever it holds is released only once its thread
has stopped, so abandoned work neither keeps running nor runs outside the memory budget."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from service.api.budget import Held
from service.engine import cancel
from service.engine.region import Region

# Elements per streamed chunk: 1 MiB of float32. Small enough that a stream's working set (the chunk and its
# float64 intermediates) stays a few MiB, large enough that the thread hop per chunk is noise.
STREAM_CHUNK_ELEMENTS = 1 << 18

T = TypeVar("T")


async def run_in_thread(func: Callable[..., T], *args: object) -> T:
    """`func(*args)` in a worker thread. If the awaiting task is cancelled, so is the work (the context's cancel
    token: the engine stops at its next chunk), and the cancellation is raised only once the thread has ended:
    a thread cannot be killed, and what its caller holds (a memory budget) must outlive it."""
    work = asyncio.ensure_future(run_in_threadpool(func, *args))
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


def parts(region: Region, head: bytes) -> Iterator[bytes]:
    """`head`, then the data chunk by chunk (each generated when the previous one has been sent)."""
    yield head
    for chunk in region.chunks(STREAM_CHUNK_ELEMENTS):
        yield chunk.tobytes()


def working_bytes(region: Region) -> int:
    """Memory a stream holds at once: one chunk's float64 values and temporaries, or the whole float64 matrix
    for schemes that need it (orthogonal, sparse)."""
    return region.plan.working_bytes(STREAM_CHUNK_ELEMENTS)


class TensorStream(Response):
    """A streamed tensor. `held` (its memory budget) is released when the response ends, even if the client left
    mid-way, and never while a chunk is still being generated; the budget is taken before the response starts, so
    a busy server still answers 503, not a cut 200. A client that leaves cancels the request (limits.py's
    middleware), which ends this loop at its next await."""

    def __init__(
        self, parts: Iterator[bytes], length: int | None, media_type: str, headers: dict[str, str], held: Held
    ) -> None:
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        # Known up front for the binary formats; JSON goes chunked.
        self.init_headers({**headers, **({"content-length": str(length)} if length is not None else {})})
        self._parts = parts
        self._held = held

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            while (part := await run_in_thread(next, self._parts, None)) is not None:
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client left, as a server of ASGI spec 2.4 says it: nothing more to send
            pass
        finally:
            close = getattr(self._parts, "close", None)
            if close is not None:
                close()  # no thread runs it now: run_in_thread returns only once its thread has ended
            self._held.release()
