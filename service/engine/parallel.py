"""How the engine spends the machine: worker threads, the chunk each one takes, and whether the numba kernels run.

A range of flat elements is cut into fixed chunks that the workers of one shared thread pool take in turn,
each writing its own slice of a preallocated output. Element i depends only on (stream, i), never on which
thread computed it or where a chunk began, so every thread count and chunk size gives the same bits
(tests/engine/test_parallel.py). Parallelism is real because the kernels release the GIL (numba ``nogil``; the
NumPy reference path releases it inside each ufunc).

The engine reads no settings: the application passes them in with `configure` once at start-up.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, replace

from service.engine import cancel

try:
    from service.engine.random.compiled import samplers  # noqa: F401  (compiles nothing yet: numba compiles on first call)

    JIT_AVAILABLE = True
except ImportError:  # numba absent: the NumPy reference path does everything
    JIT_AVAILABLE = False

DEFAULT_CHUNK_ELEMENTS = 1 << 17  # 512 KiB of float32: ~1 ms of work, so chunk overhead stays below 1%


def available_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one, e.g. under a container limit)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class EngineConfig:
    threads: int
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS
    jit: bool = JIT_AVAILABLE  # use the numba kernels (False: the NumPy reference path)

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.chunk_elements < 1:
            raise ValueError(f"chunk_elements must be >= 1, got {self.chunk_elements}")
        if self.jit and not JIT_AVAILABLE:
            raise ValueError("jit=True needs numba, which is not installed")


_lock = threading.Lock()
_config = EngineConfig(threads=available_cores())
_pool: futures.ThreadPoolExecutor | None = None


def config() -> EngineConfig:
    return _config


def warm_up(fresh: bool = False) -> None:
    """Compile (or load from numba's disk cache) the kernels the configuration uses, so that no request pays for
    it: seconds on a cold cache, under one on a warm one. The application's readiness waits for it.

    `fresh`: ignore the disk cache and rewrite it (after a failed load: a corrupt cache fails every call)."""
    if _config.jit:
        from service.engine.random.compiled import base, samplers

        if fresh:
            base.forget_disk_cache()
        samplers.compile_all()


def configure(threads: int | None = None, chunk_elements: int | None = None, jit: bool | None = None) -> EngineConfig:
    """Change the given fields of the engine configuration; returns the new one."""
    global _config, _pool
    changes = {"threads": threads, "chunk_elements": chunk_elements, "jit": jit}
    new = replace(_config, **{key: value for key, value in changes.items() if value is not None})
    with _lock:
        if new.threads != _config.threads:
            # Not shut down: a call in flight may still hold it. Its idle threads exit once it is collected.
            _pool = None
        _config = new
    return new


@contextmanager
def configured(
    threads: int | None = None, chunk_elements: int | None = None, jit: bool | None = None
) -> Iterator[None]:
    """`configure` for the duration of a with-block (tests, benchmarks), then the previous configuration."""
    previous = _config
    configure(threads, chunk_elements, jit)
    try:
        yield
    finally:
        configure(previous.threads, previous.chunk_elements, previous.jit)


def _shared_pool(threads: int) -> futures.ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="initserve-engine")
        return _pool


def run_chunks(start: int, stop: int, task: Callable[[int, int], None]) -> None:
    """Call task(first, last) for consecutive chunks [first, last) covering [start, stop), on the workers.

    Each worker takes the next chunk as soon as it is free; `task` must write only its own chunk's output.
    Raises `cancel.WorkCancelledError` before the next chunk once the calling context's token is cancelled.
    """
    settings = _config
    step = settings.chunk_elements
    firsts = range(start, stop, step)
    token = cancel.current()  # read here: the pool's threads do not inherit the caller's context
    check = token.check if token is not None else _unchecked
    if settings.threads == 1 or len(firsts) <= 1:
        for first in firsts:
            check()
            task(first, min(first + step, stop))
        return

    pending = iter(firsts)
    take = threading.Lock()
    failed = threading.Event()

    def work() -> None:
        while not failed.is_set():
            with take:
                first = next(pending, None)
            if first is None:
                return
            try:
                check()
                task(first, min(first + step, stop))
            except BaseException:
                failed.set()  # the others stop at their next chunk
                raise

    pool = _shared_pool(settings.threads)
    running = [pool.submit(work) for _ in range(min(settings.threads, len(firsts)))]
    futures.wait(running)
    for future in running:
        future.result()  # re-raises a worker's exception


def _unchecked() -> None:
    """The check of work that nobody can cancel."""
