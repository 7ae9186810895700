"""The fake OpenAI-compatible server, :class:`FakeOpenAIServer` (its endpoints are listed in
:mod:`moa_search.testing.fake_openai`): routing, the chat endpoint and its faults, and running
in a thread or in a running event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from moa_search.serve import wire
from moa_search.serve.wire import WireError
from moa_search.testing.fake_openai import http, responses
from moa_search.testing.fake_openai import wire as fake_wire
from moa_search.testing.fake_openai.faults import (
    ERROR_STATUSES,
    ModelBehavior,
    ModelState,
    RecordedRequest,
    finished_answer,
    resolve_answer,
)
from moa_search.testing.fake_openai.http import HttpRequest

__all__ = ["FakeOpenAIServer"]

logger = logging.getLogger(__name__)

_NO_FAULTS = ModelBehavior()

_ROUTES = {
    "/health": "GET",
    "/v1/health": "GET",
    "/v1/models": "GET",
    "/models": "GET",
    "/v1/chat/completions": "POST",
    "/chat/completions": "POST",
}


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
        default: ModelBehavior = _NO_FAULTS,
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
        self._states: dict[str, ModelState] = {}
        self._ids = itertools.count(1)
        self._connections = 0
        self._in_flight: dict[str, int] = {}  # model -> chat requests being handled
        self._peaks: dict[str, int] = {}  # model -> the most at once ("" for all models)
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._port: int | None = None
        self._conn_tasks: set[asyncio.Task[Any]] = set()
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

    @property
    def max_in_flight(self) -> int:
        """The most chat requests the server was handling at one time (latency and hangs
        included): a concurrency counter, so tests prove parallel calls without timing them."""
        with self._lock:
            return self._peaks.get("", 0)

    def peak_in_flight(self, model: str) -> int:
        """The most chat requests for ``model`` handled at one time."""
        with self._lock:
            return self._peaks.get(model, 0)

    def in_flight(self, model: str | None = None) -> int:
        """Chat requests being handled now (for ``model`` only, if given)."""
        with self._lock:
            if model is None:
                return sum(self._in_flight.values())
            return self._in_flight.get(model, 0)

    def reset_log(self, *, reset_faults: bool = False) -> None:
        """Forget the recorded requests; with ``reset_faults``, restart every fault sequence."""
        with self._lock:
            self._log.clear()
            self._peaks = {"": sum(self._in_flight.values()), **self._in_flight}
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
            limit=http.MAX_HEADER_LINE,
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
            self._conn_tasks.add(task)
        self._writers.add(writer)
        with self._lock:
            self._connections += 1
        try:
            while True:
                try:
                    request = await http.read_request(reader)
                except http.BadRequestError as exc:
                    error = wire.error_body(str(exc), code="bad_request")
                    await responses.send_json(writer, 400, error, keep_alive=False)
                    break
                except ValueError:  # a header line over the StreamReader limit
                    error = wire.error_body("header line too long")
                    await responses.send_json(writer, 431, error, keep_alive=False)
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
                self._conn_tasks.discard(task)
            if not writer.is_closing():
                writer.close()

    async def _dispatch(
        self, request: HttpRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; returns whether the connection may serve another one."""
        keep_alive = request.keep_alive
        path = request.path.rstrip("/") or "/"
        method = _ROUTES.get(path)
        if method is None:
            error = wire.error_body(
                f"Invalid URL ({request.method} {request.path})", code="unknown_url"
            )
            return await responses.send_json(writer, 404, error, keep_alive=keep_alive)
        if request.method != method:
            error = wire.error_body(
                f"Method {request.method} not allowed on {path}", code="method_not_allowed"
            )
            return await responses.send_json(
                writer, 405, error, keep_alive=keep_alive, extra_headers=[("Allow", method)]
            )
        if path.endswith("/health"):
            return await responses.send_json(writer, 200, {"status": "ok"}, keep_alive=keep_alive)
        if self._require_api_key is not None:
            auth = request.headers.get("authorization", "")
            if auth != f"Bearer {self._require_api_key}":
                error = wire.error_body("Incorrect API key provided.", code="invalid_api_key")
                return await responses.send_json(writer, 401, error, keep_alive=keep_alive)
        if path.endswith("/models"):
            with self._lock:
                names = list(self._behaviors)
            models = wire.model_list(names, created=0, owned_by=fake_wire.OWNER)
            return await responses.send_json(writer, 200, models, keep_alive=keep_alive)
        return await self._chat(request, reader, writer)

    # -------------------------------------------------------------------------- chat

    def _record(self, body: dict[str, Any]) -> tuple[RecordedRequest, ModelBehavior, str]:
        """Log a valid chat request with the fault it gets; its behavior and completion id."""
        arrived_at = time.monotonic()
        model = body["model"]
        with self._lock:
            behavior = self._behaviors.get(model, self._default)
            state = self._states.get(model)
            if state is None or state.behavior is not behavior:
                state = self._states[model] = ModelState(behavior)
            fault = state.next_fault()
            recorded = RecordedRequest.of(body, arrived_at=arrived_at, fault=fault)
            self._log.append(recorded)
            completion_id = f"chatcmpl-fake{next(self._ids):06d}"
        logger.debug("chat request model=%s stream=%s fault=%s", model, recorded.stream, fault)
        return recorded, behavior, completion_id

    async def _chat(
        self, request: HttpRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        try:
            body = fake_wire.read_chat_body(request.body)
        except WireError as exc:
            return await responses.send_json(
                writer, exc.status, exc.body(), keep_alive=request.keep_alive
            )
        model = body["model"]
        with self._lock:
            self._in_flight[model] = self._in_flight.get(model, 0) + 1
            self._peaks[model] = max(self._peaks.get(model, 0), self._in_flight[model])
            self._peaks[""] = max(self._peaks.get("", 0), sum(self._in_flight.values()))
        try:
            return await self._answer_chat(body, request.keep_alive, reader, writer)
        finally:
            with self._lock:
                self._in_flight[model] -= 1

    async def _answer_chat(
        self,
        body: dict[str, Any],
        keep_alive: bool,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        recorded, behavior, completion_id = self._record(body)
        model, fault = recorded.model, recorded.fault

        if behavior.latency_s > 0 and not await http.wait(reader, writer, behavior.latency_s):
            return False
        if fault == "hang" and not await http.wait(reader, writer, behavior.hang_s):
            return False
        if fault == "reset":
            http.abort(writer)
            return False
        if fault == "429":
            retry_after = behavior.retry_after_s
            return await responses.send_json(
                writer,
                429,
                fake_wire.rate_limited(model, retry_after),
                keep_alive=keep_alive,
                extra_headers=[
                    ("Retry-After", f"{retry_after:g}"),
                    ("retry-after-ms", str(round(retry_after * 1000))),
                ],
            )
        if fault in ERROR_STATUSES:
            message = f"The server had an error while processing your request (fake {fault})."
            error = fake_wire.server_error(message)
            return await responses.send_json(writer, int(fault), error, keep_alive=keep_alive)
        try:
            answer = resolve_answer(behavior.answer, recorded)
        except Exception as exc:
            logger.exception("answer callable for model %s failed", model)
            error = fake_wire.server_error(f"answer callable failed: {exc!r}")
            return await responses.send_json(writer, 500, error, keep_alive=keep_alive)
        if fault == "malformed":
            return await responses.send_malformed(writer, recorded.stream, keep_alive)
        content, finish = finished_answer(fault, answer)
        usage = fake_wire.usage(recorded.messages, content or "")
        created = int(time.time())
        truncate = fault == "truncate"
        if recorded.stream:
            chunks = fake_wire.stream_chunks(
                completion_id,
                created=created,
                model=model,
                answer=content or "",
                usage=usage if fake_wire.include_usage(body) else None,
                truncate=truncate,
                finish_reason=finish,
            )
            return await responses.send_stream(
                reader, writer, behavior, completion_id, chunks, truncate, keep_alive
            )
        completion = fake_wire.completion(
            completion_id,
            created=created,
            model=model,
            answer=content,
            usage=usage,
            finish_reason=finish,
        )
        if truncate:
            payload = wire.dumps(completion)
            headers = [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(payload) + 64)),
                ("Connection", "close"),
            ]
            writer.write(http.head(200, headers) + payload[: len(payload) // 2])
            await writer.drain()
            writer.close()
            return False
        return await responses.send_json(writer, 200, completion, keep_alive=keep_alive)
