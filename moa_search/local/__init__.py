"""The embedded offline pool: one llama.cpp server per local model.

- :mod:`~moa_search.local.paths` — where the servers' files are (the home folder and the pool
  file's place come from :mod:`moa_search.config.paths`);
- :mod:`~moa_search.local.models` — the models, found in their PyPI packages;
- :mod:`~moa_search.local.state` — ``server.json``, the record of the started servers, and the
  status types;
- :mod:`~moa_search.local.servers` — starting, stopping and probing the servers (:func:`up`,
  :func:`down`, :func:`status`);
- :mod:`~moa_search.local.pool` — the pool file naming them.
"""

from __future__ import annotations

from moa_search.local.models import LocalModel, local_models
from moa_search.local.paths import HOME_ENV, default_pool_path, local_dir, state_dir
from moa_search.local.servers import (
    PROMPT_THREADS_PER_SERVER,
    THREADS_PER_SERVER,
    LocalServerError,
    down,
    server_config,
    status,
    up,
)
from moa_search.local.state import LocalStatus, ServerInfo

__all__ = [
    "HOME_ENV",
    "PROMPT_THREADS_PER_SERVER",
    "THREADS_PER_SERVER",
    "LocalModel",
    "LocalServerError",
    "LocalStatus",
    "ServerInfo",
    "default_pool_path",
    "down",
    "local_dir",
    "local_models",
    "server_config",
    "state_dir",
    "status",
    "up",
]
