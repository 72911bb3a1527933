"""The query-string form of a request (`GET /init?shape=256,784&scheme=kaiming_normal&seed=7`).

Every value arrives as text. Each is turned into the type the request declares for it (the registry's type for
a scheme parameter), and the result goes through the same strict models as a JSON body, so a GET gets the same
errors as the equivalent POST. Text that does not read as its type is passed on unchanged, for the models to
refuse with their usual message ("Input should be a valid integer"). Numbers are ASCII digits only (Python's
int() also reads `٧`), and the query string must be UTF-8 after percent-decoding: a replacement character would
silently change the tensor's name, and with it its random stream.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from service.api.schemas import InitFields
from service.engine.plan import MAX_RANK
from service.engine.schemes.registry import REGISTRY, Axes, AxisList, Number

_INTEGER = re.compile(r"[+-]?[0-9]+")
NUMBER_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_NUMBER = re.compile(NUMBER_PATTERN)
_INTEGER_FIELDS = ("seed", "fan_in", "fan_out")
# Every integer a request takes is below 2^64 (20 digits); leading zeros aside, longer text is no valid value,
# and Python refuses to read more than 4,300 digits at all.
MAX_DIGITS = 100


class _RefusedError(ValueError):
    """Text that is refused before the models see it, at `loc` within its parameter."""

    def __init__(self, kind: str, msg: str, loc: tuple[int, ...] = ()) -> None:
        super().__init__(msg)
        self.kind, self.msg, self.loc = kind, msg, loc

    def within(self, *outer: int) -> _RefusedError:
        return _RefusedError(self.kind, self.msg, (*outer, *self.loc))


def _refusal(loc: tuple[Any, ...], kind: str, msg: str, value: str) -> ValidationError:
    error = InitErrorDetails(type=PydanticCustomError(kind, msg), loc=loc, input=value)
    return ValidationError.from_exception_data("query", [error])


def _read_as_number(text: str, read: Callable[[str], Any]) -> bool:
    try:
        read(text)
    except ValueError:
        return False
    return True


def _integer(text: str) -> Any:
    if not text.isascii() and _read_as_number(text, int):  # int() reads any script's digits: `٧` is 7
        raise _RefusedError("int_parsing", "an integer in ASCII digits (0-9)")
    if not _INTEGER.fullmatch(text):
        return text
    if len(text.lstrip("+-")) > MAX_DIGITS:
        raise _RefusedError("int_too_long", f"an integer of at most {MAX_DIGITS} digits (valid values have at most 20)")
    return int(text)


def _number(text: str) -> Any:
    if not text.isascii() and _read_as_number(text, float):
        raise _RefusedError("float_parsing", "a number in ASCII digits (0-9)")
    return float(text) if _NUMBER.fullmatch(text) else text


def _integers(text: str) -> list[Any]:
    """`256,784` -> [256, 784]; empty text is the empty list (a 0-D shape)."""
    if not text.strip():
        return []
    values = []
    for index, part in enumerate(text.split(",")):
        try:
            values.append(_integer(part.strip()))
        except _RefusedError as error:
            raise error.within(index) from None
    return values


def _bounds(text: str) -> list[Any]:
    """`0:128,0:784` -> [[0, 128], [0, 784]]; a piece without one colon stays text (the model refuses it)."""
    if not text.strip():
        return []
    pieces: list[Any] = []
    for index, piece in enumerate(text.split(",")):
        start, colon, stop = piece.partition(":")
        if not colon or ":" in stop:
            pieces.append(piece)
            continue
        bound = []
        for end, part in enumerate((start, stop)):
            try:
                bound.append(_integer(part.strip()))
            except _RefusedError as error:
                raise error.within(index, end) from None
        pieces.append(bound)
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
    if param is not None and param.type in (float, Number):
        return _number
    if param is not None and param.type is Axes:  # in_axis=-2 or in_axis=0,1
        return lambda text: _integers(text) if "," in text else _integer(text)
    if param is not None and param.type is AxisList:  # input_axes=0,1
        return _integers
    return str


def _text(raw: bytes, name: str | None = None) -> str:
    """Percent-decoded as URLs are (`+` is a space), then read as UTF-8, strictly; `name` is the parameter's
    (None: this is the name)."""
    data = unquote_to_bytes(raw.replace(b"+", b" "))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        text = data.decode("utf-8", "replace")
        what = "the value" if name is not None else "the parameter name"
        msg = f"{what} is not valid UTF-8 after percent-decoding (byte {error.start}: {error.reason})"
        raise _refusal((name if name is not None else text,), "unicode_invalid", msg, text) from None


def query_items(raw: bytes) -> list[tuple[str, str]]:
    """The query string's (name, value) pairs, `&`-separated, blank values kept."""
    items = []
    for field in raw.split(b"&"):
        if field:
            name, _, value = field.partition(b"=")
            key = _text(name)
            items.append((key, _text(value, key)))
    return items


def query_body(raw: bytes) -> dict[str, Any]:
    """The request body equivalent to a raw query string; a parameter given twice is refused."""
    values: dict[str, str] = {}
    for name, value in query_items(raw):
        if name in values:
            raise _refusal((name,), "repeated", "given more than once; give it once", value)
        values[name] = value
    scheme = values.get("scheme")
    body = {}
    for name, value in values.items():
        try:
            body[name] = _converter(name, scheme)(value)
        except _RefusedError as error:
            raise _refusal((name, *error.loc), error.kind, error.msg, value) from None
    return body


# The lists as text: up to MAX_RANK dimensions >= 1, or [start, stop) pairs (every valid integer has at most 19
# digits). How they compare with each other (a slice within its shape) is said in the operation's description.
_DIMENSION = "[1-9][0-9]{0,18}"
_BOUND = "[0-9]{1,19}:[0-9]{1,19}"
_LIST_PATTERNS = {
    "shape": f"^({_DIMENSION}(,{_DIMENSION}){{0,{MAX_RANK - 1}}})?$",
    "slice": f"^({_BOUND}(,{_BOUND}){{0,{MAX_RANK - 1}}})?$",
}
_KEYWORDS = ("type", "enum", "const", "minimum", "maximum", "minLength", "maxLength", "not")


def parameter_schema(name: str) -> dict[str, Any]:
    """The OpenAPI schema of a common query parameter: a pattern for a list, else the request model's own (its
    enum, range or lengths), so that the GET form documents the rules of the POST form."""
    if name in _LIST_PATTERNS:
        return {"type": "string", "pattern": _LIST_PATTERNS[name]}
    if name == "scheme":
        return {"type": "string", "enum": list(REGISTRY)}
    field = InitFields.model_json_schema()["properties"][name]
    given = next(branch for branch in field.get("anyOf", [field]) if branch.get("type") != "null")
    schema = {key: value for key, value in given.items() if key in _KEYWORDS}
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
    return schema
