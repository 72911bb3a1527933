"""Run the production command (`initserve serve`, one worker) on a free loopback port, and read its memory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def _command() -> list[str]:
    script = Path(sys.executable).with_name("initserve")
    return [str(script), "serve"] if script.exists() else [sys.executable, "-m", "service", "serve"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def memory_kib(self) -> dict[str, int]:
        """VmRSS (now) and VmHWM (peak since start, or since reset_peak) of the server process, in KiB."""
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
        return fields

    def reset_peak(self) -> bool:
        """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs); False where not permitted."""
        try:
            Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True


@contextmanager
def serve(env: dict[str, str] | None = None, ready_timeout: float = 60.0) -> Iterator[Server]:
    """The server, once /healthz answers; stopped (SIGTERM, then SIGKILL) on exit. Its log goes to a temporary
    file, never to a pipe nobody reads (a full pipe would stall the server)."""
    port = free_port()
    full_env = {
        **os.environ,
        "INITSERVE_HOST": "127.0.0.1",
        "INITSERVE_PORT": str(port),
        "INITSERVE_WORKERS": "1",
        **(env or {}),
    }
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(_command(), env=full_env, stdout=log, stderr=subprocess.STDOUT)
        server = Server("127.0.0.1", port, process)
        try:
            deadline = time.monotonic() + ready_timeout
            while True:
                try:
                    with urllib.request.urlopen(f"{server.url}/healthz", timeout=1) as reply:
                        if reply.status == 200:
                            break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"server did not start: {log.read().decode(errors='replace')[-2000:]}")
                time.sleep(0.1)
            yield server
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
