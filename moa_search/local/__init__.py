"""The embedded offline pool: one llama.cpp server per local model.
"""

from __future__ import annotations

from moa_search.local.servers import (
    HOME_ENV,
    THREADS_PER_SERVER,
    LocalModel,
    LocalServerError,
    LocalStatus,
    ServerInfo,
    default_pool_path,
    down,
    local_dir,
    local_models,
    server_config,
    state_dir,
    status,
    up,
)

__all__ = [
    "HOME_ENV",
    "LocalModel",
    "LocalServerError",
    "LocalStatus",
    "ServerInfo",
    "THREADS_PER_SERVER",
    "default_pool_path",
    "down",
    "local_dir",
    "local_models",
    "server_config",
    "state_dir",
    "status",
    "up",
]
