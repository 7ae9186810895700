"""Choosing one mixture: the Pareto front of a study, and the spec's ``choose`` rule on it.

No verdict without data: a trial whose evaluation judged nothing — the baseline or the judge
failed on every prompt, or its mixture failed on all of them (a failed mixture "loses" each
comparison, which is no measurement of it) — is never on the front and never chosen, even where
its zero cost would make it Pareto-optimal. :func:`no_verdict_reason` says why a study has
nothing to choose.
"""

from __future__ import annotations

from collections.abc import Sequence

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from moa_search.config.study import StudySpec
from moa_search.errors import NoVerdictError
from moa_search.search.objective import Evaluation
from moa_search.search.records import FinalEvaluation, TrialRecord

__all__ = [
    "choose_trial",
    "complete_trials",
    "has_verdict",
    "no_verdict_reason",
    "pareto_front",
    "require_stored_verdict",
    "require_verdict",
    "verdict_problem",
]


def has_verdict(metrics: Evaluation | None) -> bool:
    """Whether an evaluation measured its mixture: at least one prompt judged, and not every
    prompt a failure (of the mixture, or of the baseline it is compared with)."""
    return metrics is not None and metrics.win_rate.n > 0 and metrics.failures < metrics.n


def verdict_problem(metrics: Evaluation | None) -> str | None:
    """Why ``metrics`` give no verdict, in words (``None`` when they do)."""
    if has_verdict(metrics):
        return None
    if metrics is None or metrics.n == 0:
        return "it was evaluated on no prompt"
    n = metrics.n
    if metrics.win_rate.n == 0 and metrics.judge_failures >= n and metrics.failures >= n:
        return f"the baseline failed on all {n} prompts, so nothing could be judged"
    if metrics.win_rate.n == 0:
        return f"the judge decided none of the {n} prompts"
    return f"the mixture (or the baseline) failed on all {n} prompts"


def _feasible(t: FrozenTrial) -> bool:
    return all(v <= 0.0 for v in t.constraints.values())


def _dominates(a: Sequence[float], b: Sequence[float], signs: Sequence[float]) -> bool:
    """Whether values ``a`` dominate ``b`` (``signs``: +1 to maximize, -1 to minimize)."""
    better = False
    for x, y, s in zip(a, b, signs, strict=True):
        if s * x < s * y:
            return False
        better = better or s * x > s * y
    return better


def _front_with_verdicts(study: optuna.Study) -> list[FrozenTrial]:
    """The non-dominated feasible complete trials among those with a verdict."""
    trials = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.values and _feasible(t) and has_verdict(TrialRecord.of(t).metrics)
    ]
    signs = [1.0 if d == StudyDirection.MAXIMIZE else -1.0 for d in study.directions]
    if len(signs) == 1:
        if not trials:
            return []
        return [max(trials, key=lambda t: (signs[0] * t.values[0], -t.number))]
    return [t for t in trials if not any(_dominates(o.values, t.values, signs) for o in trials)]


def _optuna_front(study: optuna.Study) -> list[FrozenTrial]:
    if len(study.directions) == 1:
        try:
            return [study.best_trial]
        except ValueError:
            return []
    return list(study.best_trials)


def pareto_front(study: optuna.Study) -> list[TrialRecord]:
    """The non-dominated complete trials with a verdict (the best one, for a single
    objective), each mixture once."""
    front = _optuna_front(study)
    if not all(has_verdict(TrialRecord.of(t).metrics) for t in front):
        front = _front_with_verdicts(study)  # the study's own front holds a trial without data
    records = [TrialRecord.of(t) for t in front]
    if len(study.directions) == 1:
        if not records:
            return []
        best = records[0]
        if best.duplicate_of is not None:
            return [TrialRecord.of(study.trials[best.duplicate_of])]
        return [best]
    return sorted((r for r in records if r.duplicate_of is None), key=lambda r: r.number)


def no_verdict_reason(study: optuna.Study) -> str | None:
    """Why the study has no trial to choose, in one sentence with what to do (``None`` when it
    has one, or has no complete trial at all)."""
    complete = complete_trials(study)
    if not complete or pareto_front(study):
        return None
    problems: dict[str, int] = {}
    for r in complete.values():
        problem = verdict_problem(r.metrics)
        if problem is not None:
            problems[problem] = problems.get(problem, 0) + 1
    worst = max(problems, key=lambda p: problems[p]) if problems else "no trial is feasible"
    return (
        f"none of the {len(complete)} complete trials was measured ({worst}"
        + (f", in {problems[worst]} of them" if problems.get(worst, 0) > 1 else "")
        + "); the warnings above name the failing model — check the baseline, the judge and the "
        "pool (keys, endpoints), then search again"
    )


def require_verdict(study: optuna.Study, name: str, final: FinalEvaluation | None) -> None:
    """No verdict without data: raise when the study's complete trials were all unmeasured, or
    its chosen mixture's final evaluation (``final``) measured nothing. A study with no complete
    trial at all passes (the caller says there is nothing yet).

    Raises:
        NoVerdictError: see above (the CLI exits 1 with its paragraph).
    """
    if final is None:
        reason = no_verdict_reason(study)
        if reason is not None:
            raise NoVerdictError(f"study '{name}'", reason)
        return
    problem = verdict_problem(final.metrics)
    if problem is not None:
        where = "held-out prompts" if final.holdout else "prompts of its final evaluation"
        raise NoVerdictError(
            f"study '{name}'",
            f"on the {where}, the chosen trial {final.trial} has no verdict: {problem}; the "
            "warnings above name the failing model — check the baseline, the judge and the pool "
            "(keys, endpoints), then search again",
        )


def require_stored_verdict(study: optuna.Study, spec: StudySpec) -> None:
    """:func:`require_verdict` on what the study holds: its chosen trial's stored final
    evaluation (for commands that only read a study, such as ``best``)."""
    chosen = choose_trial(study, spec)
    final = FinalEvaluation.load(study) if chosen is not None else None
    if final is not None and chosen is not None and final.trial != chosen.number:
        final = None
    if chosen is None or final is not None:
        require_verdict(study, spec.name, final)


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
