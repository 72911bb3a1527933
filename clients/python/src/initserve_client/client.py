"""The HTTP side: one POST /init per call, the body decoded by its Content-Type, errors as ServiceError."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

import httpx

from initserve_client.decode import Tensor, Tensors, decode
from initserve_client.errors import InitserveError, ServiceError

if TYPE_CHECKING:
    from types import TracebackType

    import torch

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 60.0


def _error(response: httpx.Response) -> ServiceError:
    try:
        detail = response.json()["detail"]
        if not isinstance(detail, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):  # not the service's shape: a proxy's page, say
        text = response.text[:500]
        detail = [{"loc": ["response"], "msg": text or response.reason_phrase, "type": "http_error"}]
    try:
        retry_after = float(response.headers["retry-after"])
    except (KeyError, ValueError):  # absent, or an HTTP date (the service sends seconds)
        retry_after = None
    return ServiceError(response.status_code, detail, response.headers.get("x-request-id"), retry_after)


class Client:
    """A connection to an initserve service. `api_key` is sent as `Authorization: Bearer <key>` (the service's
    INITSERVE_API_KEYS). Use as a context manager, or call `close()`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def post(self, request: Mapping[str, Any]) -> Tensors:
        """POST /init with `request` (any body the service takes: one tensor, `tensors` or `model`), decoded."""
        response = self._http.post("/init", json=dict(request))
        if response.status_code >= 400:
            raise _error(response)
        seed = response.headers.get("x-initserve-seed")
        # .npy carries no metadata: what the headers say of it
        npy_metadata = {
            "name": request.get("name", "weight"),
            "seed": int(seed) if seed and seed.isdigit() else seed,
            "rng": response.headers.get("x-initserve-rng"),
        }
        return decode(response.content, response.headers.get("content-type", ""), npy_metadata)

    @overload
    def fetch_tensor(self, request: Mapping[str, Any], *, as_torch: Literal[False] = False) -> Tensor: ...
    @overload
    def fetch_tensor(self, request: Mapping[str, Any], *, as_torch: Literal[True]) -> torch.Tensor: ...

    def fetch_tensor(self, request: Mapping[str, Any], *, as_torch: bool = False) -> Tensor | torch.Tensor:
        """One tensor (`{"shape", "scheme", "seed", ...}`; `"format"`: safetensors, npy or json) as a Tensor: the
        NumPy array, its shape, dtype and metadata. `as_torch=True`: a torch tensor instead."""
        tensors = self.post(request)
        if len(tensors) != 1:
            raise InitserveError(f"the response holds {len(tensors)} tensors: use fetch_tensors")
        (name,) = tensors
        tensor = tensors.tensor(name)
        return tensor.torch() if as_torch else tensor

    @overload
    def fetch_tensors(self, request: Mapping[str, Any], *, as_torch: Literal[False] = False) -> Tensors: ...
    @overload
    def fetch_tensors(self, request: Mapping[str, Any], *, as_torch: Literal[True]) -> dict[str, torch.Tensor]: ...

    def fetch_tensors(self, request: Mapping[str, Any], *, as_torch: bool = False) -> Tensors | dict[str, torch.Tensor]:
        """Every tensor of a `tensors` or `model` request (`"format"`: safetensors, json or npz), in the file's
        order: a mapping name -> NumPy array with `.metadata` and `.tensor_metadata[name]`. `as_torch=True`: a
        dict name -> torch tensor (a state dict)."""
        tensors = self.post(request)
        return tensors.torch() if as_torch else tensors


def fetch_tensor(url: str, request: Mapping[str, Any], *, api_key: str | None = None, as_torch: bool = False) -> Any:
    """`Client(url, api_key).fetch_tensor(request)` in one call."""
    with Client(url, api_key) as client:
        return client.fetch_tensor(request, as_torch=as_torch)  # type: ignore[call-overload]


def fetch_tensors(url: str, request: Mapping[str, Any], *, api_key: str | None = None, as_torch: bool = False) -> Any:
    """`Client(url, api_key).fetch_tensors(request)` in one call."""
    with Client(url, api_key) as client:
        return client.fetch_tensors(request, as_torch=as_torch)  # type: ignore[call-overload]
