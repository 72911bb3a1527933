"""Repeated seeded `POST /init` answered from the response cache by the request's raw bytes, before routing.

A cache hit that goes through the router pays for FastAPI's request handling (JSON decoding, the strict models,
dependency solving), which costs as much as the rest of the hit. Validation is a pure function of the body, so
the same bytes with the same Accept header always get the same answer: after a seeded request has been answered
and cached, its (Accept, body) digest is remembered beside its headers, and the next identical request is served
from the cache here. Anything else (unseeded, uncached, evicted, large bodies) goes through the app unchanged,
its body replayed. Metrics and logs see the same route as for a routed request.
"""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import responses

# The scope key under which the /init route leaves the head it remembered for a cacheable request.
HEAD_KEY = "initserve.cache_head"
# Bodies larger than this (a big many-tensor request) are not worth a digest: they go through the app.
MAX_RAW_BODY = 16 << 10


def raw_key(accept: bytes, body: bytes) -> str:
    return "raw " + hashlib.blake2b(accept + b"\n" + body, digest_size=16).hexdigest()


class RawBodyCacheMiddleware:
    def __init__(self, app: ASGIApp, delivery: responses.Delivery, route: Route) -> None:
        self.app = app
        self.delivery = delivery
        self.route = route  # for the metrics label and the access log, as the router would set it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == "/init"
            and self.delivery.cache.enabled
        ):
            await self.app(scope, receive, send)
            return
        messages, body = await _read(receive)
        if body is None:  # too large, or the client left: let the app deal with it as usual
            await self.app(scope, replay(messages, receive), send)
            return
        headers = dict(scope["headers"])
        key = raw_key(headers.get(b"accept", b""), body)
        answer = responses.cached_response(key, _text(headers.get(b"if-none-match")), self.delivery)
        if answer is not None:
            scope["route"] = self.route
            await answer(scope, receive, send)
            return
        await self.app(scope, replay(messages, receive), send)
        head = scope.get(HEAD_KEY)
        if head is not None:
            self.delivery.cache.remember(key, head)


async def _read(receive: Receive) -> tuple[list[Message], bytes | None]:
    """The request's messages as received, and its body if it is whole and small (else None)."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        size += len(message.get("body", b""))
        if size > MAX_RAW_BODY:
            return messages, None
        if not message.get("more_body", False):
            return messages, b"".join(m.get("body", b"") for m in messages)


def replay(messages: list[Message], receive: Receive) -> Receive:
    """`messages` (already received) first, then what `receive` says."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


def _text(value: Any) -> str | None:
    return None if value is None else value.decode("latin-1")
