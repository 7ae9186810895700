"""Shared pytest fixtures."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from filelock import FileLock, Timeout

from moa_search import local

#: Databases of the Redis server on 127.0.0.1:6379 that a test may flush, one test at a time
#: each (database 0 holds the other tests' prefixed keys; 8 is benchmarks/distributed.py's).
FLUSHABLE_REDIS_DBS = (7, 10, 11, 12, 13, 14, 15)


@pytest.fixture(scope="session")
def local_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local.LocalStatus]:
    """The local llama servers (one per model), running in a private MOA_SEARCH_HOME for the
    whole session (of this pytest-xdist worker: each worker that needs it starts its own, on
    free ports).

    Yields the :class:`~moa_search.local.LocalStatus`; load the pool with
    ``moa_search.config.load_pool(status.pool_path)``. The servers are stopped and the variable
    restored at the end of the session.
    """
    saved = os.environ.get(local.HOME_ENV)
    os.environ[local.HOME_ENV] = str(tmp_path_factory.mktemp("moa-search-home"))
    try:
        yield local.up()
    finally:
        try:
            local.down()
        finally:
            if saved is None:
                os.environ.pop(local.HOME_ENV, None)
            else:
                os.environ[local.HOME_ENV] = saved


@pytest.fixture
def flushable_redis_url() -> Iterator[str]:
    """The URL of a Redis database (on the shared server) that this test alone uses: empty at
    the start, flushed again at the end.

    The command line's ``--cache redis://…`` stores answers under a fixed key prefix, so tests
    that run workers as separate processes cannot tell their keys apart from another test's by
    prefix; they get a whole database instead. Each database is held with a file lock, so two
    tests — in two pytest-xdist workers, or in two pytest runs — never use one at once; a test
    takes the first free one (and waits only when every one is in use).
    """
    locks = [
        FileLock(Path(tempfile.gettempdir()) / f"moa-search-tests-redis-db{db}.lock")
        for db in FLUSHABLE_REDIS_DBS
    ]
    chosen: int | None = None
    for db, lock in zip(FLUSHABLE_REDIS_DBS, locks, strict=True):
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        chosen = db
        break
    if chosen is None:  # every database is in use: wait for the first
        locks[0].acquire()
        chosen = FLUSHABLE_REDIS_DBS[0]
    lock = locks[FLUSHABLE_REDIS_DBS.index(chosen)]
    url = f"redis://127.0.0.1:6379/{chosen}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
        yield url
        client.flushdb()
    finally:
        client.close()
        lock.release()
