"""The Redis cache against the real Redis server on 127.0.0.1:6379."""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from moa_search.config import AgentSpec, MixtureConfig, ModelSpec, Pool
from moa_search.runtime.cache import RedisCache, SQLiteCache
from moa_search.runtime.executor import Executor
from moa_search.testing import FakeOpenAIServer, ModelBehavior

REDIS_URL = "redis://127.0.0.1:6379/0"
CANARY = "sk-canary-" + uuid.uuid4().hex


@pytest.fixture
def redis_prefix() -> str:
    prefix = f"moa-search-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)


def test_redis_cache_is_shared_between_workers(redis_prefix: str) -> None:
    server = FakeOpenAIServer({"p": ModelBehavior(), "agg": ModelBehavior()}).start()
    try:
        pool = Pool(
            models=tuple(
                ModelSpec(alias=m, base_url=server.base_url, model=m) for m in ("p", "agg")
            )
        )
        m = MixtureConfig(
            layers=((AgentSpec(model="p", samples=2),),), aggregator=AgentSpec(model="agg")
        )
        worker1 = RedisCache(REDIS_URL, prefix=redis_prefix)
        worker2 = RedisCache(REDIS_URL, prefix=redis_prefix)
        first = Executor(pool, cache=worker1).run(m, "shared?")
        assert server.count() == 3 and len(worker2) == 3
        second = Executor(pool, cache=worker2).run(m, "shared?")
        assert server.count() == 3  # the second worker paid for nothing
        assert second.trace.cache_hits == 3 and second.answer == first.answer
        assert worker2.stats.hits == 3
    finally:
        server.stop()


def test_canary_key_never_reaches_cache_keys_or_values(
    tmp_path: Path, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOA_TEST_CANARY_KEY", CANARY)
    server = FakeOpenAIServer(
        {"p": ModelBehavior(), "agg": ModelBehavior()}, require_api_key=CANARY
    ).start()
    try:
        pool = Pool(
            models=tuple(
                ModelSpec(
                    alias=m, base_url=server.base_url, model=m, api_key_env="MOA_TEST_CANARY_KEY"
                )
                for m in ("p", "agg")
            )
        )
        m = MixtureConfig(layers=((AgentSpec(model="p"),),), aggregator=AgentSpec(model="agg"))
        sqlite_cache = SQLiteCache(tmp_path / "c.sqlite")
        result = Executor(pool, cache=sqlite_cache).run(m, "secret?")
        assert all(c.ok for c in result.trace.calls)  # the key was sent, so the server answered
        redis_cache = RedisCache(REDIS_URL, prefix=redis_prefix)
        Executor(pool, cache=redis_cache).run(m, "secret?")
        rows = sqlite3.connect(tmp_path / "c.sqlite").execute("SELECT key, value FROM responses")
        blob = " ".join(k + v for k, v in rows)
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=redis_prefix + "*"):
            blob += key.decode() + client.get(key).decode()
        blob += str(result.trace.to_dict())
        assert blob and CANARY not in blob and server.base_url not in blob
    finally:
        server.stop()
        os.environ.pop("MOA_TEST_CANARY_KEY", None)


def test_a_call_in_flight_at_one_worker_is_not_paid_for_again_by_another(
    redis_prefix: str,
) -> None:
    import asyncio

    server = FakeOpenAIServer({"p": ModelBehavior(latency_s=0.4), "agg": ModelBehavior()}).start()
    try:
        pool = Pool(
            models=tuple(
                ModelSpec(alias=m, base_url=server.base_url, model=m) for m in ("p", "agg")
            )
        )
        m = MixtureConfig(
            layers=((AgentSpec(model="p", samples=2),),), aggregator=AgentSpec(model="agg")
        )
        worker1 = Executor(pool, cache=RedisCache(REDIS_URL, prefix=redis_prefix))
        worker2 = Executor(pool, cache=RedisCache(REDIS_URL, prefix=redis_prefix))

        async def both() -> list[Any]:
            first = asyncio.create_task(worker1.arun(m, "same prompt"))
            while server.in_flight("p") < 2:  # until worker 1's proposer calls are in flight
                await asyncio.sleep(0.01)
            second = asyncio.create_task(worker2.arun(m, "same prompt"))
            while not second.done() and not first.done():
                await asyncio.sleep(0.01)
            # worker 2 could not finish first: it waited for worker 1's answers
            assert not second.done() or first.done()
            out = [await first, await second]
            await worker1.aclose()
            await worker2.aclose()
            return out

        r1, r2 = asyncio.run(both())
        assert server.count() == 3  # two proposer samples and one aggregator, each paid once
        assert r1.answer == r2.answer
        assert r1.trace.cache_hits == 0 and r2.trace.cache_hits == 3
        # worker 2 started while worker 1's calls were in flight, and was answered from them
        assert all(c.cache_hit for c in r2.trace.calls)
        assert len(RedisCache(REDIS_URL, prefix=redis_prefix)) == 3  # claims are not answers
    finally:
        server.stop()


def test_a_claim_is_short_lived_and_renewed_while_its_call_runs(
    redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed worker's claims must expire soon (others then make the calls themselves), so a
    claim lives CLAIM_TTL_S, not the call's worst case, and the worker making the call renews
    it while the call runs."""
    import itertools
    import threading
    import time

    import moa_search.runtime.calls as calls

    # renewed every 0.5 s (a third of it): a renewal late by a whole second on a loaded machine
    # (the other pytest-xdist worker beside it) still finds the claim alive
    monkeypatch.setattr(calls, "CLAIM_TTL_S", 1.5)
    client = redis.Redis.from_url(REDIS_URL)
    server = FakeOpenAIServer({"p": ModelBehavior(latency_s=4.0)}).start()
    try:
        pool = Pool(models=(ModelSpec(alias="p", base_url=server.base_url, model="p"),))
        m = MixtureConfig(layers=(), aggregator=AgentSpec(model="p"))
        cache = RedisCache(REDIS_URL, prefix=redis_prefix)

        def claim_key(cache: RedisCache) -> str:
            keys = [
                k.decode().removeprefix(redis_prefix + "claim:")
                for k in client.scan_iter(match=redis_prefix + "claim:*")
            ]
            return keys[0] if keys else "none"

        run = threading.Thread(target=lambda: Executor(pool, cache=cache).run(m, "renew?"))
        run.start()
        ttls: list[int] = []  # the claim's remaining time, -2 when there was none
        deadline = time.monotonic() + 30  # a bound on the polling, not a timing assertion
        while run.is_alive() and time.monotonic() < deadline:
            if server.in_flight("p"):
                ttl = int(client.pttl(redis_prefix + "claim:" + claim_key(cache)))
                if server.in_flight("p"):  # still in flight after the read: it counts
                    ttls.append(ttl)
        run.join()
        # the model's worst case is 60 s x 3 attempts: the claim is far shorter, it never
        # lapsed while the call was in flight, and its remaining time went back up (renewed)
        assert ttls and -2 not in ttls and max(ttls) <= 1500
        assert any(b > a for a, b in itertools.pairwise(ttls))
        assert server.count() == 1
    finally:
        server.stop()
