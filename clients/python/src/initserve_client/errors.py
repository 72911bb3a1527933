"""The client's exceptions: one base class, so `except InitserveError` catches everything the client itself raises.
Transport failures (connection refused, timeouts) stay httpx's own exceptions (`httpx.TransportError`)."""

from __future__ import annotations

from typing import Any


class InitserveError(Exception):
    """Anything the client refuses or cannot read."""


class DetailedError(InitserveError):
    """A refusal in the service's one error shape: `status` and `detail`, a list of
    `{"loc": [...], "msg": "...", "type": "..."}`."""

    def __init__(self, status: int, detail: list[dict[str, Any]]) -> None:
        self.status = status
        self.detail = detail
        lines = "; ".join(f"{'.'.join(map(str, item.get('loc', [])))}: {item.get('msg', '')}" for item in detail)
        super().__init__(f"HTTP {status}: {lines}")

    @property
    def messages(self) -> list[str]:
        return [str(item.get("msg", "")) for item in self.detail]


class ServiceError(DetailedError):
    """The service answered with an error status. `detail` is its JSON error body's list (the service's one error
    shape); `retry_after` is set on a 503 or 429 that says when to retry, `request_id` names the request in the
    service's logs."""

    def __init__(
        self,
        status: int,
        detail: list[dict[str, Any]],
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, detail)
        self.request_id = request_id
        self.retry_after = retry_after


class RequestError(DetailedError, ValueError):
    """`generate` refused a request, as the service would (status 422, the same `loc` and `type`, and the message
    the service gives where the client knows it), or because it cannot be computed locally bit for bit (orthogonal,
    rng torch-2.13, many-tensor and model requests: type `not_local`, fetch those from the service)."""


class FormatError(InitserveError):
    """A response body that is not what its media type says (cut short, malformed, an unknown dtype)."""


class UnsupportedModuleError(InitserveError, TypeError):
    """init_module met a module it cannot fill without guessing: a type the recipe language does not know that owns
    parameters itself, or a construction it cannot reproduce. The message names the module and lists what is
    supported."""
