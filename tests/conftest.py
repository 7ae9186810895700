"""Fixtures for every test, unit and integration.

The suite runs in several pytest-xdist worker processes at once (``-n`` in pyproject's
``addopts``), so nothing a test writes may be shared with a test running in another worker:
each worker gets its own ``MOA_SEARCH_HOME`` (the local pool's folder, the default response
cache), servers bind free ports, study names and Redis keys are unique per test, and the one
Redis database the distributed tests flush is locked (``tests/integration/conftest.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from moa_search.config.paths import HOME_ENV


def worker_id() -> str:
    """This process's pytest-xdist worker id (``gw0``, ``gw1``, …), or ``master`` without
    xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER", "master")


@pytest.fixture(scope="session", autouse=True)
def private_moa_search_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A ``MOA_SEARCH_HOME`` of this worker's own for the whole session, so no two workers (and
    no test and the user) share a pool file, a default cache or a server state file. Tests that
    need another home still set theirs (``monkeypatch.setenv``, the ``local_pool`` fixture)."""
    saved = os.environ.get(HOME_ENV)
    os.environ[HOME_ENV] = str(tmp_path_factory.mktemp(f"home-{worker_id()}"))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(HOME_ENV, None)
        else:
            os.environ[HOME_ENV] = saved


#: Tests that take longest, run first (by node-id prefix, longest first), so that they start
#: in the two workers at once and the short ones fill in around them; the rest keep their
#: order. Measured on the 2-core machine (the README's Tests section has the figures).
LONGEST_FIRST = (
    "tests/integration/test_notebooks.py",  # a real short study on the local pool
    "tests/integration/test_distributed.py",
    "tests/unit/test_replay_study.py",
    "tests/integration/test_alpaca_embeddings.py",
    "tests/integration/test_executor_local.py",
    "tests/integration/test_serve_local.py",
    "tests/integration/test_local_pool.py",
    "tests/integration/test_report_browser.py",
    "tests/unit/test_plan.py",
    "tests/unit/test_auto_sampler.py",
)

#: Fixtures broader than a test that are worth computing once per run, not once per worker.
_SHARED_SCOPES = ("module", "class", "package")


def _rank(item: pytest.Item) -> int:
    for i, prefix in enumerate(LONGEST_FIRST):
        if item.nodeid.startswith(prefix):
            return i
    return len(LONGEST_FIRST)


def _group(item: pytest.Item) -> str | None:
    """The pytest-xdist group an item must run in (``--dist loadgroup`` sends each group to
    one worker): every user of the session's ``local_pool`` in one (one pool per run); each
    module with a module- or class-scoped fixture (a study searched once, a browser, an
    embedding model) in its own; None for the rest, which any worker may run."""
    if "local_pool" in getattr(item, "fixturenames", ()):
        return "local_pool"
    info = getattr(item, "_fixtureinfo", None)
    for defs in getattr(info, "name2fixturedefs", {}).values():
        if any(d.scope in _SHARED_SCOPES for d in defs):
            return item.nodeid.split("::", 1)[0]
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: the rest keep their collection order
    for item in items:
        group = _group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
