"""Serve exported mixtures as an OpenAI-compatible chat-completions endpoint.

``moa-search serve MIXTURE.yaml [MORE.yaml ...]`` (or :func:`serve`) runs a Starlette app under
uvicorn, bound to ``127.0.0.1:8000`` by default. Any OpenAI client works against it::

    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=KEY)
    client.chat.completions.create(model="local-example", messages=[...], stream=True)

Endpoints: ``POST /v1/chat/completions`` (``model`` names a served mixture: its ``name``, else
its file stem), ``GET /v1/models`` (one model per served mixture), ``GET /v1/models/{id}`` (404
for a name not served) and ``GET /health`` (``{"status": "ok"}``, never needs a key; 503 when a
Redis cache the mixtures use does not answer). The request, the completion, the stream's events
and the error statuses are described in :mod:`moa_search.serve.wire`; what the server refuses
(tools, structured output, images, bodies it cannot read safely) in
:mod:`moa_search.serve.protocol`. ``finish_reason`` is the aggregator's own (``"length"`` when
its ``max_tokens`` cut it short).

A request header ``X-MOA-Trace: 1`` adds a non-standard ``moa_trace`` field (the run's trace:
every call's layer, role, model, tokens, latency, cost, cache hit, attempts and error) to the
completion, or to the final (``finish_reason``) chunk of a stream. Key-like strings in it, in
error messages and in the logs (the access log's query strings included) are masked
(:mod:`moa_search.serve.masking`).

Authentication: if a key is configured — the ``api_key`` argument, else the environment
variable ``MOA_SEARCH_API_KEY`` — every ``/v1/*`` request must carry
``Authorization: Bearer <key>`` or gets a 401. The key is never logged. Without a key the
server warns at start-up and, so that a web page cannot make a browser spend, answers 421 to a
``/v1/*`` request whose ``Host`` does not name the bound address (``localhost`` too on
loopback; more with ``allowed_hosts``). Every POST must be ``Content-Type: application/json``
(415 otherwise): a cross-origin form cannot send that without a CORS preflight.

Failures upstream — a layer below its quorum (:class:`~moa_search.errors.QuorumError`) or the
aggregator failing after its retries (:class:`~moa_search.errors.ModelCallError`) — are a 502
with the reason in the message, and like every 5xx carry ``x-should-retry: false``: the server
has spent its own retries, and the official SDKs would otherwise run the whole mixture again.
A streamed request does not send its headers until the aggregator's first token (or the
failure) is known, or ``keepalive_s`` (5 s) pass: a failure before then is a plain 502 too.
After that the stream starts and sends an SSE comment ``: keepalive`` every ``keepalive_s``
without an event, so proxies keep it open while the layers run. If the mixture fails once the
stream has started, the status can no longer change: the server sends one SSE event
``data: {"error": {...}}`` (``code: "upstream_error"``) and closes the stream without
``[DONE]``; the ``openai`` client raises ``APIError`` on it.

A client that disconnects — before the first token, mid-stream, or while waiting for a
non-streamed answer — cancels its run: the calls in flight are cancelled, and nothing more is
spent on it.

Concurrency: one :class:`~moa_search.runtime.executor.Executor` per distinct pool, shared by every
request and every mixture on that pool, so concurrent requests share each model's
``max_concurrency`` limit and its connection pool.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from moa_search.config import MixtureConfig, Pool
from moa_search.errors import ConfigError
from moa_search.runtime.cache import Cache, open_cache
from moa_search.runtime.mixture import PathLike, load_mixture_and_pool
from moa_search.serve.masking import SERVING_LOGGERS, install_log_masking
from moa_search.serve.runner import run_until_interrupted, running
from moa_search.serve.service import API_KEY_ENV, MixtureSource, Service, error_response
from moa_search.serve.wire import WireError

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_KEEPALIVE_S",
    "DEFAULT_MAX_BODY_BYTES",
    "MixtureSource",
    "app_from_files",
    "create_app",
    "running",
    "serve",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 1_000_000
#: Seconds between SSE keep-alive comments while a stream waits for text.
DEFAULT_KEEPALIVE_S = 5.0


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    service = getattr(request.app.state, "moa", None)
    if isinstance(service, Service) and request.url.path.startswith("/v1/"):
        try:  # no key, no hints about which /v1 paths exist
            service.check_auth(request)
        except WireError as denied:
            return error_response(denied)
    message = (
        f"No route for {request.method} {request.url.path}."
        if exc.status_code in (404, 405)
        else str(exc.detail)
    )
    error = WireError(
        exc.status_code, message, code="not_found" if exc.status_code == 404 else None
    )
    return error_response(error)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(
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
    allowed_hosts: Collection[str] = (),
    keepalive_s: float = DEFAULT_KEEPALIVE_S,
) -> Starlette:
    """The ASGI app serving ``mixtures`` (served model name -> mixture).

    Args:
        mixtures: each a :class:`Mixture` (its executor is used as is), a
            :class:`MixtureConfig` with an inline pool, or a ``(config, pool)`` pair. Mixtures
            given as configs on equal pools share one executor created here, with ``cache``.
        api_key: the key clients must send as ``Authorization: Bearer``; ``None`` reads
            :data:`API_KEY_ENV` now; no key at all means no authentication (a warning at
            start-up, and the ``Host`` check).
        max_body_bytes: request bodies over this size get a 413.
        cache: the response cache of the executors created here (``None``: no cache).
        allowed_hosts: without a key, ``Host`` names accepted besides the bound address
            (``localhost`` too on loopback); ``"*"`` turns the check off.
        keepalive_s: a stream sends ``: keepalive`` after this many seconds without an event.

    When the app shuts down (ASGI lifespan) every executor's connections are closed, those of
    ready :class:`Mixture` handles included (they stay usable); the cache, and a cache a handle
    opened, belong to the caller.
    """
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
    service = Service(
        mixtures,
        api_key=key,
        max_body_bytes=max_body_bytes,
        cache=cache,
        allowed_hosts=allowed_hosts,
        keepalive_s=keepalive_s,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        install_log_masking(*SERVING_LOGGERS)  # whichever ASGI server set logging up
        log.info(
            "serving %s (authentication %s)",
            ", ".join(service.mixtures),
            "on" if service.api_key else "off",
        )
        if not service.api_key:
            log.warning(
                "serving without an API key (%s is not set): any program that reaches this "
                "address can spend on the pool's models; requests must name the bound address "
                "in Host and be sent as application/json",
                API_KEY_ENV,
            )
        try:
            yield
        finally:
            await service.aclose()

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", service.chat, methods=["POST"]),
            Route("/v1/models", service.models, methods=["GET"]),
            Route("/v1/models/{model:path}", service.model, methods=["GET"]),
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
    allowed_hosts: Collection[str] = (),
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
    return create_app(
        entries,
        api_key=api_key,
        max_body_bytes=max_body_bytes,
        cache=cache,
        allowed_hosts=allowed_hosts,
    )


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
    use_colors: bool | None = None,
    allowed_hosts: Collection[str] = (),
) -> None:
    """Serve mixture files with uvicorn until interrupted (SIGINT/SIGTERM).

    Binds ``127.0.0.1`` unless ``host`` says otherwise. ``cache`` is a :class:`Cache` or a
    location as ``--cache`` takes it (``None``/``"none"``: no cache — a server answers each
    request afresh by default). ``use_colors`` None colours the log when stdout is a terminal.
    ``allowed_hosts``: as :func:`create_app` takes them. Raises :class:`ConfigError` before
    binding for a bad file.
    """
    owned: Cache | None = None
    if cache is not None and not isinstance(cache, Cache):
        owned = open_cache(cache)
        cache = owned
    try:
        app = app_from_files(
            paths,
            pool=pool,
            api_key=api_key,
            max_body_bytes=max_body_bytes,
            cache=cache,
            allowed_hosts=allowed_hosts,
        )
        run_until_interrupted(app, host=host, port=port, log_level=log_level, use_colors=use_colors)
    finally:
        if owned is not None:
            owned.close()
