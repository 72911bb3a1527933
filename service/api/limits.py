"""Request body size limit and a deadline on the time to the first response byte."""

from __future__ import annotations

import asyncio

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _error(
    status: int, loc: list[str], msg: str, kind: str, headers: list[tuple[bytes, bytes]] | None = None
) -> list[Message]:
    body = orjson.dumps({"detail": [{"loc": loc, "msg": msg, "type": kind}]})
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]
    return [
        {"type": "http.response.start", "status": status, "headers": head},
        {"type": "http.response.body", "body": body},
    ]


class BodySizeLimitMiddleware:
    """413 for bodies over `max_bytes`, by Content-Length up front or by counting a chunked body (uvicorn has none).

    The 413 closes the connection (`Connection: close`): the rest of the body is never read.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body exceeds {self.max_bytes} bytes (INITSERVE_MAX_BODY_BYTES)"
        close = [(b"connection", b"close")]
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            for part in _error(413, ["body"], message, "too_large", close):
                await send(part)
            return
        received = 0
        started = refused = False

        async def counting_receive() -> Message:
            # Answer 413 ourselves and tell the app the client left: FastAPI would turn an exception raised here
            # into a 400 "error parsing the body".
            nonlocal received, refused
            part = await receive()
            if part["type"] == "http.request":
                received += len(part.get("body", b""))
                if received > self.max_bytes and not refused:
                    refused = True
                    if not started:
                        for message_part in _error(413, ["body"], message, "too_large", close):
                            await send(message_part)
                    return {"type": "http.disconnect"}
            return part

        async def tracking_send(part: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or part["type"] == "http.response.start"
            await send(part)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not refused:
                raise


class TimeoutMiddleware:
    """504 when no response has started within `seconds`. Streams, once started, run to their end.

    The worker thread of a timed-out request cannot be killed; it finishes in the background while still holding
    its memory budget, so abandoned work cannot pile up beyond the budget.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = asyncio.Event()
        abandoned = False

        async def guarded_send(message: Message) -> None:
            if abandoned:
                return
            if message["type"] == "http.response.start":
                started.set()
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        waiter = asyncio.ensure_future(started.wait())
        done, _ = await asyncio.wait({task, waiter}, timeout=self.seconds, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            abandoned = True
            task.cancel()
            waiter.cancel()
            msg = f"no response within {self.seconds:g} s (INITSERVE_TIMEOUT_SECONDS)"
            for part in _error(504, ["request"], msg, "timeout"):
                await send(part)
            return
        waiter.cancel()
        await task
