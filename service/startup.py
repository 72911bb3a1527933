"""Time to ready: the engine's kernels compiled ahead of time (at image build) for the CPU families an image
targets, chosen at start from the host's CPU, and the log line that says when a worker became ready.

numba keys each cached kernel by the CPU its code was generated for (LLVM's CPU name and feature string): a cache
built for the build machine's own CPU is never used on another. So `build` (`initserve kernels DIR`, a step of the
image build) generates the kernels for generic levels of the architecture (`TARGETS`, best first) into one
directory, each level in a process of its own with NUMBA_CPU_NAME set. At start `prepare_kernels` (`initserve serve`,
before numba is imported) picks the best level the host's CPU has, tells numba to generate code for it, and copies
the directory into NUMBA_CACHE_DIR: numba refuses a cache directory it cannot write to, and the image's is read-only
to the service. On a CPU no shipped level fits, or when the copy fails, the kernels compile at start as they would
without shipped ones, and a log line says why.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from service.engine.parallel import KernelCounts

logger = logging.getLogger(__name__)

MANIFEST = "initserve-kernels.json"  # in a `build` directory: the targets it holds
DEFAULT_CACHE_DIR = Path(tempfile.gettempdir()) / "numba-cache"  # where they are copied when NUMBA_CACHE_DIR is unset
COMPILE = "from service.engine.random.registry import compile_kernels; compile_kernels()"


@dataclass(frozen=True)
class Target:
    name: str  # LLVM's CPU name: code for it runs on every CPU with the features below
    needs: frozenset[str]  # LLVM's names of the features the host must have
    tuning: str = ""  # LLVM feature string on top of the CPU name's own features (NUMBA_CPU_FEATURES)


# The x86-64 micro-architecture levels (the psABI's), as LLVM names their features. The bits are the same on every
# level (no fused multiply-add: fastmath is off); only the speed differs (bench/results/ready.md).
_V2 = frozenset({"cx16", "sahf", "popcnt", "sse3", "sse4.1", "sse4.2", "ssse3"})
_V3 = _V2 | {"avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave"}
_V4 = _V3 | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}
# x86-64-v4 with 512-bit vectors: LLVM keeps to 256 bits on AVX-512 CPUs by default (clock throttling on the first
# of them), but the engine's integer-heavy loops (Philox's 32x32 -> 64-bit multiplies) run 8 lanes a vpmuludq: on a
# Sapphire Rapids-class VM philox-v2's normal went from 4.0 to 2.7 ns an element on one thread and its uniform from
# 2.7 to 1.6 (bench/results/checkpoint.md). The same operations in the same order: the same bits.
TARGETS: Mapping[str, tuple[Target, ...]] = {
    "x86_64": (
        Target("x86-64-v4", _V4, "-prefer-256-bit"),
        Target("x86-64-v3", _V3),
        Target("x86-64", frozenset()),
    ),
}


def targets() -> tuple[Target, ...]:
    """This machine's architecture's targets, best first (none for an architecture not in `TARGETS`)."""
    return TARGETS.get(platform.machine().lower().replace("amd64", "x86_64"), ())


def numba_env(cache: Path, target: Target) -> dict[str, str]:
    # The CPU name's own features with the target's tuning, never the host's (numba adds the host's to an empty
    # feature string only when NUMBA_CPU_FEATURES is unset).
    return {"NUMBA_CACHE_DIR": str(cache), "NUMBA_CPU_NAME": target.name, "NUMBA_CPU_FEATURES": target.tuning}


def build(directory: Path, names: Iterable[str] | None = None) -> list[str]:
    """Compile the kernels for each target (this architecture's, or those named) into `directory`; returns the
    targets built. One process per target, one after another: numba fixes its target when it first compiles, and
    processes writing one cache index at once would lose each other's entries."""
    known = {target.name: target for target in targets()}
    chosen = list(known.values()) if names is None else [known[name] for name in names]
    directory.mkdir(parents=True, exist_ok=True)
    for target in chosen:
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", COMPILE], env={**os.environ, **numba_env(directory, target)}, check=True)
        print(f"kernels for {target.name} in {directory}: {time.monotonic() - started:.1f} s", flush=True)
    (directory / MANIFEST).write_text(json.dumps({"targets": [target.name for target in chosen]}) + "\n")
    return [target.name for target in chosen]


def host_features() -> frozenset[str]:
    """The CPU features LLVM sees on this host (what numba would generate code for)."""
    from llvmlite.binding import get_host_cpu_features  # LLVM only: numba itself is not imported yet

    return frozenset(name for name, present in get_host_cpu_features().items() if present)


def choose(built: Iterable[str], features: frozenset[str]) -> Target | None:
    """The best of the `built` targets that runs on a CPU with `features`, if any."""
    names = set(built)
    return next((t for t in targets() if t.name in names and t.needs <= features), None)


def prepare_kernels(shipped: Path | None) -> None:
    """Use the kernels `build` wrote into `shipped` (None: there are none): choose a target for this host and copy
    them into NUMBA_CACHE_DIR. Call it before numba is imported; the processes started later inherit the choice."""
    if shipped is None:
        return
    try:
        built = json.loads((shipped / MANIFEST).read_text())["targets"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("no compiled kernels in %s (%s): they compile at start (seconds)", shipped, error)
        return
    if "NUMBA_CPU_NAME" in os.environ:  # the operator's choice stands
        logger.info("NUMBA_CPU_NAME=%s is set: the kernels are generated for it", os.environ["NUMBA_CPU_NAME"])
    else:
        features = host_features()
        target = choose(built, features)
        if target is None:
            logger.warning(
                "none of the compiled kernels in %s (%s) runs on this CPU (%s): they compile at start (seconds)",
                shipped,
                ", ".join(built) or "none",
                platform.machine(),
            )
            return
        os.environ.update({k: v for k, v in numba_env(shipped, target).items() if k != "NUMBA_CACHE_DIR"})
    cache = Path(os.environ.setdefault("NUMBA_CACHE_DIR", str(DEFAULT_CACHE_DIR)))
    try:
        copied = _copy_missing(shipped, cache)
    except OSError as error:
        logger.warning(
            "cannot copy the compiled kernels from %s into NUMBA_CACHE_DIR=%s (%s): each worker compiles them at "
            "start (seconds); make NUMBA_CACHE_DIR writable (a tmpfs or an emptyDir) to start in one",
            shipped,
            cache,
            error,
        )
        return
    logger.info(
        "kernels for %s (compiled at build for %s) copied into NUMBA_CACHE_DIR=%s: %d files",
        os.environ["NUMBA_CPU_NAME"],
        ", ".join(built),
        cache,
        copied,
    )


def _copy_missing(source: Path, destination: Path) -> int:
    """Copy the cache files of `source` that `destination` lacks (one it has may hold kernels compiled since); each
    appears whole or not at all. Returns how many were copied."""
    copied = 0
    for path in sorted(source.rglob("*.nb[ic]")):
        target = destination / path.relative_to(source)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        shutil.copyfile(path, partial)
        os.replace(partial, target)
        copied += 1
    return copied


def seconds_since_start(pid: int | None = None) -> float | None:
    """How long ago the process (this one by default) started, from the kernel's record of it; None where unknown."""
    try:
        stat = Path(f"/proc/{pid or 'self'}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime; the name before ")" may hold spaces
        return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):  # no /proc (macOS), no CLOCK_BOOTTIME
        return None


def ready_message(warm_up_seconds: float, counts: KernelCounts | None) -> str:
    """The line a worker logs when it turns ready: `ready in <s> s ...`, then how the time was spent."""
    age = seconds_since_start()
    head = f"ready in {warm_up_seconds:.2f} s" if age is None else f"ready in {age:.2f} s since the process started"
    parent = multiprocessing.parent_process()  # a worker of `initserve serve --workers N`: the supervisor's age too
    supervisor = seconds_since_start(parent.pid) if parent is not None and parent.pid is not None else None
    if supervisor is not None:
        head += f" (worker {os.getpid()}; {supervisor:.2f} s since `initserve serve` started)"
    if counts is None:
        return f"{head}; warm-up {warm_up_seconds:.2f} s (numba kernels off: NumPy reference path)"
    how = f"{counts.loaded} loaded from numba's cache, {counts.compiled} compiled"
    if not counts.cached:
        how += ", no writable NUMBA_CACHE_DIR: compiled again at every start"
    return f"{head}; kernels {warm_up_seconds:.2f} s ({how}, for CPU {counts.cpu})"


def others_message(seconds: float, before: KernelCounts | None, after: KernelCounts | None, apart: bool) -> str:
    """The line a worker logs when the other rngs' kernels are ready, with how many this process compiled itself
    (0 when a child process compiled them into numba's disk cache: parallel.compile_other_rngs_apart)."""
    head = f"the other rngs' kernels are ready too ({seconds:.2f} s"
    if before is None or after is None:
        return head + ")"
    loaded, compiled = after.loaded - before.loaded, after.compiled - before.compiled
    where = "; a child process compiled the missing ones" if apart else ""
    return f"{head}: {loaded} loaded from numba's cache, {compiled} compiled here{where})"
