"""HTTP endpoints: thin wrappers that validate, apply limits, and hand over to the engine."""

from __future__ import annotations

import math
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from service.api import metrics, responses
from service.api.models import InitRequest, StatsRequest, TensorFields
from service.engine.errors import InitError, TooLargeError
from service.engine.gain import calculate_gain
from service.engine.plan import Plan, make_plan
from service.engine.schemes import REQUIRED, SCHEMES
from service.engine.stats import stats_working_bytes, tensor_stats
from service.settings import Settings, get_settings

router = APIRouter()

# A seed we draw is below 2^53 so that every JSON client (JavaScript's Number included) can read it back exactly.
DRAWN_SEED_BOUND = 1 << 53


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


def plan_request(request: TensorFields, limit: int, limit_name: str) -> Plan:
    numel = math.prod(request.shape)
    if numel > limit:
        raise TooLargeError(
            "shape",
            f"shape {request.shape} has {numel} elements; the limit is {limit} (INITSERVE_{limit_name.upper()})",
        )
    seed = request.seed if request.seed is not None else secrets.randbelow(DRAWN_SEED_BOUND)
    return make_plan(request.to_engine(seed))


_TENSOR_CONTENT = {
    media: {"schema": {"type": "string", "format": "binary"}}
    for media in (responses.MEDIA_TYPES["safetensors"], responses.MEDIA_TYPES["npy"])
}
_TENSOR_CONTENT["application/json"] = {
    "schema": {"type": "object", "description": "metadata fields and `data`, the flat row-major values"}
}


@router.post(
    "/init",
    summary="Generate an initialised tensor",
    response_class=Response,
    responses={
        200: {"description": "The tensor (safetensors, JSON or .npy)", "content": _TENSOR_CONTENT},
        **_errors(304, 406, 413, 422),
    },
)
def init(
    request: Annotated[InitRequest, Body()],
    settings: Annotated[Settings, Depends(get_settings)],
    http: Request,
    accept: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    fmt = responses.negotiate(request.format, accept)
    limit, limit_name = (
        (settings.max_json_elements, "max_json_elements") if fmt == "json" else (settings.max_elements, "max_elements")
    )
    plan = plan_request(request, limit, limit_name)
    with http.app.state.budget.reserve(plan.nbytes):
        response = responses.tensor_response(plan, fmt, if_none_match)
    if response.status_code == 200:
        metrics.record_generation(plan.scheme.name, plan.numel, plan.nbytes)
    return response


@router.post(
    "/stats",
    summary="Theoretical vs empirical statistics of the tensor /init would return",
    responses=_errors(413, 422),
)
def stats(
    request: Annotated[StatsRequest, Body()], settings: Annotated[Settings, Depends(get_settings)], http: Request
) -> dict[str, Any]:
    plan = plan_request(request, settings.max_stats_elements, "max_stats_elements")
    with http.app.state.budget.reserve(stats_working_bytes(plan)):
        result = {"metadata": plan.metadata(), **tensor_stats(plan, bins=request.bins)}
    metrics.record_generation(plan.scheme.name, plan.numel, plan.nbytes)
    return result


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


@router.get("/schemes", summary="The scheme catalogue")
def schemes() -> dict[str, Any]:
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
    if param is None:
        return None
    try:
        return float(param)
    except ValueError:
        return param  # calculate_gain refuses it with torch's message


@router.get("/gain", summary="torch.nn.init.calculate_gain", responses=_errors(422))
def gain(
    nonlinearity: Annotated[
        str, Query(description="linear, conv*d, conv_transpose*d, sigmoid, tanh, relu, leaky_relu or selu")
    ],
    param: Annotated[str | None, Query(description="negative slope for leaky_relu (default 0.01)")] = None,
) -> dict[str, Any]:
    try:
        value = calculate_gain(nonlinearity, _slope(param))
    except InitError as error:
        raise InitError(error.field, error.message, where="query") from None
    return {"nonlinearity": nonlinearity, "param": _slope(param), "gain": value}


async def not_acceptable(request: Any, exc: responses.NotAcceptableError) -> JSONResponse:
    formats = ", ".join(f"{media} ({fmt})" for fmt, media in responses.MEDIA_TYPES.items())
    return JSONResponse(
        {
            "detail": [
                {
                    "loc": ["header", "accept"],
                    "msg": f"cannot produce {exc.accept!r}; available: {formats}",
                    "type": "not_acceptable",
                }
            ]
        },
        status_code=406,
    )


_ = REQUIRED  # the catalogue reports required parameters through Param.required
