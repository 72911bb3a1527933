"""The client's tests run against a real server: INITSERVE_URL if set, else `initserve serve` started on a free
loopback port by the main repository's tests/server.py (the client's tests live in the service's repository)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from initserve_client import Client  # imports no torch

# torch's reference bits for rng torch-2.13 are those of its AVX2 kernels: pinned before any test imports torch.
os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")

REPO = Path(__file__).resolve().parents[3]
COMPILE_SECONDS = 600


def _server_module():  # the repo's tests/server.py, loaded by path: this tests/ directory is not that package
    spec = importlib.util.spec_from_file_location("initserve_test_server", REPO / "tests" / "server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def serve():
    return _server_module().serve


@pytest.fixture(scope="session")
def url(serve) -> Iterator[str]:
    if os.environ.get("INITSERVE_URL"):
        yield os.environ["INITSERVE_URL"]
        return
    # serve() pipes the server's output and reads it only if the start fails: the access log of the thousand-odd
    # requests of test_generate_live would fill the pipe and block the server, so only warnings are logged. A server
    # without a kernel cache compiles philox-v2's kernels at its first philox-v2 request, which took over the default
    # 60 s on a loaded 2-core machine (a 504 there is no refusal generate() could match).
    with serve(env={"INITSERVE_LOG_LEVEL": "warning", "INITSERVE_TIMEOUT_SECONDS": str(COMPILE_SECONDS)}) as (base, _):
        yield base


@pytest.fixture(scope="session")
def client(url: str) -> Iterator[Client]:
    with Client(url, timeout=COMPILE_SECONDS) as connection:
        yield connection
