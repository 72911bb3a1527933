"""HTTP endpoints: thin wrappers that validate, apply limits, and hand over to the engine."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, TypeAdapter, ValidationError

from service.api import metrics, raw_cache, responses, streaming
from service.api.errors import ErrorResponse, error_body
from service.api.json_body import StrictJsonRoute
from service.api.model_body import MEDIA_TYPES as MODEL_MEDIA_TYPES
from service.api.model_models import ModelInit, TensorsInit, init_body
from service.api.model_routes import init_many
from service.api.models import InitFields, InitRequest, StatsRequest, TensorFields
from service.api.query import NUMBER_PATTERN, parameter_schema, query_body
from service.api.seeds import seed_of
from service.engine.errors import InitError, TooLargeError
from service.engine.plan import Plan, make_plan
from service.engine.region import MAX_ADDRESSABLE, Region
from service.engine.schemes.distributions import RUN_OVERHEAD
from service.engine.schemes.gain import NONLINEARITIES, calculate_gain
from service.engine.schemes.registry import SCHEMES
from service.engine.stats import stats_working_bytes, tensor_stats
from service.settings import Settings

router = APIRouter(route_class=StrictJsonRoute)  # duplicate keys and lone surrogates refused


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    detail: list[ErrorItem]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        304: "Not modified: the If-None-Match ETag matches",
        406: "No acceptable format in the Accept header",
        413: "The tensor is larger than a configured limit (the message names it)",
        422: "Invalid request: the message names the field and the rule",
    }
    return {
        code: ({"description": text[code]} if code == 304 else {"model": ErrorBody, "description": text[code]})
        for code in codes
    }


def _limit_message(what: str, numel: int, limit: int, limit_name: str) -> str:
    message = f"{what} has {numel} elements; the limit is {limit} (INITSERVE_{limit_name.upper()})"
    if limit_name == "max_json_elements":
        return f"{message}: JSON is refused above it; ask for format safetensors or npy, or a slice of the tensor"
    if limit_name == "max_elements":
        return f"{message}: ask for a slice of the tensor (each rank its shard)"
    return message


def plan_request(request: TensorFields, limit: int, limit_name: str) -> Plan:
    numel = math.prod(request.shape)
    if numel > limit:
        raise TooLargeError("shape", _limit_message(f"shape {request.shape}", numel, limit, limit_name))
    seed = seed_of(request.seed)
    return make_plan(request.to_engine(seed))


def region_request(request: InitFields, fmt: str, settings: Settings) -> Region:
    """The plan and the region of it to deliver, within the limit of the format. A slice is limited by its own
    size, and the work of cutting it (`Region.cost`: a constant more per run of a strided slice, or the whole
    tensor for schemes that need it) by max_elements, the limit of what one request may generate."""
    limit, limit_name = (
        (settings.max_json_elements, "max_json_elements") if fmt == "json" else (settings.max_elements, "max_elements")
    )
    if request.slice is None:
        return Region(plan_request(request, limit, limit_name))
    full = math.prod(request.shape)
    if full > MAX_ADDRESSABLE:
        raise InitError("shape", f"shape {request.shape} has {full} elements; at most 2^63 - 1 can be addressed")
    numel = math.prod(stop - start for start, stop in request.slice)
    if numel > limit:
        raise TooLargeError("slice", _limit_message(f"slice {request.slice}", numel, limit, limit_name))
    seed = seed_of(request.seed)
    region = Region(make_plan(request.to_engine(seed)), tuple((start, stop) for start, stop in request.slice))
    if region.cost > settings.max_elements:
        how = (
            " (the whole tensor)"
            if region.cost >= full
            else f" ({region.runs} runs of {region.run_length}, each costing {RUN_OVERHEAD} more)"
        )
        raise TooLargeError(
            "slice",
            f"{region.plan.scheme.name} computes {region.cost} elements to cut this slice{how}; the limit is "
            f"{settings.max_elements} (INITSERVE_MAX_ELEMENTS)",
        )
    return region


def delivery_of(app: Any) -> responses.Delivery:
    state = app.state
    return responses.Delivery(state.budget, state.response_cache, state.settings.stream_threshold_bytes)


def delivery(http: Request) -> responses.Delivery:
    # From app.state, not Depends(get_settings): a dependency override is re-inspected on every request, which
    # costs more than a cached response does.
    return delivery_of(http.app)


async def _deliver(http: Request, request: InitFields, accept: str | None, if_none_match: str | None) -> Response:
    """Resolved on the event loop (cheap); only generation goes to a worker thread, so a 304 or a cache hit
    never waits for a thread."""
    fmt = responses.negotiate(request.format, accept)
    how, seeded = delivery(http), request.seed is not None
    key = f"{fmt} {request.model_dump_json()}" if seeded and how.cache.enabled else None
    if key is not None and (answer := responses.cached_response(key, if_none_match, how)) is not None:
        return answer
    region = region_request(request, fmt, http.app.state.settings)
    answer = await responses.tensor_response(region, fmt, if_none_match, how, seeded, request_key=key)
    if key is not None and (head := how.cache.head(key)) is not None:
        http.scope[raw_cache.HEAD_KEY] = head  # the raw-body cache (POST) may answer the same bytes next time
    return answer


def _tag(data: bytes) -> str:
    return f'"{hashlib.sha256(data).hexdigest()[:32]}"'


def json_response(http: Request, content: Callable[[], Any], tag: str | None = None, fresh: bool = False) -> Response:
    """`content()` as JSON with an ETag: `tag` when it is known before the work (a 304 then skips the work),
    else the hash of the body. `fresh` content (from a drawn seed) is never answered 304."""
    wanted = None if fresh else http.headers.get("if-none-match")
    if tag is not None and responses.if_none_match(wanted, tag):
        return Response(status_code=304, headers={"ETag": tag})
    body = orjson.dumps(content(), option=orjson.OPT_SERIALIZE_NUMPY)
    tag = tag or _tag(body)
    if responses.if_none_match(wanted, tag):
        return Response(status_code=304, headers={"ETag": tag})
    return Response(body, media_type="application/json", headers={"ETag": tag})


_TENSOR_CONTENT = {
    media: {"schema": {"type": "string", "format": "binary"}}
    for media in (responses.MEDIA_TYPES["safetensors"], responses.MEDIA_TYPES["npy"])
}
_TENSOR_CONTENT["application/json"] = {
    "schema": {"type": "object", "description": "metadata fields and `data`, the flat row-major values"}
}


_TENSOR_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The tensor (safetensors, JSON or .npy); streamed with Content-Length above the threshold",
        "content": _TENSOR_CONTENT,
    },
    **_errors(304, 406, 413, 422),
}


# POST /init also takes many tensors (`tensors` or `model`), answered as one safetensors, JSON or .npz file.
_POST_INIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_TENSOR_RESPONSES,
    200: {
        "description": "The tensor (safetensors, JSON or .npy), or many tensors (safetensors, JSON or .npz)",
        "content": {**_TENSOR_CONTENT, MODEL_MEDIA_TYPES["npz"]: {"schema": {"type": "string", "format": "binary"}}},
    },
}


# Read from the request rather than declared as Header() parameters, which FastAPI resolves at a cost comparable
# to answering from the cache; documented here instead.
_HEADER_PARAMETERS = [
    {"name": "accept", "in": "header", "required": False, "schema": {"type": "string"}, "description": "format"},
    {
        "name": "if-none-match",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "ETags the client holds: 304 when one matches",
    },
]


@router.post(
    "/init",
    summary="Generate initialised tensors",
    response_class=Response,
    responses=_POST_INIT_RESPONSES,
    openapi_extra={"parameters": _HEADER_PARAMETERS},
)
async def init(request: Annotated[init_body(InitRequest), Body()], http: Request) -> Response:  # type: ignore[valid-type]
    accept, if_none_match = http.headers.get("accept"), http.headers.get("if-none-match")
    if isinstance(request, TensorsInit | ModelInit):  # many tensors: docs/models.md
        state = http.app.state
        return await init_many(request, state.settings, state.budget, accept, if_none_match)
    return await _deliver(http, request, accept, if_none_match)


POST_INIT = router.routes[-1]  # the route above, for the raw-body cache's metrics label

_INIT = TypeAdapter(InitRequest)


def _query(name: str, description: str, example: Any = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": name in ("shape", "scheme"),
        "description": description,
        "schema": parameter_schema(name),
        **({"example": example} if example is not None else {}),
    }


_QUERY_PARAMETERS = [
    _query("shape", "comma-separated dimensions; empty for a 0-D tensor", example="256,784"),
    _query("scheme", "a scheme name (GET /schemes); its parameters are further query parameters", example="he_normal"),
    _query("seed", "in [0, 2^64); seeded responses are immutable and cacheable by any HTTP cache", example=7),
    _query("dtype", "float32 (default), float64, float16, bfloat16"),
    _query("layout", "torch or keras; default: the scheme's family"),
    _query("fan_in", "overrides the fan_in of the shape"),
    _query("fan_out", "overrides the fan_out of the shape"),
    _query("name", "tensor name (default weight)"),
    _query("format", "safetensors (default), json, npy; or by Accept"),
    _query("rng", "random algorithm id (philox-v1)"),
    _query("slice", "only this region: start:stop per dimension, comma-separated", example="0:128,0:784"),
]


@router.get(
    "/init",
    summary="Generate an initialised tensor (query-string form, for HTTP caches and CDNs)",
    description=(
        "The same request as POST /init, as query parameters: `shape=256,784`, `slice=0:128,0:784`, the scheme's "
        "parameters by name (`mode=fan_out`). Validated by the same models, with the same errors (located in "
        "`query`). With a seed the response carries `Cache-Control: public, max-age=31536000, immutable`; "
        "without one, `no-store`."
    ),
    response_class=Response,
    responses=_TENSOR_RESPONSES,
    openapi_extra={"parameters": [*_QUERY_PARAMETERS, *_HEADER_PARAMETERS]},
)
async def init_query(http: Request) -> Response:
    accept, if_none_match = http.headers.get("accept"), http.headers.get("if-none-match")
    try:
        request = _INIT.validate_python(query_body(http.scope["query_string"]))
    except ValidationError as error:
        raise RequestValidationError([{**e, "loc": ("query", *e["loc"])} for e in error.errors()]) from None
    try:
        return await _deliver(http, request, accept, if_none_match)
    except InitError as error:
        raise type(error)(error.field, error.message, where="query") from None


@router.post(
    "/stats",
    summary="Theoretical vs empirical statistics of the tensor /init would return",
    responses=_errors(304, 413, 422),
)
async def stats(request: Annotated[StatsRequest, Body()], http: Request) -> dict[str, Any]:
    """The budget is waited for on the event loop; the analysis runs in a worker thread."""
    plan = plan_request(request, http.app.state.settings.max_stats_elements, "max_stats_elements")
    tag = _tag(orjson.dumps({"stats": plan.metadata(), "bins": request.bins}, option=orjson.OPT_SORT_KEYS))
    fresh = request.seed is None
    if not fresh and responses.if_none_match(http.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers={"ETag": tag})  # type: ignore[return-value]
    async with http.app.state.budget.reserve(stats_working_bytes(plan)):
        result = await streaming.run_in_thread(
            lambda: {"metadata": plan.metadata(), **tensor_stats(plan, bins=request.bins)}
        )
    metrics.record_generation(plan.scheme.name, plan.numel, plan.nbytes)
    return json_response(http, lambda: result, tag, fresh)  # type: ignore[return-value]


def _param_doc(param: Any) -> dict[str, Any]:
    return {
        "name": param.name,
        "type": {float: "number", int: "integer", str: "string"}[param.type],
        "required": param.required,
        "default": None if param.required else param.default,
        **{k: getattr(param, k) for k in ("ge", "gt", "le") if getattr(param, k) is not None},
        **({"choices": list(param.choices)} if param.choices else {}),
        "doc": param.doc,
    }


@router.get("/schemes", summary="The scheme catalogue", responses=_errors(304))
def schemes(http: Request) -> dict[str, Any]:
    return json_response(http, _catalogue)  # type: ignore[return-value]


def _catalogue() -> dict[str, Any]:
    return {
        "schemes": [
            {
                "name": s.name,
                "family": s.family,
                "alias_of": s.alias_of,
                "default_layout": s.default_layout,
                "formula": s.formula,
                "source": s.doc,
                "params": [_param_doc(p) for p in s.params],
            }
            for s in SCHEMES
        ]
    }


def _slope(param: str | None) -> Any:
    if param is None or not param.isascii():  # float() reads any script's digits (`١` is 1): refused below
        return param
    try:
        return float(param)
    except ValueError:
        return param  # calculate_gain refuses it with torch's message


@router.get("/gain", summary="torch.nn.init.calculate_gain", responses=_errors(304, 422))
def gain(
    http: Request,
    nonlinearity: Annotated[
        str,
        Query(
            description="linear, conv*d, conv_transpose*d, sigmoid, tanh, relu, leaky_relu or selu",
            json_schema_extra={"enum": list(NONLINEARITIES)},
        ),
    ],
    param: Annotated[
        str | None,
        Query(
            description="negative slope for leaky_relu (default 0.01); ignored by the others",
            json_schema_extra={"pattern": NUMBER_PATTERN},
        ),
    ] = None,
) -> dict[str, Any]:
    try:
        value = calculate_gain(nonlinearity, _slope(param))
    except InitError as error:
        raise InitError(error.field, error.message, where="query") from None
    return json_response(  # type: ignore[return-value]
        http, lambda: {"nonlinearity": nonlinearity, "param": _slope(param), "gain": value}
    )


async def not_acceptable(request: Any, exc: responses.NotAcceptableError) -> JSONResponse:
    formats = ", ".join(f"{media} ({fmt})" for fmt, media in exc.media_types.items())
    msg = f"cannot produce {exc.accept!r}; available: {formats}"
    return ErrorResponse(error_body(["header", "accept"], msg, "not_acceptable"), status_code=406)
