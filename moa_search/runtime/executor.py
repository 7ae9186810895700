"""The MoA executor: runs a mixture on a prompt, concurrently, with retries, quorum and a trace.

Each layer's calls (every proposer times its ``samples``) start together, bounded only by each
model's concurrency limit, so a run's latency follows the critical path: per layer the slowest
proposer, then the aggregator. Layer *i+1* and the aggregator see layer *i*'s answers through
the aggregation prompt. The aggregator's answer streams. Every call, cache hits and failures
included, is recorded in the run's :class:`~moa_search.runtime.trace.Trace`.

The core is async (:meth:`Executor.astream`, :meth:`Executor.arun`); :meth:`Executor.run` is a
thin synchronous wrapper.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from moa_search.config import AgentSpec, MixtureConfig, Pool
from moa_search.errors import BudgetExhausted, ModelCallError, QuorumError
from moa_search.runtime.backends import Backend, Completion, backend_for
from moa_search.runtime.budget import SpendMeter
from moa_search.runtime.cache import Cache
from moa_search.runtime.calls import Caller, CallOutcome
from moa_search.runtime.prompting import (
    ChatRequest,
    Message,
    normalize_messages,
    parse_rank,
    ranking_messages,
    with_references,
)
from moa_search.runtime.trace import CallRecord, Role, Trace

__all__ = ["Executor", "ProgressEvent", "RunResult", "RunStream", "expand_layer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressEvent:
    """Reported as a run advances: a proposer layer finished, or the aggregator started."""

    kind: Literal["layer_done", "aggregator_started"]
    layer: int
    n_layers: int
    answered: int
    total: int
    elapsed_s: float


@dataclass(frozen=True)
class RunResult:
    """A finished run: the final answer, the trace, and each proposer layer's answers."""

    answer: str
    trace: Trace
    layer_outputs: tuple[tuple[str, ...], ...] = ()
    layer_models: tuple[tuple[str, ...], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"answer": self.answer, "trace": self.trace.to_dict()}


class RunStream:
    """An async iterator over the final answer's text deltas; :attr:`result` once exhausted."""

    def __init__(self, gen: AsyncGenerator[str | RunResult, None]) -> None:
        self._gen = gen
        self._result: RunResult | None = None

    def __aiter__(self) -> RunStream:
        return self

    async def __anext__(self) -> str:
        item = await self._gen.__anext__()
        if isinstance(item, RunResult):
            self._result = item
            raise StopAsyncIteration
        return item

    @property
    def result(self) -> RunResult:
        if self._result is None:
            raise RuntimeError("the stream has not finished yet")
        return self._result

    async def aclose(self) -> None:
        await self._gen.aclose()


_Traced = TypeVar("_Traced", ModelCallError, QuorumError, BudgetExhausted)


async def _gather_calls(
    tasks: Sequence[Awaitable[CallOutcome]], records: list[CallRecord]
) -> list[CallOutcome] | BudgetExhausted:
    """A layer's calls, all awaited to the end (a call in flight when the budget ran out
    finishes and is recorded); their records go to ``records``. Returns the outcomes, or the
    :class:`BudgetExhausted` raised by a call the budget refused."""
    results = await asyncio.gather(*tasks, return_exceptions=True)
    outcomes = [r for r in results if isinstance(r, CallOutcome)]
    records.extend(o.record for o in outcomes)
    refused: BudgetExhausted | None = None
    for r in results:
        if isinstance(r, BudgetExhausted):
            refused = refused or r
        elif isinstance(r, BaseException):
            raise r
    return refused if refused is not None else outcomes


def expand_layer(agents: Sequence[AgentSpec]) -> list[tuple[AgentSpec, int]]:
    """Each call of a layer with its sample index.

    Sample indices count per distinct (model, sampling parameters), so listing one model twice
    behaves like asking it for two samples: the calls stay distinct instead of sharing an answer.
    """
    counters: dict[tuple[Any, ...], int] = {}
    calls: list[tuple[AgentSpec, int]] = []
    for agent in agents:
        key = (agent.model, agent.temperature, agent.max_tokens, agent.system_prompt)
        for _ in range(agent.samples):
            index = counters.get(key, 0)
            counters[key] = index + 1
            calls.append((agent, index))
    return calls


