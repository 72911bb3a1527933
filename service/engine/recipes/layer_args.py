"""Layer arguments: each layer type declares its arguments (PyTorch's names and positional order) as data, and
`bind` checks a call against them the way Python binds a call to a signature, naming the argument at fault."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from service.engine.errors import InitError

ArgKind = Literal["count", "extent", "size", "flag", "index", "number", "text", "layer", "dims", "ignored"]
REQUIRED: Any = object()
MAX_SIZE_RANK = 8

_KIND_WORDS = {
    "count": "an integer >= 1",
    "extent": "an integer >= 0",
    "size": "an integer >= 1 or a non-empty list of them",
    "flag": "true or false",
    "index": "an integer or null",
    "number": "a finite number",
    "text": "a string",
    "layer": "a layer (its text or object)",
    "dims": "an integer >= 1 or a list of them and nulls (unknown sizes)",
    "ignored": "a number, string, boolean, null or a list of numbers",
}


@dataclass(frozen=True)
class Arg:
    """One argument of a layer type. `ignored` ones (stride, eps, dropout, ...) change no parameter: they are
    accepted so a PyTorch constructor call can be pasted as it is, and checked only for their JSON kind."""

    name: str
    kind: ArgKind
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return _is_int(value) and value >= 1


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def check_value(arg: Arg, value: Any) -> Any:
    """`value` normalised (sizes as tuples, numbers as float) if it has `arg`'s kind; InitError otherwise."""
    kind = arg.kind
    ok: bool
    if kind == "count":
        ok = _is_count(value)
    elif kind == "extent":
        ok = _is_int(value) and value >= 0
    elif kind == "size":
        if _is_count(value):
            return (value,)
        ok = isinstance(value, list | tuple) and 0 < len(value) <= MAX_SIZE_RANK and all(map(_is_count, value))
        value = tuple(value) if ok else value
    elif kind == "flag":
        ok = isinstance(value, bool)
    elif kind == "index":
        ok = value is None or _is_int(value)
    elif kind == "number":
        ok = _is_number(value)
        value = float(value) if ok else value
    elif kind == "text":
        ok = isinstance(value, str)
    elif kind == "dims":
        if _is_count(value):
            return (value,)
        ok = isinstance(value, list | tuple) and len(value) <= MAX_SIZE_RANK
        ok = ok and all(v is None or _is_count(v) for v in value)
        value = tuple(value) if ok else value
    elif kind == "layer":  # expanded where it is built, which checks it
        ok = isinstance(value, str | Mapping) or (value is None and arg.default is None)
    else:
        scalar = value is None or isinstance(value, bool | str) or _is_number(value)
        ok = scalar or (isinstance(value, list | tuple) and len(value) <= MAX_SIZE_RANK and all(map(_is_number, value)))
    if not ok:
        raise InitError(arg.name, f"{arg.name} must be {_KIND_WORDS[kind]}, got {value!r}")
    return value


def bind(layer: str, args: Sequence[Arg], positional: Sequence[Any], keyword: Mapping[str, Any]) -> dict[str, Any]:
    """Every argument of `layer` by name, defaults filled in; InitError names the argument and the rule."""
    signature = ", ".join(a.name if a.required else f"{a.name}={a.default!r}" for a in args)
    if len(positional) > len(args):
        raise InitError(
            "args", f"{layer}() takes at most {len(args)} positional arguments ({signature}), got {len(positional)}"
        )
    given = dict(zip((a.name for a in args), positional, strict=False))
    names = {a.name for a in args}
    for name, value in keyword.items():
        if name not in names:
            raise InitError(name, f"{layer}() has no argument {name!r}; its arguments: {signature or 'none'}")
        if name in given:
            raise InitError(name, f"{layer}() got {name!r} both by position and by name")
        given[name] = value
    bound = {}
    for arg in args:
        if arg.name in given:
            bound[arg.name] = check_value(arg, given[arg.name])
        elif arg.required:
            raise InitError(arg.name, f"{layer}() needs argument {arg.name!r} ({signature})")
        else:
            bound[arg.name] = arg.default
    return bound
