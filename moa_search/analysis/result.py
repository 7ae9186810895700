"""The whole analysis of a study in one pass: :func:`analyze` and its :class:`AnalysisResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna

from moa_search.analysis.diversity import DiversityEffect, diversity_effect
from moa_search.analysis.regression import check_options, choose_alpha, json_safe
from moa_search.analysis.roles import RoleEffect, role_effects
from moa_search.analysis.rows import ProposerFeature, role_design, trial_rows

__all__ = ["AnalysisResult", "analyze"]


@dataclass(frozen=True)
class AnalysisResult:
    """Everything :func:`analyze` found (win rates in [0, 1])."""

    n_trials: int
    n_skipped: int
    roles: tuple[RoleEffect, ...]
    diversity: DiversityEffect
    alpha: float
    n_boot: int
    confidence: float
    seed: int
    proposer_feature: str = "presence"
    models: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (NaN as ``None``)."""
        return json_safe(
            {
                "n_trials": self.n_trials,
                "n_skipped": self.n_skipped,
                "models": list(self.models),
                "alpha": self.alpha,
                "n_boot": self.n_boot,
                "confidence": self.confidence,
                "seed": self.seed,
                "proposer_feature": self.proposer_feature,
                "roles": [r.to_dict() for r in self.roles],
                "quality_vs_diversity": self.diversity.to_dict(),
            }
        )


def analyze(
    study: optuna.Study,
    *,
    alpha: float | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    proposer_feature: ProposerFeature = "presence",
) -> AnalysisResult:
    """:func:`~moa_search.analysis.roles.role_table` and
    :func:`~moa_search.analysis.diversity.quality_vs_diversity` in one pass (one penalty, one
    design); arguments as :func:`~moa_search.analysis.roles.role_table`.

    Raises:
        AnalysisError: fewer than :data:`~moa_search.analysis.rows.MIN_TRIALS` evaluated
            trials with metrics.
    """
    check_options(n_boot, confidence, proposer_feature)
    rows, skipped = trial_rows(study)
    d = role_design(rows, proposer_feature)
    a = choose_alpha(d.x, d.y) if alpha is None else float(alpha)
    return AnalysisResult(
        n_trials=len(rows),
        n_skipped=skipped,
        roles=role_effects(d, a, n_boot, confidence, seed),
        diversity=diversity_effect(d, a, n_boot, confidence, seed),
        alpha=a,
        n_boot=n_boot,
        confidence=confidence,
        seed=seed,
        proposer_feature=proposer_feature,
        models=d.models,
    )
