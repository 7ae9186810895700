"""What a study's report shows, as typed data: :func:`build_view` reads the study into a
:class:`ReportView`, which :mod:`~moa_search.report.figures` draws and
:mod:`~moa_search.report.render` writes as HTML.

Pure: the study is read (through :mod:`moa_search.search.records` and
:mod:`moa_search.search.choose`, never its raw attributes) and nothing is written or called.
The view holds:

- a summary (trials by state, objectives, sampler, dataset hash, storage without password);
- the complete trials, the study's Pareto front and the chosen trial (the spec's ``choose`` rule
  on the front), with the axis the Pareto plot uses: cost per prompt, or tokens when every cost
  is 0;
- the role analysis of :func:`moa_search.analysis.analyze` as table rows — or a note when the
  study could not be analysed;
- parameter importances (Optuna's fANOVA, seeded, on win rate) — or a note;
- the trials of the optimization history;
- the chosen mixture as YAML (or the trial's params) with its full-dataset metrics;
- the calls summary: model calls made against those a cache-less search would have made;
- the held-out verdict (:class:`~moa_search.search.records.HoldoutVerdict`): the chosen mixture
  and the baselines on the held-out prompts, and what that means in words — or ``None``;
- which proposers the chosen mixture's aggregator uses
  (:class:`~moa_search.analysis.attribution.AttributionResult`, computed by the caller) — or
  ``None``.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import optuna
import yaml

from moa_search._version import package_version
from moa_search.analysis import AnalysisResult
from moa_search.analysis.attribution import AttributionResult
from moa_search.analysis.importance import (
    IMPORTANCE_EVALUATOR,
    importance_evaluator,
    importance_vs_roles,
    param_importances,
    win_rate_target,
)
from moa_search.config.study import OBJECTIVES, StudySpec
from moa_search.judges import WinRate
from moa_search.search.choose import choose_trial, pareto_front
from moa_search.search.records import (
    FinalEvaluation,
    HoldoutVerdict,
    PairedDifference,
    StudyTotals,
    TrialRecord,
    study_dataset_hash,
)
from moa_search.search.storage import redact_url
from moa_search.search.verdict import conclusion

__all__ = [
    "IMPORTANCE_EVALUATOR",
    "CallsView",
    "ChosenView",
    "CostAxis",
    "ImportanceView",
    "ReportView",
    "RoleRow",
    "RolesView",
    "Summary",
    "VerdictRow",
    "VerdictView",
    "build_view",
    "importance_evaluator",
    "win_rate_target",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Summary:
    """The study at a glance; ``storage`` has no password."""

    states: Mapping[str, int]
    objectives: str
    choice_rule: str
    judge: str
    baseline: str
    sampler: str
    pruner: str
    seed: int
    dataset: str
    dataset_hash: str | None
    storage: str | None


@dataclass(frozen=True)
class CostAxis:
    """The Pareto plot's x: dollars per 1,000 prompts (per-prompt costs are fractions of a cent)
    or, when every cost is 0, tokens per prompt."""

    metric: Literal["cost_usd", "tokens"]
    title: str

    @property
    def is_cost(self) -> bool:
        return self.metric == "cost_usd"

    def of(self, record: TrialRecord) -> float | None:
        """A trial's x, or ``None`` without metrics."""
        if record.metrics is None:
            return None
        value = record.metric(self.metric)
        return value * 1000.0 if self.is_cost else value


@dataclass(frozen=True)
class RoleRow:
    """One row of the role table: effects and intervals in win-rate units, ``layer`` as shown
    (counted from 1; "any" for proposers of every layer, "–" for the aggregator)."""

    role: str
    layer: str
    model: str
    effect: float | None
    ci_low: float | None
    ci_high: float | None
    significant: bool
    mean_with: float | None
    n_with: int
    mean_without: float | None
    n_without: int

    @property
    def sign(self) -> Literal["pos", "neg", ""]:
        """``pos``/``neg`` for an effect whose interval excludes 0, else empty."""
        if not self.significant or not self.effect:
            return ""
        return "pos" if self.effect > 0 else "neg"

    @property
    def where(self) -> str:
        """The role in words, for the forest plot's labels."""
        if self.role == "aggregator":
            return "aggregator"
        return "proposer, any layer" if self.layer == "any" else f"proposer, layer {self.layer}"


