"""The HTTP benchmark's ceiling: the production app plus an endpoint that returns pre-built bytes of a given size.

What it costs is what the framework, the middleware and the socket cost for a response of that size, without
generating anything: the best /init could do. Benchmark code, outside the service: bench/http.py serves
`bench.ceiling:app` with the production server (`initserve serve --app bench.ceiling:app`). Left out of the
OpenAPI document.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import Response

from service.app import create_app

MAX_CEILING_BYTES = 64 << 20
APP = "bench.ceiling:app"

router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=8)
def _prebuilt(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(size % 256)


@router.post("/_bench/ceiling")
async def ceiling(request: Request, size: Annotated[int, Query(ge=0, le=MAX_CEILING_BYTES)]) -> Response:
    await request.body()  # read the body as /init does, so both pay for receiving it
    return Response(_prebuilt(size), media_type="application/octet-stream", headers={"ETag": f'"ceiling-{size}"'})


def with_ceiling(app: FastAPI) -> FastAPI:
    app.include_router(router)
    return app


app = with_ceiling(create_app())
