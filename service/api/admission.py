"""Admission: what a request may ask for, checked before anything is generated, and the memory it holds.

Element limits: one tensor against INITSERVE_MAX_ELEMENTS (JSON: INITSERVE_MAX_JSON_ELEMENTS, /stats:
INITSERVE_MAX_STATS_ELEMENTS), a slice by its own size and the work of cutting it; many tensors each against the
same, and their sum against INITSERVE_MAX_REQUEST_ELEMENTS (JSON: INITSERVE_MAX_JSON_REQUEST_ELEMENTS). Memory:
a response holds the memory budget (budget.py) for its working set, estimated from what the tensor sources say
they hold (`working_bytes`) plus, when buffered, the body. The engine's errors name neutral limits; the messages
here name the settings.

CPU: large requests cannot make small ones wait (bench/load.py scenarios strided and recipes). A request's *work*
is the elements the engine computes for it (`Region.cost`: a strided slice counts its runs); at most
SMALL_WORK_ELEMENTS is small, more is heavy. The engine's pool runs the chunks of the job with the least work
left first (engine/parallel.py), so every request states its work (`Lanes.job`). Heavy work runs in worker
threads of its own (HEAVY_THREADS_PER_CORE per engine thread, waiting in line on the event loop), never in the
server's shared ones, so a small request always finds a thread. A large recipe's expansion is pure Python that
holds the GIL, so one runs at a time per process: others wait in line up to INITSERVE_BUDGET_WAIT_SECONDS, then get
503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from service import __version__
from service.api.budget import BudgetBusyError
from service.api.schemas import InitFields, ModelInit, SingleFields, TensorsInit, TransformersRecipe
from service.api.seeds import seed_of
from service.engine import parallel
from service.engine.bundle import MAX_TENSORS, ModelRequest, ModelTensor, check_size, plan_model
from service.engine.diagnose import DiagnoseSpec, check
from service.engine.errors import InitError, TooLargeError
from service.engine.plan import Plan, make_plan
from service.engine.random.registry import DEFAULT_RNG, get_rng
from service.engine.recipes.expand import expand_ordered
from service.engine.recipes.layers import CONTAINER
from service.engine.recipes.transformers import TransformersModel, expand_transformers
from service.engine.region import MAX_ADDRESSABLE, Region
from service.engine.schemes.distributions import RUN_OVERHEAD
from service.formats import Bundle, Format
from service.settings import Settings

# A request computing at most this many elements is small (a few milliseconds of the engine).
SMALL_WORK_ELEMENTS = 1 << 20
# Worker threads for heavy work, per engine thread: enough to keep the engine's threads fed between the Python
# steps of each request, few enough that heavy requests' Python does not crowd the event loop off the GIL.
HEAVY_THREADS_PER_CORE = 4
# A recipe is large when its layer entries times (its rules + 1) pass this: each rule is tried against every
# parameter, and expanding ~500 entries x 33 rules takes some 10 ms of Python.
LARGE_RECIPE_WORK = 1 << 14


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


def advised(error: TooLargeError, whole_matrix: Iterable[str]) -> TooLargeError:
    """The memory budget's 413 with advice that can be followed: a slice or a smaller dtype shrinks what most
    schemes hold, but not what a whole-matrix scheme computes (in float64, whatever is asked for)."""
    schemes = sorted(set(whole_matrix))
    if schemes:
        advice = (
            f"a slice or a smaller dtype does not help, as {' and '.join(schemes)} computes the whole float64 matrix "
            "whatever is asked for: use a server whose budget and share hold it, or `initserve generate` locally"
        )
    else:
        advice = "ask for a slice of the tensor (each rank its shard) or a smaller dtype"
    return TooLargeError(error.field, f"{error.message}: {advice}", error.where, error.limit)


def whole_matrix_schemes(plans: Iterable[Plan]) -> list[str]:
    """The schemes among `plans` that compute their whole matrix, whatever region is asked for."""
    return [plan.scheme.name for plan in plans if not plan.random_access]


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


def admit_diagnose(spec: DiagnoseSpec, settings: Settings) -> list[Plan]:
    """The plans of a /diagnose stack's weights, its work within INITSERVE_MAX_DIAGNOSE_WORK (its memory is the
    budget's to judge: `diagnose.working_bytes`)."""
    if spec.work > settings.max_diagnose_work:
        raise TooLargeError(
            "widths",
            f"batch {spec.batch} x {spec.weight_elements} weight elements is {spec.work} multiply-adds a pass; the "
            f"limit is {settings.max_diagnose_work} ({setting('max_diagnose_work')}): use fewer or narrower layers, "
            "or a smaller batch",
        )
    return check(spec)


