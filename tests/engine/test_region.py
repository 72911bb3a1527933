"""Regions of a tensor: bit for bit the same region of the full tensor, however cut and chunked, at a cost
proportional to the region (orthogonal and sparse excepted)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.engine.errors import InitError
from service.engine.plan import Plan, TensorRequest, make_plan
from service.engine.region import MERGE_GAP, Region, check_bounds


def plan(shape: tuple[int, ...], scheme: str = "kaiming_normal", **fields) -> Plan:
    return make_plan(TensorRequest(shape=shape, scheme=scheme, seed=fields.pop("seed", 7), **fields))


def expected(p: Plan, bounds: tuple[tuple[int, int], ...]) -> np.ndarray:
    return p.tensor()[tuple(slice(a, b) for a, b in bounds)]


CUTS = [
    ((256, 784), ((0, 128), (0, 784))),  # row shard: one contiguous run
    ((256, 784), ((0, 256), (392, 784))),  # column shard: 256 runs, merged into spans
    ((256, 784), ((3, 250), (7, 9))),  # thin columns far apart: run by run
    ((64, 3, 5, 5), ((16, 32), (0, 3), (0, 5), (0, 5))),  # conv output channels
    ((64, 3, 5, 5), ((0, 64), (1, 2), (0, 5), (2, 5))),  # a middle axis and the innermost
    ((2, 3, 4, 5, 6), ((1, 2), (0, 3), (1, 3), (2, 5), (0, 6))),
    ((1001,), ((17, 998),)),  # 1-D, odd edges (not multiples of a Philox block)
    ((7, 1), ((6, 7), (0, 1))),
    ((), ()),  # 0-D: the only region is the whole
    ((5, 5), ((0, 5), (0, 5))),  # an explicit whole
]


@pytest.mark.parametrize(("shape", "bounds"), CUTS)
@pytest.mark.parametrize(("scheme", "dtype"), [("normal", "float32"), ("he_uniform", "bfloat16")])
def test_region_equals_the_same_region_of_the_full_tensor(shape, bounds, scheme, dtype):
    p = plan(shape, scheme, dtype=dtype)
    region = Region(p, bounds)
    assert region.shape == tuple(b - a for a, b in bounds)
    assert region.tensor().tobytes() == expected(p, bounds).tobytes()


@pytest.mark.parametrize("chunk", [1, 3, 5, 64, 1000, 1 << 20])
def test_chunking_never_changes_the_bytes(chunk):
    p = plan((96, 200), "uniform")
    for bounds in (((5, 90), (3, 197)), ((0, 96), (100, 101)), ((0, 96), (0, 200))):
        region = Region(p, bounds)
        chunks = list(region.chunks(chunk))
        assert all(c.size <= max(chunk, 200) for c in chunks[:-1])
        assert np.concatenate(chunks).tobytes() == expected(p, bounds).tobytes()


@pytest.mark.parametrize(
    ("scheme", "shape", "params"),
    [
        ("orthogonal", (24, 40), {}),
        ("sparse", (30, 12), {"sparsity": 0.3}),
        ("eye", (9, 13), {}),
        ("dirac", (8, 4, 3, 3), {"groups": 2}),
        ("trunc_normal", (33, 17), {}),
        ("he_normal", (3, 3, 16, 32), {}),
    ],
)
def test_structured_schemes_slice_exactly(scheme, shape, params):
    p = plan(shape, scheme, params=params)
    bounds = tuple((d // 3, d - d // 4) if d > 1 else (0, 1) for d in shape)
    assert Region(p, bounds).tensor().tobytes() == expected(p, bounds).tobytes()


def test_metadata_names_the_slice_and_the_full_shape():
    p = plan((256, 784), "xavier_uniform")
    meta = Region(p, ((0, 128), (0, 784))).metadata()
    assert meta["shape"] == [128, 784] and meta["full_shape"] == [256, 784] and meta["slice"] == [[0, 128], [0, 784]]
    assert meta["fan_in"] == 784 and meta["fan_out"] == 256  # the fans of the full tensor, not of the shard
    assert Region(p).metadata() == p.metadata()


class Counting:
    """Counts the elements a region asks the plan to generate."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.elements = self.calls = 0
        original = Plan.generate

        def generate(plan_self: Plan, start: int = 0, stop: int | None = None) -> np.ndarray:
            stop = plan_self.numel if stop is None else stop
            self.elements += stop - start
            self.calls += 1
            return original(plan_self, start, stop)

        monkeypatch.setattr(Plan, "generate", generate)


@pytest.mark.parametrize(
    "bounds",
    [
        ((0, 16), (0, 1 << 20)),  # rows of a huge tensor
        ((0, 4096), (0, 64)),  # a column shard: runs far apart
        ((100, 164), (1000, 1512)),
    ],
)
def test_cost_is_proportional_to_the_region_not_the_tensor(monkeypatch, bounds):
    huge = plan((1 << 20, 1 << 20), "uniform")  # 2^40 elements: generating it whole would never finish
    counting = Counting(monkeypatch)
    region = Region(huge, bounds)
    values = region.generate()
    runs = math.prod(b - a for a, b in bounds[:-1])
    assert values.size == region.numel
    assert counting.elements <= 2 * region.numel + runs * MERGE_GAP
    assert region.cost == region.numel


def test_close_runs_are_merged_into_few_calls(monkeypatch):
    p = plan((4096, 256), "uniform")
    counting = Counting(monkeypatch)
    Region(p, ((0, 4096), (0, 200))).generate()
    assert counting.calls <= 4096 * 256 // (1 << 20) + 2  # spans of about a chunk, not one call per row
    assert counting.elements <= 4096 * 256


def test_whole_matrix_schemes_cost_the_whole_tensor():
    p = plan((64, 32), "orthogonal")
    assert Region(p, ((0, 8), (0, 32))).cost == 64 * 32


@pytest.mark.parametrize(
    ("bounds", "fragment"),
    [
        (((0, 1),), "one [start, stop) per dimension"),
        (((0, 2), (3, 3)), "slice[1] = [3, 3)"),
        (((0, 5), (0, 2)), "<= 4"),
        (((-1, 2), (0, 2)), "0 <= start"),
        (((0, 2, 3), (0, 2)), "slice[0] must be [start, stop]"),
    ],
)
def test_bad_bounds_name_the_axis_and_the_rule(bounds, fragment):
    with pytest.raises(InitError, match="slice") as caught:
        check_bounds((4, 4), bounds)
    assert caught.value.field == "slice" and fragment in caught.value.message
