"""POST /init and GET /init: validated, admitted, and handed to the one delivery pipeline.

A body is one tensor, many (`tensors`) or a model (`model`): each is resolved to a bundle of tensor sources and
delivered the same way (negotiation, ETag, cache, buffered or streamed). Many tensors: docs/models.md.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError

from service.api import admission, delivery
from service.api.errors import documented
from service.api.json_body import StrictJsonRoute
from service.api.query import parameter_schema, query_body
from service.api.schemas import InitBody, InitRequest
from service.engine.errors import InitError
from service.formats import FORMATS, Bundle, Format, holding
from service.settings import Settings

router = APIRouter(route_class=StrictJsonRoute)  # duplicate keys and lone surrogates refused


async def deliver(http: Request, request: Any, accept: str | None, if_none_match: str | None) -> Response:
    """A cache hit is answered from the request's canonical form before anything is resolved; one tensor is
    resolved on the event loop (cheap), many in a worker thread (a large recipe takes a while: one at a time,
    admission.Lanes); generation runs in worker threads, so a 304 or a cache hit never waits for one."""
    fmt = delivery.negotiate(request.format, accept, request.single)
    how: delivery.Delivery = http.app.state.delivery
    seeded, settings = request.seed is not None, http.app.state.settings
    key = f"{fmt.name} {request.model_dump_json()}" if seeded and how.cache.enabled else None
    if key is not None and (answer := how.cached(key, if_none_match)) is not None:
        return answer
    if request.single:
        bundle = delivery.single(admission.admit_single(request, fmt, settings))
        return await how.respond(bundle, fmt, if_none_match, seeded, key)
    # A large recipe's slot is held until its body is generated (or its stream has started): all of it is Python
    # work on thousands of tensors.
    async with how.lanes.expanding(request) as threads:
        bundle = await delivery.run_in_thread(_many, request, fmt, settings, limiter=threads)
        return await how.respond(bundle, fmt, if_none_match, seeded, key)


def _many(request: Any, fmt: Format, settings: Settings) -> Bundle:
    tensors, meta = admission.admit_many(request, fmt, settings)
    return delivery.many(tensors, meta)  # type: ignore[arg-type]


def _content(single: bool) -> dict[str, Any]:
    return {f.media_type: {"schema": f.openapi_schema} for f in holding(single).values()}


def _tensor_responses(description: str, content: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": content}, **documented(304, 406, 413, 422)}


def _names(single: bool) -> str:
    return ", ".join(holding(single))


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


# Swagger's "Try it out" starts from the first example and ReDoc shows them: each is a valid request
# (tests/api/test_openapi_examples.py sends every one).
INIT_EXAMPLES: dict[str, Any] = {
    "one tensor": {
        "summary": "a [256, 784] Kaiming-normal weight (safetensors)",
        "value": {"shape": [256, 784], "scheme": "kaiming_normal", "seed": 7},
    },
    "json": {
        "summary": "a small tensor as JSON",
        "value": {"shape": [2, 3], "scheme": "xavier_uniform", "seed": 7, "format": "json"},
    },
    "many tensors": {
        "summary": "a layer's weight and bias in one file",
        "value": {
            "seed": 7,
            "tensors": {
                "fc.weight": {"shape": [256, 784], "scheme": "kaiming_normal"},
                "fc.bias": {"shape": [256], "scheme": "zeros"},
            },
        },
    },
}


@router.post(
    "/init",
    summary="Generate initialised tensors",
    response_class=Response,
    responses=_tensor_responses(
        f"The tensor ({_names(True)}), or many tensors ({_names(False)})", {**_content(True), **_content(False)}
    ),
    openapi_extra={"parameters": _HEADER_PARAMETERS},
)
async def init(request: Annotated[InitBody, Body(openapi_examples=INIT_EXAMPLES)], http: Request) -> Response:
    return await deliver(http, request, http.headers.get("accept"), http.headers.get("if-none-match"))


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
    _query(
        "scheme", "a scheme name (GET /schemes); its parameters are further query parameters", example="kaiming_normal"
    ),
    _query("seed", "in [0, 2^64); seeded responses are immutable and cacheable by any HTTP cache", example=7),
    _query("dtype", "float32 (default), float64, float16, bfloat16"),
    _query("layout", "torch or keras; default: the scheme's family"),
    _query("fan_in", "overrides the fan_in of the shape"),
    _query("fan_out", "overrides the fan_out of the shape"),
    _query("name", "tensor name (default weight)"),
    _query("format", f"{_names(True).replace(', ', ' (default), ', 1)}; or by Accept"),
    _query("rng", "random algorithm id: philox-v1 (default) or philox-v2"),
    _query("slice", "only this region: start:stop per dimension, comma-separated", example="0:128,0:784"),
]


@router.get(
    "/init",
    summary="Generate an initialised tensor (query-string form, for HTTP caches and CDNs)",
    description=(
        "The same request as POST /init, as query parameters: `shape=256,784`, `slice=0:128,0:784`, the scheme's "
        "parameters by name (`mode=fan_out`). Validated by the same models, with the same errors (located in "
        "`query`). With a seed the response carries `Cache-Control: public, max-age=31536000, immutable`; "
        "without one, `no-store`. HEAD answers the same status and headers (ETag, Content-Length) without generating."
    ),
    response_class=Response,
    responses=_tensor_responses(
        f"The tensor ({_names(True)}); streamed with Content-Length above the threshold", _content(True)
    ),
    openapi_extra={"parameters": [*_QUERY_PARAMETERS, *_HEADER_PARAMETERS]},
)
async def init_query(http: Request) -> Response:
    request = _query_request(http)
    try:
        return await deliver(http, request, http.headers.get("accept"), http.headers.get("if-none-match"))
    except InitError as error:
        raise type(error)(error.field, error.message, where="query") from None


@router.head("/init", include_in_schema=False)
async def init_query_head(http: Request) -> Response:
    """GET /init's status and headers (ETag, Content-Length, Cache-Control) for HTTP caches and CDNs, from the
    request's plan: nothing is generated."""
    request = _query_request(http)
    try:
        fmt = delivery.negotiate(request.format, http.headers.get("accept"), True)
        bundle = delivery.single(admission.admit_single(request, fmt, http.app.state.settings))
        how: delivery.Delivery = http.app.state.delivery
        return how.head(bundle, fmt, http.headers.get("if-none-match"), request.seed is not None)
    except InitError as error:
        raise type(error)(error.field, error.message, where="query") from None


def _query_request(http: Request) -> Any:
    try:
        return _INIT.validate_python(query_body(http.scope["query_string"]))
    except ValidationError as error:
        raise RequestValidationError([{**e, "loc": ("query", *e["loc"])} for e in error.errors()]) from None


assert set(FORMATS) == set(holding(True)) | set(holding(False)), "every format holds one tensor or many"
