"""Parameter importances for win rate: one method everywhere, and why they can disagree with
the role analysis.

moa-search computes importances one way — Optuna's fANOVA evaluator, seeded, on win rate, over
the complete trials (:func:`param_importances`) — and names it wherever it shows them (the
report, ``moa-search analyze``). Other tools pick other evaluators and seeds (Optuna's own
default evaluator, optuna-dashboard's), so their numbers for the same study differ; that is a
difference of method, not of data.

Importances and the role analysis (:mod:`moa_search.analysis.roles`) answer different
questions. fANOVA fits a random forest to the raw Optuna parameters of the complete trials and
splits the variance of win rate among them: a slot such as ``proposer/1`` is not a model, and
with few trials the forest credits noise and interactions to whatever parameter it splits on.
The role analysis regresses win rate on which model fills each role, over complete and pruned
trials, with bootstrap intervals. :func:`importance_vs_roles` says so in words when the two
disagree.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from moa_search.analysis.roles import RoleEffect
from moa_search.search.records import TrialRecord

__all__ = [
    "IMPORTANCE_EVALUATOR",
    "Importances",
    "importance_evaluator",
    "importance_vs_roles",
    "param_importances",
    "win_rate_target",
]

log = logging.getLogger(__name__)

#: The importance evaluator moa-search uses everywhere, as it names it.
IMPORTANCE_EVALUATOR = "fANOVA"

#: An importance at least this large counts as "credited" when comparing with the roles.
_CREDITED = 0.1

_PROPOSER_PARAM = re.compile(r"(^|/)(proposer/\d+|samples/.+)$")


def importance_evaluator(seed: int) -> optuna.importance.BaseImportanceEvaluator:
    """The importance evaluator (:data:`IMPORTANCE_EVALUATOR`), seeded."""
    return optuna.importance.FanovaImportanceEvaluator(seed=seed)


def win_rate_target(trial: optuna.trial.FrozenTrial) -> float:
    """Win rate as an Optuna target (0 for a trial without metrics)."""
    return float(TrialRecord.of(trial).win_rate or 0.0)


@dataclass(frozen=True)
class Importances:
    """Parameter importances for win rate (most important first), or ``None`` and why not
    (``note``); ``n_trials`` complete trials were used."""

    values: Mapping[str, float] | None
    note: str
    seed: int
    n_trials: int
    evaluator: str = IMPORTANCE_EVALUATOR

    def to_dict(self) -> dict[str, Any]:
        return {
            "evaluator": self.evaluator,
            "seed": self.seed,
            "n_trials": self.n_trials,
            "values": dict(self.values) if self.values is not None else None,
            "note": self.note or None,
        }


def param_importances(study: optuna.Study, seed: int = 0) -> Importances:
    """fANOVA importances of the study's parameters for win rate (see the module docstring)."""
    n = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    if n < 2:
        return Importances(
            None,
            f"Parameter importances need at least 2 complete trials; the study has {n}.",
            seed,
            n,
        )
    try:
        values = optuna.importance.get_param_importances(
            study, evaluator=importance_evaluator(seed), target=win_rate_target
        )
    except Exception as exc:  # noqa: BLE001 - importances are optional; the caller goes on
        log.info("no parameter importances: %s", exc)
        return Importances(None, f"Parameter importances could not be computed: {exc}", seed, n)
    if not values:
        return Importances(
            None,
            "Parameter importances: no parameter was varied in every complete trial.",
            seed,
            n,
        )
    return Importances({str(k): float(v) for k, v in values.items()}, "", seed, n)


def _kind(param: str) -> str | None:
    """The role a parameter chooses a model for (``proposer``/``aggregator``), else ``None``
    (structure: layer and proposer counts, temperatures, the aggregation mode)."""
    if param == "aggregator":
        return "aggregator"
    if _PROPOSER_PARAM.search(param):
        return "proposer"
    return None


def importance_vs_roles(imp: Importances, roles: Sequence[RoleEffect]) -> str | None:
    """Why the importances and the role analysis disagree, in words, or ``None`` when they do
    not: a role kind (proposer, aggregator) whose parameters get at least 0.1 of the importance
    while no model in that role has an effect whose interval excludes 0, or the reverse."""
    if not imp.values or not roles:
        return None
    credited: dict[str, float] = {}
    for param, value in imp.values.items():
        kind = _kind(param)
        if kind is not None:
            credited[kind] = credited.get(kind, 0.0) + value
    found = {r.role for r in roles if r.significant}
    said: list[str] = []
    for kind in ("proposer", "aggregator"):
        params = [p for p in imp.values if _kind(p) == kind]
        share = credited.get(kind, 0.0)
        if share >= _CREDITED and kind not in found:
            names = ", ".join(f"{p} {imp.values[p]:.2f}" for p in params[:3])
            said.append(
                f"{imp.evaluator} credits the {kind} parameters ({names}) with {share:.2f} of "
                f"the variance of win rate, but the role analysis finds no {kind} whose effect's "
                "interval excludes 0"
            )
        elif share < _CREDITED / 2 and kind in found:
            said.append(
                f"the role analysis finds a {kind} effect whose interval excludes 0, but "
                f"{imp.evaluator} credits the {kind} parameters with only {share:.2f}"
            )
    if not said:
        return None
    text = "; ".join(said)
    text = "T" + text[1:] if text.startswith("the ") else text  # fANOVA keeps its case
    return (
        text
        + f". They answer different questions: {imp.evaluator} fits a random forest to the raw "
        f"parameters of the {imp.n_trials} complete trials and splits the variance of win rate "
        "among them (a slot such as proposer/1 is not a model, and with few trials the forest "
        "credits noise and interactions to whatever it splits on); the role analysis regresses "
        "win rate on which model fills each role, over complete and pruned trials, with "
        "bootstrap intervals. For which model helps where, read the role analysis."
    )
