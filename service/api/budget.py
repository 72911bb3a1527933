"""A memory budget: the bytes of tensor data being generated or held for sending at once in this process are
bounded.

A request larger than the whole budget is refused up front (413, before any allocation); one that does not fit
now waits up to `budget_wait_seconds` for others to finish, then gets 503 with Retry-After. Two properties were
learnt under load (bench/load.py):

* Waiting happens on the event loop, never in a worker thread. Waiters that each blocked a thread of the shared
  pool starved the streams holding the budget of the threads they need for every chunk: nothing was released
  and everyone timed out.
* Waiters are served first come, first served: otherwise a stream of small requests starves a large one.

The budget is per worker process: size it as (container memory - baseline - cache) / workers.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from service.api import metrics
from service.engine.errors import TooLargeError


class BudgetBusyError(Exception):
    """No room in the memory budget right now; the client should retry."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"memory budget busy, retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(eq=False)
class _Waiter:
    nbytes: int
    granted: asyncio.Future[None]


class MemoryBudget:
    def __init__(self, capacity: int, wait_seconds: float) -> None:
        self.capacity = capacity
        self.wait_seconds = wait_seconds
        self._used = 0
        self._lock = threading.Lock()  # release() may come from any thread
        self._queue: deque[_Waiter] = deque()

    @property
    def used(self) -> int:
        return self._used

    @asynccontextmanager
    async def reserve(self, nbytes: int) -> AsyncIterator[None]:
        """Hold `nbytes` of the budget for the duration of the block."""
        await self.acquire(nbytes)
        try:
            yield
        finally:
            self.release(nbytes)

    async def hold(self, nbytes: int) -> Held:
        """`acquire`, as an object that gives the bytes back once (a response holds it until it has been sent)."""
        await self.acquire(nbytes)
        return Held(self, nbytes)

    async def acquire(self, nbytes: int) -> None:
        """Take `nbytes`, waiting in line up to `wait_seconds`; the caller must `release` them."""
        if nbytes > self.capacity:
            raise TooLargeError(
                "shape",
                f"the request needs {nbytes} bytes generated at once; the memory budget is {self.capacity} "
                "(INITSERVE_MEMORY_BUDGET_BYTES): ask for a slice, or a smaller dtype",
            )
        with self._lock:
            if not self._queue and self._used + nbytes <= self.capacity:
                self._take(nbytes)
                return
            waiter = _Waiter(nbytes, asyncio.get_running_loop().create_future())
            self._queue.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.granted), self.wait_seconds)
        except BaseException as error:  # timed out, or cancelled (the client left, the request timed out)
            with self._lock:
                granted = waiter not in self._queue  # granted in the meantime: the bytes are ours to give back
                if not granted:
                    self._queue.remove(waiter)
                    self._grant()  # the next in line may be first now
            if granted:
                self.release(nbytes)
            if isinstance(error, TimeoutError):
                raise BudgetBusyError(max(1, math.ceil(self.wait_seconds))) from None
            raise

    def release(self, nbytes: int) -> None:
        with self._lock:
            self._used -= nbytes
            metrics.INFLIGHT_BYTES.dec(nbytes)
            self._grant()

    def _take(self, nbytes: int) -> None:
        self._used += nbytes
        metrics.INFLIGHT_BYTES.inc(nbytes)

    def _grant(self) -> None:
        """Serve the waiters at the head of the line that fit now (the lock is held)."""
        while self._queue and self._used + self._queue[0].nbytes <= self.capacity:
            waiter = self._queue.popleft()
            self._take(waiter.nbytes)
            waiter.granted.get_loop().call_soon_threadsafe(_resolve, waiter.granted)


class Held:
    """Bytes taken from a budget; `release` gives them back, once however often it is called."""

    def __init__(self, budget: MemoryBudget, nbytes: int) -> None:
        self.budget = budget
        self.nbytes = nbytes
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.budget.release(self.nbytes)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
