"""Start-up when the engine's kernels fail to load: the failure is logged, the kernels are compiled afresh (numba's
disk cache forgotten), and if that fails too the NumPy reference path serves; readiness comes either way."""

from __future__ import annotations

import logging
import time

from fastapi.testclient import TestClient

from service.app import create_app
from service.engine import parallel


class FailingWarmUp:
    """Stands in for `parallel.warm_up`: the first call fails as a corrupt cache does, a fresh one as told."""

    def __init__(self, fresh_fails: bool) -> None:
        self.fresh_fails = fresh_fails
        self.calls: list[bool] = []

    def __call__(self, fresh: bool = False) -> None:
        self.calls.append(fresh)
        if not fresh or self.fresh_fails:
            raise EOFError("Ran out of input")  # what numba's pickle.load says of a truncated cache index


def _ready(client: TestClient) -> bool:
    deadline = time.monotonic() + 30
    while client.get("/readyz").status_code != 200:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_failed_load_is_logged_and_compiled_afresh(monkeypatch, caplog):
    warm_up = FailingWarmUp(fresh_fails=False)
    monkeypatch.setattr(parallel, "warm_up", warm_up)
    with caplog.at_level(logging.ERROR, logger="service"), TestClient(create_app()) as client:
        assert _ready(client)
        assert parallel.config().jit == parallel.JIT_AVAILABLE
    assert warm_up.calls == [False, True]
    assert "compiling them afresh" in caplog.text and "Ran out of input" in caplog.text


def test_kernels_that_cannot_compile_leave_the_reference_path(monkeypatch, caplog):
    warm_up = FailingWarmUp(fresh_fails=True)
    monkeypatch.setattr(parallel, "warm_up", warm_up)
    with (
        parallel.configured(),
        caplog.at_level(logging.ERROR, logger="service"),
        TestClient(create_app()) as client,
    ):
        assert _ready(client)
        assert parallel.config().jit is False
        r = client.post("/init", json={"shape": [4, 4], "scheme": "normal", "seed": 1, "format": "json"})
        assert r.status_code == 200
    assert warm_up.calls == [False, True]
    assert "serving from the NumPy reference path" in caplog.text
