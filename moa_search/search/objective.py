"""Scoring a mixture on a task: win rate against the baseline, diversity, cost, and calls.

:class:`Evaluator` runs a mixture over task items (concurrently, bounded), gets each item's
baseline answer once, asks the judge, and summarises per-item outcomes into an
:class:`Evaluation`. Per-item outcomes are kept so a trial evaluated on a growing minibatch only
pays for the new items; model calls are reused across trials through the executor's cache.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from moa_search.config.dataset import TaskItem
from moa_search.config.study import BaselineSpec
from moa_search.errors import BudgetExhausted, CacheError, MoaSearchError, ModelCallError
from moa_search.judges import Judge
from moa_search.judges.diversity import diversity
from moa_search.judges.stats import WinRate, win_rate
from moa_search.runtime.embeddings import Embedder
from moa_search.runtime.executor import Executor
from moa_search.runtime.prompting import ChatRequest, normalize_messages
from moa_search.runtime.trace import CallRecord, Trace

__all__ = ["Evaluation", "Evaluator", "ItemOutcome", "PromptProgress"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemOutcome:
    """What happened on one item: the judge's preference (``None`` if the judge failed)."""

    item_id: str
    preference: float | None
    answer: str | None
    layer_outputs: tuple[tuple[str, ...], ...]
    cost_usd: float
    tokens: int
    latency_s: float
    model_calls: int
    calls_total: int
    spent_usd: float
    spent_tokens: int
    error: str | None = None
    attempts: int = 0


