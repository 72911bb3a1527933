"""A deadline on the time to the first response byte, and cancellation of abandoned work."""

from __future__ import annotations

import asyncio
import contextvars

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import metrics
from service.api.errors import error_response
from service.api.middleware.body import read_body, replay
from service.engine import cancel


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
            messages, _ = await read_body(receive)
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
                await error_response(504, ["request"], msg, "timeout")(scope, receive, send)
                return
            try:
                await task
            except (asyncio.CancelledError, cancel.WorkCancelledError):
                current = asyncio.current_task()
                if not left or (current is not None and current.cancelling()):  # not the client's leaving: ours
                    raise
                if not started.is_set():  # nobody reads it: for the access log and the metrics
                    closed = error_response(499, ["request"], "the client closed the connection", "client_closed")
                    await closed(scope, receive, send)
        finally:
            if leaving is not None and not abandoned:
                leaving.cancel()


def _ignore_outcome(task: asyncio.Task[None]) -> None:
    """An abandoned request's end is nobody's business (retrieved so that asyncio does not log it)."""
    if not task.cancelled():
        task.exception()
