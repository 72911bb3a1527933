"""JSON request bodies read strictly, so that what a client wrote is what keys the random stream.

Python's JSON reader keeps the last of two equal keys (a tensor silently dropped from `tensors`), and reads
`"\\ud800"` (or UTF-8-encoded surrogates, through `surrogatepass`) as a lone surrogate, which has no UTF-8 form
to key a stream or name a tensor. Both are refused with a 422 naming where they are. The text is decoded from
the encoding JSON allows (RFC 8259's detection: UTF-8, or UTF-16/32 by their zero bytes), strictly.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from service.api.errors import RequestRefused

# A \u escape of a surrogate; only a body with one can hold a lone surrogate, so only such a body is walked.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class _Repeated(dict[str, Any]):
    """A JSON object that gave `key` more than once (told apart so that the error can say where it is)."""

    repeated: str


def _marked(pairs: list[tuple[str, Any]], result: dict[str, Any]) -> _Repeated:
    marked, seen = _Repeated(result), set()
    for key, _ in pairs:
        if key in seen:
            marked.repeated = key
            break
        seen.add(key)
    return marked


def _repeated_key(value: Any, loc: list[Any]) -> tuple[list[Any], str] | None:
    if isinstance(value, _Repeated):
        return loc, value.repeated
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        if (found := _repeated_key(child, [*loc, key])) is not None:
            return found
    return None


def _lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _surrogate_at(value: Any, loc: list[Any]) -> list[Any] | None:
    if isinstance(value, str):
        return loc if _lone_surrogate(value) else None
    if isinstance(value, dict):
        for key, child in value.items():
            if _lone_surrogate(key):
                return [*loc, key]
            if (found := _surrogate_at(child, [*loc, key])) is not None:
                return found
    if isinstance(value, list):
        for index, child in enumerate(value):
            if (found := _surrogate_at(child, [*loc, index])) is not None:
                return found
    return None


def _path(loc: list[Any]) -> str:
    return ".".join(map(str, loc[1:])) or "body"


def loads(body: bytes) -> Any:
    """The body's JSON value; RequestRefused (422) for text that is not valid Unicode or for a repeated key.
    Malformed JSON is refused (422, `json_invalid`) at its character offset, the message giving its line and
    column and what was expected there."""
    encoding = json.detect_encoding(body)
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as error:
        msg = f"the body is not valid {encoding.upper()} (byte {error.start}: {error.reason}); send UTF-8 JSON"
        raise RequestRefused(["body"], msg, "unicode_invalid") from None
    repeats: list[_Repeated] = []

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) == len(pairs):
            return result
        repeats.append(_marked(pairs, result))
        return repeats[-1]

    try:
        value = json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as error:
        ended = " (the body ends there: cut short?)" if error.pos >= len(text.rstrip()) else ""
        msg = f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}{ended}"
        raise RequestRefused(["body", error.pos], msg, "json_invalid") from None
    # Only a body with a repeated key is walked, to say where it is.
    if repeats and (found := _repeated_key(value, ["body"])) is not None:
        loc, key = found
        msg = f"{_path(loc)}: key {key!r} is given more than once; each key of a JSON object must be unique"
        raise RequestRefused(loc, msg, "duplicate_key")
    if _SURROGATE_ESCAPE.search(text) and (loc := _surrogate_at(value, ["body"])) is not None:
        msg = f"{_path(loc)}: text must be valid Unicode; a \\ud800-\\udfff escape must be half of a surrogate pair"
        raise RequestRefused(loc, msg, "unicode_invalid")
    return value


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """A route whose JSON body is read by `loads`."""

    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict
