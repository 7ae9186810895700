"""Serve exported mixtures as an OpenAI-compatible chat-completions endpoint.

``moa-search serve MIXTURE.yaml [MORE.yaml ...]`` (or :func:`serve`) runs a Starlette app under
uvicorn, bound to ``127.0.0.1:8000`` by default. Any OpenAI client works against it::

    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=KEY)
    client.chat.completions.create(model="local-example", messages=[...], stream=True)

Endpoints: ``POST /v1/chat/completions`` (``model`` names a served mixture: its ``name``, else
its file stem), ``GET /v1/models`` (one model per served mixture) and ``GET /health``
(``{"status": "ok"}``, never needs a key). The request, the completion, the stream's events and
the error statuses are described in :mod:`moa_search.serve.wire`.

A request header ``X-MOA-Trace: 1`` adds a non-standard ``moa_trace`` field (the run's trace:
every call's layer, role, model, tokens, latency, cost, cache hit, attempts and error) to the
completion, or to the final (``finish_reason``) chunk of a stream.

Authentication: if a key is configured — the ``api_key`` argument, else the environment
variable ``MOA_SEARCH_API_KEY`` — every ``/v1/*`` request must carry
``Authorization: Bearer <key>`` or gets a 401. The key is never logged.

Failures upstream — a layer below its quorum (:class:`~moa_search.errors.QuorumError`) or the
aggregator failing after its retries (:class:`~moa_search.errors.ModelCallError`) — are a 502
with the reason in the message. A streamed request does not send its headers until the
aggregator's first token (or the failure) is known, so a failure before any text is a plain
502 too. If the aggregator fails *mid-stream*, after text was sent, the status can no longer
change: the server sends one SSE event ``data: {"error": {...}}`` (``code: "upstream_error"``)
and closes the stream without ``[DONE]``; the ``openai`` client raises ``APIError`` on it.

Concurrency: one :class:`~moa_search.runtime.executor.Executor` per distinct pool, shared by every
request and every mixture on that pool, so concurrent requests share each model's
``max_concurrency`` limit and its connection pool.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from moa_search.config import MixtureConfig, Pool
from moa_search.errors import ConfigError, MoaSearchError
from moa_search.runtime.cache import Cache, open_cache
from moa_search.runtime.executor import Executor, RunStream
from moa_search.runtime.mixture import Mixture, PathLike, load_mixture_and_pool
from moa_search.runtime.trace import Trace
from moa_search.serve import wire
from moa_search.serve.runner import run_until_interrupted, running
from moa_search.serve.wire import ChatCompletionRequest, WireError, sse_event

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_MAX_BODY_BYTES",
    "MixtureSource",
    "app_from_files",
    "create_app",
    "running",
    "serve",
]

log = logging.getLogger(__name__)

#: Environment variable holding the key clients must present (``Authorization: Bearer``).
API_KEY_ENV = "MOA_SEARCH_API_KEY"
DEFAULT_MAX_BODY_BYTES = 1_000_000
TRACE_HEADER = "x-moa-trace"
OWNER = "moa-search"

#: What :func:`create_app` serves under a name: a ready :class:`Mixture`, a
#: :class:`MixtureConfig` with an inline pool, or a ``(config, pool)`` pair.
MixtureSource = Mixture | MixtureConfig | tuple[MixtureConfig, Pool]

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _error_response(error: WireError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def _upstream_error(exc: MoaSearchError) -> WireError:
    message = f"the mixture failed upstream: {exc}"
    return WireError(502, message, type_="server_error", code="upstream_error")


def _usage(trace: Trace) -> wire.Usage:
    return wire.usage(trace.tokens_in, trace.tokens_out)


class _Service:
    """The served mixtures, their shared executors, and the request handlers."""

    def __init__(
        self,
        mixtures: Mapping[str, MixtureSource],
        *,
        api_key: str | None,
        max_body_bytes: int,
        cache: Cache | None,
    ) -> None:
        if not mixtures:
            raise ValueError("create_app needs at least one mixture to serve")
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self.created = int(time.time())
        self.mixtures: dict[str, Mixture] = {}
        self._executors: dict[Pool, Executor] = {}
        for name, source in mixtures.items():
            if isinstance(source, Mixture):
                self._executors.setdefault(source.pool, source.executor)
                mixture = source
                if source.name != name:  # served under the key: a handle on the same executor
                    mixture = Mixture(
                        source.config, source.pool, executor=source.executor, name=name
                    )
            else:
                if isinstance(source, tuple):
                    config, pool = source
                elif isinstance(source.pool, Pool):
                    config, pool = source, source.pool
                else:
                    raise ValueError(
                        f"mixture '{name}' has no inline pool; pass (config, pool) or a Mixture"
                    )
                mixture = Mixture(config, pool, executor=self._executor(pool, cache), name=name)
            self.mixtures[name] = mixture

    def _executor(self, pool: Pool, cache: Cache | None) -> Executor:
        executor = self._executors.get(pool)
        if executor is None:
            executor = self._executors[pool] = Executor(pool, cache=cache)
        return executor

    async def aclose(self) -> None:
        """Close every executor's connections (they belong to this event loop); executors stay
        usable, reconnecting on their next call from another loop."""
        for executor in self._executors.values():
            await executor.aclose()

    # ---------------------------------------------------------------- checks

    def check_auth(self, request: Request) -> None:
        if not self.api_key:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self.api_key.encode()
        ):
            raise WireError(
                401,
                "Missing or incorrect API key: send 'Authorization: Bearer <key>' with the key "
                f"set in {API_KEY_ENV} on the server.",
                code="invalid_api_key",
            )

    async def read_request(self, request: Request) -> ChatCompletionRequest:
        """The validated body of a chat request: 413 over the size limit, 400 for invalid JSON
        or a body :class:`ChatCompletionRequest` rejects."""
        length = request.headers.get("content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise WireError(400, "The Content-Length header is not a number.") from None
            if declared > self.max_body_bytes:
                raise self._too_large()
        chunks: list[bytes] = []
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > self.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise WireError(400, f"The request body is not valid JSON: {exc}.") from None
        try:
            return ChatCompletionRequest.model_validate(body)
        except ValidationError as exc:
            raise wire.invalid_request(exc) from None

    def _too_large(self) -> WireError:
        return WireError(
            413,
            f"The request body is larger than the server's limit of {self.max_body_bytes} bytes.",
            code="request_too_large",
        )

    def mixture_for(self, body: ChatCompletionRequest) -> Mixture:
        """The served mixture a request names; 404 for a name not served."""
        mixture = self.mixtures.get(body.model)
        if mixture is None:
            raise WireError(
                404,
                f"The model '{body.model}' does not exist; this server serves: "
                f"{', '.join(sorted(self.mixtures))}.",
                param="model",
                code="model_not_found",
            )
        return mixture

    # ---------------------------------------------------------------- handlers

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def models(self, request: Request) -> Response:
        try:
            self.check_auth(request)
        except WireError as exc:
            return _error_response(exc)
        return JSONResponse(wire.model_list(self.mixtures, created=self.created, owned_by=OWNER))

    async def chat(self, request: Request) -> Response:
        start = time.perf_counter()
        try:
            self.check_auth(request)
            body = await self.read_request(request)
            mixture = self.mixture_for(body)
            messages = body.openai_messages()
            want_trace = request.headers.get(TRACE_HEADER, "").strip().lower() in {"1", "true"}
            if body.stream:
                response = await self._stream(mixture, messages, body.include_usage, want_trace)
            else:
                response = await self._complete(mixture, messages, want_trace)
        except WireError as exc:
            log.info(
                "POST /v1/chat/completions -> %d %s (%.3fs)",
                exc.status,
                exc.code or exc.type,
                time.perf_counter() - start,
            )
            return _error_response(exc)
        return response

    async def _complete(
        self, mixture: Mixture, messages: list[dict[str, str]], want_trace: bool
    ) -> Response:
        start = time.perf_counter()
        try:
            result = await mixture.acomplete(messages)
        except MoaSearchError as exc:
            log.warning("mixture %s failed: %s", mixture.name, exc)
            raise _upstream_error(exc) from None
        payload = wire.completion(
            _completion_id(),
            created=int(time.time()),
            model=mixture.name,
            content=result.answer,
            usage=_usage(result.trace),
        )
        if want_trace:
            payload["moa_trace"] = result.trace.to_dict()
        log.info(
            "chat %s -> 200 in %.3fs, %d calls",
            mixture.name,
            time.perf_counter() - start,
            len(result.trace.calls),
        )
        return Response(wire.dumps(payload), media_type="application/json")

    async def _stream(
        self,
        mixture: Mixture,
        messages: list[dict[str, str]],
        include_usage: bool,
        want_trace: bool,
    ) -> Response:
        run = mixture.astream(messages)
        # Wait for the first delta before sending headers: a failure of the proposer layers
        # (or of the aggregator before any text) is then a proper 502, not an SSE event.
        try:
            first: str | None = await run.__anext__()
        except StopAsyncIteration:
            first = None  # an empty answer
        except MoaSearchError as exc:
            log.warning("mixture %s failed before streaming: %s", mixture.name, exc)
            raise _upstream_error(exc) from None
        except BaseException:
            await run.aclose()
            raise
        events = _sse_events(mixture.name, run, first, include_usage, want_trace)
        return StreamingResponse(events, media_type="text/event-stream", headers=_SSE_HEADERS)


def _completion_id() -> str:
    return f"chatcmpl-moa{uuid.uuid4().hex}"


async def _sse_events(
    name: str,
    run: RunStream,
    first: str | None,
    include_usage: bool,
    want_trace: bool,
) -> AsyncIterator[bytes]:
    """The SSE body of a streamed completion (see the module docstring for the contract)."""
    completion_id = _completion_id()
    created = int(time.time())

    def chunk(delta: dict[str, str], finish: str | None = None) -> wire.ChatCompletionChunk:
        return wire.chunk(
            completion_id,
            created=created,
            model=name,
            delta=delta,
            finish_reason=finish,
            include_usage=include_usage,
        )

    try:
        yield sse_event(chunk({"role": "assistant", "content": ""}))
        if first is not None:
            yield sse_event(chunk({"content": first}))
            try:
                async for delta in run:
                    yield sse_event(chunk({"content": delta}))
            except MoaSearchError as exc:
                log.warning("mixture %s failed mid-stream: %s", name, exc)
                yield sse_event(_upstream_error(exc).body())
                return
        result = run.result
        final = chunk({}, "stop")
        if want_trace:
            final["moa_trace"] = result.trace.to_dict()
        yield sse_event(final)
        if include_usage:
            last = wire.usage_chunk(
                completion_id, created=created, model=name, usage=_usage(result.trace)
            )
            yield sse_event(last)
        yield wire.DONE_EVENT
    finally:
        # on a client disconnect this cancels the aggregator's call
        with contextlib.suppress(Exception):
            await run.aclose()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    service = getattr(request.app.state, "moa", None)
    if isinstance(service, _Service) and request.url.path.startswith("/v1/"):
        try:  # no key, no hints about which /v1 paths exist
            service.check_auth(request)
        except WireError as denied:
            return _error_response(denied)
    message = (
        f"No route for {request.method} {request.url.path}."
        if exc.status_code in (404, 405)
        else str(exc.detail)
    )
    error = WireError(
        exc.status_code, message, code="not_found" if exc.status_code == 404 else None
    )
    return _error_response(error)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error_response(
        WireError(
            500, "The server had an internal error.", type_="server_error", code="internal_error"
        )
    )


def create_app(
    mixtures: Mapping[str, MixtureSource],
    *,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    cache: Cache | None = None,
) -> Starlette:
    """The ASGI app serving ``mixtures`` (served model name -> mixture).

    Args:
        mixtures: each a :class:`Mixture` (its executor is used as is), a
            :class:`MixtureConfig` with an inline pool, or a ``(config, pool)`` pair. Mixtures
            given as configs on equal pools share one executor created here, with ``cache``.
        api_key: the key clients must send as ``Authorization: Bearer``; ``None`` reads
            :data:`API_KEY_ENV` now; no key at all means no authentication.
        max_body_bytes: request bodies over this size get a 413.
        cache: the response cache of the executors created here (``None``: no cache).

    When the app shuts down (ASGI lifespan) every executor's connections are closed, those of
    ready :class:`Mixture` handles included (they stay usable); the cache, and a cache a handle
    opened, belong to the caller.
    """
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
    service = _Service(mixtures, api_key=key, max_body_bytes=max_body_bytes, cache=cache)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info(
            "serving %s (authentication %s)",
            ", ".join(service.mixtures),
            "on" if service.api_key else "off",
        )
        try:
            yield
        finally:
            await service.aclose()

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", service.chat, methods=["POST"]),
            Route("/v1/models", service.models, methods=["GET"]),
            Route("/health", service.health, methods=["GET"]),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )
    app.state.moa = service
    return app


def app_from_files(
    paths: Sequence[PathLike],
    *,
    pool: Pool | PathLike | None = None,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    cache: Cache | None = None,
) -> Starlette:
    """:func:`create_app` for mixture files, each served under its ``name`` or file stem.

    ``pool`` overrides every file's pool (like ``--pool``); otherwise each file's own pool, else
    the local pool. Raises :class:`ConfigError` for a bad file or two mixtures with one name.
    """
    if not paths:
        raise ConfigError("serve", "", "at least one mixture file to serve")
    entries: dict[str, tuple[MixtureConfig, Pool]] = {}
    origin: dict[str, str] = {}
    for path in paths:
        config, resolved = load_mixture_and_pool(path, pool)
        name = config.name or Path(path).stem
        if name in entries:
            raise ConfigError(
                str(path),
                "name",
                f"a model name unique among the served mixtures, but '{name}' is also the name "
                f"of {origin[name]}",
            )
        entries[name] = (config, resolved)
        origin[name] = str(path)
    return create_app(entries, api_key=api_key, max_body_bytes=max_body_bytes, cache=cache)


def serve(
    paths: Sequence[PathLike],
    *,
    pool: Pool | PathLike | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    cache: Cache | PathLike | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    log_level: str = "info",
) -> None:
    """Serve mixture files with uvicorn until interrupted (SIGINT/SIGTERM).

    Binds ``127.0.0.1`` unless ``host`` says otherwise. ``cache`` is a :class:`Cache` or a
    location as ``--cache`` takes it (``None``/``"none"``: no cache — a server answers each
    request afresh by default). Raises :class:`ConfigError` before binding for a bad file.
    """
    owned: Cache | None = None
    if cache is not None and not isinstance(cache, Cache):
        owned = open_cache(cache)
        cache = owned
    try:
        app = app_from_files(
            paths, pool=pool, api_key=api_key, max_body_bytes=max_body_bytes, cache=cache
        )
        run_until_interrupted(app, host=host, port=port, log_level=log_level)
    finally:
        if owned is not None:
            owned.close()
