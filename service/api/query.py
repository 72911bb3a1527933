"""The query-string form of a request (`GET /init?shape=256,784&scheme=kaiming_normal&seed=7`).

Every value arrives as text. Each is turned into the type the request declares for it (the registry's type for
a scheme parameter), and the result goes through the same strict models as a JSON body, so a GET gets the same
errors as the equivalent POST. Text that does not read as its type is passed on unchanged, for the models to
refuse with their usual message ("Input should be a valid integer").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from service.engine.schemes import REGISTRY

_INTEGER = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_INTEGER_FIELDS = ("seed", "fan_in", "fan_out")


def _integer(text: str) -> Any:
    return int(text) if _INTEGER.fullmatch(text) else text


def _number(text: str) -> Any:
    return float(text) if _NUMBER.fullmatch(text) else text


def _integers(text: str) -> list[Any]:
    """`256,784` -> [256, 784]; empty text is the empty list (a 0-D shape)."""
    return [_integer(part.strip()) for part in text.split(",")] if text.strip() else []


def _bounds(text: str) -> list[Any]:
    """`0:128,0:784` -> [[0, 128], [0, 784]]; a piece without one colon stays text (the model refuses it)."""
    if not text.strip():
        return []
    pieces = []
    for piece in text.split(","):
        start, colon, stop = piece.partition(":")
        pieces.append([_integer(start.strip()), _integer(stop.strip())] if colon and ":" not in stop else piece)
    return pieces


def _converter(name: str, scheme: str | None) -> Any:
    if name == "shape":
        return _integers
    if name == "slice":
        return _bounds
    if name in _INTEGER_FIELDS:
        return _integer
    param = REGISTRY[scheme].param(name) if scheme in REGISTRY else None
    if param is not None and param.type is int:
        return _integer
    if param is not None and param.type is float:
        return _number
    return str


def query_body(items: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The request body equivalent to these query parameters; a parameter given twice is refused."""
    values: dict[str, str] = {}
    for name, value in items:
        if name in values:
            raise ValidationError.from_exception_data(
                "query",
                [
                    InitErrorDetails(
                        type=PydanticCustomError("repeated", "given more than once; give it once"),
                        loc=(name,),
                        input=value,
                    )
                ],
            )
        values[name] = value
    scheme = values.get("scheme")
    return {name: _converter(name, scheme)(value) for name, value in values.items()}
