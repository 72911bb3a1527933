"""How the engine spends the machine: worker threads, the chunk each one takes, and whether the numba kernels run.

A range of flat elements is cut into fixed chunks that the workers of one shared thread pool take in turn,
each writing its own slice of a preallocated output. Element i depends only on (stream, i), never on which
thread computed it or where a chunk began, so every thread count and chunk size gives the same bits
(tests/engine/test_parallel.py). Parallelism is real because the kernels release the GIL (numba ``nogil``; the
NumPy reference path releases it inside each ufunc).

The pool is shared by every caller, so it picks the next chunk by priority, not first come: the chunk of the
call whose *job* has the least work left (shortest remaining work first). A caller states its job's work in
elements with `job` (a context variable, like cancellation's token: the threads a task starts inherit it), and
each chunk done counts against it; a call outside any job is a job of its own size. So a small request's chunks
never queue behind the thousands of chunks of large ones in flight, and large jobs share what small ones leave.

The engine reads no settings: the application passes them in with `configure` once at start-up.
"""

from __future__ import annotations

import contextvars
import heapq
import importlib.util
import itertools
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from service.engine import cancel

# Found, not imported: numba reads its CPU target from the environment when first imported, and `initserve serve`
# chooses that target (service/kernels.py) after reading the settings, which import this module.
JIT_AVAILABLE = importlib.util.find_spec("numba") is not None  # absent: the NumPy reference path does everything

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
_pool: _Pool | None = None
_others_warm = False  # the other rngs' kernels are compiled (or loaded) in this process


def config() -> EngineConfig:
    return _config


def _forget_disk_cache() -> None:
    """numba's disk cache of every kernel, emptied (base.forget_disk_cache). Each rng's kernel modules are imported
    first: a kernel whose module a failed warm-up never reached still has its garbled cache, and failed the retry."""
    from service.engine.random.compiled import base
    from service.engine.random.registry import REGISTRY

    for rng in REGISTRY.values():
        rng.kernels()
    base.forget_disk_cache()


def warm_up(fresh: bool = False) -> None:
    """Compile (or load from numba's disk cache) the kernels the default rng uses under this configuration, so
    that no request pays for it: seconds on a cold cache, under one on a warm one. The application's readiness
    waits for it.

    `fresh`: ignore the disk cache and rewrite it (after a failed load: a corrupt cache fails every call)."""
    if _config.jit:
        from service.engine.random.registry import DEFAULT_RNG, compile_kernels

        if fresh:
            _forget_disk_cache()
        compile_kernels([DEFAULT_RNG])


def warm_up_other_rngs(fresh: bool = False) -> None:
    """The kernels of the rngs a request must name (always compiled: they have no NumPy path), after readiness:
    a request naming one meanwhile waits for its kernel's compile instead of every start waiting for all."""
    global _others_warm
    from service.engine.random.registry import DEFAULT_RNG, RNGS, compile_kernels

    if fresh:
        _forget_disk_cache()

    compile_kernels([rng_id for rng_id in RNGS if rng_id != DEFAULT_RNG])
    _others_warm = True


def compile_other_rngs_apart() -> list[str] | None:
    """The command of a child process that compiles the other rngs' kernels into numba's disk cache, for this
    process to load them from it after (0.1 s); None when that cannot help: the kernels are off, already here, or
    have no writable disk cache to meet in.

    Why apart: numba's compile holds the GIL for up to 0.6 s at a stretch (measured while it compiled the other
    rngs, 37 s in all on a cold cache, quiet machine), and a serving process's event loop needs the GIL at every
    step of every request: under load it answered nothing for over a minute."""
    if not _config.jit or _others_warm:
        return None
    from service.engine.random.compiled import base

    if not base.counts()[3]:
        return None
    return [sys.executable, "-c", f"from {__name__} import compile_other_rngs_here; compile_other_rngs_here()"]


def compile_other_rngs_here() -> None:
    """What the child of `compile_other_rngs_apart` runs: a failed load (a corrupt cache) is compiled afresh."""
    try:
        warm_up_other_rngs()
    except Exception:
        warm_up_other_rngs(fresh=True)


@dataclass(frozen=True)
class KernelCounts:
    """How the kernels' machine code came to be in this process so far: each (kernel, signature) once."""

    loaded: int  # from numba's disk cache
    compiled: int
    cpu: str  # the CPU numba generates code for: a name of LLVM's, e.g. x86-64-v3, or the host's own
    cached: bool  # numba keeps them on disk (False: no writable cache directory, every process compiles)


def kernel_counts() -> KernelCounts | None:
    """`KernelCounts` of the numba kernels, or None when they are off (the NumPy reference path serves)."""
    if not _config.jit:
        return None
    from service.engine.random.compiled import base

    return KernelCounts(*base.counts())