@dataclass(frozen=True)
class RolesView:
    """A role analysis, as the report shows it."""

    analysis: AnalysisResult
    rows: tuple[RoleRow, ...]

    @property
    def percent(self) -> int:
        """The intervals' confidence, in percent."""
        return round(self.analysis.confidence * 100)

    @classmethod
    def of(cls, analysis: AnalysisResult) -> RolesView:
        rows = []
        for r in analysis.roles:
            if r.layer is not None:
                layer = str(r.layer + 1)
            else:
                layer = "any" if r.role == "proposer" else "–"
            rows.append(
                RoleRow(
                    role=r.role,
                    layer=layer,
                    model=r.model,
                    effect=r.effect,
                    ci_low=r.ci_low,
                    ci_high=r.ci_high,
                    significant=r.significant,
                    mean_with=r.mean_with,
                    n_with=r.n_with,
                    mean_without=r.mean_without,
                    n_without=r.n_without,
                )
            )
        return cls(analysis=analysis, rows=tuple(rows))


@dataclass(frozen=True)
class ImportanceView:
    """Parameter importances for win rate (most important first), or ``None`` and why not."""

    values: Mapping[str, float] | None
    note: str
    seed: int
    evaluator: str = IMPORTANCE_EVALUATOR
    #: Why the importances disagree with the role analysis, when they do.
    explanation: str | None = None


@dataclass(frozen=True)
class ChosenView:
    """The chosen trial, its full-dataset re-evaluation (``final``, when it is this trial's),
    and its mixture file's text — or, when there is none, its params as YAML and why."""

    trial: TrialRecord
    final: FinalEvaluation | None
    mixture_yaml: str | None
    params_yaml: str
    mixture_note: str | None


@dataclass(frozen=True)
class CallsView:
    """Spend and calls over every trial, and the full-dataset re-evaluation's."""

    totals: StudyTotals
    final: FinalEvaluation | None

    @property
    def saved(self) -> float:
        """The share of a cache-less search's calls the cache saved."""
        t = self.totals
        return 1.0 - t.model_calls / t.calls_total if t.calls_total else 0.0


@dataclass(frozen=True)
class VerdictRow:
    """One mixture judged on the held-out prompts: ``name`` is ``chosen`` or a baseline's;
    ``diff`` is its paired difference from the chosen mixture (``None`` for the chosen one)."""

    name: str
    mixture: str
    win_rate: WinRate
    diff: PairedDifference | None
    calls_per_prompt: int
    cost_per_prompt: float


@dataclass(frozen=True)
class VerdictView:
    """The held-out verdict as the report shows it: the chosen mixture's row first, then the
    baselines' (best single model, Self-MoA, layer-wise rule, incumbent), and the conclusion."""

    n_search: int
    n_holdout: int
    rows: tuple[VerdictRow, ...]
    conclusion: str


#: The order of the verdict table's baselines; any other baseline follows them.
VERDICT_ORDER = ("best_single", "self_moa", "layerwise_rule", "incumbent")


def _verdict_view(v: HoldoutVerdict | None) -> VerdictView | None:
    if v is None:
        return None
    names = [n for n in VERDICT_ORDER if n in v.baselines]
    names += [n for n in v.baselines if n not in VERDICT_ORDER]
    entries = [("chosen", v.chosen), *((n, v.baselines[n]) for n in names)]
    rows = tuple(
        VerdictRow(
            name=name,
            mixture=e.mixture,
            win_rate=e.win_rate,
            diff=e.diff_vs_chosen,
            calls_per_prompt=e.calls_per_prompt,
            cost_per_prompt=e.cost_per_prompt,
        )
        for name, e in entries
    )
    return VerdictView(v.n_search, v.n_holdout, rows, conclusion(v))


@dataclass(frozen=True)
class ReportView:
    """Everything a study's report shows (see the module docstring).

    ``n_trials`` counts every trial in storage; ``complete`` holds the complete trials with a
    win rate, ``front`` those of the study's Pareto front, ``chosen`` the spec's choice on the
    front; ``history`` the complete and pruned trials with a win rate (``has_history``: some
    trial has one). Without an analysis ``roles`` is ``None`` and ``analysis_note`` may say why;
    without a held-out verdict ``verdict`` is ``None``.
    """

    title: str
    generated: str
    version: str
    summary: Summary
    n_trials: int
    complete: tuple[TrialRecord, ...]
    front: tuple[TrialRecord, ...]
    chosen: TrialRecord | None
    cost_axis: CostAxis
    history: tuple[TrialRecord, ...]
    has_history: bool
    importance: ImportanceView
    chosen_view: ChosenView | None
    calls: CallsView
    roles: RolesView | None = None
    analysis_note: str | None = None
    verdict: VerdictView | None = None
    attribution: AttributionResult | None = None

    @property
    def analysis(self) -> AnalysisResult | None:
        return self.roles.analysis if self.roles is not None else None


