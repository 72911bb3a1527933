"""The bfloat16 rounding kernel gives ml_dtypes' bits for every class of float32 input; the engine's bfloat16 output
is the same with the kernels on and off (the NumPy reference path rounds with ml_dtypes)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from service.engine import parallel
from service.engine.plan import TensorRequest, make_plan

pytestmark = pytest.mark.skipif(not parallel.JIT_AVAILABLE, reason="numba not installed")

# The output depends on the upper 16 bits and on how the lower 16 compare with 0x8000 (below, a tie, above), and
# NaN-ness on whether any mantissa bit is set: these lower halves cover every case for every upper half.
LOWER_HALVES = np.array([0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF], np.uint32)


def _kernel(bits: np.ndarray) -> np.ndarray:
    from service.engine.random.compiled.rounding import bfloat16_bits

    out = np.empty(bits.size, np.uint16)
    bfloat16_bits(bits, out)
    return out


def _ml_dtypes(bits: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return bits.view(np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)


def test_every_upper_half_with_every_kind_of_lower_half_rounds_as_ml_dtypes():
    upper = np.arange(1 << 16, dtype=np.uint32) << np.uint32(16)
    bits = (upper[:, None] | LOWER_HALVES[None, :]).reshape(-1)
    np.testing.assert_array_equal(_kernel(bits), _ml_dtypes(bits))


def test_random_float32_bits_round_as_ml_dtypes():
    bits = np.random.default_rng(7).integers(0, 1 << 32, size=1 << 22, dtype=np.uint64).astype(np.uint32)
    np.testing.assert_array_equal(_kernel(bits), _ml_dtypes(bits))


def test_known_values():
    cases = {
        0x3F808000: 0x3F80,  # a tie, even below: down
        0x3F818000: 0x3F82,  # a tie, odd below: up
        0x3F808001: 0x3F81,  # above the tie: up
        0x7F7FFFFF: 0x7F80,  # the largest float32 rounds to infinity
        0x7F800001: 0x7FC0,  # a signalling NaN becomes the quiet NaN
        0xFFC12345: 0xFFC0,  # a negative NaN keeps its sign
        0x00008000: 0x0000,  # the smallest subnormals: a tie rounds to even zero
        0x00018000: 0x0002,
    }
    bits = np.array(list(cases), np.uint32)
    assert [hex(v) for v in _kernel(bits)] == [hex(v) for v in cases.values()]


@pytest.mark.parametrize("rng", ["philox-v1", "philox-v2"])
@pytest.mark.parametrize("scheme", ["normal", "uniform", "trunc_normal"])
def test_bfloat16_output_is_the_same_with_the_kernels_on_and_off(rng, scheme):
    request = TensorRequest(shape=(300, 1001), scheme=scheme, seed=3, dtype="bfloat16", rng=rng)
    on = make_plan(request).generate()
    with parallel.configured(jit=False):
        off = make_plan(request).generate()
    assert on.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(on.view(np.uint16), off.view(np.uint16))
