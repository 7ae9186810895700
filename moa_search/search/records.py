"""The typed records of a study: one per trial, the study's totals, the final evaluation and
the held-out verdict.

A study in storage keeps what each trial did as Optuna user attributes. This module is the only
place that writes or reads them: the study driver writes through :class:`TrialWriter`; report,
analysis, export and the CLI read :class:`TrialRecord` (``TrialRecord.of(frozen_trial)``),
:class:`StudyTotals`, :class:`FinalEvaluation` and :class:`HoldoutVerdict`. Nothing parses
display strings: the mixture's roles are in :class:`Composition`, its one-line description is
for people only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from moa_search.search.objective import Evaluation, ItemOutcome
from moa_search.search.space import Composition
from moa_search.search.stored import (
    PairedDifference,
    VerdictEntry,
    evaluation_from_dict,
)

__all__ = [
    "Composition",
    "FinalEvaluation",
    "HoldoutVerdict",
    "PairedDifference",
    "StudyTotals",
    "TrialRecord",
    "TrialWriter",
    "VerdictEntry",
    "add_other_spend",
    "enqueue_unseen",
    "evaluated_with_key",
    "evaluation_from_dict",
    "other_spend",
    "record_split",
    "record_study",
    "study_dataset_hash",
    "study_holdout_ids",
]

TrialStateName = Literal["complete", "pruned", "fail", "running", "waiting"]

# The user-attribute keys, in one place.
_METRICS = "metrics"
_MIXTURE = "mixture"
_COMPOSITION = "composition"
_KEY = "mixture_key"
_WORKER = "worker"
_DUPLICATE_OF = "duplicate_of"
_INVALID = "invalid"
_PRUNED_BECAUSE = "pruned_because"
_N_ITEMS = "n_items"
_RUNG = "rung/"
_SPEND = ("spent_usd", "spent_tokens", "model_calls", "calls_total", "attempts")
_FINAL = "final"
_SPEC = "spec"
_DATASET_HASH = "dataset_hash"
_VERDICT = "verdict"
_HOLDOUT_IDS = "holdout_ids"
_PREFERENCES = "preferences"
_FAILED = "failed"
_OTHER_SPEND = "spend/other"


@dataclass(frozen=True)
class TrialRecord:
    """What one trial of a study did, read from storage.

    ``state`` is Optuna's; a trial that repeated an earlier mixture has ``duplicate_of`` (its
    metrics are that trial's, it made no call and does not count), one whose proposal was not a
    valid mixture has ``invalid`` (the reason; it made no call either). Both are stored as
    failed trials (studies stored before kept repeats as complete copies and invalid proposals
    as pruned), so Optuna's ``best_trials`` and dashboards see only real evaluations.
    ``pruned_because`` is the pruning rule's reason. ``metrics`` is the
    evaluation on the prompts seen so far (``n_items`` of them), ``rungs`` the win rate after
    each rung (prompts seen -> win rate).
    """

    number: int
    state: TrialStateName
    params: Mapping[str, Any]
    values: tuple[float, ...] | None
    mixture: str | None = None
    composition: Composition | None = None
    mixture_key: str | None = None
    metrics: Evaluation | None = None
    n_items: int = 0
    rungs: Mapping[int, float] = field(default_factory=dict)
    spent_usd: float = 0.0
    spent_tokens: int = 0
    model_calls: int = 0
    calls_total: int = 0
    attempts: int = 0
    duplicate_of: int | None = None
    invalid: str | None = None
    worker: str | None = None
    pruned_because: str | None = None
    failed: str | None = None
    #: Per-prompt judge preferences (prompt id -> preference), for paired racing.
    preferences: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialRecord:
        """The record of a trial in storage."""
        a = trial.user_attrs
        metrics = a.get(_METRICS)
        comp = a.get(_COMPOSITION)
        dup = a.get(_DUPLICATE_OF)
        return cls(
            number=trial.number,
            state=_state_name(trial.state),
            params=dict(trial.params),
            values=tuple(trial.values) if trial.values else None,
            mixture=a.get(_MIXTURE),
            composition=Composition.from_dict(comp) if comp else None,
            mixture_key=a.get(_KEY),
            metrics=(
                evaluation_from_dict(metrics)
                if isinstance(metrics, Mapping) and "win_rate" in metrics
                else None
            ),
            n_items=int(a.get(_N_ITEMS) or 0),
            rungs={int(k[len(_RUNG) :]): float(v) for k, v in a.items() if k.startswith(_RUNG)},
            spent_usd=float(a.get("spent_usd") or 0.0),
            spent_tokens=int(a.get("spent_tokens") or 0),
            model_calls=int(a.get("model_calls") or 0),
            calls_total=int(a.get("calls_total") or 0),
            attempts=int(a.get("attempts") or 0),
            duplicate_of=int(dup) if dup is not None else None,
            invalid=a.get(_INVALID),
            worker=a.get(_WORKER),
            pruned_because=a.get(_PRUNED_BECAUSE),
            failed=a.get(_FAILED),
            preferences={str(k): float(v) for k, v in (a.get(_PREFERENCES) or {}).items()},
        )

    @classmethod
    def all(cls, study: optuna.Study) -> list[TrialRecord]:
        """Every trial of a study, in order."""
        return [cls.of(t) for t in study.get_trials(deepcopy=False)]

    @property
    def counts(self) -> bool:
        """Whether the trial counts towards the budget: finished, neither invalid nor a repeat."""
        return (
            self.state in ("complete", "pruned")
            and self.invalid is None
            and self.duplicate_of is None
        )

    @property
    def is_repeat(self) -> bool:
        return self.duplicate_of is not None

    @property
    def reason(self) -> str | None:
        """Why the trial is not a complete evaluation, in words (``None`` when it is)."""
        if self.duplicate_of is not None:
            return f"repeats trial {self.duplicate_of} (no call made; not counted)"
        if self.invalid is not None:
            return f"{self.invalid} (no call made; not counted)"
        if self.state == "pruned":
            return self.pruned_because or "stopped by the pruner"
        if self.state == "fail":
            return self.failed or "failed (see the log)"
        return None

    @property
    def win_rate(self) -> float | None:
        """The mean win rate so far, or ``None`` before any evaluation."""
        return self.metrics.win_rate.mean if self.metrics is not None else None

    def metric(self, name: str) -> float:
        """An objective's value by name (0 when the trial has no metrics)."""
        return self.metrics.value(name) if self.metrics is not None else 0.0


def _state_name(state: TrialState) -> TrialStateName:
    names: dict[TrialState, TrialStateName] = {
        TrialState.COMPLETE: "complete",
        TrialState.PRUNED: "pruned",
        TrialState.FAIL: "fail",
        TrialState.RUNNING: "running",
        TrialState.WAITING: "waiting",
    }
    return names[state]


class TrialWriter:
    """Writes a running trial's attributes; the only writer (see :class:`TrialRecord`)."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def invalid(self, reason: str) -> None:
        self.trial.set_user_attr(_INVALID, reason)

    def mixture(self, description: str, composition: Composition, key: str, worker: str) -> None:
        self.trial.set_user_attr(_MIXTURE, description)
        self.trial.set_user_attr(_COMPOSITION, composition.to_dict())
        self.trial.set_user_attr(_KEY, key)
        self.trial.set_user_attr(_WORKER, worker)

    def repeat_of(self, original: TrialRecord) -> None:
        """This trial repeats ``original``: it takes its metrics and makes no call."""
        self.trial.set_user_attr(_DUPLICATE_OF, original.number)
        self.trial.set_user_attr(
            _METRICS, original.metrics.to_dict() if original.metrics is not None else None
        )
        self.trial.set_user_attr(_N_ITEMS, original.n_items)

    def evaluation(self, ev: Evaluation) -> None:
        self.trial.set_user_attr(_METRICS, ev.to_dict())
        self.trial.set_user_attr(_N_ITEMS, ev.n)
        for key in _SPEND:
            self.trial.set_user_attr(key, getattr(ev, key))

    def preferences(self, outcomes: Sequence[ItemOutcome]) -> None:
        """Each prompt's judge preference so far (prompts the judge failed on are left out)."""
        prefs = {o.item_id: o.preference for o in outcomes if o.preference is not None}
        self.trial.set_user_attr(_PREFERENCES, prefs)

    def rung(self, n_items: int, win_rate: float) -> None:
        self.trial.set_user_attr(f"{_RUNG}{n_items}", win_rate)

    def pruned(self, reason: str) -> None:
        """Why the pruning rule stops this trial."""
        self.trial.set_user_attr(_PRUNED_BECAUSE, reason)

    def failed(self, reason: str, spent_usd: float, spent_tokens: int, model_calls: int) -> None:
        """The trial stopped before its end (the budget ran out): why, and what it spent."""
        self.trial.set_user_attr(_FAILED, reason)
        self.trial.set_user_attr("spent_usd", spent_usd)
        self.trial.set_user_attr("spent_tokens", spent_tokens)
        self.trial.set_user_attr("model_calls", model_calls)


