"""The fast engine gives the reference bits: any thread count, any chunk size, numba kernels or NumPy.

* the numba Philox port equals NumPy's Philox (the reference stream);
* each numba sampler equals `Distribution.transform` (the NumPy reference) bit for bit on > 10^6 words, edge words
  (0, 2^64 - 1, ...) and the branch points of log, sin/cos and ndtri included, for float64 and float32 output;
* every distribution kind in every dtype, generated with 1, 2, 3 or 8 threads in chunks of 1, 4, 5, 4097 or
  2^16 elements, on odd sizes and offsets, equals the single-threaded NumPy reference.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.engine import parallel
from service.engine.plan import TensorRequest, make_plan
from service.engine.random import detmath
from service.engine.random.philox import Stream
from service.engine.schemes.distributions import Normal, TruncatedNormal, Uniform

needs_jit = pytest.mark.skipif(not parallel.JIT_AVAILABLE, reason="numba not installed: only the reference path")

if parallel.JIT_AVAILABLE:
    from service.engine.random.compiled import detmath as jit_detmath
    from service.engine.random.compiled import samplers

MAX_WORD = 2**64 - 1
NO_KEY = np.uint64(0)


def same_bits(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    differ = np.flatnonzero(got.view(np.uint8).reshape(got.size, -1) != want.view(np.uint8).reshape(want.size, -1))
    if differ.size:
        first = differ[0]
        pytest.fail(f"{differ.size} elements differ, the first at {first}: {got[first]!r} != {want[first]!r}")


# ---- the Philox port ----------------------------------------------------------------------------------------


@needs_jit
@pytest.mark.parametrize("key", [(0, 0), (MAX_WORD, MAX_WORD), (0xFC18DDA89479A019, 0x84E126847CAE1495)])
@pytest.mark.parametrize(("start", "stop"), [(0, 4), (1, 2), (3, 4101), (4 * 2**40 + 1, 4 * 2**40 + 10_003)])
def test_philox_port_gives_numpys_words(key, start, stop):
    got = np.empty(stop - start, dtype=np.uint64)
    samplers.words(np.uint64(key[0]), np.uint64(key[1]), start, stop, got)
    same_bits(got, Stream(key).words(start, stop))


# ---- samplers on chosen words -------------------------------------------------------------------------------


def words_from_top53(values) -> np.ndarray:
    """Words whose top 53 bits are `values` (and whose low 11 bits are all ones, which must not matter)."""
    return (np.asarray(values, dtype=np.uint64) << np.uint64(11)) | np.uint64(0x7FF)


def edge_words() -> np.ndarray:
    """Words at the ends of the ranges and at the branch points of the transforms."""
    plain = np.array(
        [0, 1, 0x7FF, 0x800, 0xFFF, 0x1000, 2**52, 2**53, 2**63 - 1, 2**63, 2**64 - 2**11, MAX_WORD], dtype=np.uint64
    )
    # Box-Muller turns t = k / 16 (exact quadrant points and rint ties of 4t) and their neighbours
    turns = np.arange(16, dtype=np.uint64) * np.uint64(2**49)
    turns = np.concatenate([turns, turns + np.uint64(1), turns - np.uint64(1)]) % np.uint64(2**53)
    # u1 = (top53 + 1) 2^-53 just around log's thresholds, at several binary exponents
    thresholds = [
        detmath._LOG_HALVE_AT,
        detmath._LOG_SMALL_LO,
        detmath._LOG_SMALL_HI,
        detmath._LOG_HFSQ_LO,
        detmath._LOG_HFSQ_HI,
    ]
    u1_top = [int(t * 2.0**e) - 1 + d for t in thresholds for e in (52, 40, 10) for d in (-2, -1, 0, 1, 2)]
    # open uniform u near ndtri's central/tail switch |p - 0.5| = 0.425 when p = u (p_lo = 0, mass = 1)
    switch = [int(p * 2.0**52) + d for p in (0.075, 0.925) for d in range(-3, 4)]
    return np.concatenate(
        [
            plain,
            words_from_top53(turns),
            words_from_top53(np.array(u1_top, dtype=np.uint64)),
            np.array(switch, dtype=np.uint64) << np.uint64(12),
        ]
    )


def chosen_words(count: int, seed: int) -> np.ndarray:
    """`count` random words (a multiple of 4) with every edge word in both positions of a Box-Muller pair."""
    edges = edge_words()
    pairs = np.stack([np.repeat(edges, edges.size), np.tile(edges, edges.size)], axis=1).reshape(-1)
    rng = np.random.default_rng(seed)
    rest = rng.integers(0, 2**64, count - pairs.size, dtype=np.uint64, endpoint=False)
    words = np.concatenate([pairs, rest])
    assert words.size % 4 == 0
    return words


WORDS = 1 << 20  # > 10^6


def run_kernel(distribution, words: np.ndarray, start: int, stop: int, dtype) -> np.ndarray:
    out = np.empty(stop - start, dtype=dtype)
    starts, length = np.array([start], dtype=np.int64), stop - start
    if isinstance(distribution, Uniform):
        width = distribution.high - distribution.low
        samplers.uniform(NO_KEY, NO_KEY, starts, length, distribution.low, width, out, words)
    elif isinstance(distribution, Normal):
        samplers.normal(NO_KEY, NO_KEY, starts, length, distribution.mean, distribution.std, out, words)
    else:
        d = distribution
        samplers.truncated_normal(
            NO_KEY, NO_KEY, starts, length, d._p_lo, d._mass, d._mirrored, d.mean, d.std, d.a, d.b, out, words
        )
    return out


DISTRIBUTIONS = {
    "uniform": Uniform(-0.3, 2.5),
    "uniform-unit": Uniform(0.0, 1.0),
    "normal": Normal(0.0, 1.0),
    "normal-shifted": Normal(0.5, 2.0),
    "trunc_normal": TruncatedNormal(0.0, 1.0, -2.0, 2.0),
    "trunc_normal-mirrored": TruncatedNormal(0.1, 0.5, -0.5, 1.0),
    "trunc_normal-far-tail": TruncatedNormal(0.0, 1.0, 5.0, 8.0),
    "trunc_normal-subnormal-p": TruncatedNormal(0.0, 1.0, -38.4, -37.5),  # p reaches below 2^-1022
    "trunc_normal-whole-line": TruncatedNormal(0.0, 1.0, -40.0, 40.0),  # p from ~0 to 1
}


@needs_jit
@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_kernel_equals_numpy_reference_on_edge_and_random_words(name):
    distribution = DISTRIBUTIONS[name]
    count = WORDS if name in {"uniform", "normal", "trunc_normal"} else WORDS // 16
    words = chosen_words(count, seed=len(name))
    reference = distribution.transform(words)
    for start, stop in [(0, count), (3, count - 5)]:
        for dtype in (np.float64, np.float32):
            same_bits(run_kernel(distribution, words, start, stop, dtype), reference[start:stop].astype(dtype))


@needs_jit
def test_ndtri_port_on_the_whole_unit_interval():
    tiny = np.geomspace(5e-324, 0.5, 3000)
    p = np.concatenate(
        [
            [0.0, 1.0, -0.0, -1.0, 2.0, np.nan, np.inf, 5e-324, 2.0**-1022, 0.5, 1.0 - 2.0**-53],
            tiny,
            1.0 - tiny[tiny > 1e-16],
            np.nextafter(0.075, [0.0, 1.0]),
            np.nextafter(0.925, [0.0, 1.0]),
            np.random.default_rng(3).random(2000),
        ]
    )
    got = np.array([jit_detmath.ndtri(float(x)) for x in p])
    same_bits(got, detmath.ndtri(p))


# ---- threads x chunk sizes x kinds x dtypes ---------------------------------------------------------------

KINDS = {  # one scheme per distribution kind, with its parameters and a shape maker (size -> shape)
    "uniform": ("uniform", {"a": -1.0, "b": 3.0}, lambda n: (n, 5)),
    "normal": ("normal", {"mean": 0.25, "std": 2.0}, lambda n: (n, 5)),
    "truncated_normal": ("trunc_normal", {"std": 1.5, "a": -2.0, "b": 1.0}, lambda n: (n, 5)),
    "constant": ("constant", {"val": 0.1}, lambda n: (n, 5)),
    "eye": ("eye", {}, lambda n: (n, 5)),
    "dirac": ("dirac", {"groups": 1}, lambda n: (n, 5, 1)),
    "orthogonal": ("orthogonal", {}, lambda n: (n, 5)),
    "sparse": ("sparse", {"sparsity": 0.3}, lambda n: (n, 5)),
}
DTYPES = ("float32", "float64", "float16", "bfloat16")
# (chunk elements, rows): enough rows for several chunks, few enough that chunk size 1 stays quick
CHUNKINGS = [(1, 29), (4, 181), (5, 181), (4097, 1601), (1 << 16, 20011)]
THREADS = (1, 2, 3, 8)


def reference(request: TensorRequest, start: int, stop: int) -> np.ndarray:
    with parallel.configured(threads=1, chunk_elements=1 << 40, jit=False):
        return make_plan(request).generate(start, stop)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize(("chunk", "rows"), CHUNKINGS)
def test_any_threads_and_chunks_give_the_reference_bits(kind, chunk, rows):
    scheme, params, shape = KINDS[kind]
    for dtype in DTYPES:
        request = TensorRequest(shape=shape(rows), scheme=scheme, seed=rows, params=params, dtype=dtype)
        numel = make_plan(request).numel
        for start, stop in [(0, numel), (3, numel - 2)]:  # odd sizes and offsets
            want = reference(request, start, stop)
            for threads in THREADS:
                with parallel.configured(threads=threads, chunk_elements=chunk, jit=parallel.JIT_AVAILABLE):
                    same_bits(make_plan(request).generate(start, stop), want)


@pytest.mark.parametrize("kind", ["normal", "truncated_normal", "orthogonal"])
def test_reference_path_is_also_thread_and_chunk_invariant(kind):
    scheme, params, shape = KINDS[kind]
    request = TensorRequest(shape=shape(181), scheme=scheme, seed=1, params=params, dtype="float32")
    want = reference(request, 1, 900)
    with parallel.configured(threads=3, chunk_elements=5, jit=False):
        same_bits(make_plan(request).generate(1, 900), want)


def test_values_are_float64_and_chunk_invariant():
    request = TensorRequest(shape=(97, 31), scheme="trunc_normal", seed=4, params={}, dtype="bfloat16")
    with parallel.configured(threads=1, chunk_elements=1 << 40, jit=False):
        want = make_plan(request).values(5, 2000)
    with parallel.configured(threads=3, chunk_elements=7, jit=parallel.JIT_AVAILABLE):
        same_bits(make_plan(request).values(5, 2000), want)


# ---- the configuration itself ------------------------------------------------------------------------------


def test_configure_validates_and_configured_restores():
    before = parallel.config()
    with pytest.raises(ValueError, match="threads"):
        parallel.configure(threads=0)
    with pytest.raises(ValueError, match="chunk_elements"):
        parallel.configure(chunk_elements=0)
    with parallel.configured(threads=5, chunk_elements=3):
        assert (parallel.config().threads, parallel.config().chunk_elements) == (5, 3)
    assert parallel.config() == before


def test_a_failing_chunk_raises_in_the_caller():
    calls: list[int] = []

    def task(first: int, last: int) -> None:
        calls.append(first)
        if first == 40:
            raise RuntimeError("chunk 40 failed")

    with parallel.configured(threads=3, chunk_elements=10), pytest.raises(RuntimeError, match="chunk 40"):
        parallel.run_chunks(0, 1000, task)
    assert len(calls) < 100  # the others stopped early


# ---- scheduling: the shared pool serves the job with the least work left first ------------------------------


def _in_job(elements: int, start: int, stop: int, task) -> threading.Thread:
    """run_chunks(start, stop, task) as a job of `elements`, in a thread of its own (a context of its own)."""

    def run() -> None:
        parallel.job(elements)
        parallel.run_chunks(start, stop, task)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_until(condition) -> None:
    for _ in range(1000):  # bounded: 10 s at most
        if condition():
            return
        threading.Event().wait(0.01)
    pytest.fail("the pool never got there")


def test_a_small_job_runs_before_the_rest_of_a_large_one():
    """Both workers are busy with a large job's first chunks when a small job arrives: its chunks run next, before
    any of the large job's 98 others (a first-come pool ran them after all of those)."""
    order: list[tuple[str, int]] = []
    gate = threading.Event()

    def large(first: int, last: int) -> None:
        order.append(("large", first))
        if first < 20:
            assert gate.wait(10)

    def small(first: int, last: int) -> None:
        order.append(("small", first))

    with parallel.configured(threads=2, chunk_elements=10):
        big = _in_job(1000, 0, 1000, large)
        _wait_until(lambda: len(order) == 2)  # both workers hold one of its chunks
        little = _in_job(20, 0, 20, small)
        _wait_until(lambda: len(parallel._pool._queue) == 2)  # the large job's rest and the small job, queued
        gate.set()
        little.join(10)
        big.join(10)
    assert sorted(order[:2]) == [("large", 0), ("large", 10)]
    assert sorted(order[2:4]) == [("small", 0), ("small", 10)]
    assert [first for _, first in order[4:]] == list(range(20, 1000, 10))