def _summary(
    study: optuna.Study,
    spec: StudySpec,
    records: Sequence[TrialRecord],
    storage_url: str | None,
) -> Summary:
    states: dict[str, int] = {}
    for r in records:
        key = "invalid" if r.invalid is not None else r.state
        states[key] = states.get(key, 0) + 1
    if spec.weights is not None:
        goal = "maximize " + " + ".join(f"{w:g}×{n}" for n, w in spec.weights.items())
    else:
        goal = ", ".join(f"{n} ({OBJECTIVES.get(n, '?')})" for n in spec.objective_names)
    return Summary(
        states=dict(sorted(states.items())),
        objectives=goal,
        choice_rule=spec.choose.rule,
        judge=spec.judge.kind,
        baseline=spec.baseline.kind + (f" {spec.baseline.model}" if spec.baseline.model else ""),
        sampler=spec.sampler,
        pruner=spec.pruner,
        seed=spec.seed,
        dataset=str(spec.dataset),
        dataset_hash=study_dataset_hash(study),
        storage=redact_url(storage_url) if storage_url else None,
    )


def _cost_axis(complete: Sequence[TrialRecord]) -> CostAxis:
    if any(r.metric("cost_usd") > 0 for r in complete):
        return CostAxis("cost_usd", "cost per 1,000 prompts (USD)")
    return CostAxis("tokens", "tokens per prompt")


def _importances(study: optuna.Study, seed: int, analysis: AnalysisResult | None) -> ImportanceView:
    """fANOVA importances of the params for win rate (one method everywhere:
    :func:`moa_search.analysis.importance.param_importances`), or ``None`` and why not."""
    imp = param_importances(study, seed)
    why = importance_vs_roles(imp, analysis.roles) if analysis is not None else None
    return ImportanceView(imp.values, imp.note, seed, explanation=why)


def _chosen_view(
    chosen: TrialRecord | None,
    final: FinalEvaluation | None,
    mixture_yaml: str | None,
    mixture_note: str | None,
) -> ChosenView | None:
    if chosen is None:
        return None
    params = yaml.safe_dump(
        {"trial": chosen.number, "params": dict(chosen.params)}, sort_keys=False
    )
    return ChosenView(
        trial=chosen,
        final=final if final is not None and final.trial == chosen.number else None,
        mixture_yaml=mixture_yaml or None,
        params_yaml=params,
        mixture_note=mixture_note,
    )


def build_view(
    study: optuna.Study,
    spec: StudySpec,
    *,
    analysis: AnalysisResult | None = None,
    chosen_mixture_yaml: str | None = None,
    mixture_note: str | None = None,
    analysis_note: str | None = None,
    storage_url: str | None = None,
    importance_seed: int = 0,
    attribution: AttributionResult | None = None,
) -> ReportView:
    """What the study's report shows (see the module docstring); the arguments are those of
    :func:`moa_search.report.build_report`. Works on a study with no complete trial."""
    records = TrialRecord.all(study)
    complete = tuple(r for r in records if r.state == "complete" and r.win_rate is not None)
    front = tuple(r for r in pareto_front(study) if r.win_rate is not None)
    chosen = choose_trial(study, spec) if complete else None
    final = FinalEvaluation.load(study)
    history = tuple(
        r for r in records if r.state in ("complete", "pruned") and r.win_rate is not None
    )
    return ReportView(
        title=f"moa-search report: {study.study_name}",
        generated=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        version=package_version(),
        summary=_summary(study, spec, records, storage_url),
        n_trials=len(records),
        complete=complete,
        front=front,
        chosen=chosen,
        cost_axis=_cost_axis(complete),
        history=history,
        has_history=any(r.win_rate is not None for r in records),
        importance=_importances(study, importance_seed, analysis),
        chosen_view=_chosen_view(chosen, final, chosen_mixture_yaml, mixture_note),
        calls=CallsView(StudyTotals.of(records), final),
        roles=RolesView.of(analysis) if analysis is not None else None,
        analysis_note=analysis_note,
        verdict=_verdict_view(HoldoutVerdict.load(study)),
        attribution=attribution,
    )
