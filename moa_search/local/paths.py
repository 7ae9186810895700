"""Where the local servers' files and addresses are.

Files, all under :func:`local_dir` (``$MOA_SEARCH_HOME/local``, default ``~/.moa-search/local``):

- ``server-ALIAS-config.json`` — one llama server's config (host, port, its one model).
- ``server-ALIAS.log`` — that server's stdout and stderr (truncated at each start).
- ``server.json`` — ``{"servers": [{"alias", "model_id", "pid", "port", "base_url", "log"},
  ...]}``, the servers started by the last :func:`~moa_search.local.up`.
- ``pool.yaml`` — the pool; it exists only while servers that all answered are recorded.
- ``.lock`` — the lock serialising ``up`` and ``down`` across processes.

The home folder and the pool file's place are defined in :mod:`moa_search.config.paths` (so the
runtime finds the local pool without this package) and re-exported here.
"""

from __future__ import annotations

from pathlib import Path

from moa_search.config.paths import HOME_ENV, default_pool_path, local_dir, state_dir

__all__ = [
    "HOME_ENV",
    "HOST",
    "base_url",
    "config_file",
    "default_pool_path",
    "legacy_log_file",
    "local_dir",
    "lock_file",
    "log_file",
    "state_dir",
    "state_file",
]

#: The interface every local server listens on (loopback only).
HOST = "127.0.0.1"


def base_url(port: int) -> str:
    """The OpenAI-compatible base URL of the local server on ``port``."""
    return f"http://{HOST}:{port}/v1"


def state_file() -> Path:
    """``server.json``: the servers started by the last ``up``."""
    return local_dir() / "server.json"


def log_file(alias: str) -> Path:
    """The log of the server of model ``alias``."""
    return local_dir() / f"server-{alias}.log"


def legacy_log_file() -> Path:
    """The log of the single server an older moa-search started for all models."""
    return local_dir() / "server.log"


def config_file(alias: str) -> Path:
    """The ``llama_cpp.server`` config file of the server of model ``alias``."""
    return local_dir() / f"server-{alias}-config.json"


def lock_file() -> Path:
    """The lock file serialising ``up`` and ``down`` across processes."""
    return local_dir() / ".lock"