def diagnose_refused(error: TooLargeError) -> TooLargeError:
    """The memory budget's 413 for a /diagnose stack, naming its fields and what shrinks it."""
    return TooLargeError(
        "widths", f"{error.message}: use fewer or narrower layers, or a smaller batch", error.where, error.limit
    )


def admit_many(
    body: TensorsInit | ModelInit, fmt: Format, settings: Settings
) -> tuple[list[ModelTensor], dict[str, Any]]:
    """The tensors of a many-tensor request within the limits, and its request-level metadata; nothing is
    generated yet. A recipe's expansion takes a while: called in a worker thread."""
    seed = seed_of(body.seed)
    meta: dict[str, Any] = {"seed": seed, "rng": body.rng, "service": f"initserve {__version__}"}
    if body.keras_version is not None:  # only when asked: the metadata of requests without it keeps its bytes
        meta["keras_version"] = body.keras_version
    if isinstance(body, TensorsInit):
        request = body.to_engine(seed)
    elif isinstance(body.model, TransformersRecipe):
        model = transformers_model(body.model, body.rng)
        meta.update(model.metadata())
        request = ModelRequest(seed, model.specs, body.rng)
    else:
        recipe = body.model
        rules = [rule.to_engine() for rule in recipe.rules]
        specs, order = expand_ordered(recipe.layers, recipe.framework, rules, recipe.dtype, body.keras_version)
        meta["framework"] = recipe.framework
        request = ModelRequest(seed, specs, body.rng, order, body.keras_version)
    # The engine's names of the limits -> the settings that set them for this format.
    settings_of = dict(zip(("max_tensor_elements", "max_request_elements"), _limits(fmt), strict=True))
    try:
        check_size(request, **{limit: getattr(settings, name) for limit, name in settings_of.items()})
    except TooLargeError as error:
        if error.limit is None:
            raise
        raise error.configured_by(setting(settings_of[error.limit])) from None
    tensors = plan_model(request)
    if get_rng(request.rng).keyed_by == "request":
        # Each tensor's bits depend on every draw before it: the order is part of the response (and of its ETag).
        meta["draws"] = request.draw_order()
    return tensors, meta


def transformers_model(recipe: TransformersRecipe, rng: str, max_tensors: int = MAX_TENSORS) -> TransformersModel:
    """The engine's expansion of a transformers request (the API's and the CLI's). Only tensor-keyed rngs: a
    request-keyed one would have to replay transformers' own draw order (construction, then _init_weights)."""
    if get_rng(rng).keyed_by == "request":
        raise InitError("rng", f"rng {rng!r} is keyed by request: transformers models take {DEFAULT_RNG}")
    rules = [rule.to_engine() for rule in recipe.rules]
    return expand_transformers(recipe.config, recipe.architecture, rules, recipe.dtype, max_tensors)


def fill_elements() -> int:
    """Elements a buffered body is generated at a time: what the engine's threads compute at once."""
    engine = parallel.config()
    return engine.threads * engine.chunk_elements


