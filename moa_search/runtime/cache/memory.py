"""A process-local response cache."""

from __future__ import annotations

from moa_search.runtime.cache.base import Cache, CachedAnswer

__all__ = ["MemoryCache"]


class MemoryCache(Cache):
    """A process-local cache, for tests and one-off runs."""

    def __init__(self) -> None:
        super().__init__()
        self._data: dict[str, CachedAnswer] = {}

    async def apeek(self, key: str) -> CachedAnswer | None:
        return self._data.get(key)

    async def aset(self, key: str, value: CachedAnswer) -> None:
        self._data[key] = value
        self.stats.writes += 1

    def __len__(self) -> int:
        return len(self._data)
