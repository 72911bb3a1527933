"""The one exception the engine raises for bad requests: it names the field and the rule broken."""

from __future__ import annotations


class InitError(ValueError):
    """A request the engine cannot honour; `field` is the request field at fault (e.g. "mode", "shape")."""

    def __init__(self, field: str, message: str, where: str = "body") -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.where = where  # "body" or "query": where the field was sent


class TooLargeError(InitError):
    """The request asks for more than a configured limit allows (HTTP 413)."""
