"""Deterministic and structured schemes: constant/zeros/ones, eye/identity, dirac, orthogonal, sparse."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import signal, stats

from service.engine.errors import InitError
from service.engine.plan import TensorRequest, make_plan
from service.engine.random import variates
from service.engine.random.philox import SPARSE_MASK, Stream


def plan_of(shape, scheme, params=None, *, seed=0, dtype="float64", layout=None, name="weight"):
    return make_plan(
        TensorRequest(
            shape=tuple(shape), scheme=scheme, seed=seed, params=params or {}, dtype=dtype, layout=layout, name=name
        )
    )


def assert_moments_match_population(plan, tensor, rel=1e-12):
    """The distribution's moments equal the population mean / variance of the generated values."""
    values = np.asarray(tensor, dtype=np.float64).reshape(-1)
    moments = plan.distribution.moments()
    scale = max(float(np.abs(values).max()), 1e-300)
    assert moments.mean == pytest.approx(values.mean(), rel=rel, abs=1e-15 * scale)
    assert moments.variance == pytest.approx(values.var(), rel=rel, abs=1e-15 * scale * scale)


def raises_init_error(request_kwargs, field, message):
    with pytest.raises(InitError) as info:
        plan_of(**request_kwargs)
    assert info.value.field == field
    assert info.value.message == message
    return info.value


# ---- constant, zeros, ones ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "params", "value"),
    [
        ("zeros", {}, 0.0),
        ("ones", {}, 1.0),
        ("constant", {"val": 0.37}, 0.37),
        ("constant", {"val": -2.5}, -2.5),
    ],
)
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_fills_are_exact(scheme, params, value, dtype):
    plan = plan_of((7, 3, 2), scheme, params, dtype=dtype, seed=9)
    tensor = plan.tensor()
    assert tensor.shape == (7, 3, 2)
    assert tensor.dtype == plan.dtype.numpy
    expected = np.full((7, 3, 2), value, dtype=np.float64)
    if dtype != "float64":  # the documented route: float64 -> float32 -> float16 / bfloat16
        expected = expected.astype(np.float32).astype(plan.dtype.numpy)
    assert tensor.tobytes() == expected.tobytes()
    assert plan.distribution.moments().variance == 0.0
    assert plan.distribution.moments().mean == value
    assert_moments_match_population(plan, plan.values())


def test_constant_requires_val():
    raises_init_error({"shape": (2, 2), "scheme": "constant"}, "val", "scheme 'constant' needs parameter 'val'")


# ---- eye and identity --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 5), (3, 7), (7, 3), (1, 4), (4, 1), (1, 1)])
def test_eye_is_exact(shape):
    plan = plan_of(shape, "eye", dtype="float32")
    tensor = plan.tensor()
    assert tensor.dtype == np.float32
    np.testing.assert_array_equal(tensor, np.eye(*shape, dtype=np.float32))
    assert_moments_match_population(plan, tensor)


@pytest.mark.parametrize("shape", [(3,), (2, 3, 4), (2, 2, 2, 2)])
def test_eye_rank_error(shape):
    raises_init_error({"shape": shape, "scheme": "eye"}, "shape", "Only tensors with 2 dimensions are supported")


@pytest.mark.parametrize("shape", [(4, 4), (2, 6), (6, 2)])
def test_identity_is_gain_times_eye(shape):
    plan = plan_of(shape, "identity", {"gain": 2.5})
    np.testing.assert_array_equal(plan.tensor(), 2.5 * np.eye(*shape))
    assert plan.gain == 2.5
    assert_moments_match_population(plan, plan.values())


def test_identity_rank_error():
    raises_init_error(
        {"shape": (3, 3, 3), "scheme": "identity"},
        "shape",
        "Identity matrix initializer can only be used for 2D matrices. Received: shape=(3, 3, 3) of rank 3.",
    )


# ---- dirac -----------------------------------------------------------------------------------------------------

