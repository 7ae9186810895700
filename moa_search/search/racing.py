"""Paired racing: stop a candidate once it is significantly worse than the incumbent.

Every trial is evaluated on the same prompts in the same order (the study's search split), so
after each rung a candidate's per-prompt judge preferences pair with the incumbent's on those
very prompts. The candidate is stopped when the upper end of a one-sided interval on the mean
paired difference (candidate - incumbent, ``z`` standard errors) is below zero — as Cognify's
successive halving and MIPROv2's minibatches drop weak candidates early, but with a paired test,
which needs far fewer prompts than comparing two independent means.

The incumbent is the complete trial with the highest win rate; when the study also minimises a
cost (``cost_usd``, ``tokens``, ``latency_s``), only trials making no more calls per prompt than
the candidate qualify, so a cheaper candidate is never stopped for losing to a dearer one (it
may be on the Pareto front).

``pruner: racing`` (and ``auto`` with ``sampler: auto``, the default) selects it.
"""

from __future__ import annotations

import math

import optuna
from optuna.trial import TrialState

from moa_search.config.study import StudySpec
from moa_search.search.records import TrialRecord

__all__ = ["RACING_Z", "paired_worse", "race", "uses_racing"]

#: One-sided 95%.
RACING_Z = 1.645
#: Prompts a candidate must have in common with the incumbent before it can be stopped.
MIN_PAIRED = 4
_COSTS = ("cost_usd", "tokens", "latency_s")


def uses_racing(spec: StudySpec) -> bool:
    """Whether the study prunes by paired racing."""
    return spec.pruner == "racing" or (spec.pruner == "auto" and spec.sampler == "auto")


def paired_worse(mine: dict[str, float], theirs: dict[str, float], z: float = RACING_Z) -> bool:
    """Whether ``mine`` is significantly worse than ``theirs`` on the prompts both have."""
    diffs = [mine[i] - theirs[i] for i in mine if i in theirs]
    n = len(diffs)
    if n < MIN_PAIRED:
        return False
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    return mean + z * math.sqrt(var / n) < 0


def race(study: optuna.Study, number: int, spec: StudySpec) -> bool:
    """Whether running trial ``number`` should stop (see the module docstring)."""
    me = next(
        (
            TrialRecord.of(t)
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.number == number
        ),
        None,
    )
    if me is None or not me.preferences:
        return False
    cost_aware = any(name in spec.objective_names for name in _COSTS) or any(
        w != 0 for name, w in (spec.weights or {}).items() if name in _COSTS
    )
    my_calls = me.composition.calls_per_prompt if me.composition is not None else 0
    rivals = [
        r
        for r in (
            TrialRecord.of(t)
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        )
        if r.duplicate_of is None
        and r.preferences
        and r.composition is not None
        and (not cost_aware or r.composition.calls_per_prompt <= my_calls)
    ]
    if not rivals:
        return False
    incumbent = max(rivals, key=lambda r: (r.win_rate or 0.0, -r.number))
    return paired_worse(dict(me.preferences), dict(incumbent.preferences))
