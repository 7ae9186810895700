"""Study specs: what a search optimises, over what, with which judge and budget.

A study spec is a YAML (or JSON) file, validated like mixture files: every problem is one
:class:`~moa_search.errors.ConfigError` paragraph naming the file and the field. Paths inside it
(the pool, the dataset) are relative to the spec file.

Objectives are named metrics, each with a fixed direction:

========== ========= ==================================================
name       direction meaning
========== ========= ==================================================
win_rate   maximize  mean judge preference of the mixture over the baseline
diversity  maximize  mean pairwise embedding distance of proposer outputs
cost_usd   minimize  dollars per prompt at the pool's prices
tokens     minimize  tokens (in + out) per prompt
latency_s  minimize  seconds per prompt
========== ========= ==================================================

With ``weights`` instead of ``objectives`` the study maximises one weighted sum (give costs a
negative weight).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from moa_search.config.files import _validate, load_mapping
from moa_search.config.mixture import AgentSpec
from moa_search.config.pool import Pool, _Frozen, load_pool
from moa_search.errors import ConfigError

__all__ = [
    "OBJECTIVES",
    "BaselineSpec",
    "BudgetSpec",
    "ChooseSpec",
    "EvaluationSpec",
    "JudgeSpec",
    "SearchSpaceSpec",
    "StudySpec",
    "load_study_spec",
]

#: Every objective name and whether it is maximised.
OBJECTIVES: dict[str, Literal["maximize", "minimize"]] = {
    "win_rate": "maximize",
    "diversity": "maximize",
    "cost_usd": "minimize",
    "tokens": "minimize",
    "latency_s": "minimize",
}


class BaselineSpec(_Frozen):
    """What the mixture is compared with: one pool model answering alone, or the references."""

    kind: Literal["model", "references"] = "model"
    model: str | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.0
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] = 256

    @model_validator(mode="after")
    def _model_needed(self) -> BaselineSpec:
        if self.kind == "model" and not self.model:
            raise ValueError("a pool model alias in 'model' when kind is 'model'")
        return self

    def agent(self) -> AgentSpec:
        assert self.model is not None
        return AgentSpec(model=self.model, temperature=self.temperature, max_tokens=self.max_tokens)


class JudgeSpec(_Frozen):
    """Which judge decides each comparison (see :mod:`moa_search.judges`)."""

    kind: Literal["reference_embedding", "pairwise_llm", "exact_match", "callable", "recorded"]
    model: str | None = None
    both_orders: bool = False
    pattern: str | None = None
    function: str | None = None
    annotations: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _fields_needed(self) -> JudgeSpec:
        if self.kind == "pairwise_llm" and not self.model:
            raise ValueError("a pool model alias in 'model' for the pairwise_llm judge")
        if self.kind == "callable" and not self.function:
            raise ValueError("'function: package.module:function' for the callable judge")
        if self.kind == "recorded" and not self.annotations:
            raise ValueError(
                "'annotations': AlpacaEval annotations.json files for the recorded judge"
            )
        return self


class SearchSpaceSpec(_Frozen):
    """The mixtures a study may propose.

    A layer is ``min_proposers..max_proposers`` calls, each made by one of ``proposers``; a
    model making k of them contributes k samples (at most ``max_samples``), so subsets and
    Self-MoA (one model sampled k times) are both in the space. ``shared_proposers`` reuses one
    composition in every layer, as in the MoA paper (see :mod:`moa_search.search.space`).
    ``aggregation`` lists the aggregation modes to compare: ``synthesize`` and/or ``rank``.
    """

    min_layers: Annotated[int, Field(ge=0, le=8)] = 1
    max_layers: Annotated[int, Field(ge=0, le=8)] = 2
    proposers: tuple[str, ...] | None = None
    aggregators: tuple[str, ...] | None = None
    min_proposers: Annotated[int, Field(ge=1, le=64)] = 1
    max_proposers: Annotated[int, Field(ge=1, le=64)] = 4
    max_samples: Annotated[int, Field(ge=1, le=16)] = 2
    shared_proposers: bool = True
    temperatures: tuple[Annotated[float, Field(ge=0, le=2)], ...] | None = None
    default_temperature: Annotated[float, Field(ge=0, le=2)] = 0.7
    proposer_max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] = 256
    aggregator_max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] = 512
    aggregator_temperature: Annotated[float, Field(ge=0, le=2)] = 0.3
    aggregation: tuple[Literal["synthesize", "rank"], ...] = ("synthesize",)

    @model_validator(mode="after")
    def _ranges(self) -> SearchSpaceSpec:
        if self.min_layers > self.max_layers:
            raise ValueError("min_layers <= max_layers")
        if self.min_proposers > self.max_proposers:
            raise ValueError("min_proposers <= max_proposers")
        return self


class EvaluationSpec(_Frozen):
    """Prompt minibatches that grow for promising trials.

    ``rungs`` are prompt counts (increasing); a trial is evaluated on the first ``rungs[0]``
    prompts, reports, may be pruned, then continues on ``rungs[1]``, and so on. Omitted: one
    rung with every prompt.

    ``holdout`` is the fraction of the dataset held out of the search (split once, seeded by the
    spec's ``seed``; items sharing a ``group`` stay together): every search decision sees only
    the rest, rungs are clipped to its size, and the chosen mixture and the baselines are judged
    on the held-out prompts (see :mod:`moa_search.search.verdict`). ``0`` holds nothing out: the
    search sees every prompt and the chosen mixture is re-evaluated on the whole dataset.
    """

    rungs: tuple[Annotated[int, Field(ge=1)], ...] | None = None
    concurrency: Annotated[int, Field(ge=1, le=256)] = 4
    shuffle: bool = True
    holdout: Annotated[float, Field(ge=0, lt=1)] = 0.3

    @field_validator("rungs")
    @classmethod
    def _increasing(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (not value or list(value) != sorted(set(value))):
            raise ValueError("a strictly increasing list of prompt counts, like [8, 16, 40]")
        return value


class BudgetSpec(_Frozen):
    """Limits: the study stops starting trials when one is reached."""

    n_trials: Annotated[int, Field(ge=1, le=100_000)] = 20
    timeout_s: Annotated[float, Field(gt=0, le=30 * 86400)] | None = None
    max_usd: Annotated[float, Field(gt=0, le=1_000_000)] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=10**12)] | None = None
    max_cost_per_prompt_usd: Annotated[float, Field(gt=0, le=1000)] | None = None
    max_tokens_per_prompt: Annotated[int, Field(ge=1, le=10**9)] | None = None


class ChooseSpec(_Frozen):
    """How one mixture is picked from the Pareto front.

    - ``max_win_rate``: the highest win rate; ties go to the cheaper, then the more diverse.
    - ``cheapest_within``: the cheapest (cost_usd, then tokens) whose win rate is within
      ``tolerance`` of the best.
    - ``weighted``: the highest weighted sum of objective values with ``weights``.
    """

    rule: Literal["max_win_rate", "cheapest_within", "weighted"] = "max_win_rate"
    tolerance: Annotated[float, Field(ge=0, le=1)] = 0.05
    weights: dict[str, float] | None = None


class StudySpec(_Frozen):
    """A whole study: pool, task, baseline, judge, space, objectives, budget, sampler.

    ``sampler`` (default ``auto``): ``auto`` plans whole compositions — each pool model alone
    first (a baseline whose layer-1 answers later mixtures reuse from the cache), then the
    candidate a small model of proposer and aggregator roles, fitted to the trials so far,
    rates most promising per uncached call (:mod:`moa_search.search.auto`); ``tpe``, ``nsga2``,
    ``gp`` and ``random`` are Optuna's. ``pruner`` (default ``auto``: ``racing`` with the
    ``auto`` sampler, ``median`` with the others): ``racing`` stops a trial once it is
    significantly worse than the incumbent on the same prompts (a paired test,
    :mod:`moa_search.search.racing`); ``median`` stops one whose win rate trails the median of
    the others at a rung; ``none`` evaluates every trial on every rung.

    ``incumbent`` names the user's current mixture file (relative to the spec): the held-out
    verdict compares the chosen mixture with it too.
    """

    version: Literal[1] = 1
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
    pool: Pool | str | None = None
    dataset: str
    dataset_limit: Annotated[int, Field(ge=1)] | None = None
    baseline: BaselineSpec
    judge: JudgeSpec
    space: SearchSpaceSpec = SearchSpaceSpec()
    objectives: tuple[str, ...] | None = ("win_rate", "diversity", "tokens")
    weights: dict[str, float] | None = None
    choose: ChooseSpec = ChooseSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    budget: BudgetSpec = BudgetSpec()
    sampler: Literal["auto", "tpe", "nsga2", "random", "gp"] = "auto"
    pruner: Literal["auto", "racing", "median", "none"] = "auto"
    n_startup_trials: Annotated[int, Field(ge=0, le=1000)] = 4
    seed: Annotated[int, Field(ge=0)] = 0
    embedding_model: str | None = None
    aggregation_prompt: str | None = None
    incumbent: str | None = None

    @model_validator(mode="after")
    def _objectives(self) -> StudySpec:
        if self.weights is not None:
            bad = sorted(set(self.weights) - set(OBJECTIVES))
            if bad:
                raise ValueError(
                    f"weights over objective names ({', '.join(OBJECTIVES)}), not {bad}"
                )
            return self
        if not self.objectives:
            raise ValueError("at least one objective, or weights")
        bad = [o for o in self.objectives if o not in OBJECTIVES]
        if bad:
            raise ValueError(f"objectives from {', '.join(OBJECTIVES)}, not {bad}")
        if len(set(self.objectives)) != len(self.objectives):
            raise ValueError("each objective once")
        if "win_rate" not in self.objectives:
            raise ValueError("win_rate among the objectives (it is what minibatches prune on)")
        return self

    @property
    def objective_names(self) -> tuple[str, ...]:
        """The study's values, in order (one ``score`` value when weighted)."""
        return ("score",) if self.weights is not None else tuple(self.objectives or ())

    @property
    def directions(self) -> tuple[Literal["maximize", "minimize"], ...]:
        if self.weights is not None:
            return ("maximize",)
        return tuple(OBJECTIVES[o] for o in self.objectives or ())

    def check_pool(self, pool: Pool, source: str) -> None:
        """Every alias the spec names must be in the pool."""
        aliases = set(pool.aliases)

        def need(alias: str | None, field: str) -> None:
            if alias is not None and alias not in aliases:
                raise ConfigError(
                    source,
                    field,
                    f"a model alias from the pool ({', '.join(pool.aliases)})",
                    repr(alias),
                )

        need(self.baseline.model, "baseline.model")
        need(self.judge.model, "judge.model")
        for i, alias in enumerate(self.space.proposers or ()):
            need(alias, f"space.proposers[{i}]")
        for i, alias in enumerate(self.space.aggregators or ()):
            need(alias, f"space.aggregators[{i}]")


