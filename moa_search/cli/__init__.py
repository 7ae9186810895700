"""The ``moa-search`` command line.

The entry point is :func:`moa_search.cli.main.main` (the ``moa-search`` console script, also
``python -m moa_search.cli``); each command group lives in its own module (``run``, ``study``,
``insight``, ``local``, ``archon``). The package re-exports nothing: a ``main`` here would
shadow the :mod:`moa_search.cli.main` module.
"""

from __future__ import annotations

__all__: list[str] = []
