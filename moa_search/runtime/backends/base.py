"""Backends: how one attempt at one call reaches a model.

:class:`Backend` is the contract the executor relies on; :class:`OpenAIBackend` implements it
for every OpenAI-compatible endpoint (OpenAI, Together, Groq, vLLM, Ollama, llama.cpp's server)
through the official ``openai`` package's ``AsyncOpenAI``. A backend makes exactly one attempt
per method call and turns every failure into a typed
:class:`~moa_search.errors.ModelCallError`; retries, caching and tracing live in the executor.
"""

from __future__ import annotations

import asyncio
import json
import random
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import openai

from moa_search.runtime.retry import (
    CONNECT_TIMEOUT_S,
    INITIAL_RETRY_DELAY_S,
    MAX_RETRY_AFTER_S,
    MAX_RETRY_DELAY_S,
    NO_KEY_PLACEHOLDER,
    RETRY_JITTER,
)
from moa_search.config import ModelSpec
from moa_search.errors import ModelCallError
from moa_search.runtime.prompting import ChatRequest

__all__ = ["Backend", "Completion", "OpenAIBackend", "estimate_tokens", "retry_delay"]


@dataclass(frozen=True)
class Completion:
    """A model's whole answer with its token counts."""

    text: str
    tokens_in: int
    tokens_out: int
    finish_reason: str | None = None
    usage_estimated: bool = False


def estimate_tokens(text: str) -> int:
    """A rough token count (about four characters a token) for providers that report none."""
    return max(1, (len(text) + 3) // 4) if text else 0


def retry_delay(attempt: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1).

    A provider's Retry-After wins when it is given and reasonable; otherwise exponential
    back-off from :data:`INITIAL_RETRY_DELAY_S`, capped, with jitter.
    """
    if retry_after is not None and 0 <= retry_after <= MAX_RETRY_AFTER_S:
        return retry_after
    base = min(MAX_RETRY_DELAY_S, INITIAL_RETRY_DELAY_S * 2 ** (attempt - 1))
    return base * (1 - RETRY_JITTER * rng.random())


class Backend(ABC):
    """One pool model.

    Contract: :meth:`complete` and :meth:`stream` make one attempt and raise only
    :class:`ModelCallError` (with ``kind`` telling whether a retry may help). :meth:`stream`
    yields text deltas and finally one :class:`Completion` holding the whole text and usage.
    :attr:`semaphore` bounds this model's concurrent requests; callers hold it for the attempt.
    """

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore: asyncio.Semaphore | None = None

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._semaphore = asyncio.Semaphore(self.spec.max_concurrency)
            self._on_new_loop()

    def _on_new_loop(self) -> None:  # noqa: B027 - optional hook
        """Called when first used from a new event loop (per-loop resources)."""

    @property
    def semaphore(self) -> asyncio.Semaphore:
        self._bind_loop()
        assert self._semaphore is not None
        return self._semaphore

    @abstractmethod
    async def complete(self, request: ChatRequest) -> Completion: ...

    @abstractmethod
    def stream(self, request: ChatRequest) -> AsyncIterator[str | Completion]: ...

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


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
    own retries disabled: the executor retries, so that every attempt is accounted for. Requests
    go through the client's ``post()`` with plain JSON in and out: the SDK's transport, errors
    and SSE parsing, without building typed request and response objects (which cost more CPU
    than everything else a served request does).
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._client: openai.AsyncOpenAI | None = None

    def _on_new_loop(self) -> None:
        self._client = None

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
            )
        return self._client

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
            if not choices or not isinstance(choices[0], dict):
                raise ModelCallError(
                    self.spec.alias, "malformed_response", "no choices in the answer"
                )
            message = choices[0].get("message") or {}
            text = message.get("content") or ""
            finish = choices[0].get("finish_reason")
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
                    finish = choice["finish_reason"]
        except ModelCallError as err:
            if pieces and err.kind == "malformed_response":
                raise ModelCallError(self.spec.alias, "stream_interrupted", err.detail) from err
            raise
        except Exception as exc:
            err = classify(self.spec.alias, exc)
            if pieces and err.kind in {"connection", "timeout", "malformed_response"}:
                err = ModelCallError(self.spec.alias, "stream_interrupted", err.detail)
            raise err from exc
        if finish is None:
            kind = "stream_interrupted" if pieces else "malformed_response"
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
        if self._client is not None:
            await self._client.close()
            self._client = None
