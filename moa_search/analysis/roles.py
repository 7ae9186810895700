"""Which pool models help, in which role: ridge role effects with bootstrap intervals.

:func:`role_table` gives, per pool model, its effect on win rate as a proposer (per layer when
the study chose compositions per layer, else "any layer") and as the aggregator: the
coefficients of a ridge regression (scikit-learn :class:`~sklearn.linear_model.Ridge`) of win
rate on the role design (:mod:`moa_search.analysis.rows`), with seeded bootstrap intervals,
next to the raw mean win rates of trials with and without the role. Win rates are in [0, 1], so
an effect of 0.1 is ten points of win rate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import optuna

from moa_search.analysis.regression import (
    bootstrap_indices,
    check_options,
    choose_alpha,
    json_safe,
    percentile_ci,
    ridge_coef,
)
from moa_search.analysis.rows import Design, ProposerFeature, role_design, trial_rows

__all__ = ["RoleEffect", "role_table"]


@dataclass(frozen=True)
class RoleEffect:
    """One model in one role.

    ``layer`` is the proposer layer (0 = the first) or ``None`` — for the aggregator, and for
    proposers of a study with one composition for every layer ("any layer"). ``effect`` is the
    ridge estimate of the change in win rate (in [0, 1] units) the role brings, with its
    bootstrap interval: for a proposer, being in the layer (or one more sample, with
    ``proposer_feature="samples"``) against not; for the aggregator, aggregating against the
    other aggregators (weighted by how often each was tried). ``None`` when the role never
    varied (always or never taken). ``mean_with``/``mean_without`` are raw mean win rates.
    """

    model: str
    role: Literal["proposer", "aggregator"]
    layer: int | None
    effect: float | None
    ci_low: float | None
    ci_high: float | None
    n_with: int
    n_without: int
    mean_with: float | None
    mean_without: float | None

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return (
            self.ci_low is not None
            and self.ci_high is not None
            and (self.ci_low > 0 or self.ci_high < 0)
        )

    def to_dict(self) -> dict[str, Any]:
        return json_safe({**asdict(self), "significant": self.significant})


def _effects(d: Design, coef: np.ndarray) -> np.ndarray:
    """Role effects from the coefficients: proposer columns as they are; each aggregator
    against the other aggregators weighted by their counts."""
    out = np.array(coef, dtype=np.float64, copy=True)
    agg = [j for j, c in enumerate(d.columns) if c.kind == "aggregator"]
    counts = d.x[:, agg].sum(axis=0) if agg else np.zeros(0)
    for pos, j in enumerate(agg):
        others = [(agg[q], counts[q]) for q in range(len(agg)) if q != pos and counts[q] > 0]
        total = sum(n for _, n in others)
        baseline = sum(coef[jj] * n for jj, n in others) / total if total > 0 else 0.0
        out[j] = coef[j] - baseline
    return out


def role_effects(
    d: Design, alpha: float, n_boot: int, confidence: float, seed: int
) -> tuple[RoleEffect, ...]:
    """The role table of a design: proposers (by layer, then model), then aggregators."""
    varies = d.x.std(axis=0) > 0
    point = _effects(d, ridge_coef(d.x, d.y, alpha))
    boots = np.empty((n_boot, d.x.shape[1]))
    for b, idx in enumerate(bootstrap_indices(len(d.y), n_boot, seed)):
        boots[b] = _effects(d, ridge_coef(d.x[idx], d.y[idx], alpha))
    low, high = percentile_ci(boots, confidence) if d.x.shape[1] else (point, point)
    out: list[RoleEffect] = []
    for j, col in enumerate(d.columns):
        if col.kind == "layers":
            continue
        present = d.x[:, j] > 0
        n_with = int(present.sum())
        ok = bool(varies[j]) and 0 < n_with < len(d.y)
        out.append(
            RoleEffect(
                model=col.model,
                role="proposer" if col.kind == "proposer" else "aggregator",
                layer=col.layer if col.kind == "proposer" else None,
                effect=float(point[j]) if ok else None,
                ci_low=float(low[j]) if ok else None,
                ci_high=float(high[j]) if ok else None,
                n_with=n_with,
                n_without=len(d.y) - n_with,
                mean_with=float(d.y[present].mean()) if n_with else None,
                mean_without=float(d.y[~present].mean()) if n_with < len(d.y) else None,
            )
        )
    out.sort(key=lambda r: (r.role != "proposer", -1 if r.layer is None else r.layer, r.model))
    return tuple(out)


def role_table(
    study: optuna.Study,
    *,
    alpha: float | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    proposer_feature: ProposerFeature = "presence",
) -> list[RoleEffect]:
    """Each pool model's effect on win rate in each role it took (see :class:`RoleEffect`).

    Args:
        study: any study of :mod:`moa_search.search.session` (read through its trial records;
            see :mod:`moa_search.analysis.rows` for which trials count).
        alpha: the ridge penalty; ``None`` picks it by leave-one-out over a grid.
        n_boot: bootstrap resamples of the trials (the penalty stays fixed).
        confidence: the intervals' coverage.
        seed: seeds the bootstrap (same seed, same intervals).
        proposer_feature: ``"presence"`` (in the layer or not) or ``"samples"`` (per sample).

    Raises:
        AnalysisError: fewer than :data:`~moa_search.analysis.rows.MIN_TRIALS` evaluated
            trials with metrics.
    """
    check_options(n_boot, confidence, proposer_feature)
    rows, _ = trial_rows(study)
    d = role_design(rows, proposer_feature)
    a = choose_alpha(d.x, d.y) if alpha is None else float(alpha)
    return list(role_effects(d, a, n_boot, confidence, seed))
