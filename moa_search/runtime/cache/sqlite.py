"""The response cache in one SQLite file: the single-machine default."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from moa_search._sqlite import ThreadLocalSQLite
from moa_search.errors import CacheError, ConfigError
from moa_search.runtime.cache.base import Cache, CachedAnswer

__all__ = ["SQLiteCache"]


class SQLiteCache(Cache):
    """An SQLite file, safe across threads and processes (WAL mode, one row per key).

    Lookups and writes are sub-millisecond local operations, so they run on the calling thread.
    A file that cannot be opened as a cache (not an SQLite database, a directory, a parent that
    is a file, no permission) is a :class:`~moa_search.errors.ConfigError` naming the file and
    what to do (source ``"cache location"``); a failure once it is open (the file corrupted or
    removed during a run, the disk full) is a :class:`~moa_search.errors.CacheError`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        if self.path.is_dir():
            raise _unusable(
                self.path, "which is a directory", "give the path of a file in it instead"
            )
        try:
            self._db = ThreadLocalSQLite(self.path)
            conn = self._conn()
            conn.execute(
                "CREATE TABLE IF NOT EXISTS responses ("
                " key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
            )
            conn.execute("SELECT key, value FROM responses LIMIT 1").fetchall()
            conn.commit()
        except sqlite3.DatabaseError as exc:
            if _is_corrupt(exc):
                raise _unusable(
                    self.path,
                    f"which is not a readable SQLite database ({exc})",
                    "move the file aside (or delete it) to start an empty cache there, or give "
                    "another path",
                ) from None
            raise _unusable(
                self.path,
                f"which SQLite cannot open ({exc})",
                "check that its folder exists and is writable, or give another path",
            ) from None
        except OSError as exc:
            blocker = next((p for p in self.path.parents if p.is_file()), None)
            what = (
                f"inside {str(blocker)!r}, which is a file, not a folder"
                if blocker is not None
                else f"where no file can be made ({exc.strerror or exc})"
            )
            raise _unusable(
                self.path, what, "give a path in a folder that exists or can be made"
            ) from None

    def _conn(self) -> sqlite3.Connection:
        return self._db.conn()

    @contextmanager
    def _failures(self, operation: str) -> Iterator[None]:
        """Turns SQLite's errors once the cache is open into :class:`CacheError`."""
        try:
            yield
        except sqlite3.Error as exc:
            raise CacheError(str(self.path), operation, f"{type(exc).__name__}: {exc}") from None

    def peek(self, key: str) -> CachedAnswer | None:
        with self._failures("reading an answer"):
            row = (
                self._conn().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
            )
        return CachedAnswer.from_json(row[0]) if row else None

    def get(self, key: str) -> CachedAnswer | None:
        value = self.peek(key)
        self.stats.count(value is not None)
        return value

    def set(self, key: str, value: CachedAnswer) -> None:
        with self._failures("storing an answer"):
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
        with self._failures("counting answers"):
            return int(self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file is not (or no longer) a database."""
    text = str(exc).lower()
    return (
        not isinstance(exc, sqlite3.OperationalError)
        or "malformed" in text
        or ("not a database" in text)
    )


def _unusable(path: Path, what: str, todo: str) -> ConfigError:
    return ConfigError(
        "cache location", "", "an SQLite response cache file", f"{str(path)!r}, {what}; {todo}"
    )
