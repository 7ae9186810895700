"""The Python API (``moa_search.Mixture``) against the fake OpenAI-compatible server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from moa_search.config import AgentSpec, MixtureConfig, ModelSpec, Pool, save_mixture, save_pool
from moa_search.errors import ConfigError, QuorumError
from moa_search.runtime.cache import MemoryCache
from moa_search.runtime.executor import Executor, RunResult
from moa_search.runtime.mixture import Mixture
from moa_search.testing import FakeOpenAIServer, ModelBehavior


@pytest.fixture
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        srv.set_behavior("agg", ModelBehavior(answer="the final answer", stream_chunk_delay_s=0.01))
        yield srv


def pool_for(srv: FakeOpenAIServer, *aliases: str) -> Pool:
    return Pool(
        models=tuple(
            ModelSpec(alias=a, base_url=srv.base_url, model=a, timeout_s=5, max_retries=1)
            for a in aliases
        )
    )


MIXTURE = MixtureConfig(
    layers=((AgentSpec(model="p1", samples=2), AgentSpec(model="p2")),),
    aggregator=AgentSpec(model="agg"),
)


def test_acomplete_astream_and_the_context_manager(fake: FakeOpenAIServer) -> None:
    pool = pool_for(fake, "p1", "p2", "agg")

    async def main() -> tuple[RunResult, list[str], RunResult]:
        async with Mixture(MIXTURE, pool, cache=MemoryCache()) as mixture:
            done = await mixture.acomplete("What is a mixture of agents?")
            stream = mixture.astream([{"role": "user", "content": "Stream, please."}])
            with pytest.raises(RuntimeError):
                _ = stream.result  # not before the stream ends
            deltas = [d async for d in stream]
            return done, deltas, stream.result

    done, deltas, streamed = asyncio.run(main())
    assert done.answer == "the final answer"
    assert [(c.role, c.model) for c in done.trace.calls] == [
        ("proposer", "p1"),
        ("proposer", "p1"),
        ("proposer", "p2"),
        ("aggregator", "agg"),
    ]
    assert len(done.layer_outputs[0]) == 3
    assert len(deltas) == 3 and "".join(deltas) == "the final answer"
    assert streamed.answer == "the final answer"
    assert streamed.trace.first_token_s is not None
    assert streamed.trace.tokens_out > 0 and streamed.trace.model_calls == 4


def test_complete_is_synchronous_and_reusable(fake: FakeOpenAIServer) -> None:
    mixture = Mixture(MIXTURE, pool_for(fake, "p1", "p2", "agg"))
    first = mixture.complete("one")
    second = mixture.complete([{"role": "user", "content": "two"}])  # a new event loop
    assert first.answer == second.answer == "the final answer"
    assert fake.count("p1") == 4 and fake.count("agg") == 2


def test_load_finds_the_pool_and_names_the_mixture(fake: FakeOpenAIServer, tmp_path: Path) -> None:
    pool = pool_for(fake, "p1", "p2", "agg")
    inline = tmp_path / "inline-mix.yaml"
    save_mixture(MIXTURE.model_copy(update={"pool": pool}), inline)
    mixture = Mixture.load(inline, cache="memory")
    assert mixture.name == "inline-mix" and mixture.pool == pool
    assert mixture.complete("hi").answer == "the final answer"
    asyncio.run(mixture.aclose())

    pool_file = tmp_path / "pool.yaml"
    save_pool(pool, pool_file)
    bare = tmp_path / "bare.json"
    save_mixture(MIXTURE.model_copy(update={"name": "named"}), bare)
    by_path = Mixture.load(bare, pool=pool_file)
    assert by_path.name == "named" and by_path.pool == pool
    assert Mixture.load(bare, pool=pool).pool == pool

    small = Pool(models=(pool.get("p1"),))
    with pytest.raises(ConfigError) as info:
        Mixture.load(bare, pool=small)
    assert "layers[0][1].model" in str(info.value)


def test_errors_carry_the_trace_and_a_shared_executor_stays_open(
    fake: FakeOpenAIServer,
) -> None:
    fake.set_behavior("p2", ModelBehavior(fault_rate=1.0, fault_kinds=("500",)))
    pool = pool_for(fake, "p1", "p2", "agg")
    executor = Executor(pool)
    strict = Mixture(MIXTURE.model_copy(update={"quorum": 1.0}), pool, executor=executor)
    lenient = Mixture(MIXTURE, pool, executor=executor)
    assert strict.executor is lenient.executor is executor

    async def main() -> RunResult:
        with pytest.raises(QuorumError) as info:
            await strict.acomplete("quorum?")
        trace = info.value.trace
        assert trace is not None
        assert any(c.model == "p2" and c.error == "server_error" for c in trace.calls)
        await strict.aclose()  # not its executor: nothing is closed
        result = await lenient.acomplete("quorum?")
        await executor.aclose()
        return result

    result = asyncio.run(main())
    assert result.answer == "the final answer" and len(result.trace.failures) == 1
    with pytest.raises(ValueError):
        Mixture(MIXTURE, pool_for(fake, "p1", "p2", "agg", "extra"), executor=executor)
