"""The last elements of the largest addressable tensor (2^63 - 1 elements): the numba kernels give the NumPy
reference's bits there too. Their tile arithmetic once overflowed int64 for indices >= 2^63 - 1024 and wrote
far outside the output array (a segfault of the server)."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine import parallel
from service.engine.plan import TensorRequest, make_plan
from service.engine.random.philox import Stream
from service.engine.region import MAX_ADDRESSABLE, Region

from .test_parallel import needs_jit, same_bits

if parallel.JIT_AVAILABLE:
    from service.engine.random.compiled import samplers

LAST = MAX_ADDRESSABLE  # one past the last element index
# a single element, partial and whole Philox blocks, one tile exactly, and ranges crossing tile boundaries
TAILS = [(LAST - 1, LAST), (LAST - 3, LAST), (LAST - 7, LAST - 2), (LAST - 1024, LAST), (LAST - 3001, LAST - 1)]
SCHEMES = {
    "uniform": {"a": -1.0, "b": 3.0},
    "normal": {"mean": 0.5, "std": 2.0},
    "trunc_normal": {"std": 1.5, "a": -2.0, "b": 1.0},
}


@needs_jit
@pytest.mark.parametrize(("start", "stop"), TAILS)
def test_words_kernel_at_the_end_of_the_addressable_range(start, stop):
    key = (0xFC18DDA89479A019, 0x84E126847CAE1495)
    got = np.empty(stop - start, dtype=np.uint64)
    samplers.words(np.uint64(key[0]), np.uint64(key[1]), start, stop, got)
    same_bits(got, Stream(key).words(start, stop))


@needs_jit
@pytest.mark.parametrize("scheme", list(SCHEMES))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_samplers_at_the_end_of_the_addressable_range(scheme, dtype):
    request = TensorRequest(shape=(LAST,), scheme=scheme, seed=1, params=SCHEMES[scheme], dtype=dtype)
    for start, stop in TAILS:
        with parallel.configured(jit=False):
            want = Region(make_plan(request), ((start, stop),)).generate()
        with parallel.configured(jit=True):
            got = Region(make_plan(request), ((start, stop),)).generate()
        same_bits(got, want)
