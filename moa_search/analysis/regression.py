"""The regression tools the role and diversity analyses share: ridge fits (scikit-learn) and
their penalty, seeded bootstrap resamples and percentile intervals, and JSON-safe numbers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "ALPHAS",
    "bootstrap_indices",
    "check_options",
    "choose_alpha",
    "finite_or_none",
    "json_safe",
    "percentile_ci",
    "ridge_coef",
]

#: Ridge penalties tried when none is given (chosen by leave-one-out on the full data).
ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 13))


def finite_or_none(value: float) -> float | None:
    """A finite float, or ``None`` for NaN and infinities."""
    return float(value) if math.isfinite(value) else None


def json_safe(value: Any) -> Any:
    """JSON-safe: NaN and infinities become ``None``; tuples lists; recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def check_options(n_boot: int, confidence: float, proposer_feature: str) -> None:
    """Reject bad analysis options with a :class:`ValueError` naming the option."""
    if proposer_feature not in ("presence", "samples"):
        raise ValueError(
            f"proposer_feature must be 'presence' or 'samples', got {proposer_feature!r}"
        )
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def ridge_coef(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """scikit-learn Ridge (intercept unpenalised) coefficients; constant columns get 0."""
    from sklearn.linear_model import Ridge

    if x.shape[1] == 0:
        return np.zeros(0)
    return np.asarray(Ridge(alpha=alpha, solver="cholesky").fit(x, y).coef_, dtype=np.float64)


def choose_alpha(x: np.ndarray, y: np.ndarray) -> float:
    """The ridge penalty from :data:`ALPHAS` with the best leave-one-out error (1.0 when there
    is nothing to fit)."""
    from sklearn.linear_model import RidgeCV

    if x.shape[1] == 0 or np.allclose(y, y[0]):
        return 1.0
    return float(RidgeCV(alphas=ALPHAS).fit(x, y).alpha_)


def percentile_ci(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The equal-tailed percentile interval of bootstrap ``samples`` (per column; NaN ignored)."""
    tail = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(samples, [tail, 1.0 - tail], axis=0)
    return low, high


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``n_boot`` x ``n`` row indices, one seeded resample (with replacement) per row."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_boot, n))
