"""The catalogue: GET /schemes (the scheme registry) and GET /gain (torch.nn.init.calculate_gain)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from service.api.delivery import json_document
from service.api.errors import documented
from service.api.query import NUMBER_PATTERN
from service.engine.errors import InitError
from service.engine.schemes.gain import NONLINEARITIES, calculate_gain
from service.engine.schemes.registry import ALL_SCHEMES, KERAS_VERSIONS, NAMESPACES

router = APIRouter()


def _param_doc(param: Any) -> dict[str, Any]:
    return {
        "name": param.name,
        "type": param.kind,
        "required": param.required,
        "default": None if param.required else param.default,
        **{k: getattr(param, k) for k in ("ge", "gt", "le") if getattr(param, k) is not None},
        **({"choices": list(param.choices)} if param.choices else {}),
        "doc": param.doc,
    }


@router.get("/schemes", summary="The scheme catalogue", responses=documented(304))
def schemes(http: Request) -> dict[str, Any]:
    return json_document(http, _catalogue)  # type: ignore[return-value]


def _catalogue() -> dict[str, Any]:
    return {
        "namespaces": list(NAMESPACES),
        "keras_versions": list(KERAS_VERSIONS),
        "schemes": [
            {
                "name": s.name,
                "family": s.family,
                "alias_of": s.alias_of,
                "default_layout": s.default_layout,
                "formula": s.formula,
                "source": s.source,
                "params": [_param_doc(p) for p in s.params],
            }
            for s in ALL_SCHEMES
        ],
    }


def _slope(param: str | None) -> Any:
    if param is None or not param.isascii():  # float() reads any script's digits (`١` is 1): refused below
        return param
    try:
        return float(param)
    except ValueError:
        return param  # calculate_gain refuses it with torch's message


@router.get("/gain", summary="torch.nn.init.calculate_gain", responses=documented(304, 422))
def gain(
    http: Request,
    nonlinearity: Annotated[
        str,
        Query(
            description="linear, conv*d, conv_transpose*d, sigmoid, tanh, relu, leaky_relu or selu",
            json_schema_extra={"enum": list(NONLINEARITIES)},
            openapi_examples={"leaky_relu": {"value": "leaky_relu"}},
        ),
    ],
    param: Annotated[
        str | None,
        Query(
            description="negative slope for leaky_relu (default 0.01); ignored by the others",
            json_schema_extra={"pattern": NUMBER_PATTERN},
            openapi_examples={"0.2": {"value": "0.2"}},
        ),
    ] = None,
) -> dict[str, Any]:
    try:
        value = calculate_gain(nonlinearity, _slope(param))
    except InitError as error:
        raise InitError(error.field, error.message, where="query") from None
    return json_document(  # type: ignore[return-value]
        http, lambda: {"nonlinearity": nonlinearity, "param": _slope(param), "gain": value}
    )
