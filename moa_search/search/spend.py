"""The hard budget while a study spends: the meter a spec implies (:func:`meter_for`), what a
study has spent so far (:func:`study_spend`), a phase of spending under the meter
(:func:`spend_phase`) and a trial the budget stopped (:func:`trial_stopped`). What a study will
spend before it spends is :func:`moa_search.search.plan.project`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from moa_search.config.study import StudySpec
from moa_search.errors import BudgetExhausted, CacheError, MoaSearchError
from moa_search.runtime.budget import Spend, SpendMeter
from moa_search.search.records import (
    FinalEvaluation,
    HoldoutVerdict,
    StudyTotals,
    TrialRecord,
    TrialWriter,
    add_other_spend,
    other_spend,
)

if TYPE_CHECKING:
    import optuna

    from moa_search.search.session import SearchSession

__all__ = ["meter_for", "spend_phase", "study_spend", "trial_stopped"]


def meter_for(spec: StudySpec) -> SpendMeter:
    """The hard budget of ``spec``: its ``max_usd``, ``max_tokens`` and ``timeout_s``."""
    b = spec.budget
    return SpendMeter(max_usd=b.max_usd, max_tokens=b.max_tokens, timeout_s=b.timeout_s)


def study_spend(study: optuna.Study) -> Spend:
    """Everything a study spent, read from storage: its trials (failed ones too), the stored
    final evaluation or held-out verdict, and spend outside both (a verdict the budget
    stopped)."""
    t = StudyTotals.of(TrialRecord.all(study))
    total = Spend(t.spent_usd, t.spent_tokens, t.model_calls)
    verdict, final = HoldoutVerdict.load(study), FinalEvaluation.load(study)
    if verdict is not None:  # its spend includes the chosen mixture's on the held-out split
        total += Spend(verdict.spent_usd, verdict.spent_tokens, verdict.model_calls)
    elif final is not None:
        total += Spend(final.spent_usd, final.spent_tokens, final.model_calls)
    usd, tokens, calls = other_spend(study)
    return total + Spend(usd, tokens, calls)


@contextlib.contextmanager
def spend_phase(session: SearchSession, phase: str) -> Iterator[None]:
    """A phase of spending under the session's hard budget (its clock keeps running).

    The meter's prior spend is re-read from storage, so the study's earlier spend counts.
    When the budget refuses a call inside the phase, what the phase spent (which no record
    holds) is added to the study's record, and the :class:`BudgetExhausted` goes on.
    """
    meter, study = session.budget, session.study()
    meter.start(study_spend(study), restart_clock=False)
    meter.phase = phase
    try:
        yield
    except BudgetExhausted:
        lost = meter.session_spent
        if lost.calls:
            add_other_spend(study, lost.usd, lost.tokens, lost.calls)
        raise


def trial_stopped(trial: optuna.Trial, exc: MoaSearchError, spent: Spend) -> None:
    """Record on a trial that the budget (or a broken response cache) stopped it, and what it
    spent until then; other errors are left as they are."""
    if isinstance(exc, BudgetExhausted | CacheError):
        TrialWriter(trial).failed(str(exc), spent.usd, spent.tokens, spent.calls)
