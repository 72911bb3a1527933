"""413 for a request body over INITSERVE_MAX_BODY_BYTES."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_response


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
        close = {"Connection": "close"}
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await error_response(413, ["body"], message, "too_large", close)(scope, receive, send)
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
                        await error_response(413, ["body"], message, "too_large", close)(scope, receive, send)
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
