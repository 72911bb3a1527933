"""Raw words -> uniform and normal variates (service.engine.random.variates)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from service.engine.random import detmath, variates
from service.engine.random.philox import Stream

U64 = np.uint64
MAX_WORD = 2**64 - 1


def words(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


# ---- uniform [0, 1) -------------------------------------------------------------------------------------------


def test_uniform01_exact_values():
    got = variates.uniform01(words(0, MAX_WORD, 2**11, 2**11 - 1, 2**63, 3 << 62, (2**53 - 1) << 11))
    assert got.dtype == np.float64
    assert got.tolist() == [
        0.0,  # all bits zero
        1.0 - 2.0**-53,  # top 53 bits all ones: (2^53 - 1) / 2^53, the largest double below 1
        2.0**-53,  # lowest of the top 53 bits set
        0.0,  # only the 11 discarded low bits set
        0.5,
        0.75,
        1.0 - 2.0**-53,
    ]


def test_uniform01_range_on_a_stream():
    u = variates.uniform01(Stream.for_tensor(1, "u").words(0, 100_000))
    assert u.min() >= 0.0
    assert u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-3


# ---- uniform (0, 1) -----------------------------------------------------------------------------------------


def test_uniform_open_exact_values():
    # u = ((w >> 12) + 0.5) * 2^-52: the midpoints of 2^52 cells (docs/reproducibility.md)
    got = variates.uniform_open(words(0, 2**11, 2**12, 2**62, 2**63, MAX_WORD, MAX_WORD - 2**12))
    assert got.tolist() == [
        2.0**-53,  # top 52 bits zero: 0.5 * 2^-52
        2.0**-53,  # bit 11 is below the 52 kept bits
        1.5 * 2.0**-52,  # lowest kept bit
        0.25 + 2.0**-53,
        0.5 + 2.0**-53,
        1.0 - 2.0**-53,  # all ones: (2^52 - 0.5) * 2^-52, the largest value, below 1
        1.0 - 3 * 2.0**-53,
    ]


def test_uniform_open_never_zero_or_one_at_the_extreme_words():
    # Regression: with 53 bits, (2^53 - 1 + 0.5) rounded (ties to even) to 2^53, giving exactly 1.0.
    extremes = words(MAX_WORD, (2**53 - 1) << 11, MAX_WORD - 2**11, 0, 2**11 - 1, 1, 2**12 - 1)
    u = variates.uniform_open(extremes)
    assert (u > 0.0).all()
    assert (u < 1.0).all()


def test_uniform_open_cells_are_exact_midpoints():
    # every k + 0.5 with k < 2^52 is a float64, so distinct cells give distinct, exact midpoints
    k = np.array([0, 1, 2**51, 2**52 - 2, 2**52 - 1], dtype=np.uint64)
    got = variates.uniform_open(k << U64(12))
    assert got.tolist() == [(2 * int(v) + 1) / 2**53 for v in k]  # exact rationals, correctly rounded
    assert len(set(got.tolist())) == len(k)


def test_uniform_open_never_zero_or_one_on_a_stream():
    u = variates.uniform_open(Stream.for_tensor(2, "u").words(0, 200_000))
    assert u.min() > 0.0
    assert u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-3


# ---- standard normal -------------------------------------------------------------------------------------


def test_standard_normal_hand_computation_quarter_turn():
    # u1 = (top53(w0) + 1) 2^-53 = (2^52 - 1 + 1) 2^-53 = 0.5; t = top53(w1) 2^-53 = 2^51 / 2^53 = 0.25.
    w0 = (2**52 - 1) << 11
    w1 = 2**51 << 11
    z = variates.standard_normal(words(w0, w1))
    radius = math.sqrt(-2.0 * float(detmath.log(np.array([0.5]))[0]))
    assert radius == math.sqrt(2.0 * 0.6931471805599453)  # log(0.5) = -ln 2 correctly rounded
    # element 0 = r cos(pi/2) = r * 0 exactly; element 1 = r sin(pi/2) = r exactly
    assert z.tolist() == [0.0, radius]


def test_standard_normal_hand_computation_general_pair():
    w0, w1 = 0x9E3779B97F4A7C15, 0x243F6A8885A308D3
    u1 = ((w0 >> 11) + 1) * 2.0**-53
    t = (w1 >> 11) * 2.0**-53
    assert 0.0 < u1 <= 1.0
    assert 0.0 <= t < 1.0
    radius = math.sqrt(-2.0 * float(detmath.log(np.array([u1]))[0]))
    sin, cos = detmath.sincos_turns(np.array([t]))
    expected = [radius * float(cos[0]), radius * float(sin[0])]
    z = variates.standard_normal(words(w0, w1, w1, w0))
    assert z[:2].tolist() == expected
    # and close to the libm value (the formula, not just the bits)
    assert z[0] == pytest.approx(math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * t), abs=1e-14)
    assert z[1] == pytest.approx(math.sqrt(-2 * math.log(u1)) * math.sin(2 * math.pi * t), abs=1e-14)
    # pairs are independent of each other: the second pair is computed from (w1, w0)
    u1b = ((w1 >> 11) + 1) * 2.0**-53
    tb = (w0 >> 11) * 2.0**-53
    assert z[2] == pytest.approx(math.sqrt(-2 * math.log(u1b)) * math.cos(2 * math.pi * tb), abs=1e-14)


def test_standard_normal_extremes():
    # top53 all ones: u1 = 1 -> radius 0; top53 zero: u1 = 2^-53 -> the largest radius sqrt(106 ln 2)
    z = variates.standard_normal(words(MAX_WORD, 12345 << 11, 0, 0))
    assert z[:2].tolist() == [0.0, 0.0]
    assert z[2] == pytest.approx(math.sqrt(106 * math.log(2.0)), rel=1e-15)
    assert z[3] == 0.0


def test_standard_normal_ks_200k():
    z = variates.standard_normal(Stream.for_tensor(11, "normal-ks").words(0, 200_000))
    assert z.shape == (200_000,)
    result = stats.kstest(z, "norm")
    assert result.pvalue > 1e-3
    assert abs(z.mean()) < 5 * 1 / math.sqrt(200_000)
    assert abs(z.var() - 1.0) < 5 * math.sqrt(2 / 200_000)


def test_standard_normal_pair_members_uncorrelated():
    z = variates.standard_normal(Stream.for_tensor(12, "normal-pairs").words(0, 200_000)).reshape(-1, 2)
    r = np.corrcoef(z[:, 0], z[:, 1])[0, 1]
    assert abs(r) < 5 / math.sqrt(100_000)
    # the squared radius is Exp(1/2) i.e. chi2(2)
    assert stats.kstest((z**2).sum(axis=1), "chi2", args=(2,)).pvalue > 1e-3
