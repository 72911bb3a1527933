"""POST /init for many tensors: `{"seed", "tensors": {...}}` or `{"seed", "model": {...}}` -> one file.

Limits are checked before anything is generated: each tensor against INITSERVE_MAX_ELEMENTS (JSON:
INITSERVE_MAX_JSON_ELEMENTS), their sum against INITSERVE_MAX_REQUEST_ELEMENTS (JSON:
INITSERVE_MAX_JSON_REQUEST_ELEMENTS). The response then streams tensor by tensor, holding the memory budget of
its largest tensor's working set until it ends.
"""

from __future__ import annotations

from typing import Any

from fastapi import Response
from starlette.concurrency import run_in_threadpool

from service import __version__
from service.api.budget import MemoryBudget
from service.api.model_body import ModelBody, model_response, negotiate
from service.api.model_models import ModelInit, TensorsInit
from service.api.seeds import seed_of
from service.engine.bundle import ModelRequest, check_size, plan_model
from service.engine.recipes.expand import expand
from service.settings import Settings

MANY_KEYS = ("tensors", "model")


def is_many(body: Any) -> bool:
    """Whether a JSON body asks for many tensors (it has `tensors` or `model`) rather than one."""
    return isinstance(body, dict) and any(key in body for key in MANY_KEYS)


def model_request(body: TensorsInit | ModelInit, seed: int) -> tuple[ModelRequest, dict[str, Any]]:
    """The engine request and the request-level metadata that goes with it."""
    meta: dict[str, Any] = {"seed": seed, "rng": body.rng, "service": f"initserve {__version__}"}
    if isinstance(body, TensorsInit):
        return body.to_engine(seed), meta
    recipe = body.model
    rules = [rule.to_engine() for rule in recipe.rules]
    specs = expand(recipe.layers, recipe.framework, rules, recipe.dtype)
    meta["framework"] = recipe.framework
    return ModelRequest(seed, specs, body.rng), meta


async def init_many(
    body: TensorsInit | ModelInit,
    settings: Settings,
    budget: MemoryBudget,
    accept: str | None,
    if_none_match: str | None,
) -> Response:
    """Expanded and planned in a worker thread (a large recipe takes a while); the budget is waited for on the
    event loop."""
    model = await run_in_threadpool(plan_many, body, settings, accept)
    return await model_response(model, if_none_match, budget, seeded=body.seed is not None)


def plan_many(body: TensorsInit | ModelInit, settings: Settings, accept: str | None) -> ModelBody:
    """The response's tensors and format, within the limits; nothing is generated yet."""
    fmt = negotiate(body.format, accept)
    seed = seed_of(body.seed)
    request, meta = model_request(body, seed)
    if fmt == "json":
        limits = settings.max_json_elements, settings.max_json_request_elements
        names = "max_json_elements", "max_json_request_elements"
    else:
        limits, names = (settings.max_elements, settings.max_request_elements), ("max_elements", "max_request_elements")
    check_size(request, *limits, names)
    return ModelBody(plan_model(request), meta, fmt)
