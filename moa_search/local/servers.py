"""The local servers' processes: start, stop and probe one llama.cpp server per model.

``moa-search local up`` starts one llama-cpp-python OpenAI-compatible server
(``python -m llama_cpp.server --config_file FILE``) *per model*, each a detached background
process on its own loopback port serving one tiny GGUF model shipped as a PyPI package, then
writes a pool file naming them, each model with its own ``base_url``. The other commands find
that pool at :func:`~moa_search.config.paths.default_pool_path` when no pool is given. The files
involved are listed in :mod:`moa_search.local.paths`.

Why one server per model: a single llama server holding several models loads one at a time and
swaps on request, and a swap costs ~1.2 s. A Mixture-of-Agents alternates models constantly, so
swapping made searches 2-3x slower. Measured on a 2-core machine with 48-token answers:

- one server per model with 2 threads each: a SmolLM2 + Gemma pair takes 0.5 s + 1.2 s when the
  calls run one after another, but 3 concurrent pairs took 27 s (the two servers oversubscribe
  the cores and collapse);
- one server per model with 1 thread each: 0.86 s + 1.93 s one after another, and 3 concurrent
  pairs in 6.0 s (2.0 s per pair): slower alone, robust under concurrency.

Hence :data:`THREADS_PER_SERVER` = 1 for generation. Prompt processing is one batch per request,
not one step per token, and takes up to 2 threads (:data:`PROMPT_THREADS_PER_SERVER`).
SmolLM2's Q4_1 weights are served re-encoded as Q8_0 (:mod:`moa_search.local.reencode`).

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
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import psutil
from filelock import FileLock

from moa_search.errors import LocalServerError
from moa_search.local import models
from moa_search.local.models import LocalModel
from moa_search.local.paths import HOST, base_url, config_file, local_dir, lock_file, log_file
from moa_search.local.pool import remove_pool, write_pool
from moa_search.local.state import (
    LocalStatus,
    ServerInfo,
    clear_state,
    read_state,
    status_of,
    write_json,
    write_state,
)

__all__ = [
    "PROMPT_THREADS_PER_SERVER",
    "THREADS_PER_SERVER",
    "LocalServerError",
    "down",
    "server_config",
    "status",
    "up",
]

log = logging.getLogger(__name__)

N_CTX = 2048
#: Generation threads (``n_threads``) of each per-model llama server. Measured on a 2-core
#: machine, 48-token answers, SmolLM2-135M + Gemma 3 270M, one server per model: with 2 threads
#: each a pair of calls takes 0.5 s + 1.2 s one after another, but 3 concurrent pairs took 27 s
#: (the two servers oversubscribe the cores and collapse); with 1 thread each a pair takes
#: 0.86 s + 1.93 s one after another and 3 concurrent pairs 6.0 s (2.0 s per pair). A mixture
#: queries its models concurrently, so generation runs on 1 thread per server.
THREADS_PER_SERVER = 1
#: Prompt-processing threads (``n_threads_batch``) of each server: up to 2 cores. A prompt is
#: one batch, not one step per token, so two servers processing prompts at once do not collapse
#: as generation does. On an idle 2-core machine (``benchmarks/local_inference.py``) SmolLM2's
#: aggregation prompt took 542 ms instead of 1074 ms, the example mixture's ``run`` 2.96 s
#: instead of 4.37 s, and the quickstart study 171 s instead of 185 s (same calls).
PROMPT_THREADS_PER_SERVER = min(2, os.cpu_count() or 1)
STOP_TIMEOUT_S = 10.0

# Servers started by this process, kept so they are polled (reaped) rather than garbage-collected
# while running, which would warn.
_children: dict[int, subprocess.Popen[bytes]] = {}
# Variables llama_cpp.server reads from the environment in preference to its config file.
_SERVER_ENV_OVERRIDES = ("HOST", "PORT", "CONFIG_FILE")


# ----------------------------------------------------------------------------- probes


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (non-zombie) process; reaps it if it is our exited child."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    with contextlib.suppress(OSError):  # ChildProcessError: not our child
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _is_our_server(pid: int) -> bool:
    """Whether ``pid`` is alive and runs ``llama_cpp.server`` (guards against pid reuse)."""
    if not _pid_alive(pid):
        return False
    try:
        cmdline = psutil.Process(pid).cmdline()
    except psutil.Error:
        return False
    return any("llama_cpp.server" in part for part in cmdline)


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


def status() -> LocalStatus:
    """The local servers' status: recorded in ``server.json``, pids alive and answering HTTP.

    Never starts, stops or cleans anything up. A recorded process that is alive but does not
    answer within a few seconds is reported as not running (with its pid and port), and then so
    is the whole status.
    """
    return status_of(
        [
            dataclasses.replace(s, running=_is_our_server(s.pid) and _answers(s.port))
            for s in read_state()
        ]
    )


# ----------------------------------------------------------------------------- stopping


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


def _clear_files() -> None:
    clear_state()
    remove_pool()


def _stop_recorded() -> None:
    """Stop every recorded server that is still ours, then remove the state and pool files."""
    pids = [s.pid for s in read_state() if _is_our_server(s.pid)]
    if pids:
        log.info("stopping the local servers %s", pids)
        _kill_groups(pids)
    _clear_files()


# ----------------------------------------------------------------------------- up / down


def _lock() -> FileLock:
    """The lock serialising up() and down() across processes (its folder is created)."""
    local_dir().mkdir(parents=True, exist_ok=True)
    return FileLock(lock_file())


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
    model: LocalModel,
    port: int,
    *,
    n_threads: int = THREADS_PER_SERVER,
    n_threads_batch: int = PROMPT_THREADS_PER_SERVER,
) -> dict[str, Any]:
    """The ``llama_cpp.server`` config file contents for one server serving ``model`` on
    ``port`` with ``n_threads`` threads for generation and ``n_threads_batch`` for prompt
    processing.

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
                "n_threads_batch": n_threads_batch,
                "use_mlock": False,
                "logits_all": False,
                "verbose": False,
            }
        ],
    }


