"""With the test server failing 20% of calls (429 with Retry-After, 500, hangs past the timeout,
resets, malformed bodies, truncated streams), runs answer whenever their quorum holds and a
study completes with every attempt accounted for."""

from __future__ import annotations

import asyncio

from moa_search.config import AgentSpec, MixtureConfig, ModelSpec, Pool
from moa_search.errors import ModelCallError, QuorumError
from moa_search.runtime.executor import Executor
from moa_search.testing import FakeOpenAIServer, ModelBehavior

# Client timeout for these tests: long enough that every request reaches the in-process server
# even on a loaded machine (so an attempt never times out before it arrives), short enough that
# a "hang" (hang_s below) is cut by it.
TIMEOUT_S = 2.0

FAULTS = dict(
    fault_rate=0.2,
    fault_kinds=("429", "500", "hang", "reset", "malformed", "truncate"),
    retry_after_s=0.05,
    hang_s=5.0,
)


def test_runs_answer_whenever_the_quorum_holds() -> None:
    behaviors = {
        m: ModelBehavior(seed=i, stream_chunk_delay_s=0.001, **FAULTS)
        for i, m in enumerate(("p1", "p2", "p3", "agg"))
    }
    with FakeOpenAIServer(behaviors) as server:
        pool = Pool(
            models=tuple(
                ModelSpec(
                    alias=m, base_url=server.base_url, model=m, timeout_s=TIMEOUT_S, max_retries=4
                )
                for m in behaviors
            )
        )
        layer = tuple(AgentSpec(model=m) for m in ("p1", "p2", "p3"))
        m = MixtureConfig(layers=(layer, layer), aggregator=AgentSpec(model="agg"), quorum=2)

        async def main() -> list[object]:
            ex = Executor(pool, seed=7)
            out = await asyncio.gather(
                *(ex.arun(m, f"prompt {i}") for i in range(12)), return_exceptions=True
            )
            await ex.aclose()
            return list(out)

        results = asyncio.run(main())
        answered = 0
        attempts = 0
        faults_seen = {r.fault for r in server.requests}
        for r in results:
            if isinstance(r, QuorumError):
                assert r.answered < r.required  # it only gives up when the quorum is lost
                assert r.trace is not None
                attempts += r.trace.attempts
            elif isinstance(r, ModelCallError):
                assert r.attempts == 5  # the aggregator exhausted its retries
                assert r.trace is not None
                attempts += r.trace.attempts
            else:
                answered += 1
                attempts += r.trace.attempts  # type: ignore[union-attr]
                assert r.answer  # type: ignore[union-attr]
        assert answered == 12
        assert faults_seen >= {"429", "500", "hang", "reset", "malformed", "truncate"}
        assert attempts == server.count()  # every attempt that reached the server is in a trace


def test_serve_answers_every_request_under_faults() -> None:
    from openai import OpenAI

    from moa_search.serve.app import create_app, running

    behaviors = {
        m: ModelBehavior(seed=10 + i, stream_chunk_delay_s=0.001, **FAULTS)
        for i, m in enumerate(("p1", "p2", "agg"))
    }
    with FakeOpenAIServer(behaviors) as server:
        pool = Pool(
            models=tuple(
                ModelSpec(
                    alias=m, base_url=server.base_url, model=m, timeout_s=TIMEOUT_S, max_retries=4
                )
                for m in behaviors
            )
        )
        m = MixtureConfig(
            name="moa",
            layers=((AgentSpec(model="p1"), AgentSpec(model="p2")),),
            aggregator=AgentSpec(model="agg"),
        )
        with running(create_app({"moa": (m, pool)})) as url:
            client = OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=60)
            messages = [{"role": "user", "content": "hello"}]
            for i in range(6):
                resp = client.chat.completions.create(
                    model="moa", messages=[{"role": "user", "content": f"hello {i}"}]
                )
                assert resp.choices[0].message.content
                chunks = client.chat.completions.create(model="moa", messages=messages, stream=True)
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                assert text
            client.close()
        assert {r.fault for r in server.requests} - {"ok"}  # faults really happened
