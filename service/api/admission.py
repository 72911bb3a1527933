"""Admission: what a request may ask for, checked before anything is generated, and the memory it holds.

Element limits: one tensor against INITSERVE_MAX_ELEMENTS (JSON: INITSERVE_MAX_JSON_ELEMENTS, /stats:
INITSERVE_MAX_STATS_ELEMENTS), a slice by its own size and the work of cutting it; many tensors each against the
same, and their sum against INITSERVE_MAX_REQUEST_ELEMENTS (JSON: INITSERVE_MAX_JSON_REQUEST_ELEMENTS). Memory:
a response holds the memory budget (budget.py) for its working set, estimated from what the tensor sources say
they hold (`working_bytes`) plus, when buffered, the body. The engine's errors name neutral limits; the messages
here name the settings.
"""

from __future__ import annotations

import math
from typing import Any

from service import __version__
from service.api.budget import Held, MemoryBudget
from service.api.schemas import InitFields, ModelInit, SingleFields, TensorsInit
from service.api.seeds import seed_of
from service.engine import parallel
from service.engine.bundle import ModelRequest, ModelTensor, check_size, plan_model
from service.engine.errors import InitError, TooLargeError
from service.engine.plan import Plan, make_plan
from service.engine.recipes.expand import expand
from service.engine.region import MAX_ADDRESSABLE, Region
from service.engine.schemes.distributions import RUN_OVERHEAD
from service.formats import Bundle, Format
from service.settings import Settings


def setting(limit: str) -> str:
    """The environment variable of a setting: max_elements -> INITSERVE_MAX_ELEMENTS."""
    return f"INITSERVE_{limit.upper()}"


def _limits(fmt: Format) -> tuple[str, str]:
    """The names of the per-tensor and per-request element limits for `fmt`."""
    if fmt.name == "json":
        return "max_json_elements", "max_json_request_elements"
    return "max_elements", "max_request_elements"


def _too_large(field: str, what: str, numel: int, limit: str, settings: Settings) -> TooLargeError:
    message = f"{what} has {numel} elements; the limit is {getattr(settings, limit)} ({setting(limit)})"
    if limit == "max_json_elements":
        message += ": JSON is refused above it; ask for format safetensors or npy, or a slice of the tensor"
    elif limit == "max_elements":
        message += ": ask for a slice of the tensor (each rank its shard)"
    return TooLargeError(field, message)


def plan_single(request: SingleFields, limit: str, settings: Settings) -> Plan:
    """The plan of a whole tensor within the setting `limit`."""
    numel = math.prod(request.shape)
    if numel > getattr(settings, limit):
        raise _too_large("shape", f"shape {request.shape}", numel, limit, settings)
    return make_plan(request.to_engine(seed_of(request.seed)))


def admit_single(request: InitFields, fmt: Format, settings: Settings) -> Region:
    """The region of one tensor to deliver, within the limit of the format. A slice is limited by its own size,
    and the work of cutting it (`Region.cost`: a constant more per run of a strided slice, or the whole tensor for
    schemes that need it) by max_elements, the limit of what one request may generate."""
    limit, _ = _limits(fmt)
    if request.slice is None:
        return Region(plan_single(request, limit, settings))
    full = math.prod(request.shape)
    if full > MAX_ADDRESSABLE:
        raise InitError("shape", f"shape {request.shape} has {full} elements; at most 2^63 - 1 can be addressed")
    numel = math.prod(stop - start for start, stop in request.slice)
    if numel > getattr(settings, limit):
        raise _too_large("slice", f"slice {request.slice}", numel, limit, settings)
    bounds = tuple((start, stop) for start, stop in request.slice)
    region = Region(make_plan(request.to_engine(seed_of(request.seed))), bounds)
    if region.cost > settings.max_elements:
        how = (
            " (the whole tensor)"
            if region.cost >= full
            else f" ({region.runs} runs of {region.run_length}, each costing {RUN_OVERHEAD} more)"
        )
        raise TooLargeError(
            "slice",
            f"{region.plan.scheme.name} computes {region.cost} elements to cut this slice{how}; the limit is "
            f"{settings.max_elements} ({setting('max_elements')})",
        )
    return region


def admit_many(
    body: TensorsInit | ModelInit, fmt: Format, settings: Settings
) -> tuple[list[ModelTensor], dict[str, Any]]:
    """The tensors of a many-tensor request within the limits, and its request-level metadata; nothing is
    generated yet. A recipe's expansion takes a while: called in a worker thread."""
    seed = seed_of(body.seed)
    meta: dict[str, Any] = {"seed": seed, "rng": body.rng, "service": f"initserve {__version__}"}
    if isinstance(body, TensorsInit):
        request = body.to_engine(seed)
    else:
        recipe = body.model
        specs = expand(recipe.layers, recipe.framework, [rule.to_engine() for rule in recipe.rules], recipe.dtype)
        meta["framework"] = recipe.framework
        request = ModelRequest(seed, specs, body.rng)
    # The engine's names of the limits -> the settings that set them for this format.
    settings_of = dict(zip(("max_tensor_elements", "max_request_elements"), _limits(fmt), strict=True))
    try:
        check_size(request, **{limit: getattr(settings, name) for limit, name in settings_of.items()})
    except TooLargeError as error:
        if error.limit is None:
            raise
        raise error.configured_by(setting(settings_of[error.limit])) from None
    return plan_model(request), meta


def fill_elements() -> int:
    """Elements a buffered body is generated at a time: what the engine's threads compute at once."""
    engine = parallel.config()
    return engine.threads * engine.chunk_elements


async def hold_buffered(budget: MemoryBudget, bundle: Bundle, fmt: Format) -> Held:
    """A buffered body holds itself (its length, or its bound for JSON) from generation until its last byte is
    sent, plus the working set of one tensor generated `fill_elements` at a time (orthogonal, sparse: the whole
    matrix)."""
    working = max(t.working_bytes(fill_elements()) for t in bundle.tensors)  # type: ignore[attr-defined]
    return await budget.hold(fmt.max_length(bundle) + working)


async def hold_streamed(budget: MemoryBudget, bundle: Bundle, chunk_elements: int) -> Held:
    """A stream holds the working set of one chunk of the tensor being generated (the largest such)."""
    working = max(t.working_bytes(chunk_elements) for t in bundle.tensors)  # type: ignore[attr-defined]
    return await budget.hold(working, streamed=True)
