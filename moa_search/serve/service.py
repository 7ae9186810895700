"""The served mixtures, their shared executors, and the request handlers of the app.

The checks a request passes, in order: the key (401), the ``Host`` header when no key is set
(421), the body's size (413), its ``Content-Type`` (415), its JSON (400,
:func:`~moa_search.serve.protocol.parse_body`), what it asks for (400,
:func:`~moa_search.serve.protocol.check_supported`) and its shape (400,
:class:`~moa_search.serve.wire.ChatCompletionRequest`). Nothing goes upstream before all pass.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
from collections.abc import Collection, Mapping

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from moa_search.config import MixtureConfig, Pool
from moa_search.errors import MoaSearchError
from moa_search.runtime.cache import Cache
from moa_search.runtime.cache.redis import RedisCache
from moa_search.runtime.executor import Executor
from moa_search.runtime.mixture import Mixture
from moa_search.serve import protocol, wire
from moa_search.serve.masking import mask_secrets
from moa_search.serve.streaming import (
    ClientGoneError,
    DisconnectWatch,
    cancel,
    completion_id,
    sse_events,
    trace_payload,
    upstream_error,
    usage_of,
)
from moa_search.serve.wire import ChatCompletionRequest, WireError

__all__ = ["API_KEY_ENV", "MixtureSource", "Service", "error_response"]

log = logging.getLogger(__name__)

#: Environment variable holding the key clients must present (``Authorization: Bearer``).
API_KEY_ENV = "MOA_SEARCH_API_KEY"
TRACE_HEADER = "x-moa-trace"
OWNER = "moa-search"
#: How long ``/health`` waits for a Redis cache to answer.
HEALTH_TIMEOUT_S = 3.0

#: What :func:`~moa_search.serve.app.create_app` serves under a name: a ready :class:`Mixture`,
#: a :class:`MixtureConfig` with an inline pool, or a ``(config, pool)`` pair.
MixtureSource = Mixture | MixtureConfig | tuple[MixtureConfig, Pool]

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_LOOPBACK_NAMES = ("localhost",)


def error_response(error: WireError) -> JSONResponse:
    """OpenAI's error body with ``error.status``; a 5xx tells SDKs not to retry (the server
    has spent its own retries, and a retry would pay for the whole mixture again)."""
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else {}
    if error.status >= 500:
        headers["x-should-retry"] = "false"
    return JSONResponse(error.body(), status_code=error.status, headers=headers or None)


def _host_and_port(value: str) -> tuple[str, int | None]:
    """``example.com:8000`` -> ("example.com", 8000); ``[::1]:80`` -> ("::1", 80)."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = value.partition(":") if value.count(":") == 1 else (value, "", "")
    return host, int(port) if port.isdigit() else None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Service:
    """The served mixtures, their shared executors, and the request handlers."""

    def __init__(
        self,
        mixtures: Mapping[str, MixtureSource],
        *,
        api_key: str | None,
        max_body_bytes: int,
        cache: Cache | None,
        allowed_hosts: Collection[str] = (),
        keepalive_s: float = 5.0,
    ) -> None:
        if not mixtures:
            raise ValueError("create_app needs at least one mixture to serve")
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        if keepalive_s <= 0:
            raise ValueError("keepalive_s must be positive")
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self.allowed_hosts = frozenset(h.strip().lower() for h in allowed_hosts)
        self.keepalive_s = keepalive_s
        self.created = int(time.time())
        #: runs cancelled because their client disconnected
        self.cancelled_runs = 0
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

    def _cancelled(self) -> None:
        self.cancelled_runs += 1

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

    def check_host(self, request: Request) -> None:
        """Without a key, a request must name this server in ``Host`` (its bound address,
        ``localhost`` on loopback, or an allowed host): a web page cannot make a browser spend
        through a forged name (DNS rebinding)."""
        if self.api_key or "*" in self.allowed_hosts:
            return
        server = request.scope.get("server")
        if not server or server[1] is None:  # a Unix socket: no browser reaches it
            return
        bound, port = str(server[0]).lower(), int(server[1])
        header = request.headers.get("host", "")
        host, shown_port = _host_and_port(header)
        if host in self.allowed_hosts or header.strip().lower() in self.allowed_hosts:
            return
        names = {bound, *(_LOOPBACK_NAMES if _is_loopback(bound) else ())}
        if host in names and (shown_port or 80) == port:
            return
        raise WireError(
            421,
            f"The Host header {header[:100]!r} does not name this server; without an API key "
            f"({API_KEY_ENV}) it accepts requests for its bound address only "
            f"({bound}:{port}, or allowed hosts).",
            code="misdirected_request",
        )

    async def read_request(self, request: Request) -> ChatCompletionRequest:
        """The validated body of a chat request: 413 over the size limit, 415 not JSON by its
        ``Content-Type``, 400 for invalid JSON, an unsupported field or a body
        :class:`ChatCompletionRequest` rejects."""
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
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            raise WireError(
                415,
                "The request body must be sent with 'Content-Type: application/json'"
                f"{f', not {media_type[:60]!r}' if media_type else ''}.",
                code="unsupported_media_type",
            )
        body = protocol.parse_body(b"".join(chunks))
        protocol.check_supported(body)
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

    def mixture_named(self, name: str, param: str | None = "model") -> Mixture:
        """The served mixture called ``name``; 404 for a name not served."""
        mixture = self.mixtures.get(name)
        if mixture is None:
            raise WireError(
                404,
                f"The model '{name[:200]}' does not exist; this server serves: "
                f"{', '.join(sorted(self.mixtures))}.",
                param=param,
                code="model_not_found",
            )
        return mixture

    # ---------------------------------------------------------------- handlers

    async def health(self, request: Request) -> Response:
        """``{"status": "ok"}``, or 503 when a Redis cache the mixtures use does not answer."""
        caches = {id(e.cache): e.cache for e in self._executors.values()}
        for cache in caches.values():
            if not isinstance(cache, RedisCache):
                continue
            try:
                probe = asyncio.to_thread(cache.peek, "health-probe")
                await asyncio.wait_for(probe, HEALTH_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - any failure of the probe is "down"
                log.warning("health: the Redis cache does not answer (%s)", type(exc).__name__)
                body = {"status": "unavailable", "reason": "the Redis cache does not answer"}
                return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ok"})

    async def models(self, request: Request) -> Response:
        try:
            self.check_auth(request)
            self.check_host(request)
        except WireError as exc:
            return error_response(exc)
        return JSONResponse(wire.model_list(self.mixtures, created=self.created, owned_by=OWNER))

    async def model(self, request: Request) -> Response:
        try:
            self.check_auth(request)
            self.check_host(request)
            name = self.mixture_named(request.path_params["model"], None).name
        except WireError as exc:
            return error_response(exc)
        return JSONResponse(wire.model_card(name, created=self.created, owned_by=OWNER))

    async def chat(self, request: Request) -> Response:
        start = time.perf_counter()
        try:
            self.check_auth(request)
            self.check_host(request)
            body = await self.read_request(request)
            mixture = self.mixture_named(body.model)
            messages = body.openai_messages()
            want_trace = request.headers.get(TRACE_HEADER, "").strip().lower() in {"1", "true"}
            if body.stream:
                return await self._stream(
                    request, mixture, messages, body.include_usage, want_trace
                )
            return await self._complete(request, mixture, messages, want_trace)
        except WireError as exc:
            log.info(
                "POST /v1/chat/completions -> %d %s (%.3fs)",
                exc.status,
                exc.code or exc.type,
                time.perf_counter() - start,
            )
            return error_response(exc)
        except ClientGoneError:
            self._cancelled()
            elapsed = time.perf_counter() - start
            log.info("chat: the client left after %.3fs; run cancelled", elapsed)
            return Response(status_code=499)  # nobody reads it

    async def _complete(
        self, request: Request, mixture: Mixture, messages: list[dict[str, str]], want_trace: bool
    ) -> Response:
        start = time.perf_counter()
        task = asyncio.ensure_future(mixture.acomplete(messages))
        try:
            with DisconnectWatch(request.receive) as watch:
                await watch.wait(task, None)
            result = task.result()
        except MoaSearchError as exc:
            log.warning("mixture %s failed: %s", mixture.name, mask_secrets(str(exc)))
            raise upstream_error(exc) from None
        finally:
            await cancel(task)
        payload = wire.completion(
            completion_id(),
            created=int(time.time()),
            model=mixture.name,
            content=result.answer,
            usage=usage_of(result.trace),
            finish_reason=result.trace.finish_reason or "stop",
        )
        if want_trace:
            payload["moa_trace"] = trace_payload(result.trace)
        log.info(
            "chat %s -> 200 in %.3fs, %d calls",
            mixture.name,
            time.perf_counter() - start,
            len(result.trace.calls),
        )
        return Response(wire.dumps(payload), media_type="application/json")

    async def _stream(
        self,
        request: Request,
        mixture: Mixture,
        messages: list[dict[str, str]],
        include_usage: bool,
        want_trace: bool,
    ) -> Response:
        run = mixture.astream(messages)
        pending = asyncio.ensure_future(run.__anext__())
        watch = DisconnectWatch(request.receive)
        # Wait for the first delta before sending headers: a failure of the proposer layers
        # (or of the aggregator before any text) within the keep-alive interval is then a
        # proper 502, not an SSE event. Past the interval, the stream starts with keep-alives.
        try:
            ready = await watch.wait(pending, self.keepalive_s)
            if ready and pending.exception() is not None:
                pending.result()
        except StopAsyncIteration:
            pass  # an empty answer
        except MoaSearchError as exc:
            watch.stop()
            log.warning(
                "mixture %s failed before streaming: %s", mixture.name, mask_secrets(str(exc))
            )
            raise upstream_error(exc) from None
        except BaseException:
            watch.stop()
            await cancel(pending)
            await run.aclose()
            raise
        events = sse_events(
            mixture.name,
            run,
            pending,
            watch,
            keepalive_s=self.keepalive_s,
            include_usage=include_usage,
            want_trace=want_trace,
            on_cancel=self._cancelled,
        )
        return StreamingResponse(events, media_type="text/event-stream", headers=_SSE_HEADERS)
