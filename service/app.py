"""The ASGI application: `uvicorn service.app:app`, or `create_app(settings)` for tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

import anyio.to_thread
from fastapi import FastAPI

from service import __version__, malloc, startup
from service.api import docs, errors, middleware, openapi, page, routes
from service.api.admission import Lanes
from service.api.budget import MemoryBudget
from service.api.cache import ResponseCache
from service.api.delivery import Delivery
from service.engine import parallel
from service.settings import Settings, get_settings

logger = logging.getLogger(__name__)

# How long a thread may hold the GIL while another waits for it (Python's default: 5 ms). Heavy requests' Python
# (a large recipe) holds it for seconds; the event loop and small requests need it for a moment at every step, and
# at 5 ms a step a small request waited ~100 ms beside one such request (bench/load.py --scenario recipes).
SWITCH_INTERVAL_SECONDS = 0.001

DESCRIPTION = """Reproducible, initialised neural-network weight tensors.

The same request (with a seed) returns bit-identical tensors on every machine and in every release of the same
`rng` id. Scheme names keep the meaning, argument names and defaults of the framework they come from.
"""


async def _compile(warm_up: Callable[..., None], what: str) -> bool:
    """Run `warm_up` (a compile of numba kernels) in a thread; after a failure (a corrupt numba cache?) once more
    ignoring the disk cache. False when even that fails (logged)."""
    try:
        await anyio.to_thread.run_sync(warm_up)
    except Exception:
        logger.exception("%s failed to load (a corrupt numba cache?): compiling them afresh", what)
        try:
            await anyio.to_thread.run_sync(partial(warm_up, fresh=True))
        except Exception:
            logger.exception("%s cannot be compiled", what)
            return False
    return True


async def _compile_apart(command: list[str] | None) -> bool:
    """Run `command` (parallel.compile_other_rngs_apart: a compile into numba's disk cache) in a child process,
    killed if the server stops first; whether it ran and succeeded. Should it fail, the compile then runs here, as
    it would without it."""
    if command is None:
        return False
    child = await asyncio.create_subprocess_exec(*command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, errors = await child.communicate()
    finally:
        if child.returncode is None:
            child.kill()
            with contextlib.suppress(asyncio.CancelledError):  # reaped here, before the event loop closes
                await child.wait()
    if child.returncode:
        logger.warning(
            "compiling the other rngs' kernels in a child process failed (exit %d): compiling them here\n%s",
            child.returncode,
            errors.decode(errors="replace")[-4000:],
        )
    return child.returncode == 0


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    async def warm_up() -> None:
        # In the background, so that /healthz answers at once; /readyz turns 200 only when the default rng's
        # kernels are compiled, so that no routed request pays for the compile (seconds on a cold cache).
        started = time.monotonic()
        if not await _compile(parallel.warm_up, "the engine's kernels"):
            logger.error("serving from the NumPy reference path (the same bits, slower)")
            parallel.configure(jit=False)
        app.state.ready = True
        logger.info(startup.ready_message(time.monotonic() - started, parallel.kernel_counts()))
        # The other rngs' next (they have no NumPy path): a request naming one meanwhile waits for its compile,
        # and after a failure fails alone, with its own error.
        started, before = time.monotonic(), parallel.kernel_counts()
        apart = await _compile_apart(parallel.compile_other_rngs_apart())
        await _compile(parallel.warm_up_other_rngs, "the other rngs' kernels")
        logger.info(startup.others_message(time.monotonic() - started, before, parallel.kernel_counts(), apart))
        app.state.all_kernels = True

    app.state.ready = app.state.all_kernels = False
    warming = asyncio.create_task(warm_up())
    yield
    warming.cancel()
    # A child process compiling kernels is killed and reaped; a compile in a thread cannot be stopped, and is left.
    await asyncio.wait({warming}, timeout=5)
    app.state.ready = False  # uvicorn drains in-flight requests on SIGTERM; probes see us leaving


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="initserve",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan,
        docs_url=None,
        redoc_url=None,
        # `/init/` is refused with a 404 naming `/init` (errors.py): a redirect's empty body is what `curl -o`
        # saved, and clients do not resend a POST body to where a 307 points them by default.
        redirect_slashes=False,
    )
    app.state.settings = settings
    malloc.tune()
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    parallel.configure(threads=settings.threads)
    budget = MemoryBudget(
        settings.memory_budget_bytes,
        settings.budget_wait_seconds,
        reserved=int(settings.memory_budget_bytes * settings.budget_reserved_fraction),
        small_bytes=settings.budget_small_bytes,
        max_share=settings.budget_max_share,
        unready_seconds=settings.budget_unready_seconds,
    )
    app.state.delivery = Delivery(
        budget, ResponseCache(settings.cache_bytes), settings.stream_threshold_bytes, Lanes(settings)
    )
    app.state.budget, app.state.response_cache = budget, app.state.delivery.cache
    app.dependency_overrides[get_settings] = lambda: settings
    app.include_router(routes.router)
    docs.install(app)
    page.install(app)
    openapi.install(app)
    errors.install(app)
    middleware.install(app, settings)
    return app


app = create_app()
