"""The study driver: an Optuna study over mixtures, with minibatch rungs, pruning and budgets.

:class:`SearchSession` opens everything a study needs from its spec file (pool, dataset, cache,
judge, embedder, storage) and runs trials. Each trial builds its mixture with
:func:`moa_search.search.space.suggest_mixture`, is evaluated on growing prompt minibatches
(pruned when it trails the others on win rate), and records its metrics, intervals, spend and
calls through :class:`moa_search.search.records.TrialWriter` — so a study in storage is
self-describing and resumes where it stopped. Where the study is stored:
:mod:`moa_search.search.storage`.

The dataset is split once (:mod:`moa_search.search.split`): trials, pruning and the choice see
only the search split; :meth:`SearchSession.finalize` judges the chosen mixture and the
baselines on the held-out split (:mod:`moa_search.search.verdict`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from moa_search.config import MixtureConfig, Pool
from moa_search.config.dataset import TaskItem
from moa_search.config.study import load_study_spec, spec_pool
from moa_search.errors import CacheError, ConfigError, MoaSearchError, RepeatedMixture
from moa_search.judges import Judge, build_judge
from moa_search.runtime.cache import Cache, open_cache
from moa_search.runtime.embeddings import Embedder
from moa_search.runtime.executor import Executor
from moa_search.search._interrupt import ctrl_c_raises
from moa_search.search.choose import choose_trial
from moa_search.search.objective import Evaluation, Evaluator, ItemOutcome, PromptProgress
from moa_search.search.progress import TrialReport, prune_reason, trial_report
from moa_search.search.racing import race, uses_racing
from moa_search.search.records import (
    FinalEvaluation,
    HoldoutVerdict,
    StudyTotals,
    TrialRecord,
    TrialWriter,
    enqueue_unseen,
    evaluated_with_key,
    record_study,
    rung_values,
)
from moa_search.search.space import (
    InvalidMixture,
    composition,
    describe_mixture,
    mixture_from_params,
    mixture_key,
    suggest_mixture,
)
from moa_search.search.spend import meter_for, spend_phase, study_spend, trial_stopped
from moa_search.search.split import keep_split, load_incumbent, study_prompts
from moa_search.search.storage import (
    make_pruner,
    make_sampler,
    open_study,
    results_dir,
)

__all__ = ["SearchSession", "TrialReport", "results_dir"]

log = logging.getLogger(__name__)

# Optuna would log a traceback for every failed or interrupted trial; failures are reported
# here instead, in one line (see SearchSession.objective).
optuna.logging.set_verbosity(optuna.logging.ERROR)
# The features used here (heartbeats, grouped multivariate TPE, metric names) are stable in use;
# their "experimental" labels would only clutter every search's output.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

#: Trial states that count towards the trial budget.
_COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)


class SearchSession:
    """Everything one study needs, opened from its spec file.

    Args:
        spec_path: the study spec.
        storage: an Optuna storage URL (default: SQLite in :func:`results_dir`).
        cache: a response cache location for :func:`moa_search.runtime.cache.open_cache`
            (default: the cache file in the study's results folder).
        default_pool_path: where the local pool file is, for specs naming no pool.
        read_only: for reading a study that exists (``best``, ``analyze``, ``report``): no
            results folder, response cache or embeddings file is created.
    """

    def __init__(
        self,
        spec_path: str | Path,
        *,
        storage: str | None = None,
        cache: str | None = None,
        default_pool_path: Path | None = None,
        read_only: bool = False,
    ) -> None:
        self.spec_path = Path(spec_path)
        self.spec = load_study_spec(spec_path)
        self.pool: Pool = spec_pool(self.spec, spec_path, default_pool_path)
        prompts = study_prompts(self.spec, spec_path)
        self.dataset_hash = prompts.dataset_hash
        self.items: tuple[TaskItem, ...] = prompts.items
        #: What every search decision sees, and the prompts kept for the verdict.
        self.search_items, self.holdout_items = prompts.search, prompts.holdout
        self.incumbent = load_incumbent(self.spec, spec_path, self.pool)
        self.rungs = self._rungs()
        self.results = results_dir(spec_path, self.spec)
        if not read_only:
            self.results.mkdir(parents=True, exist_ok=True)
        self.storage_url = storage or f"sqlite:///{self.results / 'study.db'}"
        cache_location = cache if cache is not None else str(self.results / "cache.sqlite")
        self.cache: Cache | None = None if read_only else open_cache(cache_location)
        self.budget = meter_for(self.spec)  # hard: checked before every new call
        self.executor = Executor(self.pool, cache=self.cache, seed=self.spec.seed)
        self.executor.budget = self.budget
        self.embedder = Embedder(
            self.spec.embedding_model,
            cache_path=None if read_only else self.results / "embeddings.sqlite",
        )
        self.judge = self._judge()
        self.evaluator = Evaluator(
            self.executor,
            self.judge,
            self.spec.baseline,
            self.embedder,
            concurrency=self.spec.evaluation.concurrency,
        )
        self._runner: asyncio.Runner | None = None
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._study: optuna.Study | None = None
        self._broken_cache: CacheError | None = None  # stops the search (see objective)

    # ------------------------------------------------------------------ set-up

    def _rungs(self) -> tuple[int, ...]:
        n = len(self.search_items)
        rungs = self.spec.evaluation.rungs or (n,)
        clipped = tuple(sorted({min(r, n) for r in rungs}))
        return clipped

    def _judge(self) -> Judge:
        return build_judge(
            self.spec.judge,
            executor=self.executor,
            embedder=self.embedder,
            folder=self.spec_path.parent,
        )

    def study(self) -> optuna.Study:
        """Create the study in storage, or load it to resume."""
        if self._study is None:
            pruner = make_pruner(self.spec)
            study = open_study(
                self.storage_url,
                self.spec.name,
                list(self.spec.directions),
                make_sampler(self.spec, self.pool),
                pruner,
            )
            if list(study.directions) != [
                optuna.study.StudyDirection.MAXIMIZE
                if d == "maximize"
                else optuna.study.StudyDirection.MINIMIZE
                for d in self.spec.directions
            ]:
                raise ConfigError(
                    str(self.spec_path),
                    "objectives",
                    "the objectives the stored study was created with; use a new study name",
                )
            study.set_metric_names(list(self.spec.objective_names))
            record_study(
                study, self.spec.model_dump(mode="json", exclude={"pool"}), self.dataset_hash
            )
            if not keep_split(study, self.holdout_items, str(self.spec_path)):
                self.search_items, self.holdout_items = self.items, ()
                self.rungs = self._rungs()
            self._study = study
        return self._study

    # ------------------------------------------------------------------ running

    def _run(self, coro: Any) -> Any:
        """Run a coroutine to completion from synchronous code (Optuna's objective).

        Inside an already running event loop (a notebook's, a user's app) the coroutine runs on
        a helper thread with its own loop, since a loop cannot be re-entered.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if self._runner is None:
                self._runner = asyncio.Runner()
            with ctrl_c_raises():
                return self._runner.run(coro)
        if self._thread is None:
            self._thread = concurrent.futures.ThreadPoolExecutor(1, "moa-search-loop")
        return self._thread.submit(asyncio.run, coro).result()

    def close(self) -> None:
        if self._runner is not None:
            self._runner.run(self.executor.aclose())
            self._runner.close()
            self._runner = None
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None
        if self.cache is not None:
            self.cache.close()
        self.embedder.close()

    def mixture_for(self, params: dict[str, Any]) -> MixtureConfig:
        """Rebuild a trial's mixture from its params."""
        try:
            return mixture_from_params(
                params,
                self.spec.space,
                self.pool,
                aggregation_prompt=self.spec.aggregation_prompt,
                seed=self.spec.seed,
            )
        except (ValueError, KeyError) as exc:
            raise ConfigError(
                str(self.spec_path),
                "space",
                "the search space the stored study was run with (its trials do not fit this "
                "spec's space; give a changed study a new name)",
                f"{type(exc).__name__}: {exc}",
            ) from None

    def evaluate(self, mixture: MixtureConfig, items: Sequence[TaskItem]) -> Evaluation:
        return self.evaluator.summarize(self.outcomes(mixture, items))

    def outcomes(self, mixture: MixtureConfig, items: Sequence[TaskItem]) -> list[ItemOutcome]:
        """Per-item outcomes of ``mixture`` on ``items`` (from synchronous code)."""
        return list(self._run(self.evaluator.aoutcomes(mixture, items)))

    def _values(self, ev: Evaluation) -> list[float]:
        if self.spec.weights is not None:
            return [sum(w * ev.value(name) for name, w in self.spec.weights.items())]
        return [ev.value(name) for name in self.spec.objective_names]

    def _should_prune(
        self, trial: optuna.Trial, study: optuna.Study, step: int, value: float
    ) -> bool:
        if uses_racing(self.spec):  # paired, against the incumbent: search/racing.py
            return race(study, trial.number, self.spec)
        if len(study.directions) == 1:
            trial.report(value, step)
            return trial.should_prune()
        if self.spec.pruner == "none":
            return False
        # Optuna's pruners are single-objective; apply the median rule to win rate ourselves.
        others = rung_values(
            study.get_trials(deepcopy=False, states=_COUNTED), step, exclude=trial.number
        )
        if len(others) < max(1, self.spec.n_startup_trials):
            return False
        return value < statistics.median(others)

    def objective(self, trial: optuna.Trial) -> list[float]:
        mark = self.budget.session_spent
        try:
            return self._objective(trial)
        except MoaSearchError as exc:
            log.warning("trial %d failed: %s", trial.number, exc)
            trial_stopped(trial, exc, self.budget.session_spent - mark)
            if isinstance(exc, CacheError):  # every later trial would fail the same way
                self._broken_cache = exc
                trial.study.stop()
            raise

    def _objective(self, trial: optuna.Trial) -> list[float]:
        study = trial.study
        writer = TrialWriter(trial)
        try:
            mixture = self._suggest(trial)
        except InvalidMixture as exc:
            writer.invalid(str(exc))
            raise  # a failed trial, with the reason (optimize catches it)
        key = mixture_key(mixture)
        writer.mixture(
            describe_mixture(mixture),
            composition(mixture),
            key,
            f"{socket.gethostname()}:{os.getpid()}",
        )
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        other = evaluated_with_key(complete, key)
        if other is not None:
            # The sampler proposed a mixture already evaluated: no call is made, the trial does
            # not count, and it is stored as failed so Optuna's best_trials list it once.
            writer.repeat_of(other)
            enqueue_unseen(study, self._key_of, seed=trial.number)  # the next trial is new
            raise RepeatedMixture(other.number)
        outcomes: list[ItemOutcome] = []
        ev: Evaluation | None = None
        for i, n in enumerate(self.rungs):
            new = self.search_items[len(outcomes) : n]
            at = PromptProgress(trial.number, i + 1, len(self.rungs), len(outcomes), n)
            outcomes.extend(self._run(self.evaluator.aoutcomes(mixture, new, progress=at)))
            ev = self.evaluator.summarize(outcomes)
            writer.evaluation(ev)
            writer.rung(n, ev.win_rate.mean)
            writer.preferences(outcomes)
            if i < len(self.rungs) - 1 and self._should_prune(trial, study, n, ev.win_rate.mean):
                why = prune_reason(study, trial.number, n, ev.win_rate.mean, self.spec)
                writer.pruned(why)
                raise optuna.TrialPruned(why)
        assert ev is not None
        b = self.spec.budget
        if b.max_cost_per_prompt_usd is not None:
            trial.set_constraint("cost_per_prompt", ev.cost_usd - b.max_cost_per_prompt_usd)
        if b.max_tokens_per_prompt is not None:
            trial.set_constraint("tokens_per_prompt", ev.tokens - b.max_tokens_per_prompt)
        return self._values(ev)

    def _suggest(self, trial: optuna.Trial) -> MixtureConfig:
        return suggest_mixture(
            trial,
            self.spec.space,
            self.pool,
            aggregation_prompt=self.spec.aggregation_prompt,
            seed=self.spec.seed,
        )

    def _key_of(self, trial: optuna.Trial) -> str:
        return mixture_key(self._suggest(trial))

    def totals(self) -> StudyTotals:
        """Spend and calls over every trial in storage (all workers, all sessions); invalid
        proposals are rejected before any call and repeats are answered from the trial they
        repeat, so neither counts towards the budget."""
        return StudyTotals.of(TrialRecord.all(self.study()))

    def optimize(
        self,
        *,
        n_trials: int | None = None,
        timeout_s: float | None = None,
        on_trial: Callable[[TrialReport], None] | None = None,
    ) -> optuna.Study:
        """Run trials until the budget's trial count (a total over the study), its time, or
        its spend is reached. Re-running continues the same study."""
        study = self.study()
        target = n_trials if n_trials is not None else self.spec.budget.n_trials
        timeout = timeout_s if timeout_s is not None else self.spec.budget.timeout_s
        start = time.perf_counter()
        self.budget.start(study_spend(study), timeout_s=timeout_s)
        self.budget.phase = "the search"
        b = self.spec.budget

        def over_budget(t: StudyTotals) -> bool:
            if t.trials >= target:
                return True
            if t.started >= 5 * target + 20:
                log.warning("stopping: the sampler keeps proposing invalid or repeated mixtures")
                return True
            if b.max_usd is not None and t.spent_usd >= b.max_usd:
                log.warning("stopping: spent $%.4f of max_usd %.4f", t.spent_usd, b.max_usd)
                return True
            if b.max_tokens is not None and t.spent_tokens >= b.max_tokens:
                log.warning("stopping: spent %d tokens of max_tokens", t.spent_tokens)
                return True
            return False

        def callback(study: optuna.Study, trial: FrozenTrial) -> None:
            t = self.totals()  # one read of the storage per trial, for both uses
            if on_trial is not None:
                elapsed = time.perf_counter() - start
                on_trial(trial_report(self.spec, study, trial, target, elapsed, t))
            if over_budget(t) or self.budget.exhausted:
                study.stop()

        if over_budget(self.totals()):
            return study
        study.optimize(
            self.objective,
            n_trials=None,
            timeout=timeout,
            callbacks=[callback],
            catch=(MoaSearchError, InvalidMixture, RepeatedMixture),
            gc_after_trial=False,
        )
        if self._broken_cache is not None:  # its trial is failed, with the reason: say so
            raise self._broken_cache
        return study

    def finalize(self) -> FinalEvaluation | None:
        """Judge the chosen trial; store and return its final evaluation. Under the study's
        hard budget: :class:`~moa_search.errors.BudgetExhausted` when it runs out first.

        With held-out prompts, the chosen mixture and the baselines are judged on them and the
        :class:`HoldoutVerdict` is stored too (read it with :meth:`verdict`); the returned
        evaluation is the chosen mixture's on the held-out prompts. With none held out
        (``evaluation.holdout: 0``) the chosen trial is re-evaluated on the whole dataset.
        """
        with spend_phase(self, "the final evaluation"):
            return self._finalize()

    def _finalize(self) -> FinalEvaluation | None:
        study = self.study()
        chosen = choose_trial(study, self.spec)
        if chosen is None:
            return None
        stored = FinalEvaluation.load(study)
        if self.holdout_items:
            verdict = HoldoutVerdict.load(study)
            if stored is not None and verdict is not None and verdict.trial == chosen.number:
                return stored
            from moa_search.search.verdict import holdout_verdict

            self.budget.phase = "the held-out verdict"
            final, verdict = holdout_verdict(self, chosen)
            verdict.store(study)
            final.store(study)
            return final
        if stored is not None and stored.trial == chosen.number and not stored.holdout:
            return stored
        if chosen.n_items >= len(self.items) and chosen.metrics is not None:
            final = FinalEvaluation(chosen.number, len(self.items), chosen.metrics)
        else:
            ev = self.evaluate(self.mixture_for(dict(chosen.params)), self.items)
            final = FinalEvaluation(
                chosen.number,
                len(self.items),
                ev,
                model_calls=ev.model_calls,
                calls_total=ev.calls_total,
                spent_usd=ev.spent_usd,
                spent_tokens=ev.spent_tokens,
            )
        final.store(study)
        return final

    def verdict(self) -> HoldoutVerdict | None:
        """The stored held-out verdict of the currently chosen trial, if finalized."""
        study = self.study()
        verdict = HoldoutVerdict.load(study)
        chosen = choose_trial(study, self.spec)
        if verdict is None or chosen is None or verdict.trial != chosen.number:
            return None
        return verdict

    def trial(self, which: str | int) -> TrialRecord:
        """``best`` (the chosen trial) or a trial number, as a complete trial."""
        study = self.study()
        if str(which) == "best":
            chosen = choose_trial(study, self.spec)
            if chosen is None:
                raise ConfigError(
                    "trial", "", "a study with at least one complete trial; run search first"
                )
            return chosen
        try:
            number = int(which)
        except ValueError:
            raise ConfigError("trial", "", "'best' or a trial number", repr(which)) from None
        trials = {t.number: TrialRecord.of(t) for t in study.get_trials(deepcopy=False)}
        if number not in trials or trials[number].state != "complete":
            complete = sorted(n for n, t in trials.items() if t.state == "complete")
            raise ConfigError(
                "trial",
                "",
                f"the number of a complete trial ({complete or 'none yet'})",
                str(number),
            )
        return trials[number]
