"""Request body size limit, a deadline on the time to the first response byte, and cancellation of abandoned work."""

from __future__ import annotations

import asyncio
import contextvars

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import metrics
from service.api.raw_cache import replay
from service.engine import cancel


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
    """504 when no response has started within `seconds`; and the work of an abandoned request is cancelled.

    A request is abandoned by that 504, or by its client leaving before the end of its response. Its task is then
    cancelled, and its engine work with it: a cancel token bound to the request's context (service.engine.cancel)
    stops the worker threads at their next chunk, and its memory budget is released once they have stopped
    (streaming.run_in_thread). A started stream has no deadline; a client that reads nothing is cut off by the
    server's write timeout, which ends the request as a client that left.

    To notice a client that leaves, the request body is read ahead (bounded by the body limit outside), so that the
    one receive() left, awaited here from then on, is the one that reports the disconnect.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = cancel.CancelToken()
        started = asyncio.Event()
        abandoned = completed = left = False
        leaving: asyncio.Future[Message] | None = None

        async def guarded_send(message: Message) -> None:
            nonlocal completed
            if abandoned:
                return
            if message["type"] == "http.response.start":
                started.set()
            elif not message.get("more_body", False):
                completed = True
            await send(message)

        async def watch() -> Message:
            # Decided here, not in a done-callback: uvicorn wakes this receive before the send the disconnect also
            # unblocks, and a callback would run after that send (and a buffered body's silent rest) had finished.
            nonlocal left
            message = await receive()
            if message["type"] == "http.disconnect" and not completed and not abandoned:
                left = True
                metrics.CANCELLED.labels("disconnect").inc()
                token.cancel()
                task.cancel()
            return message

        async def rest() -> Message:
            assert leaving is not None
            return await asyncio.shield(leaving)

        async def run() -> None:
            nonlocal leaving
            messages = await _read_body(receive)
            if messages[-1]["type"] != "http.request":  # the client left (or the body limit answered) already
                await self.app(scope, replay(messages, receive), guarded_send)
                return
            leaving = asyncio.ensure_future(watch())
            await self.app(scope, replay(messages, rest), guarded_send)

        context = contextvars.copy_context()
        context.run(cancel.bind, token)
        task = asyncio.get_running_loop().create_task(run(), context=context)
        waiter = asyncio.ensure_future(started.wait())
        try:
            done, _ = await asyncio.wait({task, waiter}, timeout=self.seconds, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if not done:
                abandoned = True
                metrics.CANCELLED.labels("timeout").inc()
                token.cancel()
                task.cancel()
                task.add_done_callback(_ignore_outcome)  # it ends in the background, once its threads have stopped
                msg = f"no response within {self.seconds:g} s (INITSERVE_TIMEOUT_SECONDS)"
                for part in _error(504, ["request"], msg, "timeout"):
                    await send(part)
                return
            try:
                await task
            except (asyncio.CancelledError, cancel.WorkCancelledError):
                current = asyncio.current_task()
                if not left or (current is not None and current.cancelling()):  # not the client's leaving: ours
                    raise
                if not started.is_set():  # nobody reads it: for the access log and the metrics
                    for part in _error(499, ["request"], "the client closed the connection", "client_closed"):
                        await send(part)
        finally:
            if leaving is not None and not abandoned:
                leaving.cancel()


async def _read_body(receive: Receive) -> list[Message]:
    """The request's messages up to the end of its body (or the disconnect that cut it short)."""
    messages = [await receive()]
    while messages[-1]["type"] == "http.request" and messages[-1].get("more_body", False):
        messages.append(await receive())
    return messages


def _ignore_outcome(task: asyncio.Task[None]) -> None:
    """An abandoned request's end is nobody's business (retrieved so that asyncio does not log it)."""
    if not task.cancelled():
        task.exception()
