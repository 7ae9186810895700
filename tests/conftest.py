"""Test-run layout: with pytest-xdist (``-n auto --dist loadgroup``, the default in
pyproject.toml) the integration tests form one group that runs in one worker, in order, as
they would in a serial run — they share the session's local llama pool, PostgreSQL and Redis —
while the unit tests, which need no service, spread over the other workers."""

from __future__ import annotations

from pathlib import Path

import pytest

_INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _INTEGRATION in item.path.parents:
            item.add_marker(pytest.mark.xdist_group("integration"))
