"""Wire formats as a registry: each module of this package declares one `FORMAT`, and everything else reads them.

The API's content negotiation and its 406 listing, the request models' `format` values, the OpenAPI content types,
the CLI's `--format` and file extensions all come from FORMATS; adding a format is adding a module here. A format
writes a `Bundle` (one tensor, or many) as a header known before any value is generated and the tensors' data
chunk by chunk, so that a response of any size can be streamed.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson
from numpy.typing import NDArray

from service.engine.errors import InitError

DEFAULT = "safetensors"


class DTypeLike(Protocol):
    name: str
    numpy: np.dtype
    safetensors: str  # safetensors' dtype code
    npy_descr: str | None  # None: .npy has no standard code for it


class Tensor(Protocol):
    """What a format writes of one tensor; every tensor source of the service offers it."""

    @property
    def name(self) -> str: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def dtype(self) -> DTypeLike: ...
    @property
    def nbytes(self) -> int: ...

    def chunks(self, chunk_elements: int) -> Iterator[NDArray]:
        """The flat row-major values, as consecutive arrays of about chunk_elements."""
        ...


@dataclass(frozen=True)
class Bundle:
    """What one file holds: its tensors, in order, and the metadata at its top (JSON-native values): one tensor's
    own metadata when it is `single`, else the request-level fields plus `tensors`, a map name -> metadata."""

    tensors: Sequence[Tensor]
    metadata: dict[str, Any]
    single: bool

    def top_level(self) -> dict[str, Any]:
        """The metadata without the per-tensor map."""
        return {k: v for k, v in self.metadata.items() if k != "tensors"}

    def tensor_metadata(self, tensor: Tensor) -> dict[str, Any]:
        return self.metadata if self.single else self.metadata["tensors"][tensor.name]


# A piece of a body: bytes, or a tensor's data as a uint8 array (bytes-like, copied once into a buffer or bytes).
Part = bytes | memoryview | NDArray[np.uint8]
# The body's length when known before generation (None: JSON), and its parts.
Written = tuple[int | None, Iterator[Part]]


def data(tensor: Tensor, chunk_elements: int) -> Iterator[NDArray[np.uint8]]:
    """A tensor's data as raw little-endian bytes, chunk by chunk (viewed, not copied)."""
    for chunk in tensor.chunks(chunk_elements):
        yield chunk.reshape(-1).view(np.uint8)


def metadata_strings(metadata: dict[str, Any]) -> dict[str, str]:
    """String-valued metadata (safetensors): JSON-encode the values that are not strings; drop the missing ones."""
    return {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in metadata.items() if v is not None}


@dataclass(frozen=True)
class Format:
    name: str
    media_type: str
    extension: str  # of a file of this format, without the dot
    one: bool  # holds a single tensor
    many: bool  # holds many tensors
    write: Callable[[Bundle, int], Written]  # the bundle, elements per data chunk
    aliases: tuple[str, ...] = ()  # further media types an Accept header may name it by
    dtypes: frozenset[str] | None = None  # the dtypes it can hold (None: all)
    dtypes_why: str = ""  # why the others cannot be held
    check: Callable[[Bundle], None] | None = None  # what else it refuses (InitError at "format")
    check_doc: str = ""  # what `check` refuses, for the API's documentation
    max_bytes_per_element: dict[int, int] | None = None  # without a known length: most bytes per element by itemsize
    openapi_schema: dict[str, Any] = field(default_factory=lambda: {"type": "string", "format": "binary"})

    def holds(self, single: bool) -> bool:
        return self.one if single else self.many

    def rules(self, dtypes: Sequence[str]) -> str:
        """What it cannot hold, in words ("" when it holds anything), for the API's documentation."""
        refused = [name for name in dtypes if self.dtypes is not None and name not in self.dtypes]
        rules = [] if self.one and self.many else ["one tensor only" if self.one else "many tensors only"]
        rules += [f"no {name}" for name in refused] + ([self.check_doc] if self.check_doc else [])
        return f"`{self.name}` holds {', '.join(rules)}" if rules else ""

    def refuse_unholdable(self, bundle: Bundle) -> None:
        """InitError (422 at `format`) when this format cannot hold the bundle."""
        if self.dtypes is not None:
            for tensor in bundle.tensors:
                if tensor.dtype.name not in self.dtypes:
                    what = tensor.dtype.name if bundle.single else f"{tensor.name!r} as {tensor.dtype.name}"
                    why = f"({self.dtypes_why}); use safetensors, or another dtype"
                    raise InitError("format", f"format {self.name!r} cannot hold {what} {why}")
        if self.check is not None:
            self.check(bundle)

    def max_length(self, bundle: Bundle) -> int:
        """The body's length if it is known before generation, else an upper bound of it."""
        length, _ = self.write(bundle, 1)  # lazy: nothing is generated
        if length is not None:
            return length
        assert self.max_bytes_per_element is not None, f"format {self.name!r} declares no bound of its length"
        return sum(math.prod(t.shape) * self.max_bytes_per_element[t.dtype.numpy.itemsize] for t in bundle.tensors)


def _discover() -> dict[str, Format]:
    found = [importlib.import_module(f"{__name__}.{m.name}").FORMAT for m in pkgutil.iter_modules(__path__)]
    return {f.name: f for f in sorted(found, key=lambda f: (f.name != DEFAULT, f.name))}


FORMATS: dict[str, Format] = _discover()


def holding(single: bool) -> dict[str, Format]:
    """The formats that hold one tensor (single) or many, the default first."""
    return {name: f for name, f in FORMATS.items() if f.holds(single)}


def by_extension(suffix: str, single: bool) -> Format | None:
    """The format of a file name's suffix (".npy"), among those that hold one tensor (single) or many."""
    return next((f for f in holding(single).values() if f".{f.extension}" == suffix), None)