def add_other_spend(study: optuna.Study, usd: float, tokens: int, calls: int) -> None:
    """Add spend made outside any trial and not stored elsewhere (a verdict the budget
    stopped) to the study's record of it."""
    usd0, tokens0, calls0 = other_spend(study)
    study.set_user_attr(_OTHER_SPEND, [usd0 + usd, tokens0 + tokens, calls0 + calls])


def other_spend(study: optuna.Study) -> tuple[float, int, int]:
    """Spend outside trials recorded by :func:`add_other_spend`: (dollars, tokens, calls)."""
    v = study.user_attrs.get(_OTHER_SPEND) or (0.0, 0, 0)
    return float(v[0]), int(v[1]), int(v[2])


def evaluated_with_key(trials: Sequence[FrozenTrial], key: str) -> TrialRecord | None:
    """The trial among ``trials`` that evaluated the mixture with this key (not a repeat)."""
    for t in trials:
        if t.user_attrs.get(_KEY) == key and _DUPLICATE_OF not in t.user_attrs:
            return TrialRecord.of(t)
    return None


def enqueue_unseen(
    study: optuna.Study, key_of: Callable[[optuna.Trial], str], seed: int, tries: int = 64
) -> bool:
    """After a repeated proposal: queue a random mixture no trial has proposed yet as the
    study's next trial. A repeat is stored as failed, so it teaches the sampler nothing, and a
    sampler sure of one mixture would propose it again and again; this keeps the study moving.

    ``key_of`` builds a trial's mixture and returns its key (raising ``ValueError`` for an
    invalid proposal). Returns False when ``tries`` random proposals found nothing new.
    """
    seen = {t.user_attrs.get(_KEY) for t in study.get_trials(deepcopy=False)}
    scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(tries):
        trial = scratch.ask()
        try:
            key = key_of(trial)
        except ValueError:  # an invalid proposal
            continue
        if key not in seen:
            study.enqueue_trial(dict(trial.params), skip_if_exists=True)
            return True
    return False


def rung_values(trials: Sequence[FrozenTrial], n_items: int, exclude: int) -> list[float]:
    """The win rates other counted trials had after ``n_items`` prompts (for pruning)."""
    key = f"{_RUNG}{n_items}"
    return [
        float(t.user_attrs[key])
        for t in trials
        if key in t.user_attrs and t.number != exclude and _DUPLICATE_OF not in t.user_attrs
    ]


