"""A rectangular region of a tensor (one [start, stop) per dimension), generated at a cost proportional to it.

This is what lets each rank of a tensor-parallel job fetch only its shard. A region is a set of row-major
*runs*: the innermost sliced dimension and every full dimension after it form contiguous flat ranges of the
full tensor, repeated along the outer dimensions. Element-wise schemes compute any flat range on its own, so
the region is generated from its runs and its bits equal the same region of the full tensor. Short runs go to
the engine many at a time (`Plan.generate_runs`: one vectorised call per chunk's worth of work), long ones a
range at a time: the work is the region's size plus `RUN_OVERHEAD` per run, and `Region.cost` counts it so.

`orthogonal` and `sparse` need the whole matrix, and an rng without random access the whole tensor: the plan
computes it once and the region is cut from it, so their slices cost the full tensor (docs/reproducibility.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service.engine import parallel
from service.engine.dtypes import DType
from service.engine.errors import InitError
from service.engine.plan import CHUNK_ELEMENTS, Plan
from service.engine.schemes.distributions import RUN_OVERHEAD

Bounds = tuple[tuple[int, int], ...]

# Flat indices are int64 in NumPy: the largest tensor whose elements can be addressed at all.
MAX_ADDRESSABLE = (1 << 63) - 1


def check_bounds(shape: Sequence[int], bounds: Sequence[Sequence[int]], field: str = "slice") -> Bounds:
    """`bounds` as a tuple if it is one [start, stop) with 0 <= start < stop <= dim per dimension of `shape`."""
    if len(bounds) != len(shape):
        raise InitError(
            field, f"{field} needs one [start, stop) per dimension of shape {list(shape)}, got {len(bounds)}"
        )
    checked = []
    for axis, (pair, dim) in enumerate(zip(bounds, shape, strict=True)):
        if len(pair) != 2:
            raise InitError(field, f"{field}[{axis}] must be [start, stop], got {list(pair)}")
        start, stop = pair
        if not 0 <= start < stop <= dim:
            raise InitError(field, f"{field}[{axis}] = [{start}, {stop}) must satisfy 0 <= start < stop <= {dim}")
        checked.append((int(start), int(stop)))
    return tuple(checked)


@dataclass(frozen=True)
class Region:
    """The part `bounds` of `plan`'s tensor, or all of it when `bounds` is None (then identical to the plan)."""

    plan: Plan
    bounds: Bounds | None = None

    def __post_init__(self) -> None:
        if self.bounds is not None:
            object.__setattr__(self, "bounds", check_bounds(self.plan.shape, self.bounds))

    @property
    def shape(self) -> tuple[int, ...]:
        if self.bounds is None:
            return self.plan.shape
        return tuple(stop - start for start, stop in self.bounds)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def dtype(self) -> DType:
        return self.plan.dtype

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    @property
    def name(self) -> str:
        return self.plan.request.name

    def working_bytes(self, chunk_elements: int) -> int:
        """Memory `chunks(chunk_elements)` holds at once (`Plan.working_bytes` of the work it takes at a time)."""
        return self.plan.working_bytes(min(self.cost, chunk_elements))

    @property
    def machine_exact(self) -> bool:
        """The same bits on every machine (else equal to rounding error only: a weak ETag)."""
        return self.plan.distribution.machine_exact

    @property
    def cost(self) -> int:
        """Work to produce the region, in elements: the region itself plus RUN_OVERHEAD for every run after the
        first (a contiguous region costs what the same range of the whole tensor costs) and the distribution's
        once-per-tensor setup, or the whole tensor for whole-matrix schemes."""
        if not self.plan.random_access:
            return self.plan.numel
        return self.numel + RUN_OVERHEAD * (self.runs - 1) + self.plan.distribution.setup_cost()

    @property
    def runs(self) -> int:
        """Contiguous runs of the full tensor that make up the region."""
        return 1 if self.bounds is None else self._layout.count

    @property
    def run_length(self) -> int:
        return self.numel if self.bounds is None else self._layout.length

    def metadata(self) -> dict[str, Any]:
        meta = self.plan.metadata()
        if self.bounds is not None:
            meta["shape"] = list(self.shape)
            meta["full_shape"] = list(self.plan.shape)
            meta["slice"] = [list(pair) for pair in self.bounds]
        return meta

    def chunks(self, chunk_elements: int = CHUNK_ELEMENTS) -> Iterator[NDArray]:
        """The region's elements in row-major order and the output dtype, as arrays of at most about
        chunk_elements (small pieces joined: at most chunk_elements plus one run's worth)."""
        if self.bounds is None:
            yield from self.plan.chunks(0, self.plan.numel, chunk_elements)
        elif not self.plan.random_access:
            yield from _pieces(self._cut_from_whole(), chunk_elements)
        else:
            yield from _batched(self._layout.pieces(self.plan, chunk_elements), chunk_elements)

    def generate(self) -> NDArray:
        """The region as one flat array in the output dtype."""
        return self.fill(np.empty(self.numel, dtype=self.dtype.numpy))

    def fill(self, out: NDArray) -> NDArray:
        """Write the region into `out` (flat, `numel` elements of the output dtype), e.g. a view of a response
        buffer just after its header, so the values are copied once. Pieces are what the engine's threads
        compute at once, so that besides `out` this holds `Plan.working_bytes` of that many elements."""
        filled = 0
        engine = parallel.config()
        for chunk in self.chunks(engine.threads * engine.chunk_elements):
            out[filled : filled + chunk.size] = chunk
            filled += chunk.size
        return out

    def tensor(self) -> NDArray:
        return self.generate().reshape(self.shape)

    def _cut_from_whole(self) -> NDArray:
        assert self.bounds is not None
        whole = self.plan.generate().reshape(self.plan.shape)
        return np.ascontiguousarray(whole[tuple(slice(start, stop) for start, stop in self.bounds)]).reshape(-1)

    @cached_property
    def _layout(self) -> _Runs:
        assert self.bounds is not None
        return _Runs.of(self.plan.shape, self.bounds)


