"""Liveness and readiness probes, and the Prometheus endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.api.metrics import metrics_endpoint

router = APIRouter()


@router.get("/healthz", summary="Liveness: the process serves HTTP")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: started, not shutting down, and able to admit requests",
    responses={503: {"description": "Not ready: starting, shutting down, or the memory budget admits nothing"}},
)
def readyz(request: Request) -> JSONResponse:
    if not getattr(request.app.state, "ready", False):
        return JSONResponse({"status": "not ready"}, status_code=503)
    # Liveness (/healthz) stays 200: a server whose budget is held by slow clients recovers without a restart.
    reason = request.app.state.budget.unready_reason()
    if reason is not None:
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
    # Ready once the default rng's kernels are; the other rngs' compile after (a request naming one waits for it).
    kernels = "all" if getattr(request.app.state, "all_kernels", False) else "default rng"
    return JSONResponse({"status": "ready", "kernels": kernels})


router.add_api_route(
    "/metrics",
    metrics_endpoint,
    methods=["GET"],
    summary="Prometheus metrics",
    include_in_schema=True,
    response_class=JSONResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
