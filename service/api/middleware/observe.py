"""One middleware watches every request (request id, status, bytes, duration) and reports it twice:
a structured access-log line and the Prometheus request metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import metrics
from service.api.errors import REQUEST_ID_KEY
from service.logging_config import ACCESS_LOGGER

_VALID_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
log = logging.getLogger(ACCESS_LOGGER)


class ObserveMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"")
        request_id = incoming.decode() if _VALID_ID.match(incoming) else uuid.uuid4().hex
        scope[REQUEST_ID_KEY] = request_id
        started = time.perf_counter()
        status, sent = 500, 0

        async def observing_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            raise
        finally:
            duration = time.perf_counter() - started
            # the route *template* (never the raw path) keeps metric labels bounded
            route = getattr(scope.get("route"), "path", "unmatched")
            metrics.observe_request(route, scope["method"], status, duration)
            client = scope.get("client")
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(duration * 1000, 3),
                    "bytes_sent": sent,
                    "client": f"{client[0]}:{client[1]}" if client else None,
                },
            )
