"""The response cache: in memory, SQLite (default) or Redis (shared by workers).
"""

from __future__ import annotations

from moa_search.runtime.cache.base import (
    Cache,
    CacheStats,
    CachedAnswer,
    MemoryCache,
    RedisCache,
    SQLiteCache,
    open_cache,
)

__all__ = [
    "Cache",
    "CacheStats",
    "CachedAnswer",
    "MemoryCache",
    "RedisCache",
    "SQLiteCache",
    "open_cache",
]
