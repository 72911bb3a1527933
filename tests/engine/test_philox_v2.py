"""philox-v2 (docs/philox-v2.md): its stream, its dtype-exact intervals, its statistics, its invariances, its bits.

philox-v1's bits are pinned by tests/engine/test_reproducibility.py and tests/api/test_response_bytes.py, which
this rng leaves untouched; the golden hashes here are philox-v2's own.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats

from service import vectors as service_vectors
from service.engine import parallel
from service.engine.bundle import ModelRequest, TensorSpec, plan_model
from service.engine.dtypes import DTYPES, round_to
from service.engine.errors import InitError
from service.engine.plan import TensorRequest, make_plan
from service.engine.random import detmath
from service.engine.random.philox2 import samplers, vectors, ziggurat
from service.engine.random.philox2.stream import Stream, digest_words, philox4x32
from service.engine.region import MAX_ADDRESSABLE, Region
from service.engine.schemes import distributions as d

from .test_parallel import needs_jit, same_bits
from .test_schemes_statistics import CASES, KS_P_MIN, case_id, check_against, reference_fans

if parallel.JIT_AVAILABLE:
    from service.engine.random.philox2 import kernels

VECTORS = vectors.PATH
NARROW = ["float32", "float16", "bfloat16"]
ALL_DTYPES = ["float64", *NARROW]
LAST = MAX_ADDRESSABLE


def v2(shape, scheme, params=None, *, seed=0, dtype="float32", name="weight", **kwargs) -> TensorRequest:
    return TensorRequest(
        shape=tuple(shape),
        scheme=scheme,
        seed=seed,
        params=params or {},
        dtype=dtype,
        name=name,
        rng="philox-v2",
        **kwargs,
    )


def as_f64(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float64)


# ---- the stream ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counter", "key", "want"),
    [  # Random123's kat_vectors for philox4x32_10
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ],
)
def test_philox4x32_10_known_answers(counter, key, want):
    got = philox4x32(tuple(np.array([c], np.uint64) for c in counter), key)
    assert tuple(int(w) for w in got[0]) == want


def test_key_and_counter_words_of_the_contract():
    digest = hashlib.sha256(b"initserve/philox-v2\x00" + (7).to_bytes(8, "little") + b"weight").digest()
    assert digest_words(7, "weight") == tuple(int.from_bytes(digest[4 * j : 4 * j + 4], "little") for j in range(8))
    stream = Stream.for_tensor(7, "weight")
    d0, d1, d2, d3 = stream.words4
    block = (1 << 32) + 5  # crosses into the counter's second word
    for purpose in (0, 1):
        counter = (5, 1 + (purpose << 31), d2, d3)
        want = philox4x32(tuple(np.array([c], np.uint64) for c in counter), (d0, d1))[0]
        same_bits(stream.block_words(np.array([block]), purpose)[0], want)
        same_bits(stream.words(4 * block + 1, 4 * block + 3, purpose), want[1:3])


@needs_jit
@pytest.mark.parametrize("purpose", [0, 1])
@pytest.mark.parametrize(
    ("start", "stop"), [(0, 1), (3, 4100), (1 << 40, (1 << 40) + 77), ((1 << 62) - 9, 1 << 62), (LAST - 5, LAST)]
)
def test_words_kernel_is_the_reference(purpose, start, stop):
    stream = Stream.for_tensor(3, "w")
    got = np.empty(stop - start, np.uint64)
    kernels.words(*(np.uint64(w) for w in stream.words4), purpose, start, stop, got)
    same_bits(got, stream.words(start, stop, purpose))


# ---- kernels against the NumPy reference ------------------------------------------------------------------------

ELEMENTWISE = {
    "uniform": {"a": -1.0, "b": 3.0},
    "normal": {"mean": 0.5, "std": 2.0},
    "trunc_normal": {"std": 1.5, "a": -2.0, "b": 1.0},
    "kaiming_uniform": {},
}
RANGES = [(0, 1), (1, 2), (3, 2050), (1021, 1029), (LAST - 1, LAST), (LAST - 1027, LAST - 2)]


@needs_jit
@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("scheme", list(ELEMENTWISE))
def test_kernels_give_the_reference_bits_anywhere(scheme, dtype):
    request = v2((LAST,), scheme, ELEMENTWISE[scheme], seed=11, dtype=dtype, fan_in=100, fan_out=100)
    for start, stop in RANGES:
        with parallel.configured(jit=False):
            want = Region(make_plan(request), ((start, stop),)).generate()
        with parallel.configured(jit=True):
            got = Region(make_plan(request), ((start, stop),)).generate()
        same_bits(got, want)


@needs_jit
@pytest.mark.parametrize("dtype", ["float64", "bfloat16"])
@pytest.mark.parametrize("scheme", [*ELEMENTWISE, "orthogonal", "sparse", "eye", "dirac", "constant"])
def test_kernels_and_reference_agree_on_whole_tensors_and_strided_slices(scheme, dtype):
    shape = (4, 3, 3, 3) if scheme == "dirac" else (37, 29)
    params = {"constant": {"val": 0.25}, "sparse": {"sparsity": 0.3}}.get(scheme, ELEMENTWISE.get(scheme))
    bounds = ((1, 4), (0, 3), (1, 2), (0, 3)) if scheme == "dirac" else ((3, 30), (5, 9))
    request = v2(shape, scheme, params, seed=4, dtype=dtype)
    results = []
    for jit in (False, True):
        with parallel.configured(jit=jit):
            plan = make_plan(request)
            results.append((plan.tensor(), Region(plan, bounds).tensor()))
    same_bits(results[1][0], results[0][0])
    same_bits(results[1][1], results[0][1])
    same_bits(results[0][1], results[0][0][tuple(slice(a, b) for a, b in bounds)])


# ---- exact intervals after rounding ------------------------------------------------------------------------------

EXHAUSTIVE = 1 << 24


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize(
    ("scheme", "params", "low", "high", "closed"),
    [
        ("uniform", {"a": -1.0, "b": 3.0}, -1.0, 3.0, False),  # the case: b = 3 itself came out
        ("uniform", {"a": 0.0, "b": 0.05}, 0.0, 0.05, False),  # b not representable: bfloat16 gave 0.050048828
        ("kaiming_uniform", {}, None, None, False),  # symmetric: strictly within +-bound (bfloat16 reached 0.2168)
        ("trunc_normal", {"std": 10.0, "a": -0.3, "b": 0.7}, -0.3, 0.7, True),  # nearly flat: the edges are hit
    ],
)
def test_intervals_hold_after_rounding_over_2_to_the_24_elements(scheme, params, low, high, closed, dtype):
    plan = make_plan(v2((EXHAUSTIVE // 64, 64), scheme, params, seed=5, dtype=dtype, fan_in=64))
    values = as_f64(plan.generate())
    if low is None:  # symmetric: (-bound, bound)
        bound = plan.distribution.high
        assert -bound < values.min() and values.max() < bound
    elif closed:
        assert low <= values.min() and values.max() <= high
    else:
        assert low <= values.min() and values.max() < high
    if dtype != "float64":  # the cut moved the bounds in, not the values: the dtype's edge values do occur
        grid = round_to(np.array([values.min(), values.max()]), DTYPES[dtype])
        assert values.min() == float(grid[0]) and values.max() == float(grid[1])


@pytest.mark.parametrize("rng", ["philox-v1", "philox-v2"])
@pytest.mark.parametrize(
    ("scheme", "params"),
    [("uniform", {"a": 1.0, "b": 1.0 + 2.0**-20}), ("trunc_normal", {"a": 0.7, "b": 0.7 + 2.0**-21})],
)
def test_float32_narrow_intervals_where_rounding_reaches_the_bounds_often(scheme, params, rng):
    """Intervals a few float32 ulps wide, where philox-v1 rounds several percent of the draws onto or past a bound."""
    values = as_f64(make_plan(TensorRequest((1 << 20,), scheme, 3, params, rng=rng)).generate())
    above = values >= params["b"] if scheme == "uniform" else values > params["b"]
    outside = ((values < params["a"]) | above).mean()
    if rng == "philox-v1":
        assert outside > 0.01  # the defect, kept: philox-v1's bits never change
    else:
        assert outside == 0


@pytest.mark.parametrize("dtype", NARROW)
def test_philox_v1_broke_the_interval_that_v2_keeps(dtype):
    """The issue's reproduction: POST /init seed 5, shape [4096], uniform(-1, 3), bfloat16."""
    body = {"shape": (4096,), "scheme": "uniform", "seed": 5, "params": {"a": -1, "b": 3}, "dtype": "bfloat16"}
    old = as_f64(make_plan(TensorRequest(**body)).generate())
    assert (old >= 3).sum() > 0  # philox-v1, unchanged: 3 itself appears (indices 642, 698, 2275, ...)
    assert {642, 698, 2275} <= set(np.flatnonzero(old >= 3).tolist())
    new = as_f64(make_plan(TensorRequest(**body, rng="philox-v2")).generate())
    assert new.max() < 3


