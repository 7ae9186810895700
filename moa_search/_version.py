"""The installed package's version, from its metadata (one source of truth: pyproject.toml).

Reading the metadata scans the installed distributions (about 0.1 s), so it happens on first
use, not at import: :func:`package_version`, or ``moa_search.__version__``.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version

__all__ = ["package_version"]


@cache
def package_version() -> str:
    """The installed moa-search version ("0+unknown" for a source tree never installed)."""
    try:
        return version("moa-search")
    except PackageNotFoundError:
        return "0+unknown"
