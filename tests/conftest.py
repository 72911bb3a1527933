from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.app import create_app


@pytest.fixture(scope="session")
def client() -> TestClient:
    # raise_server_exceptions=False: a bug must show up as the 500 a client would see, which tests then refuse.
    return TestClient(create_app(), raise_server_exceptions=False)