@dataclass(frozen=True)
class Evaluation:
    """A mixture's scores over some items (means are per prompt)."""

    n: int
    win_rate: WinRate
    diversity: float
    cost_usd: float
    tokens: float
    latency_s: float
    failures: int
    judge_failures: int
    model_calls: int
    calls_total: int
    spent_usd: float
    spent_tokens: int
    attempts: int = 0
    preferences: tuple[float, ...] = field(repr=False, default=())

    def value(self, name: str) -> float:
        """An objective's value by name (see :data:`moa_search.config.study.OBJECTIVES`)."""
        if name == "win_rate":
            return self.win_rate.mean
        return float(getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["win_rate"] = self.win_rate.to_dict()
        d.pop("preferences")
        return d


@dataclass(frozen=True)
class PromptProgress:
    """Where a trial's evaluation is, after each prompt: ``done`` prompts of the ``target`` its
    current rung (``rung``, counted from 1, of ``rungs``) brings it to."""

    trial: int
    rung: int
    rungs: int
    done: int
    target: int


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


class Evaluator:
    """Scores mixtures against one baseline with one judge.

    Args:
        executor: runs mixtures and single calls (its cache makes repeated calls free).
        judge: decides each comparison.
        baseline: a pool model answering alone, or the dataset's references.
        embedder: for diversity; ``None`` reports diversity as 0.
        concurrency: items evaluated at once.

    ``on_prompt``, when set, is called after each prompt of an evaluation that says where it is
    (``aoutcomes(..., progress=...)``), for a progress display.
    """

    def __init__(
        self,
        executor: Executor,
        judge: Judge,
        baseline: BaselineSpec,
        embedder: Embedder | None,
        *,
        concurrency: int = 4,
    ) -> None:
        self.executor = executor
        self.judge = judge
        self.baseline = baseline
        self.embedder = embedder
        self.concurrency = concurrency
        self._baseline_answers: dict[str, tuple[str, list[CallRecord]]] = {}
        self.on_prompt: Callable[[PromptProgress], None] | None = None

    async def abaseline(self, item: TaskItem) -> tuple[str, list[CallRecord]]:
        """The baseline's answer to ``item`` (computed once per evaluator) and its calls."""
        if item.id in self._baseline_answers:
            return self._baseline_answers[item.id][0], []
        if self.baseline.kind == "references":
            if item.reference is None:
                raise MoaSearchError(f"item {item.id} has no reference to serve as the baseline")
            self._baseline_answers[item.id] = (item.reference, [])
            return item.reference, []
        agent = self.baseline.agent()
        spec = self.executor.pool.get(agent.model)
        messages = normalize_messages(item.prompt)
        request = ChatRequest.build(spec, agent, messages, sample=0, mixture_seed=0)
        record, completion, error = await self.executor.acall(request, role="proposer")
        if completion is None:
            assert error is not None
            error.calls = (record,)
            raise error
        self._baseline_answers[item.id] = (completion.text, [record])
        return completion.text, [record]

    async def _item(self, mixture: Any, item: TaskItem) -> ItemOutcome:
        records: list[CallRecord] = []
        try:
            baseline, calls = await self.abaseline(item)
        except ModelCallError as exc:
            log.warning("baseline failed on item %s: %s", item.id, exc)
            failed = getattr(exc, "calls", ())
            return ItemOutcome(
                item.id,
                None,
                None,
                (),
                0.0,
                0,
                0.0,
                len(failed),
                len(failed),
                0.0,
                0,
                "baseline",
                attempts=sum(c.attempts for c in failed),
            )
        records.extend(calls)
        trace: Trace | None = None
        answer: str | None = None
        outputs: tuple[tuple[str, ...], ...] = ()
        error: str | None = None
        try:
            result = await self.executor.arun(mixture, item.prompt)
            trace, answer, outputs = result.trace, result.answer, result.layer_outputs
        except BudgetExhausted:
            raise  # not the mixture's failure: the evaluation stops
        except CacheError:
            raise  # the cache broke, not the mixture: the trial fails with the cache's error
        except MoaSearchError as exc:
            trace = getattr(exc, "trace", None)
            error = type(exc).__name__
            log.warning("mixture failed on item %s: %s", item.id, exc)
        mixture_calls = list(trace.calls) if trace is not None else []
        preference: float | None
        if answer is None:
            preference = 0.0  # a mixture that cannot answer loses the comparison
        else:
            try:
                verdict = await self.judge.apreference(item, answer, baseline)
                preference = verdict.preference
                records.extend(verdict.calls)
            except (ModelCallError, ValueError, TypeError) as exc:
                # a judge that cannot decide is recorded, not fatal; its calls still count
                log.warning("judge failed on item %s: %s", item.id, exc)
                records.extend(getattr(exc, "calls", ()))
                preference = None
                error = error or "judge"
        all_calls = mixture_calls + records
        return ItemOutcome(
            item_id=item.id,
            preference=preference,
            answer=answer,
            layer_outputs=outputs,
            cost_usd=sum(c.cost_usd for c in mixture_calls),
            tokens=sum(c.tokens_in + c.tokens_out for c in mixture_calls),
            latency_s=trace.latency_s if trace is not None else 0.0,
            model_calls=sum(1 for c in all_calls if not c.cache_hit),
            calls_total=len(all_calls),
            spent_usd=sum(c.cost_usd for c in all_calls if not c.cache_hit),
            spent_tokens=sum(c.tokens_in + c.tokens_out for c in all_calls if not c.cache_hit),
            error=error,
            attempts=sum(c.attempts for c in all_calls if not c.cache_hit),
        )

    async def aoutcomes(
        self,
        mixture: Any,
        items: Sequence[TaskItem],
        *,
        progress: PromptProgress | None = None,
    ) -> list[ItemOutcome]:
        """Evaluate ``mixture`` on ``items``, at most :attr:`concurrency` at a time.

        ``progress`` says where this evaluation starts (its ``done`` prompts before these
        items); :attr:`on_prompt` then hears of each prompt finished.
        """
        gate = asyncio.Semaphore(self.concurrency)
        finished = 0

        async def one(item: TaskItem) -> ItemOutcome:
            nonlocal finished
            async with gate:
                outcome = await self._item(mixture, item)
            finished += 1
            if progress is not None and self.on_prompt is not None:
                self.on_prompt(
                    PromptProgress(
                        progress.trial,
                        progress.rung,
                        progress.rungs,
                        progress.done + finished,
                        progress.target,
                    )
                )
            return outcome

        # every item runs to its end (a refused budget stops each at its next call), then
        # the first error is raised: no item is left running in the background
        results = await asyncio.gather(*(one(i) for i in items), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return [r for r in results if isinstance(r, ItemOutcome)]

    def summarize(self, outcomes: Sequence[ItemOutcome]) -> Evaluation:
        """Aggregate per-item outcomes (pure apart from embedding the outputs)."""
        prefs = [o.preference for o in outcomes if o.preference is not None]
        wr = win_rate(prefs) if prefs else WinRate(0.0, 0.0, 0.0, 0.0, 0)
        div = 0.0
        if self.embedder is not None:
            n_layers = max((len(o.layer_outputs) for o in outcomes), default=0)
            per_layer = [
                diversity(
                    [o.layer_outputs[k] for o in outcomes if len(o.layer_outputs) > k],
                    self.embedder,
                )
                for k in range(n_layers)
            ]
            div = _mean(per_layer)
        return Evaluation(
            n=len(outcomes),
            win_rate=wr,
            diversity=div,
            cost_usd=_mean([o.cost_usd for o in outcomes]),
            tokens=_mean([float(o.tokens) for o in outcomes]),
            latency_s=_mean([o.latency_s for o in outcomes]),
            failures=sum(1 for o in outcomes if o.error not in (None, "judge")),
            judge_failures=sum(1 for o in outcomes if o.preference is None),
            model_calls=sum(o.model_calls for o in outcomes),
            calls_total=sum(o.calls_total for o in outcomes),
            spent_usd=sum(o.spent_usd for o in outcomes),
            spent_tokens=sum(o.spent_tokens for o in outcomes),
            attempts=sum(o.attempts for o in outcomes),
            preferences=tuple(prefs),
        )

    async def aevaluate(self, mixture: Any, items: Sequence[TaskItem]) -> Evaluation:
        return self.summarize(await self.aoutcomes(mixture, items))
