"""Aggregate figures over seeds as rliable recommends: the interquartile mean and bootstrap confidence intervals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def iqm(values: Sequence[float]) -> float:
    """The interquartile mean: the mean of the middle half of the values (all of them below four)."""
    x = np.sort(np.asarray(values, dtype=float))
    if not len(x):
        return float("nan")
    cut = int(len(x) * 0.25)
    return float(x[cut:len(x) - cut].mean())


def bootstrap_ci(values: Sequence[float], statistic=iqm, confidence: float = 0.95, resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap confidence interval of ``statistic`` over ``values`` (resampled with replacement)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        value = statistic(x) if len(x) else float("nan")
        return value, value
    rng = np.random.default_rng(seed)
    stats = np.array([statistic(x[rng.integers(0, len(x), len(x))]) for _ in range(resamples)])
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)
