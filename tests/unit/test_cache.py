"""Response caches: SQLite persistence, a Redis cache shared by two workers, and keys and values
that never hold an API key or a URL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from moa_search.errors import ConfigError
from moa_search.runtime.cache import CachedAnswer, SQLiteCache, open_cache
from moa_search.runtime.prompting import ChatRequest


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


def test_unreachable_redis_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        open_cache("redis://:hunter2@127.0.0.1:1/0")
    assert info.value.source == "cache location"
    assert "cache location" in str(info.value) and "hunter2" not in str(info.value)
    relabelled = info.value.with_source("--cache")
    assert "--cache" in str(relabelled) and "hunter2" not in str(relabelled)
    assert (relabelled.field, relabelled.expected) == (info.value.field, info.value.expected)