def configure(threads: int | None = None, chunk_elements: int | None = None, jit: bool | None = None) -> EngineConfig:
    """Change the given fields of the engine configuration; returns the new one."""
    global _config, _pool
    changes = {"threads": threads, "chunk_elements": chunk_elements, "jit": jit}
    new = replace(_config, **{key: value for key, value in changes.items() if value is not None})
    with _lock:
        if new.threads != _config.threads and _pool is not None:
            _pool.close()  # its threads finish the chunks queued on it, then exit
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


class Job:
    """The work a caller will ask of the engine, in elements; `remaining` falls as its chunks are taken."""

    def __init__(self, elements: int) -> None:
        self.remaining = elements


_job: contextvars.ContextVar[Job | None] = contextvars.ContextVar("initserve_job", default=None)


def job(elements: int) -> contextvars.Token[Job | None]:
    """Make the current context's engine calls (and those of the tasks and threads it starts from now on) one job
    of about `elements` of work, scheduled by what is left of it."""
    return _job.set(Job(elements))


class _Call:
    """One `run_chunks` call on the pool: the chunks not yet taken, and how many taken ones are still running."""

    def __init__(self, firsts: range, stop: int, task: Callable[[int, int], None], check: Callable[[], None]) -> None:
        self.firsts = iter(firsts)
        self.next = next(self.firsts, None)
        self.stop = stop
        self.step = firsts.step
        self.task = task
        self.check = check
        self.job = _job.get() or Job(stop - firsts.start)
        self.running = 0
        self.error: BaseException | None = None
        self.done = threading.Event()

    def priority(self) -> int:
        return self.job.remaining


class _Pool:
    """`threads` workers taking chunks by priority (see the module docstring); ties go first come, first served."""

    def __init__(self, threads: int) -> None:
        self._ready = threading.Condition()
        self._queue: list[tuple[int, int, _Call]] = []
        self._order = itertools.count()
        self._closed = False
        for index in range(threads):
            threading.Thread(target=self._work, name=f"initserve-engine-{index}", daemon=True).start()

    def run(self, call: _Call) -> None:
        """Queue `call`, wait for all its chunks, and raise the first exception one of them raised."""
        with self._ready:
            heapq.heappush(self._queue, (call.priority(), next(self._order), call))
            self._ready.notify()
        call.done.wait()
        if call.error is not None:
            raise call.error

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def _work(self) -> None:
        _engine_thread.is_engine = True
        while True:
            with self._ready:
                while not self._queue:
                    if self._closed:
                        return
                    self._ready.wait()
                _, order, call = heapq.heappop(self._queue)
                first = call.next
                if call.error is not None or first is None:
                    continue  # failed: the rest is dropped (the call ends when its running chunks have)
                last = min(first + call.step, call.stop)
                call.next = next(call.firsts, None)
                call.job.remaining -= last - first
                call.running += 1
                if call.next is not None:
                    heapq.heappush(self._queue, (call.priority(), order, call))
                    self._ready.notify()  # its next chunk, for an idle worker
            error = None
            try:
                call.check()
                call.task(first, last)
            except BaseException as raised:
                error = raised
            with self._ready:
                call.running -= 1
                if error is not None and call.error is None:
                    call.error = error  # the others stop at their next chunk
                if call.running == 0 and (call.next is None or call.error is not None):
                    call.done.set()


_engine_thread = threading.local()


def on_engine_thread() -> bool:
    """True on the pool's own threads (a fixed few, alive as long as the engine), False on a caller's."""
    return getattr(_engine_thread, "is_engine", False)


def _shared_pool(threads: int) -> _Pool:
    global _pool
    with _lock:
        if _pool is None:
            _pool = _Pool(threads)
        return _pool


def run_chunks(start: int, stop: int, task: Callable[[int, int], None]) -> None:
    """Call task(first, last) for consecutive chunks [first, last) covering [start, stop), on the workers.

    Each worker takes the next chunk of the call with the least work left in its job as soon as it is free; `task`
    must write only its own chunk's output. Raises `cancel.WorkCancelledError` before the next chunk once the
    calling context's token is cancelled.
    """
    settings = _config
    step = settings.chunk_elements
    firsts = range(start, stop, step)
    token = cancel.current()  # read here: the pool's threads do not inherit the caller's context
    check = token.check if token is not None else _unchecked
    if settings.threads == 1 or len(firsts) <= 1:
        current = _job.get()
        for first in firsts:
            check()
            task(first, min(first + step, stop))
            if current is not None:
                current.remaining -= min(step, stop - first)
        return
    _shared_pool(settings.threads).run(_Call(firsts, stop, task, check))


def _unchecked() -> None:
    """The check of work that nobody can cancel."""
