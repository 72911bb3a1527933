"""A memory budget: the bytes of tensor data being generated at once in this process are bounded.

A request larger than the whole budget is refused up front (413, before any allocation); one that does not fit
now waits up to `budget_wait_seconds` for others to finish, then gets 503 with Retry-After. The budget is per
worker process: size it as (container memory - baseline) / workers.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from service.api import metrics
from service.engine.errors import TooLargeError


class BudgetBusyError(Exception):
    """No room in the memory budget right now; the client should retry."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"memory budget busy, retry after {retry_after} s")
        self.retry_after = retry_after


class MemoryBudget:
    def __init__(self, capacity: int, wait_seconds: float) -> None:
        self.capacity = capacity
        self.wait_seconds = wait_seconds
        self._used = 0
        self._changed = threading.Condition()

    @property
    def used(self) -> int:
        return self._used

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """Hold `nbytes` of the budget for the duration of the block."""
        if nbytes > self.capacity:
            raise TooLargeError(
                "shape",
                f"the request needs {nbytes} bytes generated at once; the memory budget is {self.capacity} "
                "(INITSERVE_MEMORY_BUDGET_BYTES): ask for a slice, or a smaller dtype",
            )
        with self._changed:
            if not self._changed.wait_for(lambda: self._used + nbytes <= self.capacity, timeout=self.wait_seconds):
                raise BudgetBusyError(max(1, math.ceil(self.wait_seconds)))
            self._used += nbytes
        metrics.INFLIGHT_BYTES.inc(nbytes)
        try:
            yield
        finally:
            metrics.INFLIGHT_BYTES.dec(nbytes)
            with self._changed:
                self._used -= nbytes
                self._changed.notify_all()
