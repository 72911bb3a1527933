"""Cooperative cancellation: work nobody waits for any more stops at its next chunk.

Whoever asks for work binds a `CancelToken` to its context (`bind`); the engine's chunk loop (`parallel.run_chunks`)
checks the token of the calling context before each chunk and raises `WorkCancelledError` once it is set. A context is
Python's `contextvars` one, which asyncio tasks and the worker threads they start inherit, so no signature in
between carries the token. The engine knows nothing of why work is cancelled (a deadline, a client that left).
"""

from __future__ import annotations

import contextvars
import threading


class WorkCancelledError(Exception):
    """The work was cancelled by whoever asked for it; its result would be thrown away."""


class CancelToken:
    """Set once, from any thread; checked by the threads doing the work."""

    def __init__(self) -> None:
        self._set = threading.Event()

    def cancel(self) -> None:
        self._set.set()

    @property
    def cancelled(self) -> bool:
        return self._set.is_set()

    def check(self) -> None:
        if self._set.is_set():
            raise WorkCancelledError("the work was cancelled")


_current: contextvars.ContextVar[CancelToken | None] = contextvars.ContextVar("initserve_cancel", default=None)


def bind(token: CancelToken | None) -> contextvars.Token[CancelToken | None]:
    """Make `token` the current context's (and that of the tasks and threads it starts from now on)."""
    return _current.set(token)


def current() -> CancelToken | None:
    return _current.get()
