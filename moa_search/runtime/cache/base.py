"""The response cache: a persistent map from a request's hash to the model's answer.

:class:`Cache` is the contract; :class:`SQLiteCache` (one file, the single-machine default)
and :class:`MemoryCache` implement it. Keys come from
:meth:`moa_search.runtime.prompting.ChatRequest.cache_key` and never contain URLs or keys; values
hold the answer text and its token counts only.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moa_search._sqlite import ThreadLocalSQLite

__all__ = [
    "Cache",
    "CacheStats",
    "CachedAnswer",
    "MemoryCache",
    "RedisCache",
    "SQLiteCache",
    "open_cache",
]


@dataclass(frozen=True)
class CachedAnswer:
    """A stored answer: the text and the provider's token counts."""

    text: str
    tokens_in: int
    tokens_out: int
    usage_estimated: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {
                "text": self.text,
                "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out,
                "usage_estimated": self.usage_estimated,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, blob: str | bytes) -> CachedAnswer:
        d = json.loads(blob)
        return cls(
            d["text"], int(d["tokens_in"]), int(d["tokens_out"]), bool(d.get("usage_estimated"))
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
    and :meth:`arelease`, so that one call is paid for once.
    """

    def __init__(self) -> None:
        self.stats = CacheStats()

    @abstractmethod
    async def apeek(self, key: str) -> CachedAnswer | None:
        """The stored answer, without counting the lookup."""

    @abstractmethod
    async def aset(self, key: str, value: CachedAnswer) -> None: ...

    async def aget(self, key: str) -> CachedAnswer | None:
        """The stored answer; the lookup is counted as a hit or a miss."""
        value = await self.apeek(key)
        self.stats.count(value is not None)
        return value

    async def aclaim(self, key: str, ttl_s: float) -> bool:
        """Claim the right to make the call behind ``key`` for ``ttl_s`` seconds.

        Returns False when another worker holds the claim (it is making that call) or has
        already stored the answer. Caches not shared between workers need no coordination:
        the default always grants the claim.
        """
        return True

    async def arelease(self, key: str) -> None:  # noqa: B027 - optional hook
        """Give up a claim (the call finished, or failed)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; the default does nothing."""

    def __len__(self) -> int:
        raise NotImplementedError


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


class SQLiteCache(Cache):
    """An SQLite file, safe across threads and processes (WAL mode, one row per key).

    Lookups and writes are sub-millisecond local operations, so they run on the calling thread.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        self._db = ThreadLocalSQLite(self.path)
        conn = self._conn()
        conn.execute(
            "CREATE TABLE IF NOT EXISTS responses ("
            " key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
        )
        conn.commit()

    def _conn(self) -> sqlite3.Connection:
        return self._db.conn()

    def peek(self, key: str) -> CachedAnswer | None:
        row = self._conn().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return CachedAnswer.from_json(row[0]) if row else None

    def get(self, key: str) -> CachedAnswer | None:
        value = self.peek(key)
        self.stats.count(value is not None)
        return value

    def set(self, key: str, value: CachedAnswer) -> None:
        self._conn().execute(
            "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
            (key, value.to_json(), time.time()),
        )
        self.stats.writes += 1

    async def apeek(self, key: str) -> CachedAnswer | None:
        return self.peek(key)

    async def aset(self, key: str, value: CachedAnswer) -> None:
        self.set(key, value)

    def __len__(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class RedisCache(Cache):
    """A Redis server shared by several workers (processes or machines).

    Keys are ``<prefix><request hash>``; values the same JSON as the SQLite cache. A worker about
    to make a call first claims it (``<prefix>claim:<hash>``, expiring), so that a second worker
    wanting the same answer waits for it instead of paying for it again. Uses the
    synchronous client: a lookup on a nearby server takes well under a millisecond, and one
    client is safe across threads and event loops. The URL may carry a password; it is never
    logged or stored.
    """

    def __init__(self, url: str, *, prefix: str = "moa-search:response:") -> None:
        super().__init__()
        import redis

        self.prefix = prefix
        self._client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        try:
            self._client.ping()
        except redis.RedisError as exc:
            from moa_search.errors import ConfigError

            raise ConfigError(
                "--cache",
                "",
                "a Redis server that answers at the given redis:// URL",
                f"{type(exc).__name__} from {_redact(url)}",
            ) from None

    def peek(self, key: str) -> CachedAnswer | None:
        raw = self._client.get(self.prefix + key)
        return CachedAnswer.from_json(raw) if raw is not None else None  # type: ignore[arg-type]

    def get(self, key: str) -> CachedAnswer | None:
        value = self.peek(key)
        self.stats.count(value is not None)
        return value

    def set(self, key: str, value: CachedAnswer) -> None:
        self._client.set(self.prefix + key, value.to_json())
        self.stats.writes += 1

    async def apeek(self, key: str) -> CachedAnswer | None:
        return self.peek(key)

    async def aset(self, key: str, value: CachedAnswer) -> None:
        self.set(key, value)

    async def aclaim(self, key: str, ttl_s: float) -> bool:
        claim = f"{self.prefix}claim:{key}"
        if not self._client.set(claim, "1", nx=True, px=max(1, int(ttl_s * 1000))):
            return False
        if self._client.exists(self.prefix + key):
            # stored (and its claim released) between the caller's lookup and this claim
            self._client.delete(claim)
            return False
        return True

    async def arelease(self, key: str) -> None:
        self._client.delete(f"{self.prefix}claim:{key}")

    def __len__(self) -> int:
        return sum(
            1
            for k in self._client.scan_iter(match=self.prefix + "*", count=1000)
            if not k.decode().startswith(self.prefix + "claim:")
        )

    def clear(self) -> None:
        """Delete this cache's keys (and nothing else in the database)."""
        keys = list(self._client.scan_iter(match=self.prefix + "*", count=1000))
        if keys:
            self._client.delete(*keys)

    def close(self) -> None:
        self._client.close()


def _redact(url: str) -> str:
    """A URL without its password."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user + ':***' if ':' in creds else user}@{host}"


def open_cache(url: str | os.PathLike[str] | None) -> Cache | None:
    """A cache from a CLI-style location: ``none``, ``memory``, ``redis://…``, a path, or
    ``sqlite:///path``."""
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
