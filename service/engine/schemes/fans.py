"""Fan-in and fan-out of a weight shape under the two layout conventions.

torch  ([out, in, *kernel]):  fan_in = shape[1] * rf,  fan_out = shape[0] * rf,  rf = prod(shape[2:])
keras  ([*kernel, in, out]):  fan_in = shape[-2] * rf, fan_out = shape[-1] * rf, rf = prod(shape[:-2])
torch refuses fewer than 2 dims; Keras takes 0-D as (1, 1) and 1-D (n,) as (n, n).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from service.engine.errors import InitError

Layout = Literal["torch", "keras"]
LAYOUTS: tuple[Layout, ...] = ("torch", "keras")
TORCH_FAN_ERROR = "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions"


def compute_fans(shape: Sequence[int], layout: Layout) -> tuple[int, int]:
    """(fan_in, fan_out) of `shape` under `layout`; raises InitError with torch's message for < 2 dims."""
    if layout == "torch":
        if len(shape) < 2:
            raise InitError("shape", TORCH_FAN_ERROR)
        receptive_field = math.prod(shape[2:])
        return shape[1] * receptive_field, shape[0] * receptive_field
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


@dataclass(frozen=True)
class Fans:
    """Fans for one request: explicit values win over the shape's, which are computed only when read (torch's
    layout refuses fewer than 2 dimensions, which matters only to schemes that read a fan)."""

    shape: tuple[int, ...]
    layout: Layout
    explicit_fan_in: int | None = None
    explicit_fan_out: int | None = None

    @property
    def fan_in(self) -> int:
        return self.explicit_fan_in if self.explicit_fan_in is not None else compute_fans(self.shape, self.layout)[0]

    @property
    def fan_out(self) -> int:
        return self.explicit_fan_out if self.explicit_fan_out is not None else compute_fans(self.shape, self.layout)[1]

    def known(self) -> tuple[int | None, int | None]:
        """(fan_in, fan_out) as far as they are defined: None where torch's layout has fewer than 2 dimensions
        and no explicit value."""
        try:
            shape_in, shape_out = compute_fans(self.shape, self.layout)
        except InitError:
            shape_in = shape_out = None
        return (
            self.explicit_fan_in if self.explicit_fan_in is not None else shape_in,
            self.explicit_fan_out if self.explicit_fan_out is not None else shape_out,
        )
