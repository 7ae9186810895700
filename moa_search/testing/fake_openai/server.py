"""A fake OpenAI-compatible HTTP server that injects latency and faults.

The server speaks raw HTTP/1.1 over :mod:`asyncio` streams (no web framework) so that faults can
reach down to the socket: answering late, never answering, resetting the TCP connection,
sending a body that is not JSON, or cutting a response short. It is meant for integration
tests and benchmarks that drive the official ``openai`` client against it::

    with FakeOpenAIServer({"m1": ModelBehavior(latency_s=0.2, faults=("429", "ok"))}) as server:
        client = OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        ...

Endpoints:

- ``POST /v1/chat/completions`` with ``stream`` false or true (SSE, chunked transfer encoding).
- ``GET /v1/models``: the models named in the behaviors mapping.
- ``GET /health``: ``{"status": "ok"}``, never needs an API key.
- anything else: 404 (or 405 for a known path with the wrong method) in OpenAI's error shape
  ``{"error": {"message", "type", "param", "code"}}``.

Faults (one per chat request, see :class:`ModelBehavior` for how they are chosen):

- ``"ok"``: no fault.
- ``"429"``: status 429 with ``Retry-After`` (seconds) and ``retry-after-ms`` headers.
- ``"500"``, ``"502"``, ``"503"``: that status with an OpenAI error body.
- ``"hang"``: wait ``hang_s`` (or until the client goes away), then answer normally.
- ``"reset"``: abort the TCP connection with an RST, sending nothing.
- ``"malformed"``: status 200 whose body is not valid JSON (for ``stream=true``: an SSE stream
  whose first event's data is not valid JSON).
- ``"truncate"``: ``stream=true``: some chunks, then the connection is closed without the final
  chunk, without ``data: [DONE]`` and without the chunked-encoding terminator;
  ``stream=false``: a ``Content-Length`` larger than the body, then the connection is closed.

Run from a shell (for benchmarks in other processes)::

    python -m moa_search.testing.fake_openai --port 8011 --behaviors behaviors.json

where the JSON object maps a model name to :class:`ModelBehavior` fields (``answer`` as a
string only); the key ``"*"`` sets the behavior of models not named.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import http
import itertools
import json
import logging
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

__all__ = [
    "FAULT_KINDS",
    "FakeOpenAIServer",
    "ModelBehavior",
    "RecordedRequest",
    "default_answer",
    "main",
]

logger = logging.getLogger(__name__)

#: Every fault name :class:`ModelBehavior` accepts (``"ok"`` is "no fault").
FAULT_KINDS: tuple[str, ...] = (
    "ok",
    "429",
    "500",
    "502",
    "503",
    "hang",
    "reset",
    "malformed",
    "truncate",
)

_ERROR_STATUSES: frozenset[str] = frozenset({"500", "502", "503"})
_MAX_HEADER_LINE = 64 * 1024
_MAX_HEADERS = 100
_POLL_S = 0.02


@dataclass(frozen=True)
class RecordedRequest:
    """One chat-completion request as the server received it.

    Attributes:
        model: the ``model`` field of the request.
        messages: the ``messages`` list of dicts, as sent.
        stream: whether ``stream`` was true.
        seed: the ``seed`` field, or None.
        temperature: the ``temperature`` field, or None.
        max_tokens: ``max_tokens`` (or else ``max_completion_tokens``), or None.
        arrived_at: :func:`time.monotonic` when the request had been read in full.
        fault: the fault applied to it (``"ok"`` for none).
        body: the whole parsed JSON body.
    """

    model: str
    messages: list[dict[str, Any]]
    stream: bool
    seed: int | None
    temperature: float | None
    max_tokens: int | None
    arrived_at: float
    fault: str
    body: dict[str, Any]


Answer = str | Callable[[RecordedRequest], str] | None


@dataclass(frozen=True)
class ModelBehavior:
    """How the fake server behaves for one model.

    Attributes:
        latency_s: delay before the response (before the first byte, for streams); applies to
            faulty responses too.
        stream_chunk_delay_s: delay between consecutive SSE chunks of a stream.
        answer: the assistant's content: a fixed string, a function of the request, or None
            for :func:`default_answer` (model name, seed and the first words of the last user
            message, so distinct seeds give distinct answers).
        faults: faults consumed in order, one per successive chat request to this model
            (``"ok"`` means none). Once exhausted, ``fault_rate`` applies.
        fault_rate: probability that a request past ``faults`` gets a fault drawn from
            ``fault_kinds``; drawn from ``random.Random(seed)`` kept per model, so a run is
            reproducible for a given order of requests.
        fault_kinds: the faults ``fault_rate`` draws from (uniformly).
        retry_after_s: value of the ``Retry-After`` header on a 429 (``retry-after-ms`` carries
            the same in milliseconds).
        hang_s: how long a ``"hang"`` waits before answering (it stops early when the client
            disconnects).
        seed: seed of the per-model random generator used by ``fault_rate``.

    Raises:
        ValueError: for an unknown fault name, a negative delay or a rate outside [0, 1].
    """

    latency_s: float = 0.0
    stream_chunk_delay_s: float = 0.0
    answer: Answer = None
    faults: tuple[str, ...] = ()
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = ("429", "500", "hang", "reset", "malformed", "truncate")
    retry_after_s: float = 0.1
    hang_s: float = 30.0
    seed: int = 0

    def __post_init__(self) -> None:
        # Accept lists (e.g. from JSON) but store tuples so the dataclass stays immutable.
        object.__setattr__(self, "faults", tuple(self.faults))
        object.__setattr__(self, "fault_kinds", tuple(self.fault_kinds))
        for name in (*self.faults, *self.fault_kinds):
            if name not in FAULT_KINDS:
                raise ValueError(f"unknown fault {name!r}; expected one of {FAULT_KINDS}")
        for attr in ("latency_s", "stream_chunk_delay_s", "retry_after_s", "hang_s"):
            if getattr(self, attr) < 0:
                raise ValueError(f"{attr} must be >= 0, got {getattr(self, attr)!r}")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be within [0, 1], got {self.fault_rate!r}")
        if self.fault_rate > 0 and not self.fault_kinds:
            raise ValueError("fault_rate > 0 needs at least one entry in fault_kinds")


def _content_text(content: Any) -> str:
    """The text of a message ``content``: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        ]
        return " ".join(parts)
    return ""


