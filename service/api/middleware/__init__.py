"""The layers around the routes, as raw ASGI middlewares (Starlette's own are in starlette/middleware/).

Outermost first: observe (request id, access log, metrics), CORS (so that even a 401 carries CORS headers), auth,
quotas (of authorised keys), body limit, timeout (and cancellation of abandoned work), JSON content type, raw-body
cache hits, HEAD for every GET. Each answers its refusals with errors.error_response, the one error shape.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from service.api import docs, page, routes
from service.api.middleware.auth import ApiKeyMiddleware
from service.api.middleware.body_limit import BodySizeLimitMiddleware
from service.api.middleware.head import HeadMiddleware
from service.api.middleware.json_content_type import JsonBodyMiddleware
from service.api.middleware.observe import ObserveMiddleware
from service.api.middleware.quotas import QuotaMiddleware
from service.api.middleware.raw_cache import RawBodyCacheMiddleware
from service.api.middleware.timeout import TimeoutMiddleware
from service.settings import Settings


def install(app: FastAPI, settings: Settings) -> None:
    """add_middleware wraps: the last added runs first, so they are added innermost first."""
    app.add_middleware(HeadMiddleware, own_head=routes.OWN_HEAD)
    app.add_middleware(RawBodyCacheMiddleware, delivery=app.state.delivery)
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(TimeoutMiddleware, seconds=settings.timeout_seconds)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.quota_rate or settings.quota_concurrency:
        app.add_middleware(
            QuotaMiddleware,
            rate=settings.quota_rate,
            burst=settings.quota_burst,
            concurrency=settings.quota_concurrency,
            keyed=bool(settings.api_keys),
        )
    app.add_middleware(ApiKeyMiddleware, keys=settings.api_keys, static=page.open_paths() | docs.open_paths())
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "HEAD", "POST"],
            allow_headers=["Authorization", "Content-Type", "If-None-Match", "Accept"],
            expose_headers=["ETag", "X-Initserve-Seed", "X-Request-ID", "Content-Disposition"],
        )
    app.add_middleware(ObserveMiddleware)
