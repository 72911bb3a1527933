"""philox-v2: Philox4x32-10 keyed by (seed, tensor name), dtype-aware transforms (docs/philox-v2.md).

What it changes from philox-v1, and why (measurements in bench/philox_v2.py and bench/results/philox_v2.md):

* Intervals hold after rounding: a uniform on [a, b) never returns b or more in float32, float16 or bfloat16
  (symmetric schemes stay strictly within +-bound), a truncated normal stays in [a, b], without rejecting or
  re-weighting anything (`philox2.samplers`). The transforms therefore depend on the output dtype: the same request
  in float32 and float64 gives values that agree to float32 rounding, not bit for bit after rounding.
* Philox4x32-10 instead of 4x64-10: its multiplies vectorise (`philox2.stream`).
* Output dtypes of 32 bits or fewer take one 32-bit word per element (float64 two).
* The normal is a 256-strip ziggurat (`philox2.ziggurat`) instead of philox-v1's Box-Muller: a table read and a
  multiply for 98.5% of elements, the rest redone from a retry stream addressed by the element's index.

Orthogonal and sparse draw float64 normals (64-bit draws) whatever the output dtype, as they round a whole
float64 matrix; sparse's mask keys are 32-bit words of stream purpose 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service.engine import parallel
from service.engine.dtypes import DTYPES
from service.engine.random.philox2 import samplers
from service.engine.random.philox2.stream import SPARSE_MASK, Stream
from service.engine.random.rng import Draw, Rng
from service.engine.schemes import distributions

if parallel.JIT_AVAILABLE:
    from service.engine.random.philox2 import kernels

_FLOAT64 = np.dtype(np.float64)


class PhiloxV2(Rng):
    id = "philox-v2"
    random_access = True
    keyed_by = "tensor"
    contract = "docs/philox-v2.md"

    def streams(self, seed: int, draws: Sequence[Draw]) -> list[Stream]:
        return [Stream.for_tensor(seed, draw.name) for draw in draws]

    def prepare(self, distribution: distributions.Distribution, dtype: np.dtype) -> None:
        # The ziggurat's tail reaches further than philox-v1's Box-Muller, which the plan checked: a normal, and
        # sparse's float64 normals (rounded to the dtype afterwards), must fit the dtype up to it.
        if isinstance(distribution, distributions.Sparse):
            normal = samplers.sampler(distributions.Normal(0.0, distribution.std), _FLOAT64)
        else:
            normal = samplers.sampler(distribution, dtype)
        if isinstance(normal, samplers.Normal):
            from service.engine.plan import check_fits  # plan imports the registry, which imports this module

            target = next(t for t in DTYPES.values() if t.numpy == dtype)
            check_fits(normal.max_abs(), target, "dtype", f"{distribution.kind} with these parameters")

    def sample(
        self,
        distribution: distributions.Distribution,
        stream: Stream,
        shape: tuple[int, ...],
        dtype: np.dtype,  # unused: the whole-tensor kinds below draw float64 normals whatever the output
    ) -> NDArray[np.float64]:
        if isinstance(distribution, distributions.Orthogonal):
            tall, short = distribution.normals_shape
            normals = self.generate(distributions.Normal(0.0, 1.0), stream, (tall, short), 0, tall * short, _FLOAT64)
            return distribution.from_normals(normals)
        total = math.prod(shape)
        if isinstance(distribution, distributions.Sparse):
            values = self.generate(distributions.Normal(0.0, distribution.std), stream, shape, 0, total, _FLOAT64)
            return distribution.masked(values, self._mask_words(stream, total))
        return self.generate(distribution, stream, shape, 0, total, _FLOAT64)

    def generate(
        self,
        distribution: distributions.Distribution,
        stream: Stream,
        shape: tuple[int, ...],
        start: int,
        stop: int,
        dtype: np.dtype,
    ) -> NDArray:
        return distributions.generate(samplers.sampler(distribution, dtype), stream, shape, start, stop, dtype)

    def generate_runs(
        self,
        distribution: distributions.Distribution,
        stream: Stream,
        shape: tuple[int, ...],
        starts: NDArray[np.int64],
        length: int,
        dtype: np.dtype,
    ) -> NDArray:
        return distributions.generate_runs(samplers.sampler(distribution, dtype), stream, shape, starts, length, dtype)

    def kernels(self) -> list[tuple[str, Any, tuple[Any, ...]]]:
        """(name, kernel, argument types) of every kernel this rng's requests call, for the warm-up."""
        return kernels.serving_signatures() if parallel.JIT_AVAILABLE else []

    @staticmethod
    def _mask_words(stream: Stream, total: int) -> NDArray[np.uint64]:
        if not parallel.config().jit:
            return stream.words(0, total, SPARSE_MASK)
        out = np.empty(total, np.uint64)
        kernels.words(*(np.uint64(word) for word in stream.words4), SPARSE_MASK, 0, total, out)
        return out


RNG = PhiloxV2()
