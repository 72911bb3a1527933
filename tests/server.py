"""Run the real production command (`initserve serve`) on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

CONSOLE_SCRIPT = Path(sys.executable).with_name("initserve")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(
    env: dict[str, str] | None = None, args: tuple[str, ...] = (), ready_timeout: float = 90.0
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Yield (base URL, process) once /readyz answers (the engine warmed up: a cold numba cache takes seconds);
    stop the server (SIGTERM, then SIGKILL) on exit."""
    port = free_port()
    full_env = {**os.environ, "INITSERVE_HOST": "127.0.0.1", "INITSERVE_PORT": str(port), **(env or {})}
    # The output goes to a file, read back through `process.stdout` (what it holds so far): a pipe nobody reads
    # while the server runs fills after ~200 access-log lines, and the server then blocks in its next log write
    # and answers nothing (a test polling /readyz every 0.1 s hit it after 20 s).
    log = tempfile.NamedTemporaryFile(prefix="initserve-serve-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen([str(CONSOLE_SCRIPT), "serve", *args], env=full_env, stdout=log, stderr=log)
    log.close()
    process.stdout = open(log.name, "rb")  # noqa: SIM115
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                if process.poll() is None:  # never ready: stop it, or reading its output would wait forever
                    process.kill()
                raise RuntimeError(f"server did not start: {process.stdout.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.1)
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        os.unlink(log.name)  # the reader stays open: the output can still be read after the server stopped
