"""Read request bodies as JSON whatever Content-Type the client sent.

FastAPI (>= 0.132) parses a body as JSON only when it is labelled JSON, but `curl -d` labels it
application/x-www-form-urlencoded and other clients send nothing. Our endpoints take nothing but JSON and have
no side effects, so for them the label carries no information: this middleware relabels such bodies.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

_JSON = b"application/json"


class JsonBodyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            # Mutate, not copy: outer middlewares read what the router adds to this same scope (the route).
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope["headers"] = [*headers, (b"content-type", _JSON)]
        await self.app(scope, receive, send)
