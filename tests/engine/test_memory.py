"""The memory estimates the budget reserves are upper bounds of what generation really allocates.

NumPy reports its allocations to tracemalloc, so the peak of a generation is measured exactly (LAPACK's work
copies inside QR are malloc'd out of its sight: Orthogonal.scratch_bytes adds them from RSS measurements).
Measured: a buffered /init (the region written into a preallocated body), a streamed one (chunk by chunk, each
turned into bytes), and /stats, for the whole-matrix schemes and random-access ones, on both engine paths.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest

from service.engine import parallel
from service.engine.plan import Plan, TensorRequest, make_plan
from service.engine.region import Region
from service.engine.schemes import distributions
from service.engine.stats import stats_working_bytes, tensor_stats

STREAM_CHUNK = 1 << 18  # what the API streams by
SCHEMES = {
    "orthogonal": {},
    "sparse": {"sparsity": 0.3},
    "normal": {"std": 0.5},
    "trunc_normal": {},
    "eye": {},
}
SHAPES = [(512, 512), (1024, 256)]


def peak_bytes(work: Callable[[], object]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        work()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def fresh(scheme: str, shape: tuple[int, int], dtype: str) -> Plan:
    return make_plan(TensorRequest(shape=shape, scheme=scheme, seed=3, params=SCHEMES[scheme], dtype=dtype))


def stream(region: Region) -> None:
    for chunk in region.chunks(STREAM_CHUNK):
        chunk.tobytes()


@pytest.fixture(scope="module", autouse=True)
def warm() -> None:
    """First uses allocate once for good (LAPACK, numba's dispatchers): not part of any request's peak."""
    for jit in {False, parallel.JIT_AVAILABLE}:
        with parallel.configured(jit=jit):
            for scheme in SCHEMES:
                tensor_stats(fresh(scheme, (64, 64), "float32"))


@pytest.mark.parametrize("scheme", list(SCHEMES))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("jit", sorted({False, parallel.JIT_AVAILABLE}))
def test_generation_and_stats_stay_within_their_estimates(scheme, shape, dtype, jit):
    with parallel.configured(jit=jit):
        engine = parallel.config()
        plan = fresh(scheme, shape, dtype)
        out = np.empty(plan.numel, dtype=plan.dtype.numpy)  # the response body: reserved apart
        buffered = peak_bytes(lambda: Region(fresh(scheme, shape, dtype)).fill(out))
        assert buffered <= plan.working_bytes(min(plan.numel, engine.threads * engine.chunk_elements))
        streamed = peak_bytes(lambda: stream(Region(fresh(scheme, shape, dtype))))
        assert streamed <= plan.working_bytes(STREAM_CHUNK)
        stats = peak_bytes(lambda: tensor_stats(fresh(scheme, shape, dtype)))
        assert stats <= stats_working_bytes(plan)


def test_a_strided_region_stays_within_the_estimate_of_its_pieces():
    plan = fresh("normal", (1 << 14, 1 << 14), "float64")
    region = Region(plan, ((0, 1 << 14), (5, 6)))
    with parallel.configured(jit=False):
        engine = parallel.config()
        out = np.empty(region.numel, dtype=np.float64)
        assert peak_bytes(lambda: region.fill(out)) <= plan.working_bytes(engine.threads * engine.chunk_elements)


@pytest.mark.parametrize("slab", [1, 7, 64])
def test_sparse_sorted_a_slab_of_columns_at_a_time_has_the_whole_matrix_bits(monkeypatch, slab):
    request = TensorRequest(shape=(33, 50), scheme="sparse", seed=5, params={"sparsity": 0.4}, dtype="float64")
    whole = make_plan(request).tensor()
    monkeypatch.setattr(distributions, "_SPARSE_SLAB_ELEMENTS", slab * 33)
    assert make_plan(request).tensor().tobytes() == whole.tobytes()
