"""Tensor responses: format negotiation, the bytes of each format, and the caching headers."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson
from fastapi import Response

from service.engine.errors import InitError
from service.engine.plan import Plan
from service.formats import jsonfmt, npy, safetensors

MEDIA_TYPES = {"safetensors": safetensors.MEDIA_TYPE, "json": jsonfmt.MEDIA_TYPE, "npy": npy.MEDIA_TYPE}
_ACCEPTED = {
    safetensors.MEDIA_TYPE: "safetensors",
    "application/octet-stream": "safetensors",
    jsonfmt.MEDIA_TYPE: "json",
    npy.MEDIA_TYPE: "npy",
}
_EXTENSIONS = {"safetensors": "safetensors", "json": "json", "npy": "npy"}
DEFAULT_FORMAT = "safetensors"


class NotAcceptableError(Exception):
    def __init__(self, accept: str) -> None:
        super().__init__(accept)
        self.accept = accept


def negotiate(explicit: str | None, accept: str | None) -> str:
    """The `format` field wins; else the Accept header's most preferred type we produce; else safetensors."""
    if explicit:
        return explicit
    if not accept:
        return DEFAULT_FORMAT
    ranked = []
    for position, item in enumerate(accept.split(",")):
        media, *options = (part.strip() for part in item.split(";"))
        quality = 1.0
        for option in options:
            if option.startswith("q="):
                try:
                    quality = float(option[2:])
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, position, media.lower()))
    for _, _, media in sorted(ranked):
        if media in _ACCEPTED:
            return _ACCEPTED[media]
        if media in ("*/*", "application/*"):
            return DEFAULT_FORMAT
    raise NotAcceptableError(accept)


def etag(plan: Plan, fmt: str) -> str:
    """Derived from everything that determines the bytes (request, service version, format), so a 304 can be
    answered before anything is generated. Weak for orthogonal, whose bits follow the machine's LAPACK."""
    digest = hashlib.sha256(
        orjson.dumps({"meta": plan.metadata(), "format": fmt}, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()[:32]
    return f'W/"{digest}"' if plan.distribution.kind == "orthogonal" else f'"{digest}"'


def safetensors_metadata(meta: dict[str, Any]) -> dict[str, str]:
    """safetensors metadata values are strings: JSON-encode the ones that are not."""
    return {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in meta.items() if v is not None}


def _filename(plan: Plan, fmt: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", plan.request.name)[:100] or "tensor"
    return f"{stem}.{_EXTENSIONS[fmt]}"


def body(plan: Plan, fmt: str) -> bytes:
    meta = plan.metadata()
    if fmt == "json":
        return jsonfmt.encode(plan.generate(), meta)
    data = plan.generate().tobytes()
    if fmt == "npy":
        if plan.dtype.npy_descr is None:
            raise InitError(
                "format",
                f"format 'npy' cannot hold {plan.dtype.name} (NumPy has no standard code for "
                "it); use safetensors, or another dtype",
            )
        return npy.header(plan.dtype.npy_descr, plan.shape) + data
    entry = safetensors.TensorEntry(plan.request.name, plan.dtype.safetensors, plan.shape, plan.nbytes)
    return safetensors.header([entry], safetensors_metadata(meta)) + data


def headers(plan: Plan, fmt: str) -> dict[str, str]:
    return {
        "ETag": etag(plan, fmt),
        "X-Initserve-Seed": str(plan.request.seed),
        "X-Initserve-Rng": plan.request.rng,
        "Content-Disposition": f'attachment; filename="{_filename(plan, fmt)}"',
    }


def if_none_match(header: str | None, tag: str) -> bool:
    if not header:
        return False
    candidates = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in candidates or tag.removeprefix("W/") in candidates


def tensor_response(plan: Plan, fmt: str, if_none_match_header: str | None) -> Response:
    head = headers(plan, fmt)
    if if_none_match(if_none_match_header, head["ETag"]):
        return Response(status_code=304, headers=head)
    return Response(body(plan, fmt), media_type=MEDIA_TYPES[fmt], headers=head)
