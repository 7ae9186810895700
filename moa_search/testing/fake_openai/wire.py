"""What the fake server reads and emits on the wire: the OpenAI shapes of
:mod:`moa_search.serve.wire`, with the fake's own ids and token counts, and broken bodies.

Unlike a mixture server, the fake accepts any JSON object with a string ``model`` and a list
of ``messages`` and records the rest as sent. Tokens are counted as whitespace-separated
words: ``prompt_tokens`` over the text of every message, ``completion_tokens`` over the answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

from moa_search.serve import wire
from moa_search.serve.wire import ChatCompletion, ChatCompletionChunk, ErrorBody, Usage, WireError

__all__ = [
    "FINGERPRINT",
    "MALFORMED_JSON",
    "MALFORMED_SSE",
    "OWNER",
    "completion",
    "content_text",
    "include_usage",
    "rate_limited",
    "read_chat_body",
    "server_error",
    "split_words",
    "stream_chunks",
    "usage",
]

#: The ``system_fingerprint`` of every completion and chunk.
FINGERPRINT = "fp_fake"
#: The ``owned_by`` of every model listed.
OWNER = "fake-openai"
#: The body of a ``"malformed"`` completion: JSON cut off.
MALFORMED_JSON = b'{"id": "chatcmpl-malformed", "object": "chat.completion", "choices": [{'
#: The events of a ``"malformed"`` stream: one event whose data is cut-off JSON.
MALFORMED_SSE = b'data: {"id": "chatcmpl-malformed", "choices": [{"delta": \n\n'


def read_chat_body(raw: bytes) -> dict[str, Any]:
    """The JSON body of a chat request; :class:`WireError` (400) unless it is an object with
    a string ``model`` and a list of ``messages``."""
    try:
        body = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise WireError(400, "The request body is not a JSON object.")
    if not isinstance(body.get("model"), str) or not isinstance(body.get("messages"), list):
        raise WireError(
            400,
            "'model' (a string) and 'messages' (a list) are required.",
            code="missing_required_parameter",
        )
    return body


def include_usage(body: dict[str, Any]) -> bool:
    """Whether a streamed request asked for a final usage chunk."""
    return bool((body.get("stream_options") or {}).get("include_usage", False))


def content_text(content: Any) -> str:
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


def split_words(text: str) -> list[str]:
    """Split ``text`` into word pieces whose concatenation is exactly ``text``."""
    pieces = re.findall(r"\s*\S+\s*", text)
    if not pieces:
        return [text] if text else []
    return pieces


def _word_count(text: str) -> int:
    return len(text.split())


def usage(messages: list[Any], answer: str) -> Usage:
    """Words in the messages' text as ``prompt_tokens``, words in ``answer`` as completion."""
    prompt_tokens = sum(
        _word_count(content_text(m.get("content"))) for m in messages if isinstance(m, dict)
    )
    return wire.usage(prompt_tokens, _word_count(answer))


def completion(
    completion_id: str,
    *,
    created: int,
    model: str,
    answer: str | None,
    usage: Usage,
    finish_reason: str = "stop",
) -> ChatCompletion:
    """A completion of ``answer`` (``None`` gives ``content: null``) ending for
    ``finish_reason``."""
    body = wire.completion(
        completion_id,
        created=created,
        model=model,
        content=answer or "",
        usage=usage,
        system_fingerprint=FINGERPRINT,
    )
    choice: dict[str, Any] = dict(body["choices"][0])
    choice["finish_reason"] = finish_reason
    if answer is None:
        choice["message"] = {**choice["message"], "content": None}
    body["choices"] = [choice]  # type: ignore[list-item]
    return body


def stream_chunks(
    completion_id: str,
    *,
    created: int,
    model: str,
    answer: str,
    usage: Usage | None,
    truncate: bool,
    finish_reason: str = "stop",
) -> list[ChatCompletionChunk]:
    """The chunks of a streamed answer, one per word: the role chunk, the words, the chunk
    with ``finish_reason``, then the usage chunk when ``usage`` is given. Truncated: the role
    chunk and about half the words, never the end of the stream."""

    def chunk(delta: dict[str, str], finish_reason: str | None = None) -> ChatCompletionChunk:
        return wire.chunk(
            completion_id,
            created=created,
            model=model,
            delta=delta,
            finish_reason=finish_reason,
            system_fingerprint=FINGERPRINT,
            include_usage=usage is not None,
        )

    pieces = split_words(answer)
    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": piece}) for piece in pieces]
    if truncate:
        return chunks[: 1 + max(1, len(pieces) // 2)] if pieces else chunks[:1]
    chunks.append(chunk({}, finish_reason))
    if usage is not None:
        chunks.append(
            wire.usage_chunk(
                completion_id,
                created=created,
                model=model,
                usage=usage,
                system_fingerprint=FINGERPRINT,
            )
        )
    return chunks


def rate_limited(model: str, retry_after_s: float) -> ErrorBody:
    """The body of a ``"429"`` fault."""
    return wire.error_body(
        f"Rate limit reached for {model} (fake). Please try again in {retry_after_s:g}s.",
        "requests",
        code="rate_limit_exceeded",
    )


def server_error(message: str) -> ErrorBody:
    """The body of a 5xx answer."""
    return wire.error_body(message, "server_error")
