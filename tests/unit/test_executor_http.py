"""The real executor and the real openai client against the project's fault-injecting server:
concurrency along the critical path, retries (429 with Retry-After, 500, hang, reset, malformed),
quorum, streaming and the trace."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from moa_search.config import AgentSpec, MixtureConfig, ModelSpec, Pool
from moa_search.errors import QuorumError
from moa_search.runtime.cache import MemoryCache
from moa_search.runtime.executor import Executor
from moa_search.testing import FakeOpenAIServer, ModelBehavior
from moa_search.testing.traces import all_overlap, record_retry_waits, starts_after


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


def pool_for(
    srv: FakeOpenAIServer, *aliases: str, timeout_s: float = 5.0, retries: int = 3
) -> Pool:
    return Pool(
        models=tuple(
            ModelSpec(
                alias=a,
                base_url=srv.base_url,
                model=a,
                input_price_per_mtok=1.0,
                output_price_per_mtok=3.0,
                max_concurrency=8,
                timeout_s=timeout_s,
                max_retries=retries,
            )
            for a in aliases
        )
    )


def test_two_layer_latency_tracks_the_critical_path(server: FakeOpenAIServer) -> None:
    latencies = {"p1": 0.10, "p2": 0.25, "p3": 0.15, "agg": 0.10}
    for name, lat in latencies.items():
        server.set_behavior(name, ModelBehavior(latency_s=lat))
    pool = pool_for(server, *latencies)
    m = MixtureConfig(
        layers=(
            (AgentSpec(model="p1"), AgentSpec(model="p2"), AgentSpec(model="p3")),
            (AgentSpec(model="p1"), AgentSpec(model="p2"), AgentSpec(model="p3")),
        ),
        aggregator=AgentSpec(model="agg"),
    )
    result = Executor(pool).run(m, "What is a mixture of agents?")
    assert len(result.trace.calls) == 7 and all(c.ok for c in result.trace.calls)
    # the critical path, proven from the trace's per-call times (not by timing the test): the
    # three calls of each layer ran side by side, and each layer started once the one before
    # had ended, the aggregator last
    layers = [[c for c in result.trace.calls if c.layer == i] for i in range(3)]
    assert [len(calls) for calls in layers] == [3, 3, 1]
    assert all_overlap(layers[0]) and all_overlap(layers[1])
    assert starts_after(layers[1], layers[0]) and starts_after(layers[2], layers[1])
    # the aggregator's request carried the three layer-2 answers
    agg_req = next(r for r in server.requests if r.model == "agg")
    assert agg_req.stream and agg_req.messages[0]["role"] == "system"
    assert agg_req.messages[0]["content"].count("answer (seed=") == 3
    # usage came from the server: word counts; cost at the pool's prices
    rec = result.trace.calls[0]
    assert rec.tokens_out == len(result.layer_outputs[0][0].split())
    assert rec.cost_usd == pytest.approx((rec.tokens_in * 1.0 + rec.tokens_out * 3.0) / 1e6)
    assert result.answer.startswith("agg answer")


def test_retries_on_429_500_reset_malformed_and_hang(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.set_behavior("r429", ModelBehavior(faults=("429", "ok"), retry_after_s=0.3))
    server.set_behavior("r500", ModelBehavior(faults=("500", "503", "ok")))
    server.set_behavior("reset", ModelBehavior(faults=("reset", "ok")))
    server.set_behavior("malformed", ModelBehavior(faults=("malformed", "ok")))
    server.set_behavior("hang", ModelBehavior(faults=("hang", "ok"), hang_s=10))
    server.set_behavior("agg", ModelBehavior())
    names = ("r429", "r500", "reset", "malformed", "hang")
    # a 2 s timeout: every good attempt arrives and is answered well within it even on a loaded
    # machine (0.5 s let a good attempt time out once in five runs at load 4.7), and it still
    # cuts the 10 s hang
    pool = pool_for(server, *names, "agg", timeout_s=2.0)
    m = MixtureConfig(
        layers=(tuple(AgentSpec(model=n) for n in names),), aggregator=AgentSpec(model="agg")
    )
    waits = record_retry_waits(monkeypatch)
    result = Executor(pool, seed=1).run(m, "retry me")
    by_model = {c.model: c for c in result.trace.calls}
    assert all(c.ok for c in result.trace.calls)
    assert by_model["r429"].attempts == 2
    assert 0.3 in waits  # waited for the server's Retry-After (0.3 s) before the retry
    assert by_model["r500"].attempts == 3
    assert by_model["reset"].attempts == 2
    assert by_model["malformed"].attempts == 2
    assert by_model["hang"].attempts == 2
    # the timeout fired: without it the hung request would have been answered after 10 s, in
    # one attempt; the server saw a second request, and the first one had hung
    assert server.count("r500") == 3 and server.count("hang") == 2
    assert [r.fault for r in server.requests if r.model == "hang"] == ["hang", "ok"]
    assert len(waits) == 1 + 2 + 1 + 1 + 1  # one wait before every retry, none after


def test_quorum_drops_a_dead_proposer_and_records_it(server: FakeOpenAIServer) -> None:
    server.set_behavior("dead", ModelBehavior(fault_rate=1.0, fault_kinds=("500",)))
    server.set_behavior("ok1", ModelBehavior())
    server.set_behavior("ok2", ModelBehavior())
    pool = pool_for(server, "dead", "ok1", "ok2", retries=1)
    layer = (AgentSpec(model="dead"), AgentSpec(model="ok1"), AgentSpec(model="ok2"))
    m = MixtureConfig(layers=(layer,), aggregator=AgentSpec(model="ok1"), quorum=2)
    result = Executor(pool).run(m, "quorum?")
    dropped = [c for c in result.trace.calls if not c.ok]
    assert len(dropped) == 1
    assert (dropped[0].model, dropped[0].error, dropped[0].status) == ("dead", "server_error", 500)
    assert dropped[0].attempts == 2
    assert len(result.layer_outputs[0]) == 2
    with pytest.raises(QuorumError) as info:
        Executor(pool).run(m.model_copy(update={"quorum": 1.0}), "quorum?")
    assert info.value.required == 3 and info.value.answered == 2
    assert "dead" in str(info.value) and "500" in str(info.value)


def test_aggregator_streams_and_survives_a_truncated_stream(server: FakeOpenAIServer) -> None:
    server.set_behavior("p", ModelBehavior())
    server.set_behavior(
        "agg",
        ModelBehavior(
            faults=("truncate", "ok"),
            stream_chunk_delay_s=0.25,  # the client reads each chunk long before the next
            answer="one two three four five six seven eight",
        ),
    )
    pool = pool_for(server, "p", "agg")
    m = MixtureConfig(layers=((AgentSpec(model="p"),),), aggregator=AgentSpec(model="agg"))

    streaming_at_first_delta: list[bool] = []

    async def main() -> tuple[list[str], object]:
        ex = Executor(pool)
        stream = ex.astream(m, "stream please")
        deltas = []
        async for d in stream:
            if not deltas:  # the upstream stream was still open: passed on, not buffered
                streaming_at_first_delta.append(server.in_flight("agg") == 1)
            deltas.append(d)
        await ex.aclose()
        return deltas, stream.result

    deltas, result = asyncio.run(main())
    assert len(deltas) > 2  # it streamed in pieces
    assert "".join(deltas) == "one two three four five six seven eight"  # nothing repeated
    agg = result.trace.calls[-1]  # type: ignore[attr-defined]
    assert agg.role == "aggregator" and agg.attempts == 2 and agg.ok
    assert streaming_at_first_delta == [True]
    assert result.trace.first_token_s is not None  # type: ignore[attr-defined]


def test_cache_reuses_answers_and_keeps_samples_distinct(server: FakeOpenAIServer) -> None:
    server.set_behavior("p", ModelBehavior(latency_s=0.05))
    server.set_behavior("agg", ModelBehavior())
    pool = pool_for(server, "p", "agg")
    m = MixtureConfig(
        layers=((AgentSpec(model="p", samples=3, temperature=1.0),),),
        aggregator=AgentSpec(model="agg"),
    )
    cache = MemoryCache()
    first = Executor(pool, cache=cache).run(m, "sample me")
    assert len(set(first.layer_outputs[0])) == 3
    assert server.count() == 4
    second = Executor(pool, cache=cache).run(m, "sample me")
    assert server.count() == 4  # no new request reached the server (speed: benchmarks/)
    assert second.trace.cache_hits == 4 and second.answer == first.answer
    assert (cache.stats.hits, cache.stats.misses) == (4, 4)