def buffered_bytes(bundle: Bundle, fmt: Format) -> int:
    """What a buffered body holds from generation until its last byte is sent: itself (its length, or its bound
    for JSON), plus the working set of one tensor generated `fill_elements` at a time (orthogonal, sparse: the
    whole matrix)."""
    working = max(t.working_bytes(fill_elements()) for t in bundle.tensors)  # type: ignore[attr-defined]
    return fmt.max_length(bundle) + working


def streamed_bytes(bundle: Bundle, chunk_elements: int) -> int:
    """What a stream holds: the working set of one chunk of the tensor being generated (the largest such)."""
    return max(t.working_bytes(chunk_elements) for t in bundle.tensors)  # type: ignore[attr-defined]


def work(bundle: Bundle) -> int:
    """Elements the engine computes for `bundle`."""
    return sum(t.cost for t in bundle.tensors)  # type: ignore[attr-defined]


def recipe_work(body: TensorsInit | ModelInit) -> int:
    """Layer entries x (rules + 1) of a model request (0 without a recipe): what its expansion costs."""
    if not isinstance(body, ModelInit) or isinstance(body.model, TransformersRecipe):
        return 0  # a transformers model's expansion is a few tensors per layer, its tensors bounded in number
    entries, pending = 0, list(body.model.layers)
    while pending:
        layer = pending.pop()
        entries += 1
        if isinstance(layer, dict) and layer.get("type") == CONTAINER and isinstance(layer.get("layers"), list):
            pending.extend(layer["layers"])
    return entries * (len(body.model.rules) + 1)


class _Line:
    """At most `slots` holders at once; the others wait first come, first served, up to `wait_seconds`, then
    BudgetBusyError (503 with Retry-After). Waits on the event loop, like the memory budget."""

    def __init__(self, slots: int, wait_seconds: float, what: str, field: str) -> None:
        self.slots = slots
        self.wait_seconds = wait_seconds
        self.what = what
        self.field = field
        self._waiting: deque[asyncio.Future[None]] = deque()

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        if self.slots > 0 and not self._waiting:
            self.slots -= 1
        else:
            granted = asyncio.get_running_loop().create_future()
            self._waiting.append(granted)
            try:
                await asyncio.wait_for(asyncio.shield(granted), self.wait_seconds)
            except BaseException as error:
                if not granted.done():
                    self._waiting.remove(granted)
                else:
                    self._next()  # granted meanwhile: pass it on
                if isinstance(error, TimeoutError):
                    raise BudgetBusyError(max(1, math.ceil(self.wait_seconds)), self.what, self.field) from None
                raise
        try:
            yield
        finally:
            self._next()

    def _next(self) -> None:
        while self._waiting:
            granted = self._waiting.popleft()
            if not granted.done():
                granted.set_result(None)
                return
        self.slots += 1


class Lanes:
    """Where a request's CPU work runs, by its size (see the module docstring): one per application."""

    def __init__(self, settings: Settings) -> None:
        self.heavy_threads = anyio.CapacityLimiter(HEAVY_THREADS_PER_CORE * settings.threads)
        self.recipes = _Line(1, settings.budget_wait_seconds, "the expansion of large recipes", "model")
        # The same for planning a checkpoint under /hub that is not planned yet (service/hub.py).
        self.checkpoints = _Line(1, settings.budget_wait_seconds, "the planning of checkpoints", "repo_id")

    def job(self, elements: int) -> anyio.CapacityLimiter | None:
        """State this request's work to the engine's scheduler; the thread limiter for its work (None: the shared
        one)."""
        parallel.job(elements)
        return self.heavy_threads if elements > SMALL_WORK_ELEMENTS else None

    @asynccontextmanager
    async def expanding(self, body: TensorsInit | ModelInit) -> AsyncIterator[anyio.CapacityLimiter | None]:
        """The slot of a large recipe's expansion, waited for in line (a small one needs none), and the thread
        limiter to expand it with."""
        if recipe_work(body) <= LARGE_RECIPE_WORK:
            yield None
            return
        async with self.recipes.hold():
            yield self.heavy_threads
