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
    """The request asks for more than a limit allows (HTTP 413). `limit` names a configurable limit by the engine's
    own name for it (the argument that passed it in, e.g. "max_tensor_elements"), None for a fixed one: the caller
    knows what configures it and says so with `configured_by`."""

    def __init__(self, field: str, message: str, where: str = "body", limit: str | None = None) -> None:
        super().__init__(field, message, where)
        self.limit = limit

    def configured_by(self, setting: str) -> TooLargeError:
        """The same error, its message naming `setting` as what sets the limit."""
        return TooLargeError(self.field, f"{self.message} ({setting})", self.where, self.limit)
