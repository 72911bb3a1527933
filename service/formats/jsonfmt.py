"""JSON output: the tensor's values as a flat row-major list beside its shape, dtype and metadata.

Values are written with the shortest decimal that reads back to the same value in the tensor's dtype (orjson's
float32 and float64 writers); float16 and bfloat16 values are exact in float32 and written as such.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

MEDIA_TYPE = "application/json"


def encode(values: NDArray, fields: dict[str, Any]) -> bytes:
    """`fields` (name, shape, dtype, metadata) plus "data": the flat values."""
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float32)
    return orjson.dumps({**fields, "data": np.ascontiguousarray(values).reshape(-1)}, option=orjson.OPT_SERIALIZE_NUMPY)
