"""The RNG registry: philox-v1 its default entry beside philox-v2 and torch-2.13, found by discovery, and the
attributes the engine reads.

A stand-in for PyTorch's CPU generator (one sequential stream per request, no random access) shows that slicing,
chunking, working memory and many-tensor ordering follow the entry's attributes, not its id."""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from service.engine.bundle import ModelRequest, Overwritten, TensorSpec, plan_model
from service.engine.errors import InitError
from service.engine.plan import TensorRequest, make_plan
from service.engine.random import registry, rngs
from service.engine.random.rng import Draw, Rng
from service.engine.random.rngs.philox_v1 import PhiloxV1
from service.engine.region import Region
from service.engine.schemes.distributions import Normal, Uniform


def test_philox_v1_stays_the_default_beside_philox_v2():
    assert registry.RNGS == ("philox-v1", "philox-v2", "torch-2.13") and registry.DEFAULT_RNG == "philox-v1"
    assert TensorRequest((2, 2), "normal", 0).rng == "philox-v1"
    entry = registry.get_rng("philox-v1")
    assert isinstance(entry, PhiloxV1)
    assert (entry.random_access, entry.keyed_by, entry.contract) == (True, "tensor", "docs/reproducibility.md")
    v2 = registry.get_rng("philox-v2")
    assert (v2.random_access, v2.keyed_by, v2.contract) == (True, "tensor", "docs/philox-v2.md")
    with pytest.raises(InitError) as caught:
        make_plan(TensorRequest((2, 2), "normal", 0, rng="mt19937"))
    assert caught.value.field == "rng" and "known: philox-v1, philox-v2, torch-2.13" in caught.value.message


def test_an_rng_is_one_module_of_the_registry_folder(tmp_path, monkeypatch):
    (tmp_path / "counter_v0.py").write_text(
        textwrap.dedent(
            """
            from service.engine.random.rngs.philox_v1 import PhiloxV1

            class CounterV0(PhiloxV1):
                id = "counter-v0"

            RNG = CounterV0()
            """
        )
    )
    monkeypatch.setattr(rngs, "__path__", [*rngs.__path__, str(tmp_path)])
    assert sorted(registry._discover()) == ["counter-v0", "philox-v1", "philox-v2", "torch-2.13"]


class Sequential(Rng):
    """One NumPy PCG64 stream per request, each tensor taking numel normals or uniforms in draw order; replayed
    from the start for each tensor, so that any stream gives the same values whenever it is sampled."""

    id = "sequential-test"
    random_access = False
    keyed_by = "request"
    contract = "tests/engine/test_rngs.py"

    def __init__(self) -> None:
        self.samples = 0
        self.orders: list[list[str]] = []

    def streams(self, seed: int, draws: Sequence[Draw]) -> list[Any]:
        self.orders.append([draw.name for draw in draws])
        return [(seed, tuple(draws[:index])) for index in range(len(draws))]

    def sample(self, distribution: Any, stream: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        self.samples += 1
        seed, before = stream
        generator = np.random.Generator(np.random.PCG64(seed))
        for draw in before:
            self._values(generator, draw.distribution, math.prod(draw.shape))
        return self._values(generator, distribution, math.prod(shape))

    @staticmethod
    def _values(generator: np.random.Generator, distribution: Any, numel: int) -> np.ndarray:
        if isinstance(distribution, Normal):
            return distribution.mean + distribution.std * generator.standard_normal(numel)
        assert isinstance(distribution, Uniform)
        return distribution.low + (distribution.high - distribution.low) * generator.random(numel)

    def generate(self, *args: Any) -> np.ndarray:
        raise AssertionError("no random access: the engine must not ask for a range")

    generate_runs = generate


@pytest.fixture
def sequential(monkeypatch) -> Sequential:
    entry = Sequential()
    monkeypatch.setitem(registry.REGISTRY, entry.id, entry)
    return entry


def test_without_random_access_a_slice_costs_and_samples_the_whole_tensor(sequential):
    plan = make_plan(TensorRequest((64, 32), "normal", 3, rng="sequential-test"))
    assert not plan.random_access and plan.distribution.random_access
    region = Region(plan, ((8, 16), (0, 32)))
    assert region.cost == 64 * 32
    whole = plan.tensor()
    assert np.array_equal(region.tensor(), whole[8:16])
    assert np.concatenate(list(plan.chunks(chunk_elements=100))).tobytes() == whole.tobytes()
    assert sequential.samples == 1  # once per plan, whatever is cut from it
    assert plan.working_bytes(1 << 10) >= 8 * 64 * 32  # the whole float64 tensor is kept


def test_keyed_by_request_draws_tensors_in_the_requests_order(sequential):
    specs = {"out_proj.weight": TensorSpec((4, 4), "normal"), "in_proj_weight": TensorSpec((12, 4), "uniform")}
    tensors = plan_model(ModelRequest(5, specs, rng="sequential-test"))
    assert sequential.orders[-1] == ["out_proj.weight", "in_proj_weight"]
    generator = np.random.Generator(np.random.PCG64(5))
    first, second = generator.standard_normal(16), generator.random(48)
    assert np.array_equal(tensors[0].tensor().reshape(-1), first.astype(np.float32))
    assert np.array_equal(tensors[1].tensor().reshape(-1), second.astype(np.float32))
    swapped = plan_model(ModelRequest(5, dict(reversed(specs.items())), rng="sequential-test"))
    assert not np.array_equal(swapped[0].tensor(), tensors[1].tensor())  # the draw order is part of the bits


def test_keyed_by_tensor_bits_do_not_depend_on_the_other_tensors():
    specs = {"a": TensorSpec((4, 4), "normal"), "b": TensorSpec((3,), "uniform")}
    both = plan_model(ModelRequest(5, specs))
    alone = plan_model(ModelRequest(5, {"b": specs["b"]}))
    assert both[1].tensor().tobytes() == alone[0].tensor().tobytes()


def test_overwritten_draws_consume_the_stream_and_are_not_output(sequential):
    specs = {"a": TensorSpec((4, 4), "normal"), "b": TensorSpec((3,), "uniform")}
    order = (Overwritten("b", TensorSpec((5,), "uniform")), "b", "a")
    tensors = plan_model(ModelRequest(5, specs, rng="sequential-test", order=order))
    assert sequential.orders[-1] == ["b", "b", "a"]
    generator = np.random.Generator(np.random.PCG64(5))
    generator.random(5)  # the overwritten draw: consumed, never output
    b, a = generator.random(3), generator.standard_normal(16)
    assert [t.name for t in tensors] == ["a", "b"]  # the response keeps the tensors' order
    assert np.array_equal(tensors[0].tensor().reshape(-1), a.astype(np.float32))
    assert np.array_equal(tensors[1].tensor().reshape(-1), b.astype(np.float32))
    philox = plan_model(ModelRequest(5, specs, order=order))  # keyed by tensor: the order changes nothing
    assert [t.tensor().tobytes() for t in philox] == [t.tensor().tobytes() for t in plan_model(ModelRequest(5, specs))]


@pytest.mark.parametrize(
    ("order", "words"),
    [(("a",), "misses tensors ['b']"), (("a", "b", "a"), "names tensor 'a' twice")],
)
def test_a_draw_order_names_every_drawn_tensor_once(sequential, order, words):
    specs = {
        "a": TensorSpec((2,), "normal"),
        "b": TensorSpec((2,), "normal"),
        "n": TensorSpec((), "zeros", dtype="int64"),
    }
    with pytest.raises(ValueError, match=re.escape(words)):
        plan_model(ModelRequest(1, specs, rng="sequential-test", order=order))
