"""Response caches: SQLite persistence, a Redis cache shared by two workers, and keys and values
that never hold an API key or a URL."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from moa_search.config import AgentSpec, MixtureConfig, ModelSpec, Pool
from moa_search.errors import ConfigError
from moa_search.runtime.cache import CachedAnswer, RedisCache, SQLiteCache, open_cache
from moa_search.runtime.executor import Executor
from moa_search.runtime.prompting import ChatRequest
from moa_search.testing import FakeOpenAIServer, ModelBehavior

REDIS_URL = "redis://127.0.0.1:6379/0"
CANARY = "sk-canary-" + uuid.uuid4().hex


def request(sample: int = 0, seed: int = 1) -> ChatRequest:
    return ChatRequest("a", "model-a", (("user", "hi"),), 0.7, 16, seed, sample)


def test_cache_key_depends_on_what_determines_the_answer_only() -> None:
    base = request()
    assert base.cache_key() == request().cache_key()
    assert base.cache_key() != request(sample=1).cache_key()
    assert base.cache_key() != request(seed=2).cache_key()
    other_alias = ChatRequest("b", "model-a", base.messages, 0.7, 16, 1, 0)
    assert other_alias.cache_key() == base.cache_key()  # the alias is a local name, not the model


def test_sqlite_cache_persists_across_instances_and_processes(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = SQLiteCache(path)
    cache.set("k1", CachedAnswer("hello", 3, 1))
    cache.close()
    again = SQLiteCache(path)
    assert again.get("k1") == CachedAnswer("hello", 3, 1)
    assert again.get("nope") is None
    assert (again.stats.hits, again.stats.misses) == (1, 1)
    code = (
        "import sys; from moa_search.runtime.cache import SQLiteCache, CachedAnswer;"
        "c = SQLiteCache(sys.argv[1]); assert c.get('k1').text == 'hello';"
        "c.set('k2', CachedAnswer('from child', 1, 2))"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)
    assert again.get("k2") == CachedAnswer("from child", 1, 2)
    assert len(again) == 2


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


def test_unreachable_redis_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        open_cache("redis://:hunter2@127.0.0.1:1/0")
    assert info.value.source == "cache location"
    assert "cache location" in str(info.value) and "hunter2" not in str(info.value)
    relabelled = info.value.with_source("--cache")
    assert "--cache" in str(relabelled) and "hunter2" not in str(relabelled)
    assert (relabelled.field, relabelled.expected) == (info.value.field, info.value.expected)


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
            await asyncio.sleep(0.1)  # worker 1's proposer calls are in flight
            second = asyncio.create_task(worker2.arun(m, "same prompt"))
            out = [await first, await second]
            await worker1.aclose()
            await worker2.aclose()
            return out

        r1, r2 = asyncio.run(both())
        assert server.count() == 3  # two proposer samples and one aggregator, each paid once
        assert r1.answer == r2.answer
        assert r1.trace.cache_hits == 0 and r2.trace.cache_hits == 3
        assert r2.trace.calls[0].latency_s > 0.2  # it waited for worker 1's answer
        assert len(RedisCache(REDIS_URL, prefix=redis_prefix)) == 3  # claims are not answers
    finally:
        server.stop()
