"""Every error is a 4xx whose body names the field and the rule: {"detail": [{"loc", "msg", "type"}]}.

Pydantic's messages are reworded where they would confuse a client: the discriminator's internals leave the
location, unknown schemes list the known ones, and a parameter of another scheme says whose parameters are whose.
An exception nothing else handles is a bug: it is answered 500 in the same shape, naming the request id under
which its traceback is logged, never as the framework's plain-text page.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.budget import BudgetBusyError
from service.api.delivery import NotAcceptableError
from service.api.schemas import strip_union_tags
from service.engine.errors import InitError, TooLargeError
from service.engine.schemes.gain import NONLINEARITIES
from service.engine.schemes.registry import REGISTRY


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):  # the one error shape, documented in the OpenAPI schema
    detail: list[ErrorItem]


class ErrorResponse(JSONResponse):
    """An error body, whatever text it quotes: a lone surrogate (a client's `"\\ud800"`) has no UTF-8 encoding,
    so it is written as the JSON escape it came as instead of failing the response."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
        return text.encode("utf-8", "backslashreplace")


_DOCUMENTED = {
    304: "Not modified: the If-None-Match ETag matches",
    406: "No acceptable format in the Accept header",
    413: "The tensor is larger than a configured limit (the message names it)",
    422: "Invalid request: the message names the field and the rule",
}


def documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """An operation's own responses for its OpenAPI document (the error ones in the one error shape)."""
    return {
        code: {"description": _DOCUMENTED[code]}
        if code == 304
        else {"model": ErrorBody, "description": _DOCUMENTED[code]}
        for code in codes
    }


def error_response(
    status: int, loc: list[Any], msg: str, kind: str, headers: dict[str, str] | None = None
) -> ErrorResponse:
    """Every error the service sends, from an exception handler or straight from a middleware (a response is an
    ASGI app: `await error_response(...)(scope, receive, send)`)."""
    return ErrorResponse({"detail": [{"loc": loc, "msg": msg, "type": kind}]}, status_code=status, headers=headers)


class RequestRefused(StarletteHTTPException):
    """A request refused before its models see it (its JSON text, its query string): 422 naming where and why.
    An HTTPException, so that FastAPI's body reading passes it on rather than calling it a parse error (400)."""

    def __init__(self, loc: list[Any], msg: str, kind: str) -> None:
        super().__init__(422, msg)
        self.loc, self.msg, self.kind = loc, msg, kind


# Where the observing middleware leaves the request id in the scope, for the 500 handler to name it to the client.
REQUEST_ID_KEY = "initserve.request_id"
# Where a request's fields come from: the JSON body, or the query string of GET /init (same models, same rules).
_SOURCES = ("body", "query")


def _field_path(loc: list[Any]) -> str:
    if loc[:1] in (["body"], ["query"]):
        return ".".join(str(p) for p in loc[1:] if p not in _SOURCES) or loc[0]
    return ".".join(map(str, loc)) or "body"


def _reword(error: dict[str, Any]) -> dict[str, Any]:
    loc, scheme = strip_union_tags(error["loc"])
    kind, msg = error["type"], error["msg"]
    at = loc or ["body"]  # where the field is: a scheme's tag names the object it sits in
    if kind == "union_tag_invalid":
        tag = error.get("ctx", {}).get("tag")
        close = difflib.get_close_matches(str(tag), REGISTRY, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        loc, msg = [*at, "scheme"], f"unknown scheme {tag!r}; {hint}known schemes: {', '.join(REGISTRY)}"
    elif kind == "union_tag_not_found":
        loc, msg = [*at, "scheme"], "field 'scheme' is required (GET /schemes lists them)"
    elif kind == "extra_forbidden" and scheme is not None:
        field = loc[-1]
        own = ", ".join(p.name for p in REGISTRY[scheme].params) or "none"
        owners = [s.name for s in REGISTRY.values() if s.param(str(field))]
        if owners:
            msg = (
                f"{field!r} is not a parameter of scheme {scheme!r} (its parameters: {own}); "
                f"it belongs to {', '.join(owners[:6])}"
            )
        else:
            msg = f"unknown field {field!r} (scheme {scheme!r} takes: {own})"
    elif kind == "extra_forbidden":
        msg = f"unknown field {loc[-1]!r}"
    elif kind == "missing" and loc == ["body"]:
        msg = "a JSON object body is required"
    else:
        msg = f"{_field_path(loc)}: {msg}"
    return {"loc": loc, "msg": msg, "type": kind}


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return ErrorResponse({"detail": [_reword(e) for e in exc.errors()]}, status_code=422)


# Fields whose values are names from a fixed list: the engine's refusal keeps the framework's words (torch's
# "Unsupported nonlinearity gelu"), and the client also gets the names it could have sent.
_ACCEPTED = {"nonlinearity": NONLINEARITIES}


async def _init_error(request: Request, exc: InitError) -> JSONResponse:
    status = 413 if isinstance(exc, TooLargeError) else 422
    kind = "too_large" if status == 413 else "value_error"
    accepted = _ACCEPTED.get(exc.field)
    msg = f"{exc.message}; accepted: {', '.join(accepted)}" if accepted else exc.message
    return error_response(status, [exc.where, exc.field], msg, kind)


async def _budget_busy(request: Request, exc: BudgetBusyError) -> JSONResponse:
    return error_response(503, ["body", exc.field], str(exc), "busy", {"Retry-After": str(exc.retry_after)})


async def _refused(request: Request, exc: RequestRefused) -> JSONResponse:
    return error_response(exc.status_code, exc.loc, exc.msg, exc.kind)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """The last resort (Starlette's outermost layer): the traceback is logged by the observing middleware under
    the request id, which the client gets to quote."""
    request_id = request.scope.get(REQUEST_ID_KEY, "")
    msg = f"internal server error; its details are logged under request id {request_id!r}"
    headers = {"X-Request-ID": request_id} if request_id else None
    return error_response(500, ["server"], msg, "internal_error", headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Framework errors in our error shape. A body FastAPI cannot even decode (not UTF-8) is invalid JSON: 422,
    like every other malformed body, rather than a 400 of a different shape."""
    if exc.status_code == 400 and "parsing the body" in str(exc.detail):
        msg = "the body could not be parsed as JSON (not UTF-8, numbers too long, or nested too deep)"
        return error_response(422, ["body"], msg, "json_invalid")
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    msg = str(exc.detail)
    path = request.url.path
    if exc.status_code == 404 and path != "/" and path.rstrip("/") in request.app.openapi().get("paths", {}):
        msg = f"no path {path!r}; did you mean {path.rstrip('/')!r} (without the trailing slash)?"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed(request, headers.get("Allow", ""))
    return error_response(exc.status_code, ["request"], msg, kind, headers)


def _allowed(request: Request, given: str) -> str:
    """Every method this path serves: Starlette's 405 names only the first matching route's (/init has two)."""
    documented = request.app.openapi().get("paths", {}).get(request.url.path, {})
    methods = {m.strip().upper() for m in given.split(",") if m.strip()} | {m.upper() for m in documented}
    return ", ".join(sorted(methods))


async def _not_acceptable(request: Request, exc: NotAcceptableError) -> JSONResponse:
    formats = ", ".join(f"{media} ({fmt})" for fmt, media in exc.media_types.items())
    return error_response(
        406, ["header", "accept"], f"cannot produce {exc.accept!r}; available: {formats}", "not_acceptable"
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(Exception, _unexpected)
    app.add_exception_handler(RequestRefused, _refused)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(BudgetBusyError, _budget_busy)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(InitError, _init_error)  # type: ignore[arg-type]
    app.add_exception_handler(NotAcceptableError, _not_acceptable)  # type: ignore[arg-type]
