"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from moa_search import local


@pytest.fixture(scope="session")
def local_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local.LocalStatus]:
    """The local llama servers (one per model), running in a private MOA_SEARCH_HOME for the
    whole session.

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