def rounded(x: float, dtype: str) -> float:
    return float(round_to(np.array([x]), DTYPES[dtype])[0])


BOUNDS = [-1.0, 3.0, 0.05, 0.216506, -0.216506, 1e-30, -6.0e-8, 65504.0 / 3, 1.0 + 2.0**-9, 0.1]


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("bound", BOUNDS)
def test_cuts_are_the_rounding_boundaries(bound, dtype):
    for strict in (False, True):
        cut = samplers.first_at_least(bound, DTYPES[dtype], strict)
        below = math.nextafter(cut, -math.inf)
        if strict:
            assert rounded(cut, dtype) > bound and not rounded(below, dtype) > bound
        else:
            assert rounded(cut, dtype) >= bound and not rounded(below, dtype) >= bound
    top = samplers.last_at_most(bound, DTYPES[dtype])
    assert rounded(top, dtype) <= bound and not rounded(math.nextafter(top, math.inf), dtype) <= bound


EXTREME_WORDS = np.array([0, 1, 2**31, 2**32 - 2, 2**32 - 1], np.uint64)
EXTREME_WIDE = np.array([0, 1, 2**63, 2**64 - 2**11 - 1, 2**64 - 2**11, 2**64 - 1], np.uint64)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize(("low", "high"), [(-1.0, 3.0), (0.0, 0.05), (-0.216506, 0.216506), (1e-20, 1.0), (2.5, 2.6)])
def test_extreme_words_stay_inside_at_the_rounding_boundary(low, high, dtype):
    sampler = samplers.sampler(d.Uniform(low, high), np.dtype(DTYPES[dtype].numpy))
    words = EXTREME_WIDE if dtype == "float64" else EXTREME_WORDS
    values = as_f64(round_to(sampler.transform(words), DTYPES[dtype]))
    assert values.max() < high
    assert (values.min() > low) if low == -high else (values.min() >= low)
    assert values[0] == rounded(sampler.low, dtype)  # word 0 gives the least value the interval holds
    if dtype != "float64":  # and the largest word the greatest below high (float64's grid is finer than 2^-53)
        assert values[-1] == rounded(sampler.top, dtype)
    truncated = samplers.sampler(d.TruncatedNormal(0.0, 1.0, low, high), np.dtype(DTYPES[dtype].numpy))
    values = as_f64(round_to(truncated.transform(words), DTYPES[dtype]))
    assert low <= values.min() and values.max() <= high


