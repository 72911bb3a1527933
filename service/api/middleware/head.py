"""HEAD on every GET resource (RFC 9110 asks every general-purpose server for it): FastAPI routes answer only the
methods they declare, so a HEAD for a path without its own HEAD route runs the GET and sends its status and headers
(Content-Length included) without the body. `/init` has its own HEAD route, which generates nothing."""

from __future__ import annotations

from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadMiddleware:
    def __init__(self, app: ASGIApp, own_head: Collection[str]) -> None:
        self.app = app
        self.own_head = frozenset(own_head)  # paths whose routes answer HEAD themselves
        # ... and the prefixes of those that end in a path parameter (/hub/{rest:path})
        self.own_prefixes = tuple(path.partition("{")[0] for path in own_head if "{" in path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD" or self._own(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            # The server shares this scope, and it must see HEAD by the time the response starts (uvicorn then
            # expects no body whatever the Content-Length).
            scope["method"] = "HEAD"
            if message["type"] == "http.response.body":
                if not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": b""})
                return
            await send(message)

        # Mutated and restored, not copied: the router matches on it, and outer middlewares read the route it adds
        # to this same scope.
        scope["method"] = "GET"
        try:
            await self.app(scope, receive, headers_only)
        finally:
            scope["method"] = "HEAD"

    def _own(self, path: str) -> bool:
        return path in self.own_head or path.startswith(self.own_prefixes)
