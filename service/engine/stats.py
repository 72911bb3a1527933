"""What /stats reports: closed-form moments beside the empirical moments, KS test and histogram of a tensor.

Everything is computed chunk by chunk, so memory stays bounded whatever the tensor's size:
* empirical moments and min/max: over every element of the output tensor (after rounding to its dtype),
  merged per chunk with Chan et al.'s parallel update;
* KS test: on the float64 values before rounding (a float16 tensor is not continuous), of the first
  `ks_max` elements in row-major order (elements are i.i.d., so any fixed subset is a fair sample);
  p-value from the Kolmogorov distribution with Stephens' small-sample correction;
* histogram: `bins` equal bins over [min, max] of the output, with the counts the distribution predicts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service.engine.plan import CHUNK_ELEMENTS, Plan

KS_MAX_SAMPLE = 1 << 20


@dataclass
class Running:
    """Count, mean, sum of squared deviations, min and max, mergeable chunk by chunk."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    def add(self, chunk: NDArray[np.float64]) -> None:
        n = chunk.size
        if n == 0:
            return
        mean = float(chunk.mean())
        m2 = float(np.square(chunk - mean).sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        self.min = min(self.min, float(chunk.min()))
        self.max = max(self.max, float(chunk.max()))

    @property
    def variance(self) -> float:
        return self.m2 / self.count if self.count else math.nan


def kolmogorov_pvalue(statistic: float, n: int) -> float:
    """P(D_n >= statistic) for the one-sample KS test, asymptotic with Stephens' correction."""
    root = math.sqrt(n)
    lam = (root + 0.12 + 0.11 / root) * statistic
    if lam <= 0:
        return 1.0
    if lam < 1.18:
        # Jacobi-transformed series: converges fast for small lambda.
        y = math.exp(-(math.pi**2) / (8 * lam * lam))
        series = sum(y ** ((2 * k - 1) ** 2) for k in range(1, 8))
        return min(1.0, max(0.0, 1.0 - math.sqrt(2 * math.pi) / lam * series))
    series = sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return min(1.0, max(0.0, 2.0 * series))


def ks_test(values: NDArray[np.float64], cdf: Any) -> dict[str, float | int]:
    x = np.sort(values)
    n = x.size
    f = cdf(x)
    ranks = np.arange(1, n + 1, dtype=np.float64)
    statistic = float(max(np.max(ranks / n - f), np.max(f - (ranks - 1) / n)))
    return {"statistic": statistic, "pvalue": kolmogorov_pvalue(statistic, n), "n": n}


def stats_working_bytes(plan: Plan) -> int:
    """Memory tensor_stats holds at once, an upper bound (tests/engine/test_memory.py measures it): the chunks as
    generated (`Plan.working_bytes`: for orthogonal and sparse, the whole matrix), each as float64 with its
    deviations, squares and histogram temporaries; then the KS sample, sorted, its CDF (up to ~12 float64 values
    an element for the normal's) and ranks."""
    chunk, sample = min(plan.numel, CHUNK_ELEMENTS), min(plan.numel, KS_MAX_SAMPLE)
    return plan.working_bytes(CHUNK_ELEMENTS) + 4 * 8 * chunk + 16 * 8 * sample


def _chunks(plan: Plan) -> Any:
    for chunk in plan.chunks():
        yield chunk.astype(np.float64)


def tensor_stats(plan: Plan, bins: int = 32, ks_max: int = KS_MAX_SAMPLE) -> dict[str, Any]:
    moments = plan.distribution.moments()
    running = Running()
    for chunk in _chunks(plan):
        running.add(chunk)
    low, high = running.min, running.max
    if high <= low:
        high = low + 1.0 if low == 0 else low + abs(low)
    edges = np.linspace(low, high, bins + 1)
    counts = np.zeros(bins, dtype=np.int64)
    for chunk in _chunks(plan):
        counts += np.histogram(chunk, bins=edges)[0]

    ks = expected = None
    if plan.distribution.continuous:
        sample = plan.values(0, min(plan.numel, ks_max))
        ks = {
            **ks_test(sample, plan.distribution.cdf),
            "sample": f"first {sample.size} elements",
            "computed_on": "float64 values before rounding to the output dtype",
        }
        expected = (np.diff(plan.distribution.cdf(edges)) * plan.numel).tolist()

    return {
        "theoretical": {
            "mean": moments.mean,
            "variance": moments.variance,
            "std": moments.std,
            "support": [moments.lower, moments.upper],
        },
        "empirical": {
            **{k: v for k, v in asdict(running).items() if k in ("count", "mean", "min", "max")},
            "variance": running.variance,
            "std": math.sqrt(running.variance),
        },
        "ks": ks,
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist(), "expected": expected},
    }
