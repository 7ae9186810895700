"""Where moa-search keeps its files: the home folder and the local pool file in it.

Pure: reads the environment and builds paths, never creates or touches a file. The layers above
find the local pool here without importing :mod:`moa_search.local`, which starts servers.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["HOME_ENV", "default_pool_path", "local_dir", "state_dir"]

#: Environment variable that relocates all moa-search state (default ``~/.moa-search``).
HOME_ENV = "MOA_SEARCH_HOME"


def state_dir() -> Path:
    """Where moa-search keeps its state: ``$MOA_SEARCH_HOME`` if set, else ``~/.moa-search``."""
    home = os.environ.get(HOME_ENV)
    return Path(home).expanduser() if home else Path.home() / ".moa-search"


def local_dir() -> Path:
    """The local servers' folder: ``state_dir() / "local"`` (not created here)."""
    return state_dir() / "local"


def default_pool_path() -> Path:
    """The local pool file other commands fall back to; present only while the servers run."""
    return local_dir() / "pool.yaml"
