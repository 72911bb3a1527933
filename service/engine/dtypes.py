"""Output dtypes: how each is named in NumPy, safetensors and .npy, and how float64 values are rounded to it.

Values are always computed in float64. float64 output is that value; float32 is it rounded to nearest-even;
float16 and bfloat16 are the float32 value rounded to nearest-even again (the portable route: every language
has float64 -> float32, and float32 -> half conversions are standard).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import ml_dtypes
import numpy as np
from numpy.typing import NDArray

DTypeName = Literal["float32", "float64", "float16", "bfloat16"]


@dataclass(frozen=True)
class DType:
    name: DTypeName
    numpy: np.dtype
    safetensors: str
    npy_descr: str | None  # None: .npy has no standard code for it
    max: float

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize


def _dtype(name: DTypeName, numpy: np.dtype, safetensors: str, npy_descr: str | None) -> DType:
    return DType(name, numpy, safetensors, npy_descr, float(ml_dtypes.finfo(numpy).max))


DTYPES: dict[str, DType] = {
    d.name: d
    for d in (
        _dtype("float32", np.dtype("<f4"), "F32", "<f4"),
        _dtype("float64", np.dtype("<f8"), "F64", "<f8"),
        _dtype("float16", np.dtype("<f2"), "F16", "<f2"),
        _dtype("bfloat16", np.dtype(ml_dtypes.bfloat16), "BF16", None),
    )
}


def round_to(values: NDArray[np.float64], dtype: DType) -> NDArray:
    """Round float64 values to `dtype` (little-endian, contiguous) by the documented route."""
    if dtype.name == "float64":
        return np.ascontiguousarray(values, dtype="<f8")
    as_float32 = np.ascontiguousarray(values, dtype="<f4")
    if dtype.name == "float32":
        return as_float32
    return as_float32.astype(dtype.numpy)
