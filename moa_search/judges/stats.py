"""Win rates with uncertainty: the mean of per-prompt preferences and a confidence interval.

A *preference* is a judge's verdict on one prompt, a number in [0, 1]: 1 means the candidate's
answer was better, 0 the baseline's, 0.5 a tie (fractions arise when a verdict averages both
answer orders). The win rate is their mean. Pure functions over numpy; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

__all__ = ["WinRate", "win_rate"]

Method = Literal["normal", "bootstrap"]

# Bootstrap resamples are drawn in chunks of at most this many indices to bound memory.
_MAX_CHUNK_ELEMENTS = 1_000_000


@dataclass(frozen=True)
class WinRate:
    """A win rate with its standard error and a confidence interval.

    ``mean`` is in [0, 1]; ``stderr`` is the sample standard deviation (ddof=1) over
    ``sqrt(n)`` (0 when ``n == 1``); ``[ci_low, ci_high]`` is the ``confidence`` interval
    computed by ``method``, always inside [0, 1].
    """

    mean: float
    stderr: float
    ci_low: float
    ci_high: float
    n: int
    confidence: float = 0.95
    method: str = "normal"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields."""
        return asdict(self)


def _as_preferences(preferences: Sequence[float]) -> np.ndarray:
    values = np.asarray(preferences, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(
            f"preferences must be a flat sequence of numbers, got shape {values.shape}"
        )
    if values.size == 0:
        raise ValueError("preferences must not be empty: a win rate needs at least one verdict")
    if not np.all(np.isfinite(values)):
        raise ValueError("preferences must be finite numbers in [0, 1], got NaN or infinity")
    if values.min() < 0.0 or values.max() > 1.0:
        raise ValueError(
            f"preferences must lie in [0, 1], got values from {values.min():g} to {values.max():g}"
        )
    return values


def _bootstrap_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = values.size
    rows_per_chunk = max(1, _MAX_CHUNK_ELEMENTS // n)
    means = np.empty(n_boot, dtype=np.float64)
    done = 0
    while done < n_boot:
        rows = min(rows_per_chunk, n_boot - done)
        idx = rng.integers(0, n, size=(rows, n))
        means[done : done + rows] = values[idx].mean(axis=1)
        done += rows
    return means


def win_rate(
    preferences: Sequence[float],
    *,
    confidence: float = 0.95,
    method: Method = "normal",
    n_boot: int = 2000,
    seed: int = 0,
) -> WinRate:
    """The mean preference with its standard error and a ``confidence`` interval.

    Args:
        preferences: per-prompt verdicts in [0, 1] (1 = candidate better, 0.5 = tie).
        confidence: the interval's coverage, in (0, 1).
        method: ``"normal"`` — mean ± z·stderr, clipped to [0, 1]; ``"bootstrap"`` — the
            percentile interval of ``n_boot`` resampled means drawn with
            ``numpy.random.default_rng(seed)`` (deterministic for a given seed).
        n_boot: bootstrap resamples (bootstrap only), >= 1.
        seed: bootstrap seed (bootstrap only).

    Raises:
        ValueError: empty input, values outside [0, 1] or not finite, or bad parameters.

    With one preference the standard error is 0 and both intervals collapse to the mean.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if method not in ("normal", "bootstrap"):
        raise ValueError(f"method must be 'normal' or 'bootstrap', got {method!r}")
    values = _as_preferences(preferences)
    n = int(values.size)
    mean = float(values.mean())
    stderr = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    if method == "normal":
        z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
        low, high = mean - z * stderr, mean + z * stderr
    else:
        if n_boot < 1:
            raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
        means = _bootstrap_means(values, n_boot, seed)
        alpha = 1.0 - confidence
        low, high = (float(q) for q in np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0]))
    return WinRate(
        mean=mean,
        stderr=stderr,
        ci_low=float(min(max(low, 0.0), 1.0)),
        ci_high=float(min(max(high, 0.0), 1.0)),
        n=n,
        confidence=float(confidence),
        method=method,
    )
