"""schemathesis against the live server: `initserve serve` on a free loopback port, the schema it serves, and
every response checked for server errors and conformance (status code, content type, headers, body schema).

Deterministic: a fixed seed, a fixed example budget per operation, one worker, no example database. Small limits
keep generated tensors cheap (the limits themselves are fuzzed: 413s). Exits non-zero on any failure, printing
the server's log (its tracebacks) after it.

positive_data_acceptance is not checked: some rules OpenAPI cannot express (the product of a shape against the
limits, a scheme's rank) refuse schema-valid requests; the schema's descriptions state them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server import CONSOLE_SCRIPT, free_port  # noqa: E402

SEED = 20260514
MAX_EXAMPLES = 800  # per operation (9): with the coverage phase about 25,000 cases, 4 to 5 minutes on 2 cores
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
LIMITS = {
    "INITSERVE_MAX_ELEMENTS": str(1 << 16),
    "INITSERVE_MAX_JSON_ELEMENTS": str(1 << 12),
    "INITSERVE_MAX_STATS_ELEMENTS": str(1 << 14),
    "INITSERVE_MAX_DIAGNOSE_WORK": str(1 << 16),
    "INITSERVE_MAX_REQUEST_ELEMENTS": str(1 << 18),
    "INITSERVE_MAX_JSON_REQUEST_ELEMENTS": str(1 << 14),
    "INITSERVE_MAX_BODY_BYTES": str(1 << 16),
    "INITSERVE_TIMEOUT_SECONDS": "30",
    "INITSERVE_LOG_LEVEL": "warning",  # tracebacks, not one access line per case
}
READY_SECONDS = 120.0


def _wait_ready(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server was not ready within {READY_SECONDS:g} s")


def main(extra: list[str]) -> int:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **LIMITS, "INITSERVE_HOST": "127.0.0.1", "INITSERVE_PORT": str(port)}
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen([str(CONSOLE_SCRIPT), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_ready(url, server)
            command = [
                str(CONSOLE_SCRIPT.with_name("schemathesis")),
                "run",
                f"{url}/openapi.json",
                "--checks",
                ",".join(CHECKS),
                "--mode",
                "all",
                "--phases",
                "examples,coverage,fuzzing",
                "--seed",
                str(SEED),
                "--max-examples",
                str(MAX_EXAMPLES),
                "--generation-database",
                "none",
                "--workers",
                "1",
                "--suppress-health-check",
                "all",
                "--request-timeout",
                "60",
                "--no-color",
                *extra,
            ]
            with tempfile.TemporaryDirectory() as scratch:  # schemathesis leaves a crash cache in its directory
                code = subprocess.run(command, cwd=scratch, check=False).returncode
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        if code != 0:
            log.seek(0)
            print("---- server log (last 20000 bytes) ----")
            print(log.read()[-20000:].decode(errors="replace"))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
