"""The response cache: in memory, SQLite (default) or Redis (shared by workers)."""

from __future__ import annotations

from moa_search.runtime.cache.base import Cache, CachedAnswer, CacheStats, open_cache
from moa_search.runtime.cache.memory import MemoryCache
from moa_search.runtime.cache.redis import RedisCache
from moa_search.runtime.cache.sqlite import SQLiteCache

__all__ = [
    "Cache",
    "CacheStats",
    "CachedAnswer",
    "MemoryCache",
    "RedisCache",
    "SQLiteCache",
    "open_cache",
]