def test_a_job_counts_down_the_work_of_its_calls():
    counted: list[int] = []

    def run() -> None:
        parallel.job(1000)
        parallel.run_chunks(0, 300, lambda first, last: None)  # on the pool
        parallel.run_chunks(0, 7, lambda first, last: None)  # one chunk: in the caller's thread
        counted.append(parallel._job.get().remaining)

    with parallel.configured(threads=2, chunk_elements=100):
        thread = threading.Thread(target=run)
        thread.start()
        thread.join(10)
    assert counted == [1000 - 307]


def test_half_precision_from_many_callers_at_once_gives_the_reference_bits():
    """The engine's threads keep one float32 scratch each for float16 and bfloat16 (distributions._fill_rounded):
    chunks of concurrent calls, interleaved on the same threads, must never see each other's."""
    requests = [
        TensorRequest(shape=(701, 53), scheme=scheme, seed=seed, params={}, dtype=dtype)
        for seed, (scheme, dtype) in enumerate(
            [("normal", "bfloat16"), ("uniform", "float16"), ("trunc_normal", "bfloat16"), ("normal", "float16")] * 3
        )
    ]
    wants = [reference(request, 0, 701 * 53) for request in requests]
    engine = parallel.configured(threads=3, chunk_elements=4096, jit=parallel.JIT_AVAILABLE)
    with engine, ThreadPoolExecutor(len(requests)) as callers:
        gots = list(callers.map(lambda r: make_plan(r).generate(0, 701 * 53), requests))
    for got, want in zip(gots, wants, strict=True):
        same_bits(got, want)
    assert not parallel.on_engine_thread()  # a caller's thread: it keeps no scratch