@dataclass(frozen=True)
class _Runs:
    """The region as runs of `length` contiguous flat elements, one per index of `grid` (the region's extents
    along the dimensions before the innermost sliced one) in row-major order: base + sum(index * strides)."""

    grid: tuple[int, ...]
    strides: tuple[int, ...]
    base: int  # flat index of the region's first element
    length: int  # elements per run

    @classmethod
    def of(cls, shape: tuple[int, ...], bounds: Bounds) -> _Runs:
        strides = [math.prod(shape[axis + 1 :]) for axis in range(len(shape))]
        sliced = [axis for axis, (pair, dim) in enumerate(zip(bounds, shape, strict=True)) if pair != (0, dim)]
        inner = sliced[-1] if sliced else 0  # every dimension after `inner` is whole: runs are contiguous
        length = (bounds[inner][1] - bounds[inner][0]) * strides[inner] if shape else 1
        base = sum(start * stride for (start, _), stride in zip(bounds, strides, strict=True))
        return cls(tuple(stop - start for start, stop in bounds[:inner]), tuple(strides[:inner]), base, length)

    @property
    def count(self) -> int:
        return math.prod(self.grid)

    def starts(self, first: int, last: int) -> NDArray[np.int64]:
        """Flat starts of runs [first, last). Exact in int64: each is at most the region's last flat index."""
        starts = np.full(last - first, self.base, dtype=np.int64)
        if self.grid:
            index = np.unravel_index(np.arange(first, last, dtype=np.int64), self.grid)
            for axis_index, stride in zip(index, self.strides, strict=True):
                starts += axis_index * stride
        return starts

    def pieces(self, plan: Plan, chunk_elements: int) -> Iterator[NDArray]:
        """The region in row-major order, as arrays of at most chunk_elements elements each."""
        if self.length >= min(chunk_elements, parallel.config().chunk_elements):
            # Long runs: each is ranges that the engine's threads share, as a whole tensor is.
            for run in range(self.count):
                start = int(self.starts(run, run + 1)[0])
                for first in range(start, start + self.length, chunk_elements):
                    yield plan.generate(first, min(first + chunk_elements, start + self.length))
            return
        # Short runs: a batch of them per call, as much work as a chunk (a run costs length + RUN_OVERHEAD).
        per_call = max(1, chunk_elements // (self.length + RUN_OVERHEAD))
        for first in range(0, self.count, per_call):
            yield plan.generate_runs(self.starts(first, min(first + per_call, self.count)), self.length)


def _pieces(flat: NDArray, chunk_elements: int) -> Iterator[NDArray]:
    for first in range(0, flat.size, chunk_elements):
        yield flat[first : first + chunk_elements]


def _batched(pieces: Iterator[NDArray], chunk_elements: int) -> Iterator[NDArray]:
    """Join small consecutive pieces into chunks of about chunk_elements (each chunk costs a thread hop when
    streamed, so a region of many tiny runs must not become as many chunks)."""
    pending: list[NDArray] = []
    size = 0
    for piece in pieces:
        if size and size + piece.size > chunk_elements:
            yield pending[0] if len(pending) == 1 else np.concatenate(pending)
            pending, size = [], 0
        pending.append(piece)
        size += piece.size
    if pending:
        yield pending[0] if len(pending) == 1 else np.concatenate(pending)