def up(*, port: int | None = None, wait_s: float = 120) -> LocalStatus:
    """Start the local servers (if needed), one per model, and write the local pool file.

    If every recorded server is alive and answering, returns their status unchanged (``port``
    must then be ``None`` or the first server's port). Otherwise stops whatever recorded server
    is still alive (e.g. the survivor of a crash) and starts them all afresh, detached:
    the first model's server on ``port`` and the next ones on ``port + 1``, ``port + 2``, ...
    (distinct free loopback ports when ``port`` is ``None``). Waits up to ``wait_s`` seconds for
    every server's ``GET /v1/models`` to answer, asks each for a 1-token answer (a warm-up, so
    the first real request does not pay for reading the weights), and only then writes the
    pool file at :func:`~moa_search.config.paths.default_pool_path`.

    Raises:
        ConfigError: a package providing the server or the weights is missing.
        LocalServerError: a server exited or did not answer in time (all are then stopped,
            nothing is recorded, and the message ends with the last lines of that server's
            log), or the servers already run on another port.
    """
    with _lock():
        current = status()
        if current.running:
            if port is not None and port != current.port:
                raise LocalServerError(
                    f"the local servers are already running from port {current.port}; run "
                    f"'moa-search local down' first to restart them from port {port}"
                )
            if not current.pool_path.exists():
                write_pool(current.servers)
            return current
        if any(_is_our_server(s.pid) for s in current.servers):
            log.warning("some local servers are not running or not answering; restarting all")
        _stop_recorded()
        return _start(port=port, wait_s=wait_s)


def _spawn(model: LocalModel, port: int, env: dict[str, str]) -> ServerInfo:
    config_path = config_file(model.alias)
    write_json(config_path, server_config(model, port))
    cmd = [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config_path)]
    log.info("starting the local %s server on port %d: %s", model.alias, port, " ".join(cmd))
    log_path = log_file(model.alias)
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
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
        base_url=base_url(port),
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


#: Seconds one warm-up request may take before it is given up (the pool is usable either way).
WARM_UP_TIMEOUT_S = 60.0


def _warm_up(servers: Sequence[ServerInfo]) -> None:
    """One 1-token answer from every server, all at once: the first request after a start
    reads the model's weights into memory (they are memory-mapped), sets up the compute
    buffers and the chat template; done here, the user's first ``run`` does not pay it (the
    example mixture's first run after a start took 7.1 s of latency, the next ones 2.7-2.8 s).
    A server that fails to answer is only logged: it answered ``/v1/models``, and a request
    that fails later is reported where it is made."""

    def warm(s: ServerInfo) -> None:
        body = json.dumps(
            {
                "model": s.model_id,
                "messages": [{"role": "user", "content": "Hello"}],
                "max_tokens": 1,
                "temperature": 0.0,
                "seed": 0,
            }
        ).encode()
        request = urllib.request.Request(
            f"{s.base_url}/chat/completions",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        began = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=WARM_UP_TIMEOUT_S) as resp:
                resp.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log.warning("local %s server: the warm-up request failed (%s)", s.alias, exc)
            return
        log.info("local %s server warmed up in %.1f s", s.alias, time.monotonic() - began)

    threads = [threading.Thread(target=warm, args=(s,), daemon=True) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _start(*, port: int | None, wait_s: float) -> LocalStatus:
    models.require_server_package()
    chosen = models.local_models()
    local_dir().mkdir(parents=True, exist_ok=True)
    ports = _free_ports(len(chosen)) if port is None else [port + i for i in range(len(chosen))]
    env = {k: v for k, v in os.environ.items() if k not in _SERVER_ENV_OVERRIDES}
    started = time.monotonic()
    servers: list[ServerInfo] = []
    try:
        for model, model_port in zip(chosen, ports, strict=True):
            servers.append(_spawn(model, model_port, env))
            write_state(servers)  # recorded at once, so down() can stop them from elsewhere
        _wait_ready(servers, started, wait_s)
        _warm_up(servers)
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
    running = [dataclasses.replace(s, running=True) for s in servers]
    write_pool(running)
    return status_of(running)


def down() -> LocalStatus:
    """Stop every recorded local server and remove ``server.json`` and the pool file.

    SIGTERMs each server's process group, waits up to 10 s, then SIGKILLs those left. A no-op
    (beyond removing stale files) when nothing runs, including a stale ``server.json`` whose
    pids are dead or now belong to other programs, which are never signalled.
    """
    with _lock():
        _stop_recorded()
        return status_of(())
