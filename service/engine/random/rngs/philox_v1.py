"""philox-v1: Philox4x64-10 keyed by (seed, tensor name), element i from block i // 4 (docs/reproducibility.md).

Keys and blocks are `random.philox`; words become values by each distribution's own samplers (`transform`, the
numba kernels), which are this algorithm's transforms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service.engine.random.philox import Stream
from service.engine.random.rng import Draw, Rng
from service.engine.schemes import distributions


class PhiloxV1(Rng):
    id = "philox-v1"
    random_access = True
    keyed_by = "tensor"
    contract = "docs/reproducibility.md"
    metadata_version = 1

    def streams(self, seed: int, draws: Sequence[Draw]) -> list[Stream]:
        return [Stream.for_tensor(seed, draw.name) for draw in draws]

    def sample(
        self, distribution: distributions.Distribution, stream: Stream, shape: tuple[int, ...], dtype: np.dtype
    ) -> NDArray[np.float64]:
        return distribution.sample(stream, shape, 0, math.prod(shape))

    def kernels(self) -> list[tuple[str, Any, tuple[Any, ...]]]:
        from service.engine.random.compiled import rounding, samplers  # imports numba: only when kernels are wanted

        # The bfloat16 rounding every rng's chunks go through, here so that readiness waits for it.
        return samplers.serving_signatures() + rounding.serving_signatures()

    # Ranges and runs are the distributions' own chunked, threaded fills of this stream.
    generate = staticmethod(distributions.generate)
    generate_runs = staticmethod(distributions.generate_runs)


RNG = PhiloxV1()
