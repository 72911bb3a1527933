"""Run the production command (`initserve serve`, one worker) on a free loopback port, read its memory and its log."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


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
    log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def memory_kib(self) -> dict[str, int]:
        """VmRSS (now) and VmHWM (peak since start, or since reset_peak) of the server process, in KiB; neither
        once the process has died (a zombie has no memory, a reaped process no /proc entry)."""
        fields = {}
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return fields
        for line in status.splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
        return fields

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET `path`: status and body; status 0 when no answer came (refused, reset, or not within `timeout`)."""
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=timeout) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except OSError:
            return 0, b""

    def inflight_bytes(self, timeout: float = 5.0) -> float | None:
        """The memory budget held now (/metrics initserve_inflight_bytes); None when /metrics does not answer."""
        status, metrics = self.get("/metrics", timeout)
        held = re.search(rb"^initserve_inflight_bytes(?:\{[^}]*\})? (\S+)$", metrics, re.MULTILINE)
        return float(held.group(1)) if status == 200 and held else None

    def died(self) -> str | None:
        """How the process ended (exit code or signal), None while it runs."""
        code = self.process.poll()
        if code is None:
            return None
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"

    def reset_peak(self) -> bool:
        """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs); False where not permitted."""
        try:
            Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def log_text(self) -> str:
        """What the server has written to stdout and stderr so far. Read with pread: the server shares the file
        offset, so seeking here would move where it writes next."""
        if self.log is None:
            return ""
        descriptor = self.log.fileno()
        return os.pread(descriptor, os.fstat(descriptor).st_size, 0).decode(errors="replace")


class PeakSampler:
    """Samples the server's RSS every few milliseconds, as a cross-check of the kernel's VmHWM. With `cap_kib`,
    kills the server (SIGKILL) once its RSS passes the cap: a safety stop for a shared machine, not a measurement."""

    def __init__(self, server: Server, every: float = 0.01, cap_kib: int | None = None) -> None:
        self.server, self.every, self.cap_kib = server, every, cap_kib
        self.peak_kib = 0
        self.capped = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and self.server.process.poll() is None:
            self.peak_kib = max(self.peak_kib, self.server.memory_kib().get("VmRSS", 0))
            if self.cap_kib is not None and self.peak_kib > self.cap_kib:
                self.capped = True
                self.server.process.kill()
                return
            time.sleep(self.every)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measured(server: Server, action: Callable[[], Any], cap_increase_mib: float | None = None) -> dict[str, Any]:
    """Run `action`; the server's RSS before, its peak during (kernel VmHWM and our sampling), and the time.
    With `cap_increase_mib`, the server is killed once its RSS grows by more than that (`rss_capped`). A server
    that died during the action has no VmHWM left: its peak is the sampled one (`hwm_increase_mib` None)."""
    reset = server.reset_peak()
    before = server.memory_kib()
    cap_kib = None if cap_increase_mib is None else before["VmRSS"] + int(cap_increase_mib * 1024)
    start = time.perf_counter()
    with PeakSampler(server, cap_kib=cap_kib) as sampler:
        outcome = action()
    seconds = time.perf_counter() - start
    after = server.memory_kib()
    sampled_increase = round((sampler.peak_kib - before["VmRSS"]) / 1024, 1)
    hwm_increase = None
    if "VmHWM" in after:
        hwm_increase = round((after["VmHWM"] - (before["VmRSS"] if reset else before["VmHWM"])) / 1024, 1)
    return {
        "rss_before_mib": round(before["VmRSS"] / 1024, 1),
        "peak_reset": reset,
        "peak_increase_mib": max(sampled_increase, hwm_increase or 0.0),
        "hwm_increase_mib": hwm_increase,
        "sampled_increase_mib": sampled_increase,
        "rss_after_mib": round(after["VmRSS"] / 1024, 1) if "VmRSS" in after else None,
        "rss_capped": sampler.capped,
        "seconds": round(seconds, 2),
        "outcome": outcome,
    }


@contextmanager
def serve(env: dict[str, str] | None = None, ready_timeout: float = 60.0, app: str | None = None) -> Iterator[Server]:
    """The server (of `app`, an import string, if given), once /healthz answers; stopped (SIGTERM, then SIGKILL) on
    exit. Its log goes to a temporary file, never to a pipe nobody reads (a full pipe would stall the server)."""
    port = free_port()
    full_env = {
        **os.environ,
        "INITSERVE_HOST": "127.0.0.1",
        "INITSERVE_PORT": str(port),
        "INITSERVE_WORKERS": "1",
        **(env or {}),
    }
    with tempfile.TemporaryFile() as log:
        command = [*_command(), *(["--app", app] if app else [])]
        process = subprocess.Popen(command, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        server = Server("127.0.0.1", port, process, log)
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
