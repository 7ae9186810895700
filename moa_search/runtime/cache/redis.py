"""The response cache on a Redis server, shared by several workers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from moa_search.errors import CacheError, ConfigError
from moa_search.runtime.cache.base import Cache, CachedAnswer

__all__ = ["RedisCache"]


class RedisCache(Cache):
    """A Redis server shared by several workers (processes or machines).

    Keys are ``<prefix><request hash>``; values the same JSON as the SQLite cache. A worker about
    to make a call first claims it (``<prefix>claim:<hash>``, expiring), so that a second worker
    wanting the same answer waits for it instead of paying for it again; a worker whose call
    fails releases its claim, and the waiting worker makes the call itself. Uses the
    synchronous client: a lookup on a nearby server takes well under a millisecond, and one
    client is safe across threads and event loops. The URL may carry a password; it is never
    logged or stored.

    A URL that does not parse, or a server that does not answer, is a
    :class:`~moa_search.errors.ConfigError` (source ``"cache location"``); a server that goes
    away once the cache is open is a :class:`~moa_search.errors.CacheError`.
    """

    shared_claims = True

    def __init__(self, url: str, *, prefix: str = "moa-search:response:") -> None:
        super().__init__()
        import redis

        self.prefix = prefix
        self.location = _redact(url)
        self._password = _password(url)
        try:
            self._client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        except ValueError as exc:
            raise ConfigError(
                "cache location",
                "",
                "a Redis URL such as redis://host:6379/0 (or rediss://, unix://)",
                f"{self.location!r}, which does not parse ({_mask(str(exc), self._password)})",
            ) from None
        try:
            self._client.ping()
        except redis.RedisError as exc:
            raise ConfigError(
                "cache location",
                "",
                "a Redis server that answers at the given redis:// URL",
                f"{type(exc).__name__} from {self.location}",
            ) from None

    @contextmanager
    def _failures(self, operation: str) -> Iterator[None]:
        """Turns the client's errors into :class:`CacheError` (the server went away)."""
        import redis

        try:
            yield
        except redis.RedisError as exc:
            detail = _mask(f"{type(exc).__name__}: {exc}".rstrip(": "), self._password)
            raise CacheError(self.location, operation, detail) from None

    def peek(self, key: str) -> CachedAnswer | None:
        with self._failures("reading an answer"):
            raw = self._client.get(self.prefix + key)
        return CachedAnswer.from_json(raw) if raw is not None else None

    def get(self, key: str) -> CachedAnswer | None:
        value = self.peek(key)
        self.stats.count(value is not None)
        return value

    def set(self, key: str, value: CachedAnswer) -> None:
        with self._failures("storing an answer"):
            self._client.set(self.prefix + key, value.to_json())
        self.stats.writes += 1

    async def apeek(self, key: str) -> CachedAnswer | None:
        return self.peek(key)

    async def aset(self, key: str, value: CachedAnswer) -> None:
        self.set(key, value)

    async def aclaim(self, key: str, ttl_s: float) -> bool:
        claim = f"{self.prefix}claim:{key}"
        with self._failures("claiming a call"):
            if not self._client.set(claim, "1", nx=True, px=max(1, int(ttl_s * 1000))):
                return False
        stored = self.peek(key)
        if stored is not None and stored.usable:
            # stored (and its claim released) between the caller's lookup and this claim
            await self.arelease(key)
            return False
        return True

    async def arenew(self, key: str, ttl_s: float) -> None:
        with self._failures("renewing a claim"):
            self._client.pexpire(f"{self.prefix}claim:{key}", max(1, int(ttl_s * 1000)))

    async def arelease(self, key: str) -> None:
        with self._failures("releasing a claim"):
            self._client.delete(f"{self.prefix}claim:{key}")

    def __len__(self) -> int:
        with self._failures("counting answers"):
            return sum(
                1
                for k in self._client.scan_iter(match=self.prefix + "*", count=1000)
                if not k.decode().startswith(self.prefix + "claim:")
            )

    def clear(self) -> None:
        """Delete this cache's keys (and nothing else in the database)."""
        with self._failures("clearing answers"):
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


def _password(url: str) -> str:
    """The password in ``url``, or ``""``."""
    if "@" not in url or "://" not in url:
        return ""
    creds = url.split("://", 1)[1].rsplit("@", 1)[0]
    return creds.split(":", 1)[1] if ":" in creds else ""


def _mask(text: str, password: str) -> str:
    """``text`` without ``password``, should a client message quote it."""
    return text.replace(password, "***") if password else text
