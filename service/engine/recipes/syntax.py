"""The compact layer syntax: `conv2d(3, 64, 3, stride=2, bias=false)`, optionally named: `conv1: conv2d(...)`.

    layer    := [name ":"] type ["(" [argument ("," argument)* [","]] ")"]
    argument := [identifier "="] value
    value    := integer | number | true | false | null | 'text' | "text" | "(" values ")" | "[" values "]"

Python spellings (True, False, None) are accepted too, so a PyTorch constructor call can be pasted. Nothing is
evaluated: the text is tokenised and parsed here, and `bind` checks the arguments against the layer type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from service.engine.errors import InitError

MAX_TEXT = 2000
MAX_DEPTH = 4  # nesting of lists in a value
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<text>'[^'\\]*'|"[^"\\]*")
      | (?P<punct>[(),=:\[\]])
    )""",
    re.VERBOSE,
)
_CONSTANTS = {"true": True, "True": True, "false": False, "False": False, "null": None, "None": None}
_CLOSING = {"(": ")", "[": "]"}


@dataclass
class LayerCall:
    type: str
    name: str | None = None
    positional: list[Any] = field(default_factory=list)
    keyword: dict[str, Any] = field(default_factory=dict)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise InitError(
                "layers", f"cannot read {text!r} at position {position}: {text[position : position + 12]!r}"
            )
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0

    def fail(self, expected: str) -> InitError:
        found = self.tokens[self.at][1] if self.at < len(self.tokens) else "the end"
        return InitError("layers", f"in {self.text!r}: expected {expected}, found {found!r}")

    def peek(self, value: str | None = None, kind: str | None = None) -> bool:
        if self.at >= len(self.tokens):
            return False
        token_kind, token = self.tokens[self.at]
        return (value is None or token == value) and (kind is None or token_kind == kind)

    def take(self, value: str | None = None, kind: str | None = None, expected: str = "") -> str:
        if not self.peek(value, kind):
            raise self.fail(expected or repr(value))
        self.at += 1
        return self.tokens[self.at - 1][1]

    def value(self, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise InitError("layers", f"in {self.text!r}: lists nest at most {MAX_DEPTH} deep")
        if self.peek(kind="number"):
            token = self.take(kind="number")
            return float(token) if any(c in token for c in ".eE") else int(token)
        if self.peek(kind="text"):
            return self.take(kind="text")[1:-1]
        if self.peek("(") or self.peek("["):
            closing = _CLOSING[self.take()]
            items = []
            while not self.peek(closing):
                items.append(self.value(depth + 1))
                if not self.peek(closing):
                    self.take(",", expected=f"',' or {closing!r}")
            self.take(closing)
            return items
        if self.peek(kind="word") and self.tokens[self.at][1] in _CONSTANTS:
            return _CONSTANTS[self.take(kind="word")]
        raise self.fail("a value")

    def layer(self) -> LayerCall:
        call = LayerCall("")
        if self.at + 1 < len(self.tokens) and self.tokens[self.at + 1][1] == ":":
            call.name = self.take(expected="a layer name")  # an identifier or an index such as 0
            self.take(":")
        call.type = self.take(kind="word", expected="a layer type")
        if self.peek("("):
            self.take("(")
            while not self.peek(")"):
                if self.peek(kind="word") and self.at + 1 < len(self.tokens) and self.tokens[self.at + 1][1] == "=":
                    key = self.take(kind="word")
                    self.take("=")
                    if key in call.keyword:
                        raise InitError("layers", f"in {self.text!r}: argument {key!r} given twice")
                    call.keyword[key] = self.value()
                elif call.keyword:
                    raise InitError("layers", f"in {self.text!r}: a positional argument follows a keyword argument")
                else:
                    call.positional.append(self.value())
                if not self.peek(")"):
                    self.take(",", expected="',' or ')'")
            self.take(")")
        if self.at != len(self.tokens):
            raise self.fail("the end of the layer")
        return call


def parse_layer(text: str) -> LayerCall:
    """`text` as a layer call; InitError names what could not be read."""
    if len(text) > MAX_TEXT:
        raise InitError("layers", f"a layer text is at most {MAX_TEXT} characters, got {len(text)}")
    return _Parser(text).layer()
