"""Regions of a tensor: bit for bit the same region of the full tensor, however cut and chunked, at a cost
proportional to the region (orthogonal and sparse excepted)."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine import parallel
from service.engine.errors import InitError
from service.engine.plan import Plan, TensorRequest, make_plan
from service.engine.random.philox import Stream
from service.engine.region import Region, check_bounds
from service.engine.schemes.distributions import RUN_OVERHEAD, Normal


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
    """Counts the elements a region asks the plan to generate, and the calls (ranges and batches of runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.elements = self.calls = self.run_calls = 0
        original, original_runs = Plan.generate, Plan.generate_runs

        def generate(plan_self: Plan, start: int = 0, stop: int | None = None) -> np.ndarray:
            stop = plan_self.numel if stop is None else stop
            self.elements += stop - start
            self.calls += 1
            return original(plan_self, start, stop)

        def generate_runs(plan_self: Plan, starts: np.ndarray, length: int) -> np.ndarray:
            self.elements += starts.size * length
            self.run_calls += 1
            return original_runs(plan_self, starts, length)

        monkeypatch.setattr(Plan, "generate", generate)
        monkeypatch.setattr(Plan, "generate_runs", generate_runs)


@pytest.mark.parametrize(
    ("bounds", "runs"),
    [
        (((0, 16), (0, 1 << 20)), 1),  # rows of a huge tensor: one contiguous run
        (((0, 4096), (0, 64)), 4096),  # a column shard: runs far apart
        (((100, 164), (1000, 1512)), 64),
    ],
)
def test_cost_is_proportional_to_the_region_not_the_tensor(monkeypatch, bounds, runs):
    huge = plan((1 << 20, 1 << 20), "uniform")  # 2^40 elements: generating it whole would never finish
    counting = Counting(monkeypatch)
    region = Region(huge, bounds)
    values = region.generate()
    assert values.size == region.numel
    assert counting.elements == region.numel
    assert region.cost == region.numel + RUN_OVERHEAD * (runs - 1)


def test_short_runs_are_generated_many_per_call(monkeypatch):
    p = plan((4096, 256), "uniform")
    counting = Counting(monkeypatch)
    Region(p, ((0, 4096), (0, 200))).generate()
    engine = parallel.config()  # generate() fills a piece of what the engine's threads compute at once
    work = 4096 * (200 + RUN_OVERHEAD)
    assert counting.calls + counting.run_calls <= work // (engine.threads * engine.chunk_elements) + 2  # not a row each
    assert counting.elements == 4096 * 200


def test_whole_matrix_schemes_cost_the_whole_tensor():
    p = plan((64, 32), "orthogonal")
    assert Region(p, ((0, 8), (0, 32))).cost == 64 * 32


def test_dirac_costs_the_listing_of_its_ones_once():
    # The distribution's setup_cost, not a check of its kind in Region: shape[0] more whatever the cut.
    p = plan((8, 4, 3, 3), "dirac", params={"groups": 2})
    whole, rows = Region(p), Region(p, ((0, 2), (0, 4), (0, 3), (0, 3)))
    assert p.distribution.setup_cost() == 8 and plan((8, 4), "normal").distribution.setup_cost() == 0
    assert whole.cost == 8 * 4 * 3 * 3 + 8 and rows.cost == 2 * 4 * 3 * 3 + 8
    assert Region(p, ((0, 8), (0, 4), (0, 3), (1, 2))).cost == 8 * 4 * 3 + RUN_OVERHEAD * (8 * 4 * 3 - 1) + 8


def test_machine_exact_is_false_only_where_lapack_computes():
    assert not Region(plan((6, 4), "orthogonal")).machine_exact
    for scheme, params in (("kaiming_normal", {}), ("sparse", {"sparsity": 0.5}), ("eye", {}), ("zeros", {})):
        assert Region(plan((6, 4), scheme, params=params), ((0, 3), (0, 4))).machine_exact


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


# ---- strided regions: many runs per engine call, at a cost of their size -----------------------------------

RANDOM_ACCESS = [  # every random-access distribution kind, with a shape to cut
    ("uniform", {}, (37, 29)),
    ("normal", {"mean": 0.5, "std": 2.0}, (37, 29)),  # Box-Muller pairs split by odd run starts
    ("trunc_normal", {"a": -1.0, "b": 2.0}, (37, 29)),
    ("constant", {"val": 0.25}, (37, 29)),
    ("eye", {}, (37, 29)),
    ("dirac", {"groups": 3}, (9, 5, 3, 3)),
]
STRIDED = {  # bounds for a 2-D and a 4-D shape: single columns, odd widths and offsets, middle axes
    2: [((0, 37), (0, 1)), ((3, 36), (5, 8)), ((1, 30), (27, 29)), ((0, 37), (13, 14))],
    4: [((0, 9), (1, 4), (0, 3), (1, 2)), ((2, 8), (0, 5), (1, 3), (0, 3)), ((0, 9), (4, 5), (0, 3), (0, 3))],
}


@pytest.mark.parametrize(("scheme", "params", "shape"), RANDOM_ACCESS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("jit", [False, True])
def test_strided_regions_equal_the_full_tensor_on_both_paths(scheme, params, shape, dtype, jit):
    if jit and not parallel.JIT_AVAILABLE:
        pytest.skip("numba not installed")
    p = plan(shape, scheme, params=params, dtype=dtype)
    with parallel.configured(jit=False):
        full = p.tensor()
    for bounds in STRIDED[len(shape)]:
        want = full[tuple(slice(a, b) for a, b in bounds)].tobytes()
        for chunk, threads in ((1 << 20, 1), (50, 3), (7, 2)):  # one batch, several, and threads splitting them
            with parallel.configured(threads=threads, chunk_elements=5, jit=jit):
                assert Region(p, bounds).tensor().tobytes() == want, (bounds, chunk, threads)
                assert np.concatenate(list(Region(p, bounds).chunks(chunk))).tobytes() == want, (bounds, chunk)


@pytest.mark.parametrize("jit", [False, True])
def test_a_column_slice_is_a_few_vectorised_calls_not_one_per_element(monkeypatch, jit):
    """The issue's 12 s request: a column of 2^20 rows. Now a batch of a chunk's work per call."""
    if jit and not parallel.JIT_AVAILABLE:
        pytest.skip("numba not installed")
    rows = 1 << 17
    p = plan((1 << 21, 1 << 21), "normal")
    counting = Counting(monkeypatch)
    engine = {"calls": 0, "runs": 0, "blocks": 0}
    original_fill, original_blocks = Normal.fill_runs, Stream.blocks_at

    def fill_runs(self, stream, shape, starts, length, out):
        engine["calls"] += 1
        engine["runs"] += starts.size
        return original_fill(self, stream, shape, starts, length, out)

    def blocks_at(self, first_blocks, n_blocks, purpose=0):
        engine["blocks"] += first_blocks.size * n_blocks
        return original_blocks(self, first_blocks, n_blocks, purpose)

    monkeypatch.setattr(Normal, "fill_runs", fill_runs)
    monkeypatch.setattr(Stream, "blocks_at", blocks_at)
    region = Region(p, ((0, rows), (0, 1)))
    with parallel.configured(threads=2, jit=jit):
        values = region.generate()
    work, chunk = rows * (1 + RUN_OVERHEAD), parallel.config().chunk_elements
    assert counting.calls == 0 and counting.run_calls <= -(-work // (2 * chunk)) + 1  # a piece per 2 threads' chunks
    assert engine["runs"] == rows and engine["calls"] <= -(-work // chunk) + counting.run_calls
    assert engine["blocks"] == (0 if jit else rows)  # the reference: one Philox block per one-element run
    assert region.cost == work - RUN_OVERHEAD
    with parallel.configured(jit=False):  # NumPy's Philox, one element at a time
        for row in (0, 1, 2, 3, 61679, 61680, rows - 1):
            assert values[row] == p.generate(row << 21, (row << 21) + 1)[0]