def test_a_dtype_without_a_value_in_the_interval_is_refused():
    with pytest.raises(InitError) as caught:
        make_plan(v2((4,), "uniform", {"a": 1.004, "b": 1.0078125}, dtype="bfloat16"))
    assert caught.value.field == "dtype" and "no bfloat16 value" in caught.value.message
    with pytest.raises(InitError) as caught:
        make_plan(v2((4,), "trunc_normal", {"a": 1.001, "b": 1.003}, dtype="bfloat16"))
    assert caught.value.field == "dtype" and "truncation interval" in caught.value.message
    assert make_plan(v2((4,), "uniform", {"a": 1.004, "b": 1.0078125}, dtype="float32")).generate().max() < 1.0078125


# ---- statistics ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_every_scheme_passes_ks_under_philox_v2(case, dtype):
    scheme, params, expected_of = case
    shape, layout = (128, 96), "torch"
    expected = expected_of(reference_fans(shape, layout))
    plan = make_plan(v2(shape, scheme, params, seed=3000 + CASES.index(case), dtype=dtype, layout=layout))
    check_against(plan, as_f64(plan.generate()), expected, f"{case_id(case)} {dtype}")


def dtype_values(low: float, high: float, dtype: str) -> np.ndarray:
    """Every value of a 16-bit dtype in [low, high], ascending, as float64."""
    with np.errstate(invalid="ignore"):  # the NaN encodings
        every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(DTYPES[dtype].numpy).astype(np.float64)
    every = np.unique(every[np.isfinite(every)])
    return every[(every >= low) & (every <= high)]


