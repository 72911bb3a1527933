"""A streamed tensor response: the container header first with Content-Length set (every size is known up front),
then the data chunk by chunk, each generated in a worker thread when the previous one has been sent, so a
response of any size costs the server one chunk's working memory (bench/stream_memory.py measures it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from starlette.concurrency import iterate_in_threadpool
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from service.api.budget import Held
from service.engine.region import Region

# Elements per streamed chunk: 1 MiB of float32. Small enough that a stream's working set (the chunk and its
# float64 intermediates) stays a few MiB, large enough that the thread hop per chunk is noise.
STREAM_CHUNK_ELEMENTS = 1 << 18


def parts(region: Region, head: bytes) -> Iterator[bytes]:
    """`head`, then the data chunk by chunk (each generated when the previous one has been sent)."""
    yield head
    for chunk in region.chunks(STREAM_CHUNK_ELEMENTS):
        yield chunk.tobytes()


def working_bytes(region: Region) -> int:
    """Memory a stream holds at once: one chunk's float64 values and temporaries, or the whole float64 matrix
    for schemes that need it (orthogonal, sparse)."""
    return region.plan.working_bytes(STREAM_CHUNK_ELEMENTS)


class TensorStream(StreamingResponse):
    """A streamed tensor. `held` (its memory budget) is released when the response ends, even if the client left
    mid-way; the budget is taken before the response starts, so a busy server still answers 503, not a cut 200."""

    def __init__(
        self, parts: Iterator[bytes], length: int | None, media_type: str, headers: dict[str, str], held: Held
    ) -> None:
        super().__init__(iterate_in_threadpool(parts), media_type=media_type, headers=headers)
        if length is not None:  # known up front for the binary formats; JSON goes chunked
            self.headers["content-length"] = str(length)
        self._parts = parts
        self._held = held

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self._parts, "close", None)
            if close is not None:
                with contextlib.suppress(ValueError):  # still running in its thread: it ends with the thread
                    close()
            self._held.release()
