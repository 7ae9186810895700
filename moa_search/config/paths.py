"""Where moa-search keeps its files: the home folder and the local pool file in it.

Pure: reads the environment and builds paths, never creates or touches a file (it only looks
whether ``$MOA_SEARCH_HOME`` can be a folder). The layers above
find the local pool here without importing :mod:`moa_search.local`, which starts servers.
"""

from __future__ import annotations

import os
from pathlib import Path

from moa_search.errors import ConfigError

__all__ = ["HOME_ENV", "default_pool_path", "local_dir", "state_dir"]

#: Environment variable that relocates all moa-search state (default ``~/.moa-search``).
HOME_ENV = "MOA_SEARCH_HOME"


def state_dir() -> Path:
    """Where moa-search keeps its state: ``$MOA_SEARCH_HOME`` if set, else ``~/.moa-search``.

    Raises:
        ConfigError: ``$MOA_SEARCH_HOME`` names a file, or a path below a file, so no folder can
            be there (source ``MOA_SEARCH_HOME``).
    """
    home = os.environ.get(HOME_ENV)
    if not home:
        return Path.home() / ".moa-search"
    path = Path(home).expanduser()
    # The nearest part of the path that exists must be a folder, or the state cannot live there.
    for part in (path, *path.parents):
        if part.is_dir():
            break
        if part.exists() or part.is_symlink():
            what = "it" if part == path else str(part)
            raise ConfigError(
                HOME_ENV,
                "",
                "a folder where moa-search keeps its state (or a path where one can be created)",
                f"{home!r}, but {what} is a file, not a folder",
            )
    return path


def local_dir() -> Path:
    """The local servers' folder: ``state_dir() / "local"`` (not created here)."""
    return state_dir() / "local"


def default_pool_path() -> Path:
    """The local pool file other commands fall back to; present only while the servers run."""
    return local_dir() / "pool.yaml"