def default_answer(request: RecordedRequest) -> str:
    """The deterministic answer used when :attr:`ModelBehavior.answer` is None.

    It names the model and the seed and quotes the first eight words of the last user
    message, e.g. ``"m1 answer (seed=3): What is the capital of France?"``.
    """
    last_user = next(
        (m for m in reversed(request.messages) if isinstance(m, dict) and m.get("role") == "user"),
        None,
    )
    words = _content_text(last_user.get("content")).split()[:8] if last_user else []
    snippet = " ".join(words) or "(no user message)"
    return f"{request.model} answer (seed={request.seed}): {snippet}"


def _word_count(text: str) -> int:
    return len(text.split())


def _split_words(text: str) -> list[str]:
    """Split ``text`` into word pieces whose concatenation is exactly ``text``."""
    pieces = re.findall(r"\s*\S+\s*", text)
    if not pieces:
        return [text] if text else []
    return pieces


@dataclass
class _HttpRequest:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


class _BadRequestError(Exception):
    """The bytes received are not an HTTP/1.x request we can parse."""


async def _read_request(reader: asyncio.StreamReader) -> _HttpRequest | None:
    """Read one HTTP request; None on a clean EOF between requests."""
    line = b""
    while not line.strip():  # tolerate stray CRLFs between requests
        line = await reader.readline()
        if not line:
            return None
        if not line.endswith(b"\n"):
            return None  # EOF in the middle of the request line
    try:
        method, target, version = line.decode("latin-1").strip().split(" ", 2)
    except ValueError as exc:
        raise _BadRequestError(f"bad request line {line[:100]!r}") from exc
    if not version.startswith("HTTP/1."):
        raise _BadRequestError(f"unsupported protocol {version!r}")
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADERS + 1):
        raw = await reader.readline()
        if not raw.endswith(b"\n"):
            raise asyncio.IncompleteReadError(raw, None)
        if raw in (b"\r\n", b"\n"):
            break
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep:
            raise _BadRequestError(f"bad header line {raw[:100]!r}")
        headers[name.strip().lower()] = value.strip()
    else:
        raise _BadRequestError("too many headers")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked_body(reader)
    else:
        try:
            length = int(headers.get("content-length", "0") or "0")
        except ValueError as exc:
            raise _BadRequestError("bad Content-Length") from exc
        if length < 0:
            raise _BadRequestError("negative Content-Length")
        body = await reader.readexactly(length) if length else b""
    return _HttpRequest(method.upper(), target, version, headers, body)


