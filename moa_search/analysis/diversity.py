"""Quality vs diversity: does proposer diversity explain win rate beyond which models were used?

:func:`quality_vs_diversity` compares the role design (:mod:`moa_search.analysis.rows`) with
and without diversity: cross-validated and adjusted R², diversity's ridge coefficient with a
bootstrap interval, and its partial correlation with win rate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import optuna

from moa_search.analysis.regression import (
    bootstrap_indices,
    check_options,
    choose_alpha,
    finite_or_none,
    json_safe,
    percentile_ci,
    ridge_coef,
)
from moa_search.analysis.rows import Design, ProposerFeature, role_design, trial_rows

__all__ = ["DiversityEffect", "quality_vs_diversity"]

#: The partial correlation needs at least this many residual degrees of freedom (with fewer,
#: the residuals of a handful of trials correlate perfectly by construction).
_MIN_RESIDUAL_DOF = 3


@dataclass(frozen=True)
class DiversityEffect:
    """Does diversity explain win rate beyond which models played which role?

    - ``r2_roles`` / ``r2_roles_diversity``: cross-validated R² (K-fold, pooled out-of-fold
      predictions) of win rate on the role design without / with diversity;
      ``adj_r2_*`` the in-sample adjusted R² (nominal parameter counts).
    - ``coefficient``: diversity's ridge coefficient in the model with roles — win rate per
      unit of diversity (mean pairwise cosine distance); ``coefficient_per_sd`` per standard
      deviation of diversity across trials; ``ci_low``/``ci_high`` the bootstrap interval of
      ``coefficient``.
    - ``partial_r``: the correlation of win rate and diversity after both are regressed
      (least squares) on the role design, with its t-test ``p_value`` and a bootstrap interval;
      ``None`` with fewer than three residual degrees of freedom (too few distinct trials).
    - ``significant``: the coefficient's interval excludes 0 *and* the partial correlation's
      p-value is below 1 − confidence (a bootstrap interval alone is too narrow on few trials).

    With ``diversity_varies`` false (e.g. every trial used one proposer) every estimate is
    ``None``.
    """

    n: int
    diversity_varies: bool
    r2_roles: float | None = None
    r2_roles_diversity: float | None = None
    adj_r2_roles: float | None = None
    adj_r2_roles_diversity: float | None = None
    coefficient: float | None = None
    coefficient_per_sd: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    partial_r: float | None = None
    partial_r_ci_low: float | None = None
    partial_r_ci_high: float | None = None
    p_value: float | None = None
    significant: bool = False

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))


def _cv_r2(x: np.ndarray, y: np.ndarray, alpha: float, seed: int) -> float:
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold, cross_val_predict

    sst = float(np.sum((y - y.mean()) ** 2))
    if sst == 0.0:
        return math.nan
    folds = KFold(n_splits=min(5, len(y)), shuffle=True, random_state=seed)
    if x.shape[1] == 0:
        pred = np.empty_like(y)
        for train, test in folds.split(y):
            pred[test] = y[train].mean()
    else:
        pred = cross_val_predict(Ridge(alpha=alpha, solver="cholesky"), x, y, cv=folds)
    return 1.0 - float(np.sum((y - pred) ** 2)) / sst


def _adj_r2(x: np.ndarray, y: np.ndarray, alpha: float) -> float:
    from sklearn.linear_model import Ridge

    n = len(y)
    sst = float(np.sum((y - y.mean()) ** 2))
    p = int(np.sum(x.std(axis=0) > 0)) if x.shape[1] else 0
    if sst == 0.0 or n - p - 1 <= 0:
        return math.nan
    pred = (
        Ridge(alpha=alpha, solver="cholesky").fit(x, y).predict(x)
        if x.shape[1]
        else np.full(n, y.mean())
    )
    r2 = 1.0 - float(np.sum((y - pred) ** 2)) / sst
    return 1.0 - (1.0 - r2) * (n - 1) / (n - p - 1)


def _residualize(x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, int]:
    """Least-squares residuals of ``v`` on [1, x], and the design's rank."""
    design = np.column_stack([np.ones(len(v)), x])
    beta, _, rank, _ = np.linalg.lstsq(design, v, rcond=None)
    return v - design @ beta, int(rank)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = a.std(), b.std()
    if sa < 1e-12 or sb < 1e-12:
        return math.nan
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))