def load_study_spec(path: str | os.PathLike[str]) -> StudySpec:
    """Load and validate a study spec file (its pool and dataset are checked separately)."""
    return _validate(StudySpec, load_mapping(path, "study spec"), str(path))


def spec_pool(
    spec: StudySpec, spec_path: str | os.PathLike[str], default_pool_path: Path | None
) -> Pool:
    """The spec's pool (inline, a path relative to the spec, or the local pool), checked."""
    source = str(spec_path)
    if isinstance(spec.pool, Pool):
        pool = spec.pool.relative_to(Path(spec_path).parent)
    elif isinstance(spec.pool, str):
        pool = load_pool(Path(spec_path).parent / spec.pool)
    elif default_pool_path is not None and default_pool_path.exists():
        pool = load_pool(default_pool_path)
    else:
        raise ConfigError(
            source,
            "pool",
            "a pool: inline, a pool file path, or the local pool (start it with "
            f"'moa-search local up'; no pool file at {default_pool_path})",
        )
    spec.check_pool(pool, source)
    return pool


def spec_dataset_path(spec: StudySpec, spec_path: str | os.PathLike[str]) -> Path:
    return Path(spec_path).parent / spec.dataset


def spec_incumbent_path(spec: StudySpec, spec_path: str | os.PathLike[str]) -> Path | None:
    """The user's current mixture file (``incumbent``, relative to the spec), if it names one."""
    return Path(spec_path).parent / spec.incumbent if spec.incumbent else None


def describe(spec: StudySpec) -> dict[str, Any]:
    """A short, secret-free summary for provenance."""
    return {
        "study": spec.name,
        "judge": spec.judge.model_dump(mode="json", exclude_none=True),
        "baseline": spec.baseline.model_dump(mode="json", exclude_none=True),
        "objectives": list(spec.objective_names),
    }
