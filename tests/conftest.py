from __future__ import annotations

import os

import pytest

# torch's reference bits for rng torch-2.13 are those of its AVX2 kernels: pinned before any test imports torch
# (torch reads it once, at its first kernel dispatch).
os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
from fastapi.testclient import TestClient

from service.app import create_app


@pytest.fixture(scope="session")
def client() -> TestClient:
    # raise_server_exceptions=False: a bug must show up as the 500 a client would see, which tests then refuse.
    return TestClient(create_app(), raise_server_exceptions=False)
