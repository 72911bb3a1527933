"""CPU work by size (admission.Lanes, issue 8 items 5 and 6): heavy work runs in worker threads of its own, so a
small request always finds a thread however many heavy ones run; a large recipe's expansion runs one at a time, the
next in line getting 503 with Retry-After past the budget wait. Counted in threads and slots, never timed; the
latencies are bench/load.py's (--scenario strided, recipes)."""

from __future__ import annotations

import asyncio
import threading

import anyio.to_thread
import orjson
import pytest
from fastapi.testclient import TestClient

from service.api import admission
from service.api.budget import BudgetBusyError
from service.api.delivery import run_in_thread
from service.api.schemas import ModelInit
from service.app import create_app
from service.settings import Settings

LARGE_RECIPE = {
    "seed": 1,
    "model": {
        "layers": ["linear(1, 1)"] * 200,
        "rules": [{"layer": f"absent{n}", "param": "weight", "scheme": "zeros"} for n in range(100)],
    },
}
SMALL_RECIPE = {"seed": 1, "model": {"layers": ["linear(4, 4)", "relu()", "linear(4, 2)"]}}


def test_requests_are_sorted_by_their_work():
    lanes = admission.Lanes(Settings(threads=2))
    assert lanes.job(admission.SMALL_WORK_ELEMENTS) is None  # the server's shared threads
    assert lanes.job(admission.SMALL_WORK_ELEMENTS + 1) is lanes.heavy_threads
    assert lanes.heavy_threads.total_tokens == admission.HEAVY_THREADS_PER_CORE * 2
    assert admission.recipe_work(ModelInit.model_validate(LARGE_RECIPE)) == 200 * 101 > admission.LARGE_RECIPE_WORK
    assert admission.recipe_work(ModelInit.model_validate(SMALL_RECIPE)) == 3 * 1 <= admission.LARGE_RECIPE_WORK


def test_heavy_work_cannot_take_the_threads_small_work_needs():
    """Every shared thread token but one is taken, and all the heavy ones: more heavy work waits in its own line,
    and a small job still runs (on the shared pool's last token, which heavy work never takes)."""

    async def scenario() -> None:
        lanes = admission.Lanes(Settings(threads=1))
        heavy = lanes.heavy_threads
        shared = anyio.to_thread.current_default_thread_limiter()
        gate = threading.Event()
        busy = [asyncio.ensure_future(run_in_thread(gate.wait, 10, limiter=heavy)) for _ in range(heavy.total_tokens)]
        others = [asyncio.ensure_future(run_in_thread(gate.wait, 10)) for _ in range(int(shared.total_tokens) - 1)]
        waiting = asyncio.ensure_future(run_in_thread(gate.wait, 10, limiter=heavy))
        for _ in range(100):  # bounded: every heavy token taken and the next heavy job in line
            if heavy.borrowed_tokens == heavy.total_tokens and heavy.statistics().tasks_waiting == 1:
                break
            await asyncio.sleep(0.01)
        assert heavy.statistics().tasks_waiting == 1
        assert await run_in_thread(lambda: "small") == "small"  # heavy work took none of the shared tokens
        assert not waiting.done()
        gate.set()
        await asyncio.gather(*busy, *others, waiting)

    asyncio.run(scenario())


def test_large_recipes_expand_one_at_a_time_and_small_ones_do_not_wait():
    async def scenario() -> None:
        lanes = admission.Lanes(Settings(budget_wait_seconds=0))
        large, small = ModelInit.model_validate(LARGE_RECIPE), ModelInit.model_validate(SMALL_RECIPE)
        async with lanes.expanding(large) as threads:
            assert threads is lanes.heavy_threads
            with pytest.raises(BudgetBusyError) as busy:
                async with lanes.expanding(large):
                    pytest.fail("a second large recipe expanded at once")
            assert busy.value.retry_after >= 1
            async with lanes.expanding(small) as threads:
                assert threads is None
        async with lanes.expanding(large):  # the slot is free again
            pass
        assert lanes.recipes.slots == 1

    asyncio.run(scenario())


def test_a_large_recipe_past_the_wait_gets_503_with_retry_after():
    app = create_app(Settings(budget_wait_seconds=0))
    with TestClient(app) as client:
        app.state.delivery.lanes.recipes.slots = 0  # another large recipe is expanding
        response = client.post(
            "/init", content=orjson.dumps(LARGE_RECIPE), headers={"content-type": "application/json"}
        )
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        (detail,) = response.json()["detail"]
        assert detail["loc"] == ["body", "model"] and detail["type"] == "busy"
        assert "expansion of large recipes" in detail["msg"]
        assert client.post("/init", json=SMALL_RECIPE).status_code == 200  # small recipes need no slot
        app.state.delivery.lanes.recipes.slots = 1
        assert client.post("/init", json=LARGE_RECIPE).status_code == 200