def diversity_effect(
    d: Design, alpha: float, n_boot: int, confidence: float, seed: int
) -> DiversityEffect:
    """Quality vs diversity on a design (see :class:`DiversityEffect`)."""
    from scipy import stats

    n = len(d.y)
    sd = float(d.diversity.std())
    if sd < 1e-12:
        return DiversityEffect(n=n, diversity_varies=False)
    z = (d.diversity - d.diversity.mean()) / sd
    x_roles = d.x
    x_full = np.column_stack([d.x, z])
    per_sd = float(ridge_coef(x_full, d.y, alpha)[-1])
    ey, _ = _residualize(x_roles, d.y)
    ed, rank = _residualize(x_roles, d.diversity)
    dof = n - rank - 1
    r = p_value = math.nan
    if dof >= _MIN_RESIDUAL_DOF:
        r = _corr(ey, ed)
        if math.isfinite(r):
            t = r * math.sqrt(dof / max(1e-300, 1.0 - r * r))
            p_value = float(2.0 * stats.t.sf(abs(t), dof))
    boot_coef = np.empty(n_boot)
    boot_r = np.empty(n_boot)
    for b, idx in enumerate(bootstrap_indices(n, n_boot, seed + 1)):
        boot_coef[b] = ridge_coef(x_full[idx], d.y[idx], alpha)[-1]
        by, _ = _residualize(x_roles[idx], d.y[idx])
        bd, _ = _residualize(x_roles[idx], d.diversity[idx])
        boot_r[b] = _corr(by, bd)
    (c_low, c_high) = (float(v) for v in percentile_ci(boot_coef, confidence))
    if not math.isfinite(r) or np.all(np.isnan(boot_r)):
        r_low = r_high = math.nan
    else:
        r_low, r_high = (float(v) for v in percentile_ci(boot_r, confidence))
    return DiversityEffect(
        n=n,
        diversity_varies=True,
        r2_roles=finite_or_none(_cv_r2(x_roles, d.y, alpha, seed)),
        r2_roles_diversity=finite_or_none(_cv_r2(x_full, d.y, alpha, seed)),
        adj_r2_roles=finite_or_none(_adj_r2(x_roles, d.y, alpha)),
        adj_r2_roles_diversity=finite_or_none(_adj_r2(x_full, d.y, alpha)),
        coefficient=finite_or_none(per_sd / sd),
        coefficient_per_sd=finite_or_none(per_sd),
        ci_low=finite_or_none(c_low / sd),
        ci_high=finite_or_none(c_high / sd),
        partial_r=finite_or_none(r),
        partial_r_ci_low=finite_or_none(r_low),
        partial_r_ci_high=finite_or_none(r_high),
        p_value=finite_or_none(p_value),
        significant=bool(
            (c_low > 0 or c_high < 0) and math.isfinite(p_value) and p_value < 1.0 - confidence
        ),
    )


def quality_vs_diversity(
    study: optuna.Study,
    *,
    alpha: float | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    proposer_feature: ProposerFeature = "presence",
) -> dict[str, Any]:
    """Does diversity explain win rate beyond which models played which role?

    Returns :meth:`DiversityEffect.to_dict` (see :class:`DiversityEffect` for each field);
    arguments as :func:`~moa_search.analysis.roles.role_table` (the penalty is chosen on the
    role design).

    Raises:
        AnalysisError: fewer than :data:`~moa_search.analysis.rows.MIN_TRIALS` evaluated
            trials with metrics.
    """
    check_options(n_boot, confidence, proposer_feature)
    rows, _ = trial_rows(study)
    d = role_design(rows, proposer_feature)
    a = choose_alpha(d.x, d.y) if alpha is None else float(alpha)
    return diversity_effect(d, a, n_boot, confidence, seed).to_dict()
