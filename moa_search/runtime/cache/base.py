"""The response cache: a persistent map from a request's hash to the model's answer.

:class:`Cache` is the contract; :class:`~moa_search.runtime.cache.sqlite.SQLiteCache` (one file,
the single-machine default), :class:`~moa_search.runtime.cache.memory.MemoryCache` and
:class:`~moa_search.runtime.cache.redis.RedisCache` (shared by workers) implement it, and
:func:`open_cache` picks one from a location. Keys come from
:meth:`moa_search.runtime.prompting.ChatRequest.cache_key` and never contain URLs or keys; values
hold the answer text and its token counts only.
"""

from __future__ import annotations

import json
import os
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Cache", "CacheStats", "CachedAnswer", "open_cache"]


@dataclass(frozen=True)
class CachedAnswer:
    """A stored answer: the text, the provider's token counts and its finish reason (``None``
    in entries stored before finish reasons were kept)."""

    text: str
    tokens_in: int
    tokens_out: int
    usage_estimated: bool = False
    finish_reason: str | None = None

    @property
    def usable(self) -> bool:
        """Whether it holds an answer: an empty one (stored by an older version, which took
        empty answers for answers) is treated as absent, and the call is made again."""
        return bool(self.text.strip())

    def to_json(self) -> str:
        d: dict[str, Any] = {
            "text": self.text,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "usage_estimated": self.usage_estimated,
        }
        if self.finish_reason is not None:
            d["finish_reason"] = self.finish_reason
        return json.dumps(d, ensure_ascii=False)

    @classmethod
    def from_json(cls, blob: str | bytes) -> CachedAnswer:
        d = json.loads(blob)
        finish = d.get("finish_reason")
        return cls(
            d["text"],
            int(d["tokens_in"]),
            int(d["tokens_out"]),
            bool(d.get("usage_estimated")),
            finish if isinstance(finish, str) else None,
        )


@dataclass
class CacheStats:
    """Lookups answered from the cache (hits) and not (misses), and answers stored."""

    hits: int = 0
    misses: int = 0
    writes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1

    @property
    def lookups(self) -> int:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"hits": self.hits, "misses": self.misses, "writes": self.writes}


class Cache(ABC):
    """A persistent response cache.

    Contract: :meth:`apeek` returns the answer stored under ``key`` or ``None``; :meth:`aget`
    does the same and counts a hit or a miss in :attr:`stats`; :meth:`aset` stores an answer
    (the last write wins; writing the same key twice is harmless). Implementations must be safe
    to share between concurrent calls of one event loop, and, where the backing store allows
    it, between processes. A cache shared by several workers also implements :meth:`aclaim`
    :meth:`arenew` and :meth:`arelease`, so that one call is paid for once.
    """

    #: True for a cache whose claims other workers see (their lifetime then matters).
    shared_claims: bool = False

    def __init__(self) -> None:
        self.stats = CacheStats()

    @abstractmethod
    async def apeek(self, key: str) -> CachedAnswer | None:
        """The stored answer, without counting the lookup."""

    @abstractmethod
    async def aset(self, key: str, value: CachedAnswer) -> None: ...

    async def aget(self, key: str) -> CachedAnswer | None:
        """The stored answer; the lookup is counted as a hit or a miss. An empty stored answer
        (see :attr:`CachedAnswer.usable`) is a miss."""
        value = await self.apeek(key)
        if value is not None and not value.usable:
            value = None
        self.stats.count(value is not None)
        return value

    async def aclaim(self, key: str, ttl_s: float) -> bool:
        """Claim the right to make the call behind ``key`` for ``ttl_s`` seconds.

        Returns False when another worker holds the claim (it is making that call) or has
        already stored the answer. Caches not shared between workers need no coordination:
        the default always grants the claim.
        """
        return True

    async def arenew(self, key: str, ttl_s: float) -> None:  # noqa: B027 - optional hook
        """Extend this worker's claim on ``key`` to ``ttl_s`` seconds from now (the call is
        still running)."""

    async def arelease(self, key: str) -> None:  # noqa: B027 - optional hook
        """Give up a claim (the call finished, or failed)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; the default does nothing."""

    def __len__(self) -> int:
        raise NotImplementedError


def open_cache(url: str | os.PathLike[str] | None) -> Cache | None:
    """A cache from a location: ``none``, ``memory``, ``redis://…``, a path, or
    ``sqlite:///path``. An unreachable Redis server is a :class:`~moa_search.errors.ConfigError`
    whose source is ``"cache location"``."""
    from moa_search.runtime.cache.memory import MemoryCache
    from moa_search.runtime.cache.redis import RedisCache
    from moa_search.runtime.cache.sqlite import SQLiteCache

    if url is None:
        return None
    text = str(url)
    if text.lower() in {"none", "off", ""}:
        return None
    if text == "memory":
        return MemoryCache()
    if text.startswith(("redis://", "rediss://", "unix://")):
        return RedisCache(text)
    if text.startswith("sqlite:///"):
        return SQLiteCache(text[len("sqlite:///") :])
    return SQLiteCache(text)
