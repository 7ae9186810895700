"""The record of the local servers: ``server.json``, and the status reported from it.

:func:`read_state` and :func:`write_state` read and write the record; whether a recorded server
actually runs is decided by :mod:`moa_search.local.servers`, which probes its process and port.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moa_search.local.paths import (
    base_url,
    default_pool_path,
    legacy_log_file,
    log_file,
    state_file,
)

__all__ = [
    "LocalStatus",
    "ServerInfo",
    "clear_state",
    "read_state",
    "status_of",
    "write_json",
    "write_state",
]


@dataclass(frozen=True)
class ServerInfo:
    """One recorded llama server, serving one model.

    Attributes:
        alias: the pool alias of its model ("" for a server recorded by an older moa-search
            that served several models from one process).
        model_id: the model name it answers to, used as ``model`` in requests.
        pid: its process id (also its process group id).
        port: its loopback port.
        base_url: its OpenAI-compatible base URL, ``http://127.0.0.1:PORT/v1``.
        log_path: its log file.
        running: whether the process is alive, is a llama server and answers HTTP.
    """

    alias: str
    model_id: str
    pid: int
    port: int
    base_url: str
    log_path: Path
    running: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields (``log_path`` as a string)."""
        return {
            "alias": self.alias,
            "model_id": self.model_id,
            "pid": self.pid,
            "port": self.port,
            "base_url": self.base_url,
            "log_path": str(self.log_path),
            "running": self.running,
        }


@dataclass(frozen=True)
class LocalStatus:
    """What is known about the local servers.

    Attributes:
        running: true only when at least one server is recorded and every recorded server is
            alive *and* answers HTTP.
        pool_path: where the pool file is (it exists only while running).
        models: the pool aliases served, empty when not running.
        servers: the servers recorded in ``server.json``, in pool order, each with its own
            liveness (empty when nothing is recorded).

    ``pid``, ``port`` and ``base_url`` are the first server's, for callers written when there
    was a single server. :meth:`to_dict` gives JSON-safe data (``vars()`` lacks those properties
    and holds :class:`ServerInfo` objects and paths).
    """

    running: bool
    pool_path: Path
    models: tuple[str, ...] = ()
    servers: tuple[ServerInfo, ...] = ()

    @property
    def pid(self) -> int | None:
        """The first server's pid, or ``None``."""
        return self.servers[0].pid if self.servers else None

    @property
    def port(self) -> int | None:
        """The first server's port, or ``None``."""
        return self.servers[0].port if self.servers else None

    @property
    def base_url(self) -> str | None:
        """The first server's base URL, or ``None``."""
        return self.servers[0].base_url if self.servers else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe data: the fields (paths as strings, servers as dicts) plus ``pid``,
        ``port`` and ``base_url`` of the first server."""
        return {
            "running": self.running,
            "pool_path": str(self.pool_path),
            "models": list(self.models),
            "servers": [s.to_dict() for s in self.servers],
            "pid": self.pid,
            "port": self.port,
            "base_url": self.base_url,
        }


def status_of(servers: Sequence[ServerInfo]) -> LocalStatus:
    """The status of ``servers``: running when there is one and all run (none is legacy)."""
    running = bool(servers) and all(s.running and s.alias for s in servers)
    return LocalStatus(
        running=running,
        pool_path=default_pool_path(),
        models=tuple(s.alias for s in servers) if running else (),
        servers=tuple(servers),
    )


def _parse_server(entry: Any) -> ServerInfo | None:
    """One recorded server (not running), or ``None`` if ``entry`` lacks a valid pid or port."""
    if not isinstance(entry, dict):
        return None
    pid, port = entry.get("pid"), entry.get("port")
    if not isinstance(pid, int) or not isinstance(port, int) or pid <= 0:
        return None
    alias = entry.get("alias")
    alias = alias if isinstance(alias, str) else ""
    model_id = entry.get("model_id")
    url = entry.get("base_url")
    log_path = entry.get("log")
    return ServerInfo(
        alias=alias,
        model_id=model_id if isinstance(model_id, str) else "",
        pid=pid,
        port=port,
        base_url=url if isinstance(url, str) else base_url(port),
        log_path=Path(
            log_path
            if isinstance(log_path, str)
            else (log_file(alias) if alias else legacy_log_file())
        ),
        running=False,
    )


def read_state() -> list[ServerInfo]:
    """The servers recorded in ``server.json`` (each with ``running`` false), or ``[]`` if it is
    missing, unreadable or records none.

    A single-server record of an older moa-search (``{"pid", "port", ...}``) is read as one
    server with an empty alias, which is never reported as running (so ``up`` replaces it).
    """
    try:
        data = json.loads(state_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict):
        return []
    if "servers" not in data:  # legacy single-server record
        legacy = _parse_server({**data, "alias": ""})
        return [legacy] if legacy is not None else []
    entries = data["servers"]
    if not isinstance(entries, list):
        return []
    servers = [_parse_server(e) for e in entries]
    return [s for s in servers if s is not None]


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` atomically (a temporary file renamed into place)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_state(servers: Iterable[ServerInfo]) -> None:
    """Record ``servers`` in ``server.json`` (their liveness is not recorded)."""
    write_json(
        state_file(),
        {
            "servers": [
                {
                    "alias": s.alias,
                    "model_id": s.model_id,
                    "pid": s.pid,
                    "port": s.port,
                    "base_url": s.base_url,
                    "log": str(s.log_path),
                }
                for s in servers
            ]
        },
    )


def clear_state() -> None:
    """Remove ``server.json`` (a no-op when it is missing)."""
    state_file().unlink(missing_ok=True)
