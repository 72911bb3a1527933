"""Several uvicorn workers: every request is counted once in /metrics, whichever worker served it."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.server import CONSOLE_SCRIPT, serve

pytestmark = pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="initserve console script not installed")


def test_metrics_aggregate_across_workers(tmp_path):
    env = {"INITSERVE_WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with serve(env) as (url, _):
        for seed in range(20):
            with httpx.Client() as fresh:  # a new connection each time, so both workers take requests
                r = fresh.post(f"{url}/init", json={"shape": [16, 16], "scheme": "lecun_normal", "seed": seed})
                assert r.status_code == 200
        for _ in range(4):  # /metrics answers from either worker, always with the totals of both
            text = httpx.get(f"{url}/metrics").text
            count = re.search(r'initserve_requests_total\{method="POST",route="/init",status="200"\} (\S+)', text)
            assert count and float(count.group(1)) == 20.0
            elements = re.search(r'initserve_generated_elements_total\{scheme="lecun_normal"\} (\S+)', text)
            assert elements and float(elements.group(1)) == 20.0 * 256
    assert len(list(tmp_path.glob("*.db"))) >= 2, "each worker writes its own metrics file"
