"""The response cache in one SQLite file: the single-machine default."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from moa_search._sqlite import ThreadLocalSQLite
from moa_search.runtime.cache.base import Cache, CachedAnswer

__all__ = ["SQLiteCache"]


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