class Executor:
    """Runs mixtures against a pool, sharing per-model concurrency limits and one cache.

    Args:
        pool: the models mixtures may name.
        cache: a response cache, or ``None`` for none.
        backends: alias -> :class:`Backend`; by default each model's backend for its kind
            (:func:`~moa_search.runtime.backends.backend_for`).
        seed: seeds the retry jitter (not the models).
        budget: a hard budget: every new call (not a cache hit) is checked against it first
            and raises :class:`~moa_search.errors.BudgetExhausted` once it is spent.

    One executor may serve many concurrent runs; they share each model's concurrency limit
    and its budget.
    """

    def __init__(
        self,
        pool: Pool,
        *,
        cache: Cache | None = None,
        backends: Mapping[str, Backend] | None = None,
        seed: int | None = None,
        budget: SpendMeter | None = None,
    ) -> None:
        self.pool = pool
        chosen = dict(backends or {})
        for spec in pool.models:
            if spec.alias not in chosen:
                chosen[spec.alias] = backend_for(spec)
        self._calls = Caller(pool, cache, chosen, random.Random(seed))
        self._calls.budget = budget

    @property
    def budget(self) -> SpendMeter | None:
        """The hard budget new calls are checked against, if any."""
        return self._calls.budget

    @budget.setter
    def budget(self, meter: SpendMeter | None) -> None:
        self._calls.budget = meter

    @property
    def cache(self) -> Cache | None:
        return self._calls.cache

    def backend(self, alias: str) -> Backend:
        return self._calls.backend(alias)

    async def aclose(self) -> None:
        for backend in self._calls.backends.values():
            await backend.aclose()

    # ------------------------------------------------------------------ one call

    async def acall(
        self,
        request: ChatRequest,
        *,
        layer: int = 0,
        role: Role = "proposer",
        run_start: float | None = None,
        on_delta: Callable[[str], None] | None = None,
    ) -> tuple[CallRecord, Completion | None, ModelCallError | None]:
        """One call with cache, concurrency limit and retries; never raises ModelCallError
        (raises :class:`BudgetExhausted` when the budget is spent and the answer is not cached).

        With ``on_delta`` the answer streams: each text delta is passed to it as it arrives.
        Returns the trace record, the completion (``None`` on failure) and the error.
        """
        outcome = await self._calls.call(request, layer, role, run_start, on_delta)
        return outcome.record, outcome.completion, outcome.error

    # ------------------------------------------------------------------ a mixture

    def astream(
        self,
        mixture: MixtureConfig,
        prompt: str | Sequence[Mapping[str, Any]],
        *,
        on_progress: Callable[[ProgressEvent], None] | None = None,
    ) -> RunStream:
        """Run ``mixture`` on ``prompt``; iterate for the aggregator's text as it streams.

        Raises (while iterating) :class:`QuorumError` when a layer lacks answers,
        :class:`ModelCallError` when the aggregator fails and :class:`BudgetExhausted` when the
        budget is spent before a call (after the layer's calls in flight finished); all carry
        ``.trace``.
        """
        mixture.check_pool(self.pool, "mixture")
        messages = normalize_messages(prompt)
        return RunStream(self._execute(mixture, messages, on_progress))

    async def arun(
        self,
        mixture: MixtureConfig,
        prompt: str | Sequence[Mapping[str, Any]],
        *,
        on_progress: Callable[[ProgressEvent], None] | None = None,
    ) -> RunResult:
        """Run ``mixture`` on ``prompt`` and return the whole answer and its trace."""
        stream = self.astream(mixture, prompt, on_progress=on_progress)
        async for _ in stream:
            pass
        return stream.result

    def run(
        self,
        mixture: MixtureConfig,
        prompt: str | Sequence[Mapping[str, Any]],
        *,
        on_progress: Callable[[ProgressEvent], None] | None = None,
    ) -> RunResult:
        """Synchronous :meth:`arun` (starts an event loop; not for use inside one)."""

        async def main() -> RunResult:
            try:
                return await self.arun(mixture, prompt, on_progress=on_progress)
            finally:
                await self.aclose()

        return asyncio.run(main())

    async def _execute(
        self,
        mixture: MixtureConfig,
        messages: tuple[Message, ...],
        on_progress: Callable[[ProgressEvent], None] | None,
    ) -> AsyncGenerator[str | RunResult, None]:
        t0 = time.perf_counter()
        records: list[CallRecord] = []
        n_layers = len(mixture.layers) + 1
        references: tuple[str, ...] = ()
        layer_outputs: list[tuple[str, ...]] = []
        layer_models: list[tuple[str, ...]] = []

        def fail(exc: _Traced) -> _Traced:
            exc.trace = Trace.of(records, time.perf_counter() - t0)
            return exc

        for index, agents in enumerate(mixture.layers):
            calls = expand_layer(agents)
            tasks = []
            for agent, sample in calls:
                seen = with_references(
                    messages,
                    references,
                    aggregation_prompt=mixture.aggregation_prompt,
                    system_prompt=agent.system_prompt,
                )
                request = ChatRequest.build(
                    self.pool.get(agent.model),
                    agent,
                    seen,
                    sample=sample,
                    mixture_seed=mixture.seed,
                )
                tasks.append(self._calls.call(request, index, "proposer", t0, None))
            outcomes = await _gather_calls(tasks, records)
            if isinstance(outcomes, BudgetExhausted):
                raise fail(outcomes)
            answers = tuple(o.completion.text for o in outcomes if o.completion is not None)
            layer_outputs.append(answers)
            layer_models.append(tuple(o.record.model for o in outcomes if o.completion is not None))
            required = mixture.required_answers(len(calls))
            if on_progress is not None:
                on_progress(
                    ProgressEvent(
                        "layer_done",
                        index,
                        n_layers,
                        len(answers),
                        len(calls),
                        time.perf_counter() - t0,
                    )
                )
            for o in outcomes:
                if o.error is not None:
                    log.warning("layer %d: proposer %s dropped: %s", index, o.record.model, o.error)
            if len(answers) < required:
                failures = [o.error for o in outcomes if o.error is not None]
                raise fail(QuorumError(index, len(answers), required, failures))
            references = answers

        agg = mixture.aggregator
        if mixture.aggregation == "rank" and len(references) > 1:
            try:
                result = await self._rank(mixture, messages, references, records, t0, on_progress)
            except BudgetExhausted as exc:
                raise fail(exc) from None
            yield result.answer
            yield RunResult(result.answer, result.trace, tuple(layer_outputs), tuple(layer_models))
            return
        seen = with_references(
            messages,
            references,
            aggregation_prompt=mixture.aggregation_prompt,
            system_prompt=agg.system_prompt,
        )
        request = ChatRequest.build(
            self.pool.get(agg.model), agg, seen, sample=0, mixture_seed=mixture.seed
        )
        if on_progress is not None:
            on_progress(
                ProgressEvent(
                    "aggregator_started",
                    n_layers - 1,
                    n_layers,
                    0,
                    1,
                    time.perf_counter() - t0,
                )
            )
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        first_token: list[float] = []

        def on_delta(text: str) -> None:
            if not first_token:
                first_token.append(time.perf_counter() - t0)
            queue.put_nowait(text)

        async def aggregate() -> CallOutcome:
            try:
                return await self._calls.call(request, n_layers - 1, "aggregator", t0, on_delta)
            finally:
                queue.put_nowait(None)

        task = asyncio.create_task(aggregate())
        try:
            while (delta := await queue.get()) is not None:
                yield delta
            try:
                outcome = await task
            except BudgetExhausted as exc:
                raise fail(exc) from None
        finally:
            if not task.done():
                task.cancel()
        records.append(outcome.record)
        if outcome.completion is None:
            assert outcome.error is not None
            raise fail(outcome.error)
        trace = Trace.of(
            records,
            time.perf_counter() - t0,
            first_token_s=first_token[0] if first_token else None,
        )
        yield RunResult(outcome.completion.text, trace, tuple(layer_outputs), tuple(layer_models))

    async def _rank(
        self,
        mixture: MixtureConfig,
        messages: tuple[Message, ...],
        references: tuple[str, ...],
        records: list[CallRecord],
        t0: float,
        on_progress: Callable[[ProgressEvent], None] | None,
    ) -> RunResult:
        """The ranking aggregator: the aggregator model picks the best answer, which is returned
        verbatim (the MoA paper's LLM-ranker baseline). An unparseable pick falls back to the
        first answer and is recorded in the trace's ``extra``."""
        agg = mixture.aggregator
        n_layers = len(mixture.layers) + 1
        if on_progress is not None:
            on_progress(
                ProgressEvent(
                    "aggregator_started", n_layers - 1, n_layers, 0, 1, time.perf_counter() - t0
                )
            )
        seen = ranking_messages(messages, references, system_prompt=agg.system_prompt)
        ranker = agg.model_copy(update={"max_tokens": min(agg.max_tokens, 16)})
        request = ChatRequest.build(
            self.pool.get(agg.model), ranker, seen, sample=0, mixture_seed=mixture.seed
        )
        outcome = await self._calls.call(request, n_layers - 1, "aggregator", t0, None)
        records.append(outcome.record)
        if outcome.completion is None:
            assert outcome.error is not None
            outcome.error.trace = Trace.of(records, time.perf_counter() - t0)
            raise outcome.error
        pick = parse_rank(outcome.completion.text, len(references))
        extra = {"ranked_choice": pick if pick is not None else 1, "rank_parsed": pick is not None}
        chosen = references[(pick or 1) - 1]
        elapsed = time.perf_counter() - t0
        trace = Trace.of(records, elapsed, first_token_s=elapsed, extra=extra)
        return RunResult(chosen, trace)
