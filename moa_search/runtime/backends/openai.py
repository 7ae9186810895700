"""The backend of every OpenAI-compatible endpoint (OpenAI, Together, Groq, vLLM, Ollama,
llama.cpp's server), through the official ``openai`` package's ``AsyncOpenAI``, and the mapping of
its failures to typed :class:`~moa_search.errors.ModelCallError` kinds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import openai

from moa_search.config import ModelSpec
from moa_search.errors import CallErrorKind, ConfigError, ModelCallError
from moa_search.runtime.backends import http_pool
from moa_search.runtime.backends.base import Backend, Completion, estimate_tokens
from moa_search.runtime.prompting import ChatRequest
from moa_search.runtime.retry import CONNECT_TIMEOUT_S, NO_KEY_PLACEHOLDER

__all__ = ["OpenAIBackend", "classify"]


def _header_retry_after(headers: Mapping[str, str] | None) -> float | None:
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is not None:
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _is_transport(exc: BaseException, name_part: str = "") -> bool:
    """An exception of the HTTP transport under the openai client (httpx or httpx2)."""
    module = type(exc).__module__.split(".")[0]
    return module.startswith(("httpx", "httpcore")) and name_part in type(exc).__name__


def classify(alias: str, exc: BaseException) -> ModelCallError:
    """Map an exception from the openai client or the transport to a typed error."""
    if isinstance(exc, ModelCallError):
        return exc
    if isinstance(exc, openai.APITimeoutError | asyncio.TimeoutError) or _is_transport(
        exc, "Timeout"
    ):
        return ModelCallError(alias, "timeout", "no answer within the model's timeout")
    if isinstance(exc, openai.APIConnectionError) or _is_transport(exc):
        cause = exc.__cause__ or exc
        return ModelCallError(alias, "connection", f"{type(cause).__name__}: {cause}".strip(": "))
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = _error_message(exc)
        retry_after = _header_retry_after(exc.response.headers)
        kind: CallErrorKind
        if status == 429:
            kind = "rate_limit"
        elif status in (401, 403):
            kind = "auth"
        elif status == 404:
            kind = "not_found"
        elif status == 408 or status >= 500:
            kind = "server_error" if status != 408 else "timeout"
        else:
            kind = "bad_request"
        return ModelCallError(alias, kind, message, status=status, retry_after=retry_after)
    if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError | ValueError):
        return ModelCallError(alias, "malformed_response", f"{type(exc).__name__}: {exc}")
    return ModelCallError(alias, "connection", f"{type(exc).__name__}: {exc}")


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(exc.message)[:300]


class OpenAIBackend(Backend):
    """A model behind any OpenAI-compatible endpoint, reached with ``AsyncOpenAI``.

    The client is created per event loop (connection pools belong to a loop) with the SDK's
    own retries disabled: the executor retries, so that every attempt is accounted for. Every
    model at one base URL shares one HTTP connection pool per loop, made when the backend is
    constructed (before any layer starts; see :mod:`~moa_search.runtime.backends.http_pool`),
    under its own ``AsyncOpenAI`` (its own key and timeout). Requests
    go through the client's ``post()`` with plain JSON in and out: the SDK's transport, errors
    and SSE parsing, without building typed request and response objects (which cost more CPU
    than everything else a served request does).
    """

    def __init__(self, spec: ModelSpec) -> None:
        if spec.base_url is None:
            raise ConfigError(
                f"pool model '{spec.alias}'", "base_url", "the URL of an OpenAI-compatible endpoint"
            )
        super().__init__(spec)
        self._client: openai.AsyncOpenAI | None = None
        http_pool.prepare(spec.base_url)

    def _on_new_loop(self) -> None:
        self._client = None  # the previous loop's pool went with that loop

    def client(self) -> openai.AsyncOpenAI:
        self._bind_loop()
        if self._client is None:
            key = self.spec.api_key()
            if self.spec.api_key_env is not None and not key:
                raise ModelCallError(
                    self.spec.alias,
                    "missing_api_key",
                    f"environment variable {self.spec.api_key_env} is not set",
                )
            self._client = openai.AsyncOpenAI(
                base_url=self.spec.base_url,
                api_key=key or NO_KEY_PLACEHOLDER,
                max_retries=0,
                timeout=openai.Timeout(
                    self.spec.timeout_s, connect=min(CONNECT_TIMEOUT_S, self.spec.timeout_s)
                ),
                http_client=http_pool.acquire(self._base_url, self),
            )
            http_pool.platform_of(self._client)
        return self._client

    @property
    def _base_url(self) -> str:
        assert self.spec.base_url is not None
        return self.spec.base_url

    def _kwargs(self, request: ChatRequest) -> dict[str, object]:
        return {
            "model": request.model,
            "messages": request.openai_messages(),
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "seed": request.seed,
        }

    async def complete(self, request: ChatRequest) -> Completion:
        try:
            async with asyncio.timeout(self.spec.timeout_s):
                data = await self.client().post(
                    "/chat/completions", body=self._kwargs(request), cast_to=object
                )
            choices = data.get("choices") if isinstance(data, dict) else None
            if not isinstance(data, dict) or not choices or not isinstance(choices[0], dict):
                raise ModelCallError(
                    self.spec.alias, "malformed_response", "no choices in the answer"
                )
            message = choices[0].get("message") or {}
            text = message.get("content") or ""
            finish = choices[0].get("finish_reason")
            finish = finish if isinstance(finish, str) else None
            usage = data.get("usage") or {}
        except ModelCallError:
            raise
        except Exception as exc:
            raise classify(self.spec.alias, exc) from exc
        if not isinstance(text, str):
            raise ModelCallError(self.spec.alias, "malformed_response", "the content is not text")
        if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
            return Completion(
                text,
                int(usage.get("prompt_tokens") or 0),
                int(usage["completion_tokens"]),
                finish,
            )
        prompt_text = "".join(c for _, c in request.messages)
        return Completion(
            text,
            estimate_tokens(prompt_text),
            estimate_tokens(text),
            finish,
            usage_estimated=True,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[str | Completion]:
        pieces: list[str] = []
        usage: dict[str, Any] | None = None
        finish: str | None = None
        chunks = 0
        try:
            stream = await self.client().post(
                "/chat/completions",
                body={
                    **self._kwargs(request),
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
                cast_to=object,
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
            async for chunk in stream:
                if not isinstance(chunk, dict):
                    raise ModelCallError(
                        self.spec.alias, "malformed_response", "a chunk is not JSON"
                    )
                if isinstance(chunk.get("usage"), dict):
                    usage = chunk["usage"]
                choices = chunk.get("choices") or ()
                if not choices:
                    continue
                choice = choices[0]
                delta = (choice.get("delta") or {}).get("content")
                if delta:
                    chunks += 1
                    pieces.append(delta)
                    yield delta
                if choice.get("finish_reason"):
                    finish = str(choice["finish_reason"])
        except ModelCallError as err:
            if pieces and err.kind == "malformed_response":
                raise ModelCallError(self.spec.alias, "stream_interrupted", err.detail) from err
            raise
        except Exception as exc:
            error = classify(self.spec.alias, exc)
            if pieces and error.kind in {"connection", "timeout", "malformed_response"}:
                error = ModelCallError(self.spec.alias, "stream_interrupted", error.detail)
            raise error from exc
        if finish is None:
            kind: CallErrorKind = "stream_interrupted" if pieces else "malformed_response"
            raise ModelCallError(self.spec.alias, kind, "the stream ended without a finish reason")
        text = "".join(pieces)
        if usage is not None and usage.get("completion_tokens") is not None:
            yield Completion(
                text, int(usage.get("prompt_tokens") or 0), int(usage["completion_tokens"]), finish
            )
        else:
            prompt_text = "".join(c for _, c in request.messages)
            yield Completion(
                text,
                estimate_tokens(prompt_text),
                max(chunks, estimate_tokens(text)),
                finish,
                usage_estimated=True,
            )

    async def aclose(self) -> None:
        """Release this model's share of the HTTP pool (closed when no model uses it)."""
        if self._client is not None:
            self._client = None
            await http_pool.release(self._base_url, self)
