"""A memory budget: the bytes of tensor data being generated or held for sending at once in this process are
bounded.

A request that could never be admitted is refused up front (413, before any allocation); one that does not fit
now waits up to `budget_wait_seconds` for others to finish, then gets 503 with Retry-After. Properties learnt under
load (bench/load.py):

* Waiting happens on the event loop, never in a worker thread. Waiters that each blocked a thread of the shared
  pool starved the streams holding the budget of the threads they need for every chunk: nothing was released
  and everyone timed out.
* Waiters of one size class are served first come, first served: otherwise a stream of small requests starves a
  large one.
* Large requests cannot starve small ones. A buffered request is *small* when it holds at most `small_bytes`
  (INITSERVE_BUDGET_SMALL_BYTES); a stream is large whatever its working set, as it lasts as long as its client
  takes to read it. The `reserved` bytes of the budget (INITSERVE_BUDGET_RESERVED_FRACTION) are
  for small requests only: large ones together never hold more than `capacity - reserved`, so 64 clients that
  never read a large stream cannot keep a 4x4 request out. Small requests may use the whole budget while no large
  one waits, and only the reserve while one does (so a stream of small ones cannot starve a large one either).
* One large request holds at most `max_share` of the budget (INITSERVE_BUDGET_MAX_SHARE): a long job (an
  orthogonal [8192, 8192] takes a minute) gets its share, not the whole budget; what needs more is refused (413).

`unready_reason` tells readiness probes when the server admits nothing: requests have been refused for budget for
`unready_seconds` (INITSERVE_BUDGET_UNREADY_SECONDS) with none admitted since, and a small request would not fit
now. A load balancer then routes elsewhere; liveness is unaffected.

The budget is per worker process: size it as (container memory - baseline - cache) / workers.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from service.api import metrics
from service.engine.errors import TooLargeError


class BudgetBusyError(Exception):
    """No room in the memory budget (or another bounded resource, `what`) right now; the client should retry."""

    def __init__(self, retry_after: int, what: str = "the memory budget", field: str = "shape") -> None:
        super().__init__(f"{what} is in use by other requests: busy, retry after {retry_after} s")
        self.retry_after = retry_after
        self.field = field


@dataclass(eq=False)
class _Waiter:
    nbytes: int
    small: bool
    granted: asyncio.Future[None]


class MemoryBudget:
    def __init__(
        self,
        capacity: int,
        wait_seconds: float,
        reserved: int = 0,
        small_bytes: int = 0,
        max_share: float = 1.0,
        unready_seconds: float = math.inf,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= reserved < capacity:
            raise ValueError(f"the reserve ({reserved} bytes) must be less than the budget ({capacity} bytes)")
        self.capacity = capacity
        self.wait_seconds = wait_seconds
        self.reserved = reserved
        self.small_bytes = small_bytes
        # The most one large request may hold: its share, and never the small requests' reserve.
        self.max_large = min(int(capacity * max_share), capacity - reserved)
        self.unready_seconds = unready_seconds
        self._clock = clock
        self._used = 0
        self._used_large = 0
        self._lock = threading.Lock()  # release() may come from any thread
        self._small: deque[_Waiter] = deque()
        self._large: deque[_Waiter] = deque()
        self._refused_since: float | None = None  # the first refusal since the last admission

    @property
    def used(self) -> int:
        return self._used

    def is_small(self, nbytes: int, streamed: bool = False) -> bool:
        """A stream is large whatever its working set: it lasts as long as its client takes to read it."""
        return not streamed and nbytes <= self.small_bytes

    @asynccontextmanager
    async def reserve(self, nbytes: int) -> AsyncIterator[None]:
        """Hold `nbytes` of the budget for the duration of the block."""
        held = await self.hold(nbytes)
        try:
            yield
        finally:
            held.release()

    async def hold(self, nbytes: int, streamed: bool = False) -> Held:
        """`acquire`, as an object that gives the bytes back once (a response holds it until it has been sent)."""
        small = self.is_small(nbytes, streamed)
        await self.acquire(nbytes, small)
        return Held(self, nbytes, small)

    async def acquire(self, nbytes: int, small: bool | None = None) -> None:
        """Take `nbytes` in size class `small` (by default: by size), waiting in line up to `wait_seconds`; the
        caller must `release` them, in the same class."""
        small = self.is_small(nbytes) if small is None else small
        self._refuse_if_never(nbytes, small)
        line = self._small if small else self._large
        with self._lock:
            if not line and self._fits(nbytes, small):
                self._take(nbytes, small)
                return
            waiter = _Waiter(nbytes, small, asyncio.get_running_loop().create_future())
            line.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.granted), self.wait_seconds)
        except BaseException as error:  # timed out, or cancelled (the client left, the request timed out)
            with self._lock:
                granted = waiter not in line  # granted in the meantime: the bytes are ours to give back
                if not granted:
                    line.remove(waiter)
                    self._grant()  # the next in line may be first now
                if isinstance(error, TimeoutError) and self._refused_since is None:
                    self._refused_since = self._clock()
            if granted:
                self.release(nbytes, small)
            if isinstance(error, TimeoutError):
                raise BudgetBusyError(max(1, math.ceil(self.wait_seconds))) from None
            raise

    def release(self, nbytes: int, small: bool | None = None) -> None:
        small = self.is_small(nbytes) if small is None else small
        with self._lock:
            self._used -= nbytes
            if not small:
                self._used_large -= nbytes
            metrics.INFLIGHT_BYTES.dec(nbytes)
            self._grant()

    def unready_reason(self) -> str | None:
        """Why the server cannot admit anything now, or None when it can (see the module docstring)."""
        with self._lock:
            since = self._refused_since
            if since is None or self._clock() - since < self.unready_seconds:
                return None
            if not self._small and self._fits(max(1, self.small_bytes), True):
                return None
        return (
            f"memory budget exhausted: requests refused for {self._clock() - since:.0f} s with none admitted "
            "(INITSERVE_BUDGET_UNREADY_SECONDS)"
        )

    def _refuse_if_never(self, nbytes: int, small: bool) -> None:
        if nbytes > self.capacity or (not small and nbytes > self.max_large):
            limit = self.capacity if small else self.max_large
            raise TooLargeError(
                "shape",
                f"the request needs {nbytes} bytes of memory at once; one request may hold at most {limit} of the "
                f"memory budget of {self.capacity} (INITSERVE_MEMORY_BUDGET_BYTES, INITSERVE_BUDGET_MAX_SHARE, "
                "INITSERVE_BUDGET_RESERVED_FRACTION)",
            )

    def _fits(self, nbytes: int, small: bool) -> bool:
        """Whether `nbytes` of size class `small` may be taken now (the lock is held)."""
        if self._used + nbytes > self.capacity:
            return False
        if small:
            # Beyond the reserve only while no large request waits: small ones must not starve it.
            return not self._large or self._used - self._used_large + nbytes <= self.reserved
        return self._used_large + nbytes <= self.capacity - self.reserved

    def _take(self, nbytes: int, small: bool) -> None:
        self._used += nbytes
        if not small:
            self._used_large += nbytes
        self._refused_since = None
        metrics.INFLIGHT_BYTES.inc(nbytes)

    def _grant(self) -> None:
        """Serve the waiters at the head of each line while they fit (the lock is held)."""
        while True:
            line = next(
                (line for line in (self._large, self._small) if line and self._fits(line[0].nbytes, line[0].small)),
                None,
            )
            if line is None:
                return
            waiter = line.popleft()
            self._take(waiter.nbytes, waiter.small)
            waiter.granted.get_loop().call_soon_threadsafe(_resolve, waiter.granted)


class Held:
    """Bytes taken from a budget; `release` gives them back, once however often it is called."""

    def __init__(self, budget: MemoryBudget, nbytes: int, small: bool) -> None:
        self.budget = budget
        self.nbytes = nbytes
        self.small = small
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.budget.release(self.nbytes, self.small)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
