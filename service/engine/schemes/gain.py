"""torch.nn.init.calculate_gain: the recommended gain for a nonlinearity, with torch's table and errors."""

from __future__ import annotations

import math

from service.engine.errors import InitError

LINEAR_FNS = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
)
NONLINEARITIES = (*LINEAR_FNS, "sigmoid", "tanh", "relu", "leaky_relu", "selu")
DEFAULT_NEGATIVE_SLOPE = 0.01


def calculate_gain(
    nonlinearity: str, param: float | None = None, field: str = "nonlinearity", param_field: str = "param"
) -> float:
    """Gain for `nonlinearity`; `param` is leaky_relu's negative slope (default 0.01), ignored otherwise.

    linear, conv*, sigmoid: 1 | tanh: 5/3 | relu: sqrt(2) | leaky_relu: sqrt(2 / (1 + slope^2)) | selu: 3/4
    """
    if nonlinearity in LINEAR_FNS or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope: float = DEFAULT_NEGATIVE_SLOPE
        elif isinstance(param, int | float) and not isinstance(param, bool) and math.isfinite(param):
            slope = param
        else:
            raise InitError(param_field, f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + slope * slope))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise InitError(field, f"Unsupported nonlinearity {nonlinearity}")
