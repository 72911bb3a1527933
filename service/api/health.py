"""Liveness and readiness probes, and the Prometheus endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.api.metrics import metrics_endpoint

router = APIRouter()


@router.get("/healthz", summary="Liveness: the process serves HTTP")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: started, not shutting down", responses={503: {"description": "Not ready"}})
def readyz(request: Request) -> JSONResponse:
    ready = getattr(request.app.state, "ready", False)
    return JSONResponse({"status": "ready" if ready else "not ready"}, status_code=200 if ready else 503)


router.add_api_route(
    "/metrics",
    metrics_endpoint,
    methods=["GET"],
    summary="Prometheus metrics",
    include_in_schema=True,
    response_class=JSONResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
