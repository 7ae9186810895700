"""One SQLite connection per thread to a shared file (WAL mode, safe across processes)."""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from pathlib import Path


class ThreadLocalSQLite:
    """Hands each thread its own connection to ``path``, created on first use."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()

    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            # Switching a new file to WAL takes an exclusive lock, and SQLite reports "database
            # is locked" at once (no busy wait) when another process is doing the same: retry.
            for attempt in range(50):
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or attempt == 49:
                        raise
                    time.sleep(0.05 + 0.05 * random.random())
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection, if it has one."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
