"""POST /stats: theoretical against empirical statistics of the tensor /init would return."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from service.api import admission, metrics
from service.api.delivery import document_tag, if_none_match, json_document, run_in_thread
from service.api.errors import documented
from service.api.json_body import StrictJsonRoute
from service.api.schemas import StatsRequest
from service.engine.errors import InitError, TooLargeError
from service.engine.random.rng import LATEST_METADATA
from service.engine.stats import stats_working_bytes, tensor_stats

router = APIRouter(route_class=StrictJsonRoute)


STATS_EXAMPLES: dict[str, Any] = {
    "kaiming_normal": {
        "summary": "a [256, 784] Kaiming-normal weight against its theory",
        "value": {"shape": [256, 784], "scheme": "kaiming_normal", "seed": 7},
    }
}


@router.post(
    "/stats",
    summary="Theoretical vs empirical statistics of the tensor /init would return",
    responses=documented(304, 413, 422),
)
async def stats(
    request: Annotated[StatsRequest, Body(openapi_examples=STATS_EXAMPLES)], http: Request
) -> dict[str, Any]:
    """The budget is waited for on the event loop; the analysis runs in a worker thread."""
    plan = admission.plan_single(request, "max_stats_elements", http.app.state.settings)
    if plan.numel == 0:
        raise InitError("shape", f"/stats needs at least one element; shape {list(plan.shape)} has none")
    tag = document_tag(
        orjson.dumps({"stats": plan.metadata(LATEST_METADATA), "bins": request.bins}, option=orjson.OPT_SORT_KEYS)
    )
    fresh = request.seed is None
    if not fresh and if_none_match(http.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers={"ETag": tag})  # type: ignore[return-value]
    threads = http.app.state.delivery.lanes.job(plan.numel)
    try:
        held = await http.app.state.budget.hold(stats_working_bytes(plan))
    except TooLargeError as error:
        raise admission.advised(error, admission.whole_matrix_schemes([plan])) from None
    try:
        result = await run_in_thread(
            lambda: {"metadata": plan.metadata(LATEST_METADATA), **tensor_stats(plan, bins=request.bins)},
            limiter=threads,
        )
    finally:
        held.release()
    metrics.record_generation(plan.scheme.name, plan.numel, plan.nbytes)
    return json_document(http, lambda: result, tag, fresh)  # type: ignore[return-value]
