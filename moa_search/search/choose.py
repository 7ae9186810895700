"""Choosing one mixture: the Pareto front of a study, and the spec's ``choose`` rule on it."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from moa_search.config.study import StudySpec
from moa_search.search.records import TrialRecord

__all__ = ["choose_trial", "pareto_front"]


def pareto_front(study: optuna.Study) -> list[TrialRecord]:
    """The non-dominated complete trials (the best trial, for a single objective), each
    mixture once."""
    if len(study.directions) == 1:
        try:
            best = TrialRecord.of(study.best_trial)
        except ValueError:
            return []
        if best.duplicate_of is not None:
            return [TrialRecord.of(study.trials[best.duplicate_of])]
        return [best]
    front = (TrialRecord.of(t) for t in study.best_trials)
    return sorted((r for r in front if r.duplicate_of is None), key=lambda r: r.number)


def choose_trial(study: optuna.Study, spec: StudySpec) -> TrialRecord | None:
    """Apply the spec's ``choose`` rule to the Pareto front."""
    front = pareto_front(study)
    if not front:
        return None
    rule = spec.choose

    def wr(r: TrialRecord) -> float:
        return r.win_rate or 0.0

    if rule.rule == "cheapest_within":
        top = max(wr(r) for r in front)
        ok = [r for r in front if wr(r) >= top - rule.tolerance]
        return min(ok, key=lambda r: (r.metric("cost_usd"), r.metric("tokens"), -wr(r)))
    if rule.rule == "weighted":
        weights = rule.weights or spec.weights or {"win_rate": 1.0}

        def score(r: TrialRecord) -> float:
            return sum(w * r.metric(name) for name, w in weights.items())

        return max(front, key=lambda r: (score(r), -r.number))
    return max(
        front,
        key=lambda r: (
            wr(r),
            -r.metric("cost_usd"),
            -r.metric("tokens"),
            r.metric("diversity"),
            -r.number,
        ),
    )


def complete_trials(study: optuna.Study) -> dict[int, TrialRecord]:
    """Trial number -> record, for every complete trial."""
    return {
        t.number: TrialRecord.of(t)
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    }
