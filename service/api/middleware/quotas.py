"""Per-client quotas: a request rate (token bucket: a sustained rate and a burst) and a number of requests in flight,
per API key, or per client address when authentication is off. Off by default.

The limits hold per worker process, not across workers: with N workers a client may get up to N times each limit
(the kernel spreads connections over the workers). Health, readiness and metrics are never limited.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import ErrorResponse, error_response
from service.api.middleware.auth import OPEN_PATHS, bearer_token

_SWEEP_AT = 1024  # clients remembered before the idle ones are forgotten


@dataclass
class _Client:
    tokens: float
    stamp: float
    in_flight: int = 0


class QuotaMiddleware:
    """429 with Retry-After once a client exceeds `rate` requests/s (bursts of `burst`) or has `concurrency`
    requests in flight; 0 turns either limit off. `keyed`: clients are API keys (authentication is on and runs
    before this), else client addresses."""

    def __init__(
        self,
        app: ASGIApp,
        rate: float,
        burst: int,
        concurrency: int,
        keyed: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.rate = rate
        self.burst = burst
        self.concurrency = concurrency
        self.keyed = keyed
        self.clock = clock
        self._clients: dict[object, _Client] = {}
        self._sweep_at = _SWEEP_AT

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        client = self._client(scope)
        refusal = self._refusal(client)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        client.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            client.in_flight -= 1

    def _client(self, scope: Scope) -> _Client:
        if self.keyed:
            who: object = bearer_token(dict(scope["headers"]).get(b"authorization"))
        else:
            who = (scope.get("client") or ("unknown",))[0]
        client = self._clients.get(who)
        if client is None:
            if len(self._clients) >= self._sweep_at:
                self._forget_idle()
            client = self._clients[who] = _Client(tokens=self.burst, stamp=self.clock())
        return client

    def _refill(self, client: _Client) -> None:
        now = self.clock()
        client.tokens = min(self.burst, client.tokens + (now - client.stamp) * self.rate)
        client.stamp = now

    def _refusal(self, client: _Client) -> ErrorResponse | None:
        whose = "API key" if self.keyed else "client address"
        if self.concurrency and client.in_flight >= self.concurrency:
            msg = (
                f"concurrency limit: at most {self.concurrency} requests in flight per {whose} "
                "(INITSERVE_QUOTA_CONCURRENCY); retry when one has finished"
            )
            return self._too_many(msg, "concurrency_limit", 1)
        if self.rate:
            self._refill(client)
            if client.tokens < 1:
                retry_after = max(1, math.ceil((1 - client.tokens) / self.rate))
                msg = (
                    f"rate limit: {self.rate:g} requests/s in bursts of up to {self.burst} per {whose} "
                    f"(INITSERVE_QUOTA_RATE, INITSERVE_QUOTA_BURST); retry after {retry_after} s"
                )
                return self._too_many(msg, "rate_limit", retry_after)
            client.tokens -= 1
        return None

    def _too_many(self, msg: str, kind: str, retry_after: int) -> ErrorResponse:
        loc = ["header", "authorization"] if self.keyed else ["request"]
        return error_response(429, loc, msg, kind, {"Retry-After": str(retry_after)})

    def _forget_idle(self) -> None:
        """Drop the clients that are as if new (nothing in flight, bucket full): memory stays bounded by the clients
        active at once, however many addresses come and go."""
        for who, client in list(self._clients.items()):
            if self.rate:
                self._refill(client)
            if client.in_flight == 0 and client.tokens >= self.burst:
                del self._clients[who]
        self._sweep_at = max(_SWEEP_AT, 2 * len(self._clients))
