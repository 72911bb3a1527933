"""The contracts' constants, read from the shipped copies of docs/vectors/philox-v1.json and philox-v2.json (never
copied into source: the service's engine and every client read the same files; a test keeps each copy identical to
the docs')."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

RNG = "philox-v1"
RNG_V2 = "philox-v2"


@cache
def document(rng: str = RNG) -> dict[str, Any]:
    """The whole JSON of an rng: `constants` and `vectors`; philox-v1's also has `schemes` (names, families,
    parameters, defaults, ranges), which every rng shares."""
    return json.loads(resources.files(__package__).joinpath(f"{rng}.json").read_text("utf-8"))


def float_of(hex_bits: str) -> float:
    """A float64 from the 16 hex digits of its encoding (the JSON's encoding of every float)."""
    return float(np.uint64(int(hex_bits, 16)).view(np.float64))


def _constants() -> tuple[dict[str, float], dict[str, tuple[float, ...]], dict[str, int]]:
    constants = document()["constants"]
    scalars = {name: float_of(entry["bits"]) for name, entry in constants["float64"].items()}
    polynomials = {
        name: tuple(float_of(entry["bits"]) for entry in coefficients)
        for name, coefficients in constants["polynomials"].items()
    }
    high_words = {name: int(bits, 16) for name, bits in constants["high_word_thresholds"].items()}
    return scalars, polynomials, high_words


# F: the float64 constants (LN2_HI, PIO2, ...); P: the polynomials' coefficients, increasing powers; HW: high words.
F, P, HW = _constants()