DIRAC_CASES = [
    ((4, 6, 3), 1),
    ((6, 4, 5), 1),
    ((6, 2, 5), 2),
    ((4, 3, 1), 2),
    ((8, 4, 3, 3), 1),
    ((3, 5, 3, 5), 1),
    ((8, 3, 3, 5), 2),
    ((8, 5, 5, 3), 2),
    ((4, 4, 3, 3, 3), 1),
    ((6, 2, 3, 1, 3), 2),
    ((4, 4, 2, 4), 1),  # even kernels: centre index k // 2
    ((6, 1, 4, 2, 2), 2),
]


def reference_dirac(shape, groups):
    """torch.nn.init.dirac_ written out."""
    out = np.zeros(shape)
    out_per_group = shape[0] // groups
    for g in range(groups):
        for d in range(min(out_per_group, shape[1])):
            out[(g * out_per_group + d, d, *(k // 2 for k in shape[2:]))] = 1.0
    return out


@pytest.mark.parametrize(("shape", "groups"), DIRAC_CASES, ids=[f"{s}-g{g}" for s, g in DIRAC_CASES])
def test_dirac_exact_positions(shape, groups):
    plan = plan_of(shape, "dirac", {"groups": groups}, dtype="float32")
    tensor = plan.tensor()
    expected = reference_dirac(shape, groups)
    np.testing.assert_array_equal(tensor, expected.astype(np.float32))
    ones = np.argwhere(tensor == 1.0)
    assert len(ones) == groups * min(shape[0] // groups, shape[1])
    assert_moments_match_population(plan, tensor)


def grouped_conv_same(x, weight, groups):
    """Cross-correlation (what DL 'conv' layers compute) with 'same' zero padding; x is [groups * in, *spatial]."""
    out_channels, in_per_group = weight.shape[:2]
    out_per_group = out_channels // groups
    out = np.zeros((out_channels, *x.shape[1:]))
    for o in range(out_channels):
        g = o // out_per_group
        for i in range(in_per_group):
            out[o] += signal.correlate(x[g * in_per_group + i], weight[o, i], mode="same", method="direct")
    return out


@pytest.mark.parametrize(
    ("shape", "groups"), [c for c in DIRAC_CASES if all(k % 2 for k in c[0][2:])], ids=lambda v: str(v)
)
def test_dirac_convolution_is_identity_on_the_first_channels(shape, groups):
    weight = plan_of(shape, "dirac", {"groups": groups}).tensor()
    rng = np.random.default_rng(sum(shape) * groups)
    spatial = tuple(6 + i for i in range(len(shape) - 2))
    x = rng.standard_normal((groups * shape[1], *spatial))
    out = grouped_conv_same(x, weight, groups)
    out_per_group = shape[0] // groups
    kept = min(out_per_group, shape[1])
    for g in range(groups):
        for d in range(out_per_group):
            if d < kept:
                np.testing.assert_array_equal(out[g * out_per_group + d], x[g * shape[1] + d])
            else:
                assert not out[g * out_per_group + d].any()


@pytest.mark.parametrize("shape", [(4, 4), (4,), (2, 2, 2, 2, 2, 2)])
def test_dirac_rank_error(shape):
    raises_init_error(
        {"shape": shape, "scheme": "dirac"}, "shape", "Only tensors with 3, 4, or 5 dimensions are supported"
    )


@pytest.mark.parametrize(("shape", "groups"), [((6, 2, 3), 4), ((5, 5, 3, 3), 2), ((3, 3, 3, 3, 3), 2)])
def test_dirac_groups_error(shape, groups):
    raises_init_error(
        {"shape": shape, "scheme": "dirac", "params": {"groups": groups}}, "groups", "dim 0 must be divisible by groups"
    )


def test_dirac_torch_layout_only():
    with pytest.raises(InitError) as info:
        plan_of((3, 3, 4, 4), "dirac", layout="keras")
    assert info.value.field == "layout"


# ---- orthogonal ------------------------------------------------------------------------------------------------

ORTHO_CASES = [
    ((64, 256), "torch", 64, 256),
    ((256, 64), "torch", 256, 64),
    ((64, 64), "torch", 64, 64),
    ((32, 16, 3, 3), "torch", 32, 144),
    ((32, 16, 3, 3), "keras", 1536, 3),
    ((3, 3, 16, 32), "keras", 144, 32),
    ((64, 256), "keras", 64, 256),
]


@pytest.mark.parametrize(("shape", "layout", "rows", "cols"), ORTHO_CASES, ids=[f"{c[0]}-{c[1]}" for c in ORTHO_CASES])
@pytest.mark.parametrize("gain", [1.0, 1.7])
def test_orthogonal_rows_or_columns_orthonormal(shape, layout, rows, cols, gain):
    plan = plan_of(shape, "orthogonal", {"gain": gain}, layout=layout, seed=rows + cols)
    tensor = plan.tensor()
    assert tensor.shape == shape
    w = tensor.reshape(rows, cols)  # the layout's flattening: torch [shape[0], rest], keras [rest, shape[-1]]
    gram = w @ w.T if rows <= cols else w.T @ w
    np.testing.assert_allclose(gram, gain**2 * np.eye(min(rows, cols)), rtol=0, atol=1e-12 * gain**2)
    assert plan.distribution.describe()["rows"] == rows
    assert plan.distribution.describe()["cols"] == cols
    # sum of squares = gain^2 min(rows, cols) exactly up to rounding: the mean square is gain^2 / max(rows, cols)
    moments = plan.distribution.moments()
    assert moments.variance == pytest.approx(gain**2 / max(rows, cols), rel=1e-15)
    assert np.mean(w * w) == pytest.approx(moments.variance, rel=1e-12)
    # the mean of a Haar-random matrix is ~ N(0, gain^2 / (rows * cols * max)): statistically 0, so the
    # population variance falls short of the mean square by mean^2, ~ 1 / (rows * cols) relative
    assert abs(w.mean()) < 5 * gain / math.sqrt(rows * cols * max(rows, cols))
    assert w.var() == pytest.approx(moments.variance, rel=25 / (rows * cols))


def test_orthogonal_follows_documented_algorithm():
    # A = first max*min standard normals of the stream as a row-major (max, min) matrix; Q R = A;
    # Q *= sign(diag R); transposed when rows < cols.
    rows, cols = 20, 50
    plan = plan_of((rows, cols), "orthogonal", seed=4, name="q")
    normals = variates.standard_normal(Stream.for_tensor(4, "q").words(0, rows * cols)).reshape(cols, rows)
    q, r = np.linalg.qr(normals)
    q = (q * np.sign(np.diag(r))).T
    np.testing.assert_allclose(plan.tensor(), q, rtol=0, atol=1e-13)
    # sign correction: Q^T A = R has a positive diagonal
    assert (np.diag(plan.tensor() @ normals) > 0).all()


@pytest.mark.parametrize("shape", [(5,)])
def test_orthogonal_rank_error(shape):
    raises_init_error(
        {"shape": shape, "scheme": "orthogonal"}, "shape", "Only tensors with 2 or more dimensions are supported"
    )


def test_orthogonal_entries_are_haar_like():
    # Entries of a Haar orthogonal n x n matrix times sqrt(n) are close to N(0, 1) for large n.
    n = 256
    w = plan_of((n, n), "orthogonal", seed=8).tensor() * math.sqrt(n)
    assert stats.kstest(w.reshape(-1), "norm").pvalue > 1e-3


# ---- sparse ------------------------------------------------------------------------------------------------------

SPARSITIES = [0.0, 0.1, 0.25, 0.3, 0.5, 0.9, 1.0]


@pytest.mark.parametrize("sparsity", SPARSITIES)
@pytest.mark.parametrize("shape", [(200, 50), (30, 7), (1, 5)])
def test_sparse_zeros_per_column(sparsity, shape):
    rows, cols = shape
    plan = plan_of(shape, "sparse", {"sparsity": sparsity, "std": 0.02}, seed=21)
    w = plan.tensor()
    expected_zeros = math.ceil(sparsity * rows)  # torch.nn.init.sparse_
    np.testing.assert_array_equal((w == 0.0).sum(axis=0), np.full(cols, expected_zeros))
    assert plan.distribution.describe()["zeros_per_column"] == expected_zeros


def test_sparse_mask_and_values_follow_the_documented_streams():
    rows, cols, sparsity, std = 40, 9, 0.3, 0.05
    plan = plan_of((rows, cols), "sparse", {"sparsity": sparsity, "std": std}, seed=5, name="s")
    w = plan.tensor()
    dense = plan_of((rows, cols), "normal", {"std": std}, seed=5, name="s").tensor()
    keys = Stream.for_tensor(5, "s").words(0, rows * cols, purpose=SPARSE_MASK).reshape(rows, cols)
    zeros = math.ceil(sparsity * rows)
    for j in range(cols):
        order = sorted(range(rows), key=lambda i, j=j: (int(keys[i, j]), i))
        zeroed = set(order[:zeros])
        for i in range(rows):
            assert w[i, j] == (0.0 if i in zeroed else dense[i, j])


@pytest.mark.parametrize(("sparsity", "std"), [(0.3, 0.02), (0.75, 1.5)])
def test_sparse_nonzeros_are_normal(sparsity, std):
    rows, cols = 1000, 100
    plan = plan_of((rows, cols), "sparse", {"sparsity": sparsity, "std": std}, seed=31)
    w = plan.tensor()
    nonzero = w[w != 0.0]
    assert nonzero.size == (rows - math.ceil(sparsity * rows)) * cols
    assert stats.kstest(nonzero, stats.norm(0.0, std).cdf).pvalue > 1e-3
    # moments: a fraction ceil(s*rows)/rows is 0, the rest N(0, std^2)
    moments = plan.distribution.moments()
    kept = 1 - math.ceil(sparsity * rows) / rows
    assert moments.mean == 0.0
    assert moments.variance == pytest.approx(kept * std**2, rel=1e-15)
    n = w.size
    assert abs(w.mean()) < 5 * math.sqrt(moments.variance / n)
    assert w.var() == pytest.approx(moments.variance, rel=5 * math.sqrt(2 / (kept * n)) * 2)


def test_sparse_requires_sparsity():
    raises_init_error({"shape": (4, 4), "scheme": "sparse"}, "sparsity", "scheme 'sparse' needs parameter 'sparsity'")


@pytest.mark.parametrize("shape", [(4,), (4, 4, 3)])
def test_sparse_rank_error(shape):
    raises_init_error(
        {"shape": shape, "scheme": "sparse", "params": {"sparsity": 0.5}},
        "shape",
        "Only tensors with 2 dimensions are supported",
    )


def test_sparse_torch_layout_only():
    with pytest.raises(InitError) as info:
        plan_of((4, 4), "sparse", {"sparsity": 0.5}, layout="keras")
    assert info.value.field == "layout"


# ---- deterministic schemes do not depend on seed or name ---------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "shape", "params"),
    [
        ("eye", (3, 5), {}),
        ("dirac", (4, 4, 3, 3), {}),
        ("constant", (3, 3), {"val": 2.0}),
        ("identity", (3, 3), {}),
    ],
)
def test_deterministic_schemes_ignore_seed(scheme, shape, params):
    tensors = [
        plan_of(shape, scheme, params, seed=s, name=n).tensor().tobytes()
        for s, n in itertools.product((0, 99), ("a", "b"))
    ]
    assert len(set(tensors)) == 1