def first_at_least_all(bounds: np.ndarray, dtype: str, strict: bool = False) -> np.ndarray:
    """samplers.first_at_least of every bound at once: the same bisection on the float64s' order, vectorised (one
    bound at a time took 20 s a test)."""

    def value(order: np.ndarray) -> np.ndarray:
        return np.where(order >= 0, order, -order | np.int64(-(1 << 63))).view(np.float64)

    def holds(x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            rounded = as_f64(round_to(x, DTYPES[dtype]))
        return rounded > bounds if strict else rounded >= bounds

    top = np.float64(np.finfo(np.float64).max).view(np.int64)
    low, high = np.full(bounds.shape, -top), np.full(bounds.shape, top)
    assert not holds(value(low)).any() and holds(value(high)).all()
    for _ in range(64):  # floor((low + high) / 2) without overflow; stays put once high - low == 1
        middle = (low >> 1) + (high >> 1) + (low & high & 1)
        above = holds(value(middle))
        high, low = np.where(above, middle, high), np.where(above, low, middle)
    return value(high)


def test_the_vectorised_bisection_is_the_samplers():
    every = dtype_values(-3.0, 3.0, "bfloat16")[::97]
    for strict in (False, True):
        expected = [samplers.first_at_least(float(v), DTYPES["bfloat16"], strict) for v in every]
        assert first_at_least_all(every, "bfloat16", strict).tolist() == expected


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize(
    "distribution",
    [d.Uniform(-1.0, 3.0), d.Uniform(-0.216506, 0.216506), d.TruncatedNormal(0.1, 0.5, -0.3, 0.7), d.Normal(0.0, 1.0)],
    ids=["uniform", "symmetric", "truncated", "normal"],
)
def test_low_precision_values_follow_the_rounded_law_exactly(distribution, dtype):
    """Chi-square of the counts of every bfloat16/float16 value against the probability of its rounding cell under
    the law philox-v2 promises (the continuous law restricted to what rounds into the interval): no value, the edge
    values included, is over- or under-weighted."""
    sampler = samplers.sampler(distribution, DTYPES[dtype].numpy)
    n = 1 << 21
    values = as_f64(round_to(sampler.sample(Stream.for_tensor(8, "x"), (n,), 0, n), DTYPES[dtype]))
    every = dtype_values(values.min(), values.max(), dtype)
    observed = np.zeros(every.size)
    support, counts = np.unique(values, return_counts=True)
    observed[np.searchsorted(every, support)] = counts
    if isinstance(sampler, samplers.Uniform):
        lo, hi = sampler.low, sampler.low + sampler.width
        cdf = lambda x: np.clip((x - lo) / (hi - lo), 0.0, 1.0)  # noqa: E731
    else:
        cdf = sampler.inner.cdf if isinstance(sampler, samplers.TruncatedNormal) else distribution.cdf
    edges = np.append(first_at_least_all(every, dtype), first_at_least_all(every[-1:], dtype, strict=True))
    p = np.diff(cdf(edges))
    expected = p / p.sum() * n
    keep = expected >= 20
    chi = stats.chisquare(observed[keep], expected[keep] / expected[keep].sum() * observed[keep].sum())
    assert chi.pvalue > KS_P_MIN, f"chi-square p={chi.pvalue:.3g} over {keep.sum()} values"
    assert abs(observed[~keep].sum() - expected[~keep].sum()) < 5 * math.sqrt(expected[~keep].sum()) + 5


ZERO_PAIRS = {  # requests that differ in a zero's sign only: (scheme, params with -0.0, params with +0.0)
    "uniform": ("uniform", {"a": -0.0, "b": 0.0}, {"a": 0.0, "b": 0.0}),
    "constant": ("constant", {"val": -0.0}, {"val": 0.0}),
    "zeros after constant": ("constant", {"val": -0.0}, None),
    "normal std 0": ("normal", {"mean": -0.0, "std": 0.0}, {"mean": 0.0, "std": 0.0}),
}


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
@pytest.mark.parametrize("case", list(ZERO_PAIRS))
def test_a_zeros_sign_is_its_own_whatever_came_before(case, dtype):
    """Requests equal but for a zero's sign give their own zeros, in either order within one process: caches keyed
    by the distribution (where -0.0 == 0.0) once answered the second with the first's zero (found by both clients'
    ports, live: e.g. `constant(-0.0)` then `zeros` gave -0.0)."""
    scheme, negative, positive = ZERO_PAIRS[case]
    minus = v2((3,), scheme, negative, dtype=dtype)
    plus = v2((3,), scheme, positive, dtype=dtype) if positive is not None else v2((3,), "zeros", dtype=dtype)

    def fresh() -> None:  # a new process's caches
        samplers._sampler.cache_clear()
        samplers._first_at_least.cache_clear()

    alone = {}
    for request in (minus, plus):
        fresh()
        alone[id(request)] = make_plan(request).generate().tobytes()
    assert alone[id(minus)] != alone[id(plus)], case
    for first, second in ((minus, plus), (plus, minus)):
        fresh()
        for request in (first, second):
            assert make_plan(request).generate().tobytes() == alone[id(request)], case


@needs_jit
def test_the_reference_clips_a_zero_as_the_kernel_does():
    """x = -0.0 clipped to a' = +0.0 stays -0.0 (`x if x > a' else a'`) on both paths: np.clip gave +0.0."""
    request = v2((64,), "trunc_normal", {"mean": 0.0, "std": 5e-324, "a": -0.0, "b": 1e-300}, dtype="float64")
    with parallel.configured(jit=False):
        reference = make_plan(request).generate()
    with parallel.configured(jit=True):
        kernel = make_plan(request).generate()
    same_bits(reference, kernel)
    assert np.signbit(kernel).any()


def test_first_at_least_keeps_a_zeros_sign():
    for zero in (-0.0, 0.0):
        assert math.copysign(1.0, samplers.first_at_least(zero, DTYPES["float64"])) == math.copysign(1.0, zero)


def test_sparse_values_must_fit_the_dtype_up_to_the_ziggurats_tail():
    """sparse's values are philox-v2 normals (reaching 13.71 std) rounded to the dtype: a std whose tail overflows
    float16 is refused as the normal's is, where philox-v1's check (its Box-Muller's 8.57 std) let it through."""
    for scheme, params in (("normal", {"std": 4800.0}), ("sparse", {"sparsity": 0.3, "std": 4800.0})):
        with pytest.raises(InitError) as caught:
            make_plan(v2((16, 8), scheme, params, dtype="float16"))
        assert caught.value.field == "dtype" and "overflows float16" in caught.value.message
    assert make_plan(v2((16, 8), "sparse", {"sparsity": 0.3, "std": 4700.0}, dtype="float16")).generate().size == 128


def test_a_truncation_interval_holding_one_value_is_served_and_none_is_refused_as_none():
    one = make_plan(v2((64,), "trunc_normal", {"mean": 1.0, "std": 1.0, "a": 0.999, "b": 1.001}, dtype="bfloat16"))
    assert set(as_f64(one.generate()).tolist()) == {1.0}
    with pytest.raises(InitError) as caught:
        make_plan(v2((4,), "trunc_normal", {"mean": 1.0, "std": 1.0, "a": 1.001, "b": 1.002}, dtype="bfloat16"))
    assert caught.value.field == "dtype" and caught.value.message.startswith("no bfloat16 value lies in")


# ---- the ziggurat -------------------------------------------------------------------------------------------------


def test_ziggurat_tables_are_the_procedures_float64s():
    """The shipped hex tables are the documented procedure's values rounded to float64, and their strips have equal
    areas (to rounding) and close at f(0) = 1."""
    pytest.importorskip("mpmath")
    xs, fs = ziggurat.compute_tables()
    same_bits(np.array(xs), ziggurat.X)
    same_bits(np.array(fs), ziggurat.F)
    v = ziggurat.X[0] * ziggurat.F[1]
    top = ziggurat.LAYERS
    areas = ziggurat.X[1:top] * (ziggurat.F[2:] - ziggurat.F[1:top])
    np.testing.assert_allclose(areas, v, rtol=1e-13)
    assert ziggurat.X[top] == 0.0 and ziggurat.F[top] == 1.0


@pytest.mark.parametrize(
    ("scale", "limit", "bits"), [("SCALE_NARROW", "LIMIT_NARROW", 23), ("SCALE_WIDE", "LIMIT_WIDE", 52)]
)
def test_the_kernels_integer_test_is_the_fast_paths_float_test(scale, limit, bits):
    """m < K[j] exactly when (m + 0.5) * scale[j] < X[j + 1]: checked on each side of every limit."""
    scales, limits = getattr(ziggurat, scale), getattr(ziggurat, limit).astype(np.int64)
    for j in range(ziggurat.LAYERS):
        for m in (limits[j] - 1, limits[j]):
            if 0 <= m < 1 << bits:
                assert ((m + 0.5) * scales[j] < ziggurat.X[j + 1]) == (m < limits[j])


def paths(stream: Stream, index: np.ndarray, wide: bool) -> dict[str, np.ndarray]:
    return ziggurat.paths(stream, index, samplers.draws(stream, index, wide), wide)


@needs_jit
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_path_of_the_ziggurat_gives_the_reference_bits_element_by_element(dtype):
    """Elements on each path (the tail and the redo included), generated alone by the kernel, are the reference's
    and their neighbours' slice: each depends on its index only."""
    stream, wide = Stream.for_tensor(11, "weight"), dtype == "float64"
    index = np.arange(1 << 16, dtype=np.int64)
    found = paths(stream, index, wide)
    request = v2((LAST,), "normal", {"mean": 0.5, "std": 2.0}, seed=11, dtype=dtype)
    for name, mask in found.items():
        picked = index[mask][:8]
        assert picked.size == 8, f"no {name} element in the first 2^16"
        for i in picked.tolist():
            with parallel.configured(jit=False):
                want = Region(make_plan(request), ((i, i + 1),)).generate()
            with parallel.configured(jit=True):
                alone = Region(make_plan(request), ((i, i + 1),)).generate()
                around = Region(make_plan(request), ((max(i - 700, 0), i + 900),)).generate()
            same_bits(alone, want)
            same_bits(around[i - max(i - 700, 0) : i - max(i - 700, 0) + 1], want)


def test_layer_and_wedge_hits_follow_the_strips_areas():
    """Chi-square: each strip is drawn with probability 1/256 and its first try kept on the fast path with
    probability X[j + 1] / X[j] (the base strip: r / X[0]); the wedge keeps a point with the probability that the
    wedge's area under f has in the wedge's rectangle (computed from the exact normal, not the sampler)."""
    n = 1 << 20
    stream = Stream.for_tensor(21, "weight")
    index = np.arange(n, dtype=np.int64)
    draws = samplers.draws(stream, index, False)
    layers = ziggurat.LAYERS
    j = (draws & np.uint64(layers - 1)).astype(np.int64)
    found = paths(stream, index, False)
    counts = np.bincount(j, minlength=layers)
    assert stats.chisquare(counts).pvalue > KS_P_MIN
    ratio = ziggurat.X[1:] / ziggurat.X[:layers]
    fast = np.bincount(j[found["fast"]], minlength=layers)
    expected = np.stack([counts * ratio, counts * (1 - ratio)])
    observed = np.stack([fast, counts - fast])
    keep = expected.min(axis=0) >= 20
    chi = stats.chisquare(observed[:, keep].ravel(), expected[:, keep].ravel(), ddof=0)
    assert chi.pvalue > KS_P_MIN
    # the wedge of strip j >= 1 keeps a point with probability (area under f - core) / (rectangle - core)
    x_hi, x_lo = ziggurat.X[1:layers], ziggurat.X[2 : layers + 1]
    f_lo, f_hi = ziggurat.F[1:layers], ziggurat.F[2 : layers + 1]
    under = math.sqrt(math.pi / 2) * (stats.norm.cdf(x_hi) - stats.norm.cdf(x_lo)) * 2 - f_lo * (x_hi - x_lo)
    p_keep = under / ((x_hi - x_lo) * (f_hi - f_lo))
    in_wedge = ~found["fast"] & (j > 0)
    tried = np.bincount(j[in_wedge], minlength=layers)[1:]
    kept = np.bincount(j[found["wedge"]], minlength=layers)[1:]
    expected_kept = tried * p_keep
    z = (kept.sum() - expected_kept.sum()) / math.sqrt((expected_kept * (1 - p_keep)).sum())
    assert abs(z) < 5, f"wedge acceptances off by {z:.1f} sigma"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tail_frequencies_at_2_to_the_24_are_the_normals(dtype):
    """Beyond 3, 4 and 5 standard deviations (and below their negatives), over 2^24 draws: counts within 4.5
    binomial sigmas of the exact normal's. The fast path never reaches past r = 3.65; beyond it every value comes
    from the tail method, so a wrong tail shows here."""
    n = EXHAUSTIVE
    z = as_f64(make_plan(v2((n,), "normal", {"mean": 0.0, "std": 1.0}, seed=31, dtype=dtype)).generate())
    for t in (3.0, 4.0, 5.0):
        p = float(stats.norm.sf(t))
        for count in ((z > t).sum(), (z < -t).sum()):
            assert abs(count - n * p) < 4.5 * math.sqrt(n * p * (1 - p)) + 1, (t, count, n * p)
    assert abs(z).max() < ziggurat.MAX_Z


def test_a_normal_whose_tail_would_overflow_the_dtype_is_refused():
    """The tail reaches MAX_Z = 13.7 standard deviations (Box-Muller's 8.57 under philox-v1): a std that fits
    philox-v1 in float16 may not fit philox-v2."""
    fine = make_plan(TensorRequest((4,), "normal", 0, {"std": 5000.0}, dtype="float16"))
    assert fine.generate().size == 4
    with pytest.raises(InitError) as caught:
        make_plan(v2((4,), "normal", {"std": 5000.0}, dtype="float16"))
    assert caught.value.field == "dtype" and "overflows float16" in caught.value.message


# ---- invariance: chunks, threads, slices, many tensors -----------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
@pytest.mark.parametrize("scheme", list(ELEMENTWISE))
def test_bits_do_not_depend_on_chunks_or_threads(scheme, dtype):
    request = v2((61, 67), scheme, ELEMENTWISE[scheme], seed=9, dtype=dtype)
    whole = make_plan(request).tensor()
    for threads, chunk in ((1, 1), (2, 3), (2, 1000), (1, 1 << 20)):
        with parallel.configured(threads=threads, chunk_elements=chunk):
            plan = make_plan(request)
            same_bits(plan.tensor(), whole)
            same_bits(np.concatenate(list(plan.chunks(chunk_elements=777))).reshape(whole.shape), whole)
            same_bits(Region(plan, ((5, 60), (1, 66))).tensor(), whole[5:60, 1:66])


def test_many_tensors_and_recipes_work_under_philox_v2():
    specs = {"a": TensorSpec((16, 8), "kaiming_uniform"), "b": TensorSpec((8,), "zeros")}
    tensors = plan_model(ModelRequest(3, specs, rng="philox-v2"))
    alone = make_plan(v2((16, 8), "kaiming_uniform", seed=3, name="a")).tensor()
    same_bits(tensors[0].tensor(), alone)  # keyed by tensor: the other tensors change nothing
    assert not np.array_equal(tensors[0].tensor(), plan_model(ModelRequest(3, specs))[0].tensor())  # v1 differs


# ---- golden bits ---------------------------------------------------------------------------------------------------

GOLDEN = {  # (scheme, params, shape, dtype) at seed 7: SHA-256 of the data. A changed hash breaks the contract.
    ("kaiming_normal", "{}", (256, 784), "float32"): "8cab07563de4ec467155d88d0b8d7d0ab8794712b34affe9fa0eebe0e4e1e4fe",
    ("kaiming_normal", "{}", (256, 784), "float64"): "0a374b0d2d984feaf50037b4ad31c2b71ceda113d16aabef2fa1b7d1308d1795",
    ("kaiming_normal", "{}", (256, 784), "float16"): "f1373425e9a01e0e94c6b411d5e18c24c5d2c19641dedc97ff542bdcb8ed8f64",
    (
        "kaiming_normal",
        "{}",
        (256, 784),
        "bfloat16",
    ): "df6cf873f94927dfeb8d726aa6178b5d6c869c3882d3a877c0466ba6721ff9e1",
    (
        "kaiming_uniform",
        "{}",
        (256, 784),
        "float32",
    ): "3ae711449fd36b260cb50346aa8dcf5a2c5c812a6f51aea76feceee1361e1c0e",
    (
        "kaiming_uniform",
        "{}",
        (256, 784),
        "float64",
    ): "49ce4cafc663de174519008be0e10d12fef848d05530ddb8d7a4a8de19542772",
    (
        "kaiming_uniform",
        "{}",
        (256, 784),
        "float16",
    ): "774ecbefa2c48e534074e46fc21cfee37448ac309265d24f49b8780b96918901",
    (
        "kaiming_uniform",
        "{}",
        (256, 784),
        "bfloat16",
    ): "93a14dfed247acb38cc52b87e272f5b6282cc55e6b0f8a6f5be0a3bf44ec3061",
    ("trunc_normal", "{}", (256, 784), "float32"): "e3f09ee0eaf63ec6ab961cecf076235b0a5fba859e312c610eae34bb8f939bb7",
    ("trunc_normal", "{}", (256, 784), "float64"): "b05897c3a1aa0770db1e68576ddb937be2644fd0469595412fb4c810ba3fc167",
    ("trunc_normal", "{}", (256, 784), "float16"): "9e26aad8264ddb4c99e388a3274f8fd4fb154e3c21a4c56d11b665391e0f83d9",
    ("trunc_normal", "{}", (256, 784), "bfloat16"): "5baaf3a269f4ef8c8e3ab1d20e5554dbfcad6bd4235c5d19a580210016d22d04",
    (
        "uniform",
        '{"a": -1.0, "b": 3.0}',
        (4096,),
        "float32",
    ): "88dd1d229c0467b749ea433a95b84687353df17575b16b059b88443483df3e00",
    (
        "uniform",
        '{"a": -1.0, "b": 3.0}',
        (4096,),
        "float64",
    ): "6c1cb10ca60f477e0245652ab95936e8ec0e31481a4949c9bc417af0d73d15b4",
    (
        "uniform",
        '{"a": -1.0, "b": 3.0}',
        (4096,),
        "float16",
    ): "462e59fe273affa708bb68df2472b4bd82bc4dc45cd14ce63873d8c6022277e0",
    (
        "uniform",
        '{"a": -1.0, "b": 3.0}',
        (4096,),
        "bfloat16",
    ): "d856507896d6a6a534858efe7602e444d6bbb14e6023365f2e6d512fb58c47f4",
    ("xavier_uniform", "{}", (64, 33), "float32"): "9c3e73b2e2aa6ebaa0e82d28992087c12bc3c1902432fb248a91a341d8e20909",
    ("xavier_uniform", "{}", (64, 33), "float64"): "0eba69b5c86e0e98a17ccc68a4ab85d8f823c16a6dac7408f51d7e8a14d14777",
    ("xavier_uniform", "{}", (64, 33), "float16"): "764c5bd0766ada8ef213ab80b76f1c450becc7b787e16bae53e6938995e2d8f3",
    ("xavier_uniform", "{}", (64, 33), "bfloat16"): "426d083aa44baee5d03141addbd29644eff8abec48303db0a0b704b2cbab08a4",
    ("he_normal", "{}", (64, 33), "float32"): "98e9e2a04622fd478e2d199b2ac0f55e8af8782bed5ea4f4b905832f28c5d018",
    ("he_normal", "{}", (64, 33), "float64"): "c54a18d3a3a76ea5e24eb4243ea140296583e67ce183322be0a6cbb660112596",
    ("he_normal", "{}", (64, 33), "float16"): "ccd8127776637f201f3e021ca7aefd07fa5403097ab8cedf0356bd0d3631de66",
    ("he_normal", "{}", (64, 33), "bfloat16"): "a0821fecd8776937772fa9b05d889c54e3202d3a24bdaee663cbf604d9432e5a",
    (
        "sparse",
        '{"sparsity": 0.3}',
        (32, 16),
        "float32",
    ): "c997634be4ade7c8f4b767a32282f4709291504b6219c1d62e05be700fd4ea33",
    (
        "sparse",
        '{"sparsity": 0.3}',
        (32, 16),
        "float64",
    ): "8a194fcbe859f977fe01adba800f4ee5a7f1ff8083753cf38291f5a7888a95a6",
    (
        "sparse",
        '{"sparsity": 0.3}',
        (32, 16),
        "float16",
    ): "1e9635419b3db05150621cfbe6b433995d3c3ad0486c0f1e4e144a7d9dee52b9",
    (
        "sparse",
        '{"sparsity": 0.3}',
        (32, 16),
        "bfloat16",
    ): "7fd3ccb19034a83973982aae8c5d66658168be593a615a22c0698b5a870aa60c",
    (
        "normal",
        '{"mean": 0.5, "std": 2.0}',
        (1001,),
        "float32",
    ): "0c8183826ed3c2ae9aa2b230a684780a0f265cc949a62445bf4f2ac8f3bb9851",
    (
        "normal",
        '{"mean": 0.5, "std": 2.0}',
        (1001,),
        "float64",
    ): "48c231133187e417bff6bf7051cf66cbbb40b0da7cf8b2cc68fba8fa4e084478",
    (
        "normal",
        '{"mean": 0.5, "std": 2.0}',
        (1001,),
        "float16",
    ): "bd6b11735ef2933c947e560493c9a5f896c766791c789a88e1fbc584af4eaa72",
    (
        "normal",
        '{"mean": 0.5, "std": 2.0}',
        (1001,),
        "bfloat16",
    ): "c907b9ab76602f34aa2be01c9c70434c83831c86bb92117bccc232d4f03f0bd9",
}


def sha(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()


@pytest.mark.parametrize("key", list(GOLDEN), ids=lambda k: f"{k[0]}-{k[3]}")
def test_golden_hashes(key):
    scheme, params, shape, dtype = key
    assert sha(make_plan(v2(shape, scheme, json.loads(params), seed=7, dtype=dtype)).tensor()) == GOLDEN[key]


def test_the_published_vectors_are_the_bits():
    """docs/vectors/philox-v2.json, what a port checks itself against, is what the engine computes."""
    assert VECTORS.read_text() == vectors.render(), "stale: run python -m service.vectors"


PUBLISHED = json.loads(VECTORS.read_text())["vectors"]


@pytest.mark.parametrize("case", PUBLISHED["admission"], ids=lambda case: f"{case['request']['scheme']}")
def test_the_admission_vectors_are_what_the_api_answers(client, case):
    """Each request of the `admission` group is served (200) or refused with exactly the error item the file gives
    (section 7's order, loc and message), by the HTTP API itself."""
    response = client.post("/init", json={**service_vectors.sent(case["request"]), "format": "json"})
    if case["refused"] is None:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 422 and response.json()["detail"] == [case["refused"]]


def test_the_admission_boundaries_are_one_ulp_wide():
    """Beside each refusal at a boundary stands the request one float64 across it, served: the bisection's last
    float64 that passes (the tail bound in every dtype, sparse's, the uniform's empty cut interval)."""
    pairs = 0
    for below, above in itertools.pairwise(PUBLISHED["admission"]):
        first, second = below["request"], above["request"]
        changed = [key for key in first if first[key] != second.get(key)]
        if first.keys() != second.keys() or len(changed) != 1 or not isinstance(first[changed[0]], float):
            continue
        if math.nextafter(first[changed[0]], math.inf) == second[changed[0]]:
            assert (below["refused"] is None) != (above["refused"] is None), (first, second)
            pairs += 1
    assert pairs >= 9  # normal in float16, bfloat16, float32 (one with a mean), sparse in every dtype, uniform


def test_the_tail_bound_is_max_z_in_operation_order():
    """MAX_Z = X[1] + (53.0 * 0.6931471805599453) / X[1], published as hex; -log(2^-53) with philox-v1's log is the
    same float64 as 53.0 * 0.6931471805599453, so the port's reading of the page's `r + 53 ln 2 / r` agrees."""
    constants = json.loads(VECTORS.read_text())["constants"]["ziggurat"]
    assert vectors.f64_hex(ziggurat.MAX_Z) == constants["MAX_Z"] == "402b6a49644b44b5"
    assert float(-detmath.log(np.array([2.0**-53]))[0]) == 53.0 * 0.6931471805599453
    assert ziggurat.X[1] + (53.0 * 0.6931471805599453) / ziggurat.X[1] == ziggurat.MAX_Z


@pytest.mark.parametrize("case", PUBLISHED["metadata"]["cases"], ids=lambda case: case["request"]["scheme"])
def test_the_metadata_vectors_are_what_the_api_writes(client, case):
    response = client.post("/init", json={**service_vectors.sent(case["request"]), "format": "json"})
    assert response.status_code == 200, response.text
    body = response.json()
    del body["data"]
    assert list(body.items()) == list(case["metadata"].items())
    assert body["service"] == PUBLISHED["metadata"]["service"]


@pytest.mark.parametrize("case", PUBLISHED["slices"], ids=lambda case: str(case["request"]["slice"]))
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])  # the npy container's dtypes
def test_the_slice_vectors_are_what_the_api_sends(client, case, dtype):
    request = {**service_vectors.sent(case["request"]), "dtype": dtype, "format": "npy"}
    response = client.post("/init", json=request)
    assert response.status_code == 200, response.text
    values = np.load(io.BytesIO(response.content)).reshape(-1).astype(np.float64)
    assert [vectors.f64_hex(v) for v in values] == case["values"][dtype]


def test_orthogonal_and_sparse_under_philox_v2():
    q = make_plan(v2((48, 32), "orthogonal", {"gain": 2.0}, dtype="float64")).tensor()
    np.testing.assert_allclose(q.T @ q, 4.0 * np.eye(32), atol=1e-12)
    plan = make_plan(v2((40, 30), "sparse", {"sparsity": 0.3, "std": 0.5}, dtype="float64"))
    values = plan.tensor()
    assert ((values == 0).sum(axis=0) == math.ceil(0.3 * 40)).all()
    kept = values[values != 0]
    assert stats.kstest(kept, stats.norm(0.0, 0.5).cdf).pvalue > KS_P_MIN
    assert not np.array_equal(values, make_plan(TensorRequest((40, 30), "sparse", 0, {"sparsity": 0.3})).tensor())
