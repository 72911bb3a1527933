"""Helpers the benchmarks share: interleaved best-of-N timing and a one-line description of the machine."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Mapping


def interleaved_best(contenders: Mapping[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best wall time in seconds of each contender over `repeats` rounds, running them in turn within a round.

    Taking turns means a burst of noise from the rest of the machine hits every contender alike, and the best of
    the rounds is the run that noise disturbed least.
    """
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(repeats):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, Python {platform.python_version()}"
