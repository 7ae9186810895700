"""The local pool file: one entry per local server, written once they all answer.

Each server serves one request at a time (concurrent requests to one model queue), so each
entry has ``max_concurrency`` 1; requests to different models run in parallel. The models are
free, so both prices are 0.
"""

from __future__ import annotations

from collections.abc import Iterable

from moa_search.config import ModelSpec, Pool, save_pool
from moa_search.local.paths import default_pool_path
from moa_search.local.state import ServerInfo

__all__ = ["local_pool", "remove_pool", "write_pool"]


def local_pool(servers: Iterable[ServerInfo]) -> Pool:
    """The pool of ``servers``: each server's model under its alias, at its base URL."""
    return Pool(
        models=tuple(
            ModelSpec(
                alias=s.alias,
                base_url=s.base_url,
                model=s.model_id,
                api_key_env=None,
                input_price_per_mtok=0.0,
                output_price_per_mtok=0.0,
                max_concurrency=1,
                timeout_s=300.0,
                max_retries=1,
            )
            for s in servers
        )
    )


def write_pool(servers: Iterable[ServerInfo]) -> None:
    """Write the pool of ``servers`` at :func:`~moa_search.config.paths.default_pool_path`."""
    save_pool(local_pool(servers), default_pool_path())


def remove_pool() -> None:
    """Remove the pool file (a no-op when it is missing)."""
    default_pool_path().unlink(missing_ok=True)
