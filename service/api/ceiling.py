"""The HTTP benchmark's ceiling: an endpoint of the same app that returns pre-built bytes of a given size.

What it costs is what the framework, the middleware and the socket cost for a response of that size, without
generating anything: the best /init could do. It is mounted only when INITSERVE_BENCH_CEILING is set (off by
default, never in production) and is left out of the OpenAPI document.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

MAX_CEILING_BYTES = 64 << 20

router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=8)
def _prebuilt(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(size % 256)


@router.post("/_bench/ceiling")
async def ceiling(request: Request, size: Annotated[int, Query(ge=0, le=MAX_CEILING_BYTES)]) -> Response:
    await request.body()  # read the body as /init does, so both pay for receiving it
    return Response(_prebuilt(size), media_type="application/octet-stream", headers={"ETag": f'"ceiling-{size}"'})
