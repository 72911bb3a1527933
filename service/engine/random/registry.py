"""The RNG registry: every module of `random/rngs/` exposing `RNG` (a `random.rng.Rng`) is an `rng` id requests
can name. Adding an algorithm is adding its module (and its contract document); nothing else lists them."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable

from service.engine.errors import InitError
from service.engine.random import rngs
from service.engine.random.rng import Rng

DEFAULT_RNG = "philox-v1"  # what a request that names no rng gets


def _discover() -> dict[str, Rng]:
    entries: dict[str, Rng] = {}
    for module in pkgutil.iter_modules(rngs.__path__):
        entry = importlib.import_module(f"{rngs.__name__}.{module.name}").RNG
        if entry.id in entries:
            raise RuntimeError(f"two rng modules claim the id {entry.id!r}")
        entries[entry.id] = entry
    return entries


REGISTRY: dict[str, Rng] = _discover()
RNGS: tuple[str, ...] = tuple(sorted(REGISTRY))


def get_rng(rng_id: str) -> Rng:
    try:
        return REGISTRY[rng_id]
    except KeyError:
        raise InitError("rng", f"unknown rng {rng_id!r}; known: {', '.join(RNGS)}") from None


def compile_kernels(rng_ids: Iterable[str] = RNGS) -> None:
    """Compile (or load from numba's on-disk cache) every kernel these rngs call, so that no request pays for a
    compile (seconds each). Compiled for the argument types the engine passes, not run: code built for another CPU
    than this one (NUMBA_CPU_NAME, at image build) may not run here."""
    for rng_id in rng_ids:
        for _, kernel, signature in REGISTRY[rng_id].kernels():
            kernel.compile(signature)
