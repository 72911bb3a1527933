"""POST /diagnose: a stack of layers run forward and backward, per-layer statistics beside the theory's."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from service import __version__
from service.api import admission, metrics
from service.api.delivery import document_tag, if_none_match, json_document, run_in_thread
from service.api.errors import documented
from service.api.json_body import StrictJsonRoute
from service.api.schemas import DiagnoseRequest
from service.api.seeds import seed_of
from service.engine.diagnose import diagnose as run_diagnose
from service.engine.diagnose import working_bytes
from service.engine.errors import TooLargeError

router = APIRouter(route_class=StrictJsonRoute)

DIAGNOSE_EXAMPLES: dict[str, Any] = {
    "relu_he": {
        "summary": "an 8-layer ReLU net with He init: the variance stays put",
        "value": {
            "widths": [256] * 9,
            "activation": "relu",
            "init": {"scheme": "kaiming_normal", "nonlinearity": "relu"},
            "batch": 128,
            "seed": 7,
        },
    },
    "tanh_per_layer": {
        "summary": "tanh, one scheme per layer (torch's default, then Xavier), layer normalisation",
        "value": {
            "widths": [128, 128, 64],
            "activation": "tanh",
            "init": [{"scheme": "torch_default"}, {"scheme": "glorot_uniform", "layout": "keras"}],
            "norm": "layer",
            "batch": 64,
            "seed": 7,
        },
    },
}

DESCRIPTION = """Layer l maps x_{l-1} to x_l = activation(norm(x_{l-1} W_l^T)), with no bias. W_l is the tensor
POST /init returns for the same seed, `"name": "layers.{l-1}.weight"`, the dtype and shape `[out, in]` (torch layout)
or `[in, out]` (keras). Inputs are N(0, 1), `batch` of them, and the per-example output gradients N(0, 1), both drawn
from the seed. Per layer: the activation's mean, variance, saturation (tanh, softsign: |a| > 0.99; sigmoid: outside
[0.01, 0.99]) and histogram; the back-propagated gradient's variance (at the layer's product) and the weight
gradient's (the batch mean of the examples'); and the mean-field theory's predictions (null where its assumptions,
zero-mean i.i.d. weights and no normalisation for the backward pass, do not hold).

The work (batch x the weights' elements) is limited by INITSERVE_MAX_DIAGNOSE_WORK and the memory by the budget
(413 naming them); `activation` and `init` lists have one entry per layer."""


@router.post(
    "/diagnose",
    summary="Forward and backward through a stack of layers: per-layer statistics against the theory",
    description=DESCRIPTION,
    responses=documented(304, 413, 422),
)
async def diagnose(
    request: Annotated[DiagnoseRequest, Body(openapi_examples=DIAGNOSE_EXAMPLES)], http: Request
) -> dict[str, Any]:
    """Admitted like /stats: the work limit, then the memory budget waited for on the event loop, the run in a
    worker thread of its size's lane."""
    seed = seed_of(request.seed)
    spec = request.to_engine(seed)
    plans = admission.admit_diagnose(spec, http.app.state.settings)
    described = {**request.model_dump(mode="json"), "seed": seed, "service": f"initserve {__version__}"}
    tag = document_tag(orjson.dumps({"diagnose": described}, option=orjson.OPT_SORT_KEYS))
    fresh = request.seed is None
    if not fresh and if_none_match(http.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers={"ETag": tag})  # type: ignore[return-value]
    threads = http.app.state.delivery.lanes.job(spec.work)
    try:
        held = await http.app.state.budget.hold(working_bytes(spec, plans))
    except TooLargeError as error:
        raise admission.diagnose_refused(error) from None
    try:
        result = await run_in_thread(lambda: run_diagnose(spec, plans), limiter=threads)
    finally:
        held.release()
    for plan in plans:
        metrics.record_generation(plan.scheme.name, plan.numel, plan.nbytes)
    return json_document(http, lambda: {"seed": seed, **result}, tag, fresh)  # type: ignore[return-value]