@dataclass(frozen=True)
class StudyTotals:
    """Spend and calls over every trial in storage (all workers, all sessions).

    ``trials`` counts the finished trials that count towards the budget (invalid proposals and
    repeats do not); ``started`` every trial.
    """

    trials: int
    started: int
    spent_usd: float
    spent_tokens: int
    model_calls: int
    calls_total: int
    attempts: int

    @classmethod
    def of(cls, records: Sequence[TrialRecord]) -> StudyTotals:
        return cls(
            trials=sum(1 for r in records if r.counts),
            started=len(records),
            spent_usd=sum(r.spent_usd for r in records),
            spent_tokens=sum(r.spent_tokens for r in records),
            model_calls=sum(r.model_calls for r in records),
            calls_total=sum(r.calls_total for r in records),
            attempts=sum(r.attempts for r in records),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FinalEvaluation:
    """The chosen trial re-evaluated, stored with the study: on the held-out prompts
    (``holdout``, ``n_items`` of them) when the study holds some out, else on the whole dataset
    (as every study stored before held-out splits)."""

    trial: int
    n_items: int
    metrics: Evaluation
    model_calls: int = 0
    calls_total: int = 0
    spent_usd: float = 0.0
    spent_tokens: int = 0
    holdout: bool = False

    @classmethod
    def load(cls, study: optuna.Study) -> FinalEvaluation | None:
        d = study.user_attrs.get(_FINAL)
        if not d:
            return None
        return cls(
            trial=int(d["trial"]),
            n_items=int(d["n_items"]),
            metrics=evaluation_from_dict(d["metrics"]),
            model_calls=int(d.get("model_calls", 0)),
            calls_total=int(d.get("calls_total", 0)),
            spent_usd=float(d.get("spent_usd", 0.0)),
            spent_tokens=int(d.get("spent_tokens", 0)),
            holdout=bool(d.get("holdout", False)),
        )

    def store(self, study: optuna.Study) -> None:
        study.set_user_attr(_FINAL, self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "n_items": self.n_items,
            "metrics": self.metrics.to_dict(),
            "model_calls": self.model_calls,
            "calls_total": self.calls_total,
            "spent_usd": self.spent_usd,
            "spent_tokens": self.spent_tokens,
            "holdout": self.holdout,
        }


def record_study(study: optuna.Study, spec: Mapping[str, Any], dataset_hash: str) -> None:
    """Store what the study was run with: its spec (without the pool) and the dataset's hash."""
    study.set_user_attr(_SPEC, dict(spec))
    study.set_user_attr(_DATASET_HASH, dataset_hash)


def study_dataset_hash(study: optuna.Study) -> str | None:
    """The sha256 of the dataset the study was run on, as the study driver stored it."""
    h = study.user_attrs.get(_DATASET_HASH)
    return str(h) if h else None


def record_split(study: optuna.Study, holdout_ids: Sequence[str]) -> None:
    """Store the ids of the prompts the study holds out of its search."""
    study.set_user_attr(_HOLDOUT_IDS, list(holdout_ids))


def study_holdout_ids(study: optuna.Study) -> tuple[str, ...] | None:
    """The held-out ids the study stored (``None`` for a study stored before splits)."""
    ids = study.user_attrs.get(_HOLDOUT_IDS)
    return tuple(str(i) for i in ids) if ids is not None else None


@dataclass(frozen=True)
class HoldoutVerdict:
    """The chosen trial and the baselines, judged on the held-out prompts, stored with the study.

    ``baselines`` maps ``best_single``, ``self_moa``, ``layerwise_rule`` (and ``incumbent`` when
    the spec names one) to their entries. ``solo_win_rates`` are each candidate model's win
    rates answering alone on the search split (which picked ``best_single``);
    ``rule_win_rates[i]`` are the win rates as proposers in layer ``i + 1`` the layer-wise rule
    selected on (see :mod:`moa_search.search.baselines`). The spend is the verdict's own.
    """

    trial: int
    n_search: int
    n_holdout: int
    chosen: VerdictEntry
    baselines: Mapping[str, VerdictEntry]
    solo_win_rates: Mapping[str, float]
    rule_win_rates: tuple[Mapping[str, float], ...]
    model_calls: int = 0
    calls_total: int = 0
    spent_usd: float = 0.0
    spent_tokens: int = 0

    @classmethod
    def load(cls, study: optuna.Study) -> HoldoutVerdict | None:
        d = study.user_attrs.get(_VERDICT)
        if not d:
            return None
        return cls(
            trial=int(d["trial"]),
            n_search=int(d["n_search"]),
            n_holdout=int(d["n_holdout"]),
            chosen=VerdictEntry.from_dict(d["chosen"]),
            baselines={k: VerdictEntry.from_dict(v) for k, v in d["baselines"].items()},
            solo_win_rates={str(k): float(v) for k, v in d["solo_win_rates"].items()},
            rule_win_rates=tuple(
                {str(k): float(v) for k, v in layer.items()} for layer in d["rule_win_rates"]
            ),
            **{k: d[k] for k in _SPEND[:4] if k in d},
        )

    def store(self, study: optuna.Study) -> None:
        study.set_user_attr(_VERDICT, self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "n_search": self.n_search,
            "n_holdout": self.n_holdout,
            "chosen": self.chosen.to_dict(),
            "baselines": {k: v.to_dict() for k, v in self.baselines.items()},
            "solo_win_rates": dict(self.solo_win_rates),
            "rule_win_rates": [dict(layer) for layer in self.rule_win_rates],
            **{k: getattr(self, k) for k in _SPEND[:4]},
        }

    def summary(self) -> dict[str, Any]:
        """What ``moa-search best --json`` prints."""
        return {
            "split": {"search": self.n_search, "holdout": self.n_holdout},
            "chosen": self.chosen.summary(),
            "baselines": {k: v.summary() for k, v in self.baselines.items()},
        }

    def cheaper_and_not_worse(self) -> list[VerdictEntry]:
        """Baselines cheaper than the chosen mixture that it does not significantly beat (the
        paired interval of their difference reaches 0 or above), cheapest first."""
        found = [
            b
            for b in self.baselines.values()
            if b.cheaper_than(self.chosen)
            and b.diff_vs_chosen is not None
            and b.diff_vs_chosen.ci_high >= 0
        ]
        return sorted(found, key=lambda b: (b.cost_per_prompt, b.calls_per_prompt))
