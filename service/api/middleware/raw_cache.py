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

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.cache import Head
from service.api.delivery import Delivery
from service.api.middleware.body import read_body, replay

# Bodies larger than this (a big many-tensor request) are not worth a digest: they go through the app.
MAX_RAW_BODY = 16 << 10


def raw_key(accept: bytes, body: bytes) -> str:
    return "raw " + hashlib.blake2b(accept + b"\n" + body, digest_size=16).hexdigest()


class RawBodyCacheMiddleware:
    """Learns from the responses the app sends: one that says it is in the cache (`X-Initserve-Cache`) teaches the
    head to answer its raw request with, and the route that answered it (for the metrics label and the log)."""

    def __init__(self, app: ASGIApp, delivery: Delivery) -> None:
        self.app = app
        self.delivery = delivery
        self.route: object = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == "/init"
            and self.delivery.cache.enabled
        ):
            await self.app(scope, receive, send)
            return
        messages, body = await read_body(receive, MAX_RAW_BODY)
        if body is None:  # too large, or the client left: let the app deal with it as usual
            await self.app(scope, replay(messages, receive), send)
            return
        headers = dict(scope["headers"])
        key = raw_key(headers.get(b"accept", b""), body)
        inm = headers.get(b"if-none-match")
        answer = self.delivery.cached(key, None if inm is None else inm.decode("latin-1"))
        if answer is not None:
            scope["route"] = self.route
            await answer(scope, receive, send)
            return
        learnt: list[Head] = []

        async def learning_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                head = Head.of_cached(message["headers"])
                if head is not None:
                    learnt.append(head)
            await send(message)

        await self.app(scope, replay(messages, receive), learning_send)
        if learnt:
            self.route = scope.get("route")
            self.delivery.cache.remember(key, learnt[0])
