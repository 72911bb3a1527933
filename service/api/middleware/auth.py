"""Optional bearer-token authentication: with INITSERVE_API_KEYS set, everything but health and metrics needs one,
except GET and HEAD of the static shells of the page at / and of /docs and /redoc and of their assets: they hold no
data, and ask for the key that their requests to the API (the OpenAPI document included) then carry. Those are
matched as exact paths, each file by name, so that no other path (dot segments, doubled slashes, a trailing slash)
gets in on a prefix."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import error_response

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="initserve"'}


def bearer_token(header: bytes | None) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` header, if that is what it holds."""
    scheme, _, token = (header or b"").partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        return None
    return token.strip()


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: list[str], static: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]
        self.static = static

    def _authorised(self, header: bytes | None) -> bool:
        token = bearer_token(header)
        if token is None:
            return False
        # Compare with every key, without stopping early, so timing tells nothing about which keys exist.
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(token, key)
        return matched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.keys
            or scope["path"] in OPEN_PATHS
            or (scope["method"] in ("GET", "HEAD") and scope["path"] in self.static)
            or scope["method"] == "OPTIONS"  # CORS preflight carries no credentials
            or self._authorised(dict(scope["headers"]).get(b"authorization"))
        ):
            await self.app(scope, receive, send)
            return
        msg = "a valid API key is required: Authorization: Bearer <key>"
        refusal = error_response(401, ["header", "authorization"], msg, "unauthorized", _CHALLENGE)
        await refusal(scope, receive, send)