async def _read_chunked_body(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size_line = await reader.readline()
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise _BadRequestError("bad chunk size") from exc
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # skip trailers
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _head(status: int, headers: Sequence[tuple[str, str]]) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _error_body(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _abort(writer: asyncio.StreamWriter) -> None:
    """Abort the connection so that the peer sees a TCP RST (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _ModelState:
    """Per-model fault bookkeeping: position in ``faults`` and the seeded generator."""

    def __init__(self, behavior: ModelBehavior) -> None:
        self.behavior = behavior
        self.position = 0
        self.rng = random.Random(behavior.seed)

    def next_fault(self) -> str:
        behavior = self.behavior
        if self.position < len(behavior.faults):
            fault = behavior.faults[self.position]
            self.position += 1
            return fault
        if behavior.fault_rate <= 0:
            return "ok"
        if self.rng.random() < behavior.fault_rate:
            return self.rng.choice(behavior.fault_kinds)
        return "ok"


class FakeOpenAIServer:
    """An OpenAI-compatible chat-completions server with latency and fault injection.

    Args:
        behaviors: behavior per model name; these names are what ``GET /v1/models`` lists.
        default: behavior of any model not in ``behaviors``.
        host: address to bind.
        port: port to bind; 0 picks a free one (read it back from :attr:`port`).
        require_api_key: if set, ``/v1/*`` requests without ``Authorization: Bearer <key>``
            get a 401 (``/health`` never needs it).

    Use :meth:`start`/:meth:`stop` (or ``with``) to run it in a daemon thread with its own
    event loop, or :meth:`astart`/:meth:`astop` (or ``async with``) inside a running loop.
    Fault state is per model name and survives :meth:`reset_log` unless asked otherwise.
    """

    def __init__(
        self,
        behaviors: Mapping[str, ModelBehavior] | None = None,
        *,
        default: ModelBehavior = ModelBehavior(),
        host: str = "127.0.0.1",
        port: int = 0,
        require_api_key: str | None = None,
    ) -> None:
        self._behaviors: dict[str, ModelBehavior] = dict(behaviors or {})
        self._default = default
        self._host = host
        self._requested_port = port
        self._require_api_key = require_api_key
        self._lock = threading.Lock()
        self._log: list[RecordedRequest] = []
        self._states: dict[str, _ModelState] = {}
        self._ids = itertools.count(1)
        self._connections = 0
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._port: int | None = None
        self._conn_tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None

    # ----------------------------------------------------------------- public properties

    @property
    def port(self) -> int:
        """The bound port. Raises RuntimeError before the server is listening."""
        if self._port is None:
            raise RuntimeError("FakeOpenAIServer is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``, ready for ``OpenAI(base_url=...)``."""
        host = self._host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot (copy) of the chat requests received, in arrival order."""
        with self._lock:
            return list(self._log)

    def count(self, model: str | None = None) -> int:
        """How many chat requests were received (for ``model`` only, if given)."""
        with self._lock:
            if model is None:
                return len(self._log)
            return sum(1 for r in self._log if r.model == model)

    @property
    def connections_accepted(self) -> int:
        """How many TCP connections were accepted (keep-alive reuse keeps this low)."""
        with self._lock:
            return self._connections

    def reset_log(self, *, reset_faults: bool = False) -> None:
        """Forget the recorded requests; with ``reset_faults``, restart every fault sequence."""
        with self._lock:
            self._log.clear()
            if reset_faults:
                self._states.clear()

    def set_behavior(self, model: str, behavior: ModelBehavior) -> None:
        """Replace (or add) the behavior of ``model``; its fault sequence restarts."""
        with self._lock:
            self._behaviors[model] = behavior
            self._states.pop(model, None)

    def behavior_for(self, model: str) -> ModelBehavior:
        """The behavior applied to ``model`` (the default one if it is not named)."""
        with self._lock:
            return self._behaviors.get(model, self._default)

    # --------------------------------------------------------------------- lifecycle

    async def astart(self) -> None:
        """Start listening inside the running event loop; returns once listening."""
        if self._server is not None:
            raise RuntimeError("FakeOpenAIServer is already started")
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(
            self._handle_connection,
            self._host,
            self._requested_port,
            limit=_MAX_HEADER_LINE,
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        logger.debug("fake OpenAI server listening on %s", self.base_url)

    async def astop(self) -> None:
        """Stop listening and drop every open connection (hanging requests included)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._conn_tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        self._port = None

    def start(self) -> FakeOpenAIServer:
        """Run the server in a daemon thread with its own event loop; returns once listening.

        Returns ``self`` so that ``server = FakeOpenAIServer(...).start()`` works.
        """
        if self._thread is not None:
            raise RuntimeError("FakeOpenAIServer is already started")
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._thread_loop = loop
            try:
                loop.run_until_complete(self.astart())
            except BaseException as exc:  # noqa: BLE001 - reported to the caller of start()
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        thread = threading.Thread(target=run, name="fake-openai-server", daemon=True)
        self._thread = thread
        thread.start()
        if not ready.wait(timeout=10.0):
            raise RuntimeError("FakeOpenAIServer did not start within 10 s")
        if errors:
            self._thread = None
            self._thread_loop = None
            raise errors[0]
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop a server started with :meth:`start`; safe to call twice."""
        loop, thread = self._thread_loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.astop(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._thread = None
            self._thread_loop = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> FakeOpenAIServer:
        await self.astart()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()

    # ------------------------------------------------------------------- connections

    async def _handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conn_tasks.add(task)  # type: ignore[arg-type]
        self._writers.add(writer)
        with self._lock:
            self._connections += 1
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except _BadRequestError as exc:
                    await self._send_json(
                        writer,
                        400,
                        _error_body(str(exc), "invalid_request_error", "bad_request"),
                        keep_alive=False,
                    )
                    break
                except ValueError:  # a header line over the StreamReader limit
                    await self._send_json(
                        writer,
                        431,
                        _error_body("header line too long", "invalid_request_error", None),
                        keep_alive=False,
                    )
                    break
                if request is None:
                    break
                if not await self._dispatch(request, reader, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass  # the client went away
        except asyncio.CancelledError:
            # Only astop() cancels these tasks. Not re-raising keeps Python 3.11's
            # StreamReaderProtocol from logging the cancellation as an error.
            writer.transport.abort()
        except Exception:
            logger.exception("fake OpenAI server: unexpected error on a connection")
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._conn_tasks.discard(task)  # type: ignore[arg-type]
            if not writer.is_closing():
                writer.close()

    async def _dispatch(
        self, request: _HttpRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; returns whether the connection may serve another one."""
        keep_alive = request.keep_alive
        path = request.path.rstrip("/") or "/"
        routes = {
            "/health": "GET",
            "/v1/health": "GET",
            "/v1/models": "GET",
            "/models": "GET",
            "/v1/chat/completions": "POST",
            "/chat/completions": "POST",
        }
        if path not in routes:
            return await self._send_json(
                writer,
                404,
                _error_body(
                    f"Invalid URL ({request.method} {request.path})",
                    "invalid_request_error",
                    "unknown_url",
                ),
                keep_alive=keep_alive,
            )
        if request.method != routes[path]:
            return await self._send_json(
                writer,
                405,
                _error_body(
                    f"Method {request.method} not allowed on {path}",
                    "invalid_request_error",
                    "method_not_allowed",
                ),
                keep_alive=keep_alive,
                extra_headers=[("Allow", routes[path])],
            )
        if path.endswith("/health"):
            return await self._send_json(writer, 200, {"status": "ok"}, keep_alive=keep_alive)
        if self._require_api_key is not None:
            auth = request.headers.get("authorization", "")
            if auth != f"Bearer {self._require_api_key}":
                return await self._send_json(
                    writer,
                    401,
                    _error_body(
                        "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
                    ),
                    keep_alive=keep_alive,
                )
        if path.endswith("/models"):
            with self._lock:
                names = list(self._behaviors)
            data = [
                {"id": name, "object": "model", "created": 0, "owned_by": "fake-openai"}
                for name in names
            ]
            return await self._send_json(
                writer, 200, {"object": "list", "data": data}, keep_alive=keep_alive
            )
        return await self._chat(request, reader, writer)

    # -------------------------------------------------------------------------- chat

    async def _chat(
        self, request: _HttpRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        keep_alive = request.keep_alive
        try:
            body = json.loads(request.body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            return await self._send_json(
                writer,
                400,
                _error_body(
                    "The request body is not a JSON object.", "invalid_request_error", None
                ),
                keep_alive=keep_alive,
            )
        model = body.get("model")
        messages = body.get("messages")
        if not isinstance(model, str) or not isinstance(messages, list):
            return await self._send_json(
                writer,
                400,
                _error_body(
                    "'model' (a string) and 'messages' (a list) are required.",
                    "invalid_request_error",
                    "missing_required_parameter",
                ),
                keep_alive=keep_alive,
            )
        arrived_at = time.monotonic()
        with self._lock:
            behavior = self._behaviors.get(model, self._default)
            state = self._states.get(model)
            if state is None or state.behavior is not behavior:
                state = self._states[model] = _ModelState(behavior)
            fault = state.next_fault()
            max_tokens = body.get("max_tokens")
            if max_tokens is None:
                max_tokens = body.get("max_completion_tokens")
            recorded = RecordedRequest(
                model=model,
                messages=messages,
                stream=bool(body.get("stream", False)),
                seed=body.get("seed"),
                temperature=body.get("temperature"),
                max_tokens=max_tokens,
                arrived_at=arrived_at,
                fault=fault,
                body=body,
            )
            self._log.append(recorded)
            completion_id = f"chatcmpl-fake{next(self._ids):06d}"
        logger.debug("chat request model=%s stream=%s fault=%s", model, recorded.stream, fault)

        if behavior.latency_s > 0 and not await _wait(reader, writer, behavior.latency_s):
            return False
        if fault == "hang" and not await _wait(reader, writer, behavior.hang_s):
            return False
        if fault == "reset":
            _abort(writer)
            return False
        if fault == "429":
            return await self._send_json(
                writer,
                429,
                _error_body(
                    f"Rate limit reached for {model} (fake). Please try again in "
                    f"{behavior.retry_after_s:g}s.",
                    "requests",
                    "rate_limit_exceeded",
                ),
                keep_alive=keep_alive,
                extra_headers=[
                    ("Retry-After", f"{behavior.retry_after_s:g}"),
                    ("retry-after-ms", str(round(behavior.retry_after_s * 1000))),
                ],
            )
        if fault in _ERROR_STATUSES:
            return await self._send_json(
                writer,
                int(fault),
                _error_body(
                    f"The server had an error while processing your request (fake {fault}).",
                    "server_error",
                    None,
                ),
                keep_alive=keep_alive,
            )
        try:
            answer = _resolve_answer(behavior.answer, recorded)
        except Exception as exc:
            logger.exception("answer callable for model %s failed", model)
            return await self._send_json(
                writer,
                500,
                _error_body(f"answer callable failed: {exc!r}", "server_error", None),
                keep_alive=keep_alive,
            )
        if fault == "malformed":
            return await self._send_malformed(writer, recorded.stream, keep_alive)
        prompt_tokens = sum(
            _word_count(_content_text(m.get("content"))) for m in messages if isinstance(m, dict)
        )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": _word_count(answer),
            "total_tokens": prompt_tokens + _word_count(answer),
        }
        created = int(time.time())
        truncate = fault == "truncate"
        if recorded.stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage", False))
            return await self._send_stream(
                reader,
                writer,
                behavior,
                completion_id=completion_id,
                created=created,
                model=model,
                answer=answer,
                usage=usage if include_usage else None,
                truncate=truncate,
                keep_alive=keep_alive,
            )
        completion = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
        if truncate:
            payload = _dumps(completion)
            headers = [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(payload) + 64)),
                ("Connection", "close"),
            ]
            writer.write(_head(200, headers) + payload[: len(payload) // 2])
            await writer.drain()
            writer.close()
            return False
        return await self._send_json(writer, 200, completion, keep_alive=keep_alive)

    async def _send_malformed(
        self, writer: asyncio.StreamWriter, stream: bool, keep_alive: bool
    ) -> bool:
        if stream:
            events = b'data: {"id": "chatcmpl-malformed", "choices": [{"delta": \n\n'
            headers = [
                ("Content-Type", "text/event-stream; charset=utf-8"),
                ("Transfer-Encoding", "chunked"),
                ("Connection", "keep-alive" if keep_alive else "close"),
            ]
            writer.write(_head(200, headers) + _chunk(events) + b"0\r\n\r\n")
        else:
            payload = b'{"id": "chatcmpl-malformed", "object": "chat.completion", "choices": [{'
            headers = [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(payload))),
                ("Connection", "keep-alive" if keep_alive else "close"),
            ]
            writer.write(_head(200, headers) + payload)
        await writer.drain()
        return keep_alive

    async def _send_stream(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        behavior: ModelBehavior,
        *,
        completion_id: str,
        created: int,
        model: str,
        answer: str,
        usage: dict[str, int] | None,
        truncate: bool,
        keep_alive: bool,
    ) -> bool:
        def chunk(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
            obj: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                ],
            }
            if usage is not None:
                obj["usage"] = None
            return obj

        pieces = _split_words(answer)
        events: list[dict[str, Any]] = [chunk({"role": "assistant", "content": ""}, None)]
        events += [chunk({"content": piece}, None) for piece in pieces]
        if truncate:
            # The role chunk and about half the content, never the end of the stream.
            events = events[: 1 + max(1, len(pieces) // 2)] if pieces else events[:1]
        else:
            events.append(chunk({}, "stop"))
            if usage is not None:
                events.append(
                    {
                        "id": completion_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "system_fingerprint": "fp_fake",
                        "choices": [],
                        "usage": usage,
                    }
                )
        headers = [
            ("Content-Type", "text/event-stream; charset=utf-8"),
            ("Cache-Control", "no-cache"),
            ("Transfer-Encoding", "chunked"),
            ("x-request-id", completion_id),
            ("Connection", "keep-alive" if keep_alive and not truncate else "close"),
        ]
        writer.write(_head(200, headers))
        for index, event in enumerate(events):
            if (
                index > 0
                and behavior.stream_chunk_delay_s > 0
                and not await _wait(reader, writer, behavior.stream_chunk_delay_s)
            ):
                return False
            writer.write(_chunk(b"data: " + _dumps(event) + b"\n\n"))
            await writer.drain()
        if truncate:
            writer.close()
            return False
        writer.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()
        return keep_alive

    async def _send_json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        obj: Any,
        *,
        keep_alive: bool,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> bool:
        payload = _dumps(obj)
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            ("Connection", "keep-alive" if keep_alive else "close"),
            *extra_headers,
        ]
        if isinstance(obj, dict) and isinstance(obj.get("id"), str):
            headers.append(("x-request-id", obj["id"]))
        writer.write(_head(status, headers) + payload)
        await writer.drain()
        return keep_alive


def _resolve_answer(answer: Answer, request: RecordedRequest) -> str:
    if answer is None:
        return default_answer(request)
    if isinstance(answer, str):
        return answer
    return str(answer(request))


async def _wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seconds: float) -> bool:
    """Sleep ``seconds``; return False early if the client closes the connection meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        if reader.at_eof() or writer.is_closing():
            return False
        remaining = deadline - loop.time()
        if remaining <= 0:
            return True
        await asyncio.sleep(min(remaining, _POLL_S))


# ---------------------------------------------------------------------------------- CLI


def _load_behaviors(path: str) -> tuple[dict[str, ModelBehavior], ModelBehavior]:
    """Parse a behaviors JSON file: ``{model: {field: value}}``; key ``"*"`` is the default."""
    with open(path, encoding="utf-8") as handle:
        raw = json.load(handle)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object mapping model names to behaviors")
    known = {f.name for f in dataclasses.fields(ModelBehavior)}
    behaviors: dict[str, ModelBehavior] = {}
    default = ModelBehavior()
    for name, fields in raw.items():
        if not isinstance(fields, dict):
            raise ValueError(f"{path}: behavior of {name!r} must be a JSON object")
        unknown = set(fields) - known
        if unknown:
            raise ValueError(f"{path}: unknown fields for {name!r}: {sorted(unknown)}")
        if "answer" in fields and not isinstance(fields["answer"], str | None):
            raise ValueError(f"{path}: 'answer' of {name!r} must be a string")
        behavior = ModelBehavior(**fields)
        if name == "*":
            default = behavior
        else:
            behaviors[name] = behavior
    return behaviors, default


async def _serve(server: FakeOpenAIServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.astart()
    print(f"listening on {server.base_url}", flush=True)  # noqa: T201 - the CLI contract
    try:
        await stop.wait()
    finally:
        await server.astop()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: serve until SIGTERM or SIGINT; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m moa_search.testing.fake_openai",
        description="Fake OpenAI-compatible server with latency and fault injection.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: any free port)")
    parser.add_argument(
        "--behaviors",
        metavar="FILE.json",
        help='JSON object: model name -> ModelBehavior fields; key "*" for other models',
    )
    parser.add_argument("--require-api-key", default=None, help="reject other bearer tokens")
    parser.add_argument("--log-level", default="WARNING", help="logging level (to stderr)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    behaviors: dict[str, ModelBehavior] = {}
    default = ModelBehavior()
    if args.behaviors:
        try:
            behaviors, default = _load_behaviors(args.behaviors)
        except (OSError, ValueError, TypeError) as exc:
            parser.error(str(exc))
    server = FakeOpenAIServer(
        behaviors,
        default=default,
        host=args.host,
        port=args.port,
        require_api_key=args.require_api_key,
    )
    asyncio.run(_serve(server))
    return 0


if __name__ == "__main__":
    sys.exit(main())
