"""Executor logic against an in-process scripted backend (no HTTP): layering, references,
samples, cache, retries, quorum and stream retries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import get_args

import pytest

from moa_search.config import AgentSpec, MixtureConfig, ModelKind, ModelSpec, Pool
from moa_search.errors import ModelCallError, QuorumError
from moa_search.runtime.backends import (
    BACKEND_FACTORIES,
    Backend,
    Completion,
    OpenAIBackend,
    ReplayBackend,
    backend_for,
)
from moa_search.runtime.cache import MemoryCache
from moa_search.runtime.executor import Executor
from moa_search.runtime.prompting import ChatRequest
from moa_search.testing.traces import (
    all_overlap,
    record_retry_waits,
    starts_after,
)

Behaviour = Callable[[ChatRequest, int], "str | ModelCallError"]


class Scripted(Backend):
    """Answers after ``delay_s``; ``behaviour(request, attempt_no)`` gives text or an error."""

    def __init__(self, spec: ModelSpec, behaviour: Behaviour, delay_s: float = 0.0) -> None:
        super().__init__(spec)
        self.behaviour = behaviour
        self.delay_s = delay_s
        self.requests: list[ChatRequest] = []
        self.active = 0
        self.max_active = 0

    async def complete(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(self.delay_s)
            out = self.behaviour(request, len(self.requests))
        finally:
            self.active -= 1
        if isinstance(out, ModelCallError):
            raise out
        return Completion(out, 10, len(out.split()), "stop")

    async def stream(self, request: ChatRequest) -> AsyncIterator[str | Completion]:
        self.requests.append(request)
        await asyncio.sleep(self.delay_s)
        out = self.behaviour(request, len(self.requests))
        if isinstance(out, ModelCallError):
            raise out
        words = out.split(" ")
        text = ""
        for i, w in enumerate(words):
            piece = w if i == 0 else " " + w
            text += piece
            yield piece
        yield Completion(text, 10, len(words), "stop")


def pool(*aliases: str, concurrency: int = 4, retries: int = 2) -> Pool:
    return Pool(
        models=tuple(
            ModelSpec(
                alias=a,
                base_url="http://127.0.0.1:9/v1",
                model=f"id-{a}",
                input_price_per_mtok=1.0,
                output_price_per_mtok=2.0,
                max_concurrency=concurrency,
                max_retries=retries,
            )
            for a in aliases
        )
    )


def echo(name: str) -> Behaviour:
    return lambda req, n: f"{name} seed {req.seed} sample {req.sample}"


def run(executor: Executor, mixture: MixtureConfig, prompt: str = "hello?"):
    async def main():
        return await executor.arun(mixture, prompt)

    return asyncio.run(main())


def test_layers_run_concurrently_and_see_previous_answers() -> None:
    p = pool("a", "b", "c", "agg")
    backends = {
        "a": Scripted(p.get("a"), echo("A"), 0.2),
        "b": Scripted(p.get("b"), echo("B"), 0.2),
        "c": Scripted(p.get("c"), echo("C"), 0.2),
        "agg": Scripted(p.get("agg"), echo("AGG"), 0.1),
    }
    m = MixtureConfig(
        layers=(
            (AgentSpec(model="a"), AgentSpec(model="b"), AgentSpec(model="c")),
            (AgentSpec(model="a"), AgentSpec(model="b")),
        ),
        aggregator=AgentSpec(model="agg"),
    )
    result = run(Executor(p, backends=backends), m)
    # the critical path, from the trace's per-call times: each layer's calls ran side by side
    # (every backend was running at once), and each layer started after the one before ended
    layers = [[c for c in result.trace.calls if c.layer == i] for i in range(3)]
    assert all_overlap(layers[0]) and all_overlap(layers[1])
    assert starts_after(layers[1], layers[0]) and starts_after(layers[2], layers[1])
    assert backends["a"].max_active == 1 and result.answer.startswith("AGG")
    assert [c.layer for c in result.trace.calls] == [0, 0, 0, 1, 1, 2]
    assert [c.role for c in result.trace.calls][-1] == "aggregator"
    # layer 1 saw all three layer-0 answers; the aggregator saw layer 1's two
    layer1_request = backends["a"].requests[1]
    system = layer1_request.messages[0][1]
    assert layer1_request.messages[0][0] == "system"
    for name in ("A seed", "B seed", "C seed"):
        assert name in system
    agg_system = backends["agg"].requests[0].messages[0][1]
    assert agg_system.count("seed") == 2
    assert layer1_request.messages[-1] == ("user", "hello?")
    assert result.layer_outputs[0][0].startswith("A seed")
    assert result.trace.cost_usd == pytest.approx(
        sum((10 * 1.0 + c.tokens_out * 2.0) / 1e6 for c in result.trace.calls)
    )


def test_samples_are_distinct_calls_with_distinct_seeds_and_cache_keys() -> None:
    p = pool("a", "agg")
    backends = {"a": Scripted(p.get("a"), echo("A")), "agg": Scripted(p.get("agg"), echo("G"))}
    m = MixtureConfig(
        layers=((AgentSpec(model="a", samples=3), AgentSpec(model="a")),),
        aggregator=AgentSpec(model="agg"),
    )
    cache = MemoryCache()
    ex = Executor(p, cache=cache, backends=backends)
    first = run(ex, m)
    reqs = backends["a"].requests
    assert [r.sample for r in reqs] == [0, 1, 2, 3]
    assert len({r.seed for r in reqs}) == 4
    assert len(set(first.layer_outputs[0])) == 4
    assert len(cache) == 5  # four proposer answers and the aggregator's, none collapsed
    assert first.trace.cache_hits == 0 and cache.stats.misses == 5
    second = run(ex, m)
    assert second.trace.cache_hits == 5 and second.trace.model_calls == 0
    assert second.answer == first.answer
    assert len(backends["a"].requests) == 4  # no new calls
    assert second.trace.spent_usd == 0 and second.trace.cost_usd == pytest.approx(
        first.trace.cost_usd
    )


def test_retries_honour_retry_after_and_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    p = pool("a", "agg")

    def flaky(req: ChatRequest, n: int) -> str | ModelCallError:
        if n <= 2:
            return ModelCallError("a", "rate_limit", "slow down", status=429, retry_after=0.15)
        return "fine"

    backends = {"a": Scripted(p.get("a"), flaky), "agg": Scripted(p.get("agg"), echo("G"))}
    m = MixtureConfig(layers=((AgentSpec(model="a"),),), aggregator=AgentSpec(model="agg"))
    waits = record_retry_waits(monkeypatch)
    result = run(Executor(p, backends=backends), m)
    assert waits == [0.15, 0.15]  # two waits of Retry-After
    rec = result.trace.calls[0]
    assert rec.ok and rec.attempts == 3


def test_non_retryable_error_is_not_retried_and_quorum_decides() -> None:
    p = pool("a", "b", "agg")
    backends = {
        "a": Scripted(p.get("a"), lambda r, n: ModelCallError("a", "auth", "bad key", status=401)),
        "b": Scripted(p.get("b"), echo("B")),
        "agg": Scripted(p.get("agg"), echo("G")),
    }
    m = MixtureConfig(
        layers=((AgentSpec(model="a"), AgentSpec(model="b", samples=2)),),
        aggregator=AgentSpec(model="agg"),
        quorum=2,
    )
    result = run(Executor(p, backends=backends), m)
    failed = [c for c in result.trace.calls if not c.ok]
    assert len(failed) == 1 and failed[0].error == "auth" and failed[0].attempts == 1
    assert failed[0].status == 401
    assert len(result.layer_outputs[0]) == 2
    strict = m.model_copy(update={"quorum": 3})
    with pytest.raises(QuorumError) as info:
        run(Executor(p, backends=backends), strict)
    assert info.value.answered == 2 and info.value.required == 3
    assert info.value.failures[0].kind == "auth"
    trace = info.value.trace
    assert trace is not None
    assert len(trace.calls) == 3 and trace.failures[0].model == "a"


def test_concurrency_limit_is_respected() -> None:
    p = pool("a", "agg", concurrency=2)
    backends = {"a": Scripted(p.get("a"), echo("A"), 0.1), "agg": Scripted(p.get("agg"), echo("G"))}
    m = MixtureConfig(
        layers=((AgentSpec(model="a", samples=5),),), aggregator=AgentSpec(model="agg")
    )
    result = run(Executor(p, backends=backends), m)
    # the backend's concurrency counter: all five calls ran, never more than two at once
    assert backends["a"].max_active == 2 and len(backends["a"].requests) == 5
    assert len(result.trace.calls) == 6


class BreaksOnce(Scripted):
    """Streams 'Hello' then breaks on the first attempt; the retry streams the whole text."""

    async def stream(self, request: ChatRequest) -> AsyncIterator[str | Completion]:
        self.requests.append(request)
        if len(self.requests) == 1:
            yield "Hello"
            yield " wor"
            raise ModelCallError("agg", "stream_interrupted", "connection dropped")
        for piece in ("Hel", "lo", " world", "!"):
            yield piece
        yield Completion("Hello world!", 5, 3, "stop")


def test_interrupted_stream_is_retried_without_repeating_text() -> None:
    p = pool("agg")
    backend = BreaksOnce(p.get("agg"), echo("G"))
    m = MixtureConfig(aggregator=AgentSpec(model="agg"))

    async def main() -> tuple[list[str], object]:
        stream = Executor(p, backends={"agg": backend}).astream(m, "hi")
        return [d async for d in stream], stream.result

    deltas, result = asyncio.run(main())
    assert "".join(deltas) == "Hello world!"
    assert result.answer == "Hello world!"  # type: ignore[attr-defined]
    assert result.trace.calls[0].attempts == 2  # type: ignore[attr-defined]
    assert result.trace.first_token_s is not None  # type: ignore[attr-defined]


def test_aggregator_failure_raises_with_trace() -> None:
    p = pool("a", "agg", retries=1)
    backends = {
        "a": Scripted(p.get("a"), echo("A")),
        "agg": Scripted(
            p.get("agg"), lambda r, n: ModelCallError("agg", "server_error", "boom", status=500)
        ),
    }
    m = MixtureConfig(layers=((AgentSpec(model="a"),),), aggregator=AgentSpec(model="agg"))
    with pytest.raises(ModelCallError) as info:
        run(Executor(p, backends=backends), m)
    assert info.value.attempts == 2 and info.value.kind == "server_error"
    trace = info.value.trace
    assert trace is not None and len(trace.calls) == 2


def test_ranking_aggregator_returns_the_picked_proposal_verbatim() -> None:
    p = pool("a", "b", "agg")
    backends = {
        "a": Scripted(p.get("a"), lambda r, n: "answer from a"),
        "b": Scripted(p.get("b"), lambda r, n: "answer from b"),
        "agg": Scripted(p.get("agg"), lambda r, n: "I pick [2]."),
    }
    m = MixtureConfig(
        layers=((AgentSpec(model="a"), AgentSpec(model="b")),),
        aggregator=AgentSpec(model="agg", max_tokens=200),
        aggregation="rank",
    )
    result = run(Executor(p, backends=backends), m)
    assert result.answer == "answer from b"
    assert result.trace.extra == {"ranked_choice": 2, "rank_parsed": True}
    ranker_request = backends["agg"].requests[0]
    assert ranker_request.max_tokens == 16
    assert "[1] answer from a" in ranker_request.messages[0][1]
    assert [c.role for c in result.trace.calls] == ["proposer", "proposer", "aggregator"]
    backends["agg"] = Scripted(p.get("agg"), lambda r, n: "they are all fine")
    fallback = run(Executor(p, backends=backends), m)
    assert fallback.answer == "answer from a"
    assert fallback.trace.extra == {"ranked_choice": 1, "rank_parsed": False}


def test_each_model_gets_the_backend_of_its_kind(tmp_path: Path) -> None:
    outputs = tmp_path / "model_outputs.json"
    outputs.write_text(json.dumps([{"instruction": "hi", "output": "recorded hello"}]))
    p = Pool(
        models=(
            ModelSpec(alias="net", base_url="http://127.0.0.1:1/v1", model="m"),
            ModelSpec(alias="rec", model="r", replay=str(outputs)),
        )
    )
    assert isinstance(backend_for(p.get("net")), OpenAIBackend)
    assert set(BACKEND_FACTORIES) == set(get_args(ModelKind))
    executor = Executor(p)
    assert isinstance(executor.backend("net"), OpenAIBackend)
    assert isinstance(executor.backend("rec"), ReplayBackend)
    result = run(executor, MixtureConfig(aggregator=AgentSpec(model="rec")), "hi")
    assert result.answer == "recorded hello" and result.trace.calls[0].usage_estimated
