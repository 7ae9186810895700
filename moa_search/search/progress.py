"""What the study driver reports while it runs, and how a progress display words it.

:class:`TrialReport` is what :meth:`SearchSession.optimize` hands its ``on_trial`` callback
after each trial; :class:`~moa_search.search.objective.PromptProgress` what the evaluator hands
its ``on_prompt`` callback after each prompt. The functions here turn them into text (pure: the
command line decides where it goes and whether it is a bar or a line): :func:`trial_report`,
:func:`spend_text`, :func:`eta_seconds`, :func:`best_so_far` (stable on ties),
:func:`prune_reason` and :func:`stop_reason`.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from moa_search.config.study import StudySpec
from moa_search.search.records import StudyTotals, TrialRecord, rung_values

__all__ = [
    "TrialReport",
    "best_so_far",
    "budget_reached",
    "eta_seconds",
    "fmt_duration",
    "prune_reason",
    "spend_text",
    "stop_reason",
    "trial_report",
]


@dataclass(frozen=True)
class TrialReport:
    """Progress after each trial, for a progress display.

    ``state`` is ``complete``, ``pruned``, ``fail``, ``repeat`` or ``invalid``; ``reason`` says
    why a trial is not complete (the pruning rule's numbers, what made a proposal invalid, which
    trial it repeats, the error). ``best_number``/``best_win_rate``: the highest win rate of a
    complete trial so far, the earliest trial keeping it on ties. ``max_usd``/``max_tokens``:
    the budget's limits, when it sets them.
    """

    number: int
    state: str
    values: dict[str, float] | None
    win_rate: float | None
    n_items: int
    best_number: int | None
    best_win_rate: float | None
    done: int
    target: int
    spent_usd: float
    spent_tokens: int
    model_calls: int
    calls_total: int
    elapsed_s: float
    reason: str | None = None
    max_usd: float | None = None
    max_tokens: int | None = None


def trial_report(
    spec: StudySpec,
    study: optuna.Study,
    trial: FrozenTrial,
    target: int,
    elapsed_s: float,
    totals: StudyTotals,
) -> TrialReport:
    """The report on a finished ``trial`` (see :class:`TrialReport`)."""
    record = TrialRecord.of(trial)
    best = best_so_far(TrialRecord.all(study))
    values = (
        dict(zip(spec.objective_names, record.values, strict=True))
        if record.values and spec.weights is None
        else None
    )
    return TrialReport(
        number=record.number,
        state=trial_state(record),
        values=values,
        win_rate=record.win_rate,
        n_items=record.n_items,
        best_number=best.number if best else None,
        best_win_rate=best.win_rate if best else None,
        done=totals.trials,
        target=target,
        spent_usd=totals.spent_usd,
        spent_tokens=totals.spent_tokens,
        model_calls=totals.model_calls,
        calls_total=totals.calls_total,
        elapsed_s=elapsed_s,
        reason=record.reason,
        max_usd=spec.budget.max_usd,
        max_tokens=spec.budget.max_tokens,
    )


def prune_reason(
    study: optuna.Study, number: int, n_items: int, win_rate: float, spec: StudySpec
) -> str:
    """Why trial ``number`` is pruned after ``n_items`` prompts, with the rule's numbers: paired
    racing against the incumbent (:mod:`moa_search.search.racing`), or the median rule — the
    median over the other complete trials (Optuna's median pruner, one objective) or the other
    counted trials (the study's own rule, several objectives) at that rung."""
    from moa_search.search.racing import RACING_Z, uses_racing

    if uses_racing(spec):
        return (
            f"win rate {win_rate:.3f} after {n_items} prompts, significantly worse than the "
            f"incumbent on the same prompts (paired racing, z = {RACING_Z})"
        )
    states = (
        (TrialState.COMPLETE,)
        if len(study.directions) == 1
        else (TrialState.COMPLETE, TrialState.PRUNED)
    )
    others = rung_values(study.get_trials(deepcopy=False, states=states), n_items, number)
    median = f" {statistics.median(others):.3f}" if others else ""
    return (
        f"win rate {win_rate:.3f} after {n_items} prompts, below the median{median} of "
        f"{len(others)} other trials there"
    )


def fmt_duration(seconds: float) -> str:
    """``42s``, ``3m05s`` or ``1h02m``."""
    s = max(0, round(seconds))
    if s >= 3600:
        h, rest = divmod(s, 3600)
        return f"{h}h{rest // 60:02d}m"
    m, s = divmod(s, 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def best_so_far(records: Sequence[TrialRecord]) -> TrialRecord | None:
    """The complete trial with the highest win rate; on ties the earliest keeps it, so the
    "best" a display shows changes only when a trial does strictly better."""
    best: TrialRecord | None = None
    for r in sorted(records, key=lambda r: r.number):
        if r.state != "complete" or not r.counts or r.win_rate is None:
            continue
        if best is None or r.win_rate > (best.win_rate or 0.0):
            best = r
    return best


def trial_state(record: TrialRecord) -> str:
    """A trial's state for people: Optuna's, or ``repeat`` / ``invalid`` for proposals that
    made no call."""
    if record.duplicate_of is not None:
        return "repeat"
    if record.invalid is not None:
        return "invalid"
    return record.state


def spend_text(
    spent_usd: float, spent_tokens: int, max_usd: float | None, max_tokens: int | None
) -> str:
    """``$0.0123 of $1.00 (1%), 4,321 tok`` — the spend against the budget where it has one."""
    usd = f"${spent_usd:.4f}"
    if max_usd is not None:
        usd += f" of ${max_usd:g} ({spent_usd / max_usd:.0%})" if max_usd > 0 else f" of ${0:g}"
    tok = f"{spent_tokens:,} tok"
    if max_tokens is not None:
        tok += f" of {max_tokens:,} ({spent_tokens / max_tokens:.0%})" if max_tokens else ""
    return f"{usd}, {tok}"


def eta_seconds(
    *,
    elapsed_s: float,
    done_now: int,
    done_at_start: int,
    target: int,
    timeout_s: float | None = None,
) -> float | None:
    """Seconds left: this run's mean time per counted trial times the trials left (at most
    the time left before ``timeout_s``); ``None`` before this run counted a trial."""
    ran = done_now - done_at_start
    left = max(0, target - done_now)
    if left == 0:
        return 0.0
    eta = elapsed_s / ran * left if ran > 0 else None
    if timeout_s is not None:
        remaining = max(0.0, timeout_s - elapsed_s)
        eta = remaining if eta is None else min(eta, remaining)
    return eta


def budget_reached(
    totals: StudyTotals,
    *,
    target: int,
    max_usd: float | None = None,
    max_tokens: int | None = None,
) -> str | None:
    """Which of the study's budgets is reached, in words, or ``None`` (the same tests, in the
    same order, as the study driver's)."""
    if totals.trials >= target:
        return f"the trial budget is reached: {totals.trials} of {target} trials"
    if totals.started >= 5 * target + 20:
        return (
            f"the sampler kept proposing invalid or repeated mixtures ({totals.started} proposals)"
        )
    if max_usd is not None and totals.spent_usd >= max_usd:
        return f"the dollar budget is spent: ${totals.spent_usd:.4f} of ${max_usd:g}"
    if max_tokens is not None and totals.spent_tokens >= max_tokens:
        return f"the token budget is spent: {totals.spent_tokens:,} of {max_tokens:,} tokens"
    return None


def stop_reason(
    totals: StudyTotals,
    *,
    target: int,
    max_usd: float | None = None,
    max_tokens: int | None = None,
    timed_out: bool = False,
) -> str:
    """Why a search stopped, in words."""
    reached = budget_reached(totals, target=target, max_usd=max_usd, max_tokens=max_tokens)
    if reached is not None:
        return reached
    if timed_out:
        return "the time limit is reached"
    return "stopped before the budget was reached"
