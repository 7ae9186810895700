"""OpenAI's chat-completions wire format: the request a server accepts and the bodies it sends.

The request (``POST /v1/chat/completions``), validated by :class:`ChatCompletionRequest`:
``model`` a non-empty string; ``messages`` a non-empty list of ``{"role":
"system"|"user"|"assistant", "content": str | [content parts]}`` (the text parts are joined;
``developer`` is read as ``system``); ``stream`` a boolean; ``stream_options`` an object; ``n``
1. A mixture's own sampling parameters apply: ``temperature``, ``max_tokens`` and other
sampling fields are ignored. What a mixture cannot honour — tools, structured output,
log-probabilities, image or audio parts, a tool-call history — the server refuses before this
model reads the body (:mod:`moa_search.serve.protocol`).

``stream: false`` answers one ``chat.completion`` (:func:`completion`) whose ``usage`` sums
every call of the mixture (``prompt_tokens`` the sum of ``tokens_in`` over the trace,
``completion_tokens`` of ``tokens_out``; cache hits included, failed calls count 0).
``stream: true`` answers Server-Sent Events (:func:`sse_event`): a first
``chat.completion.chunk`` (:func:`chunk`) with ``delta.role``, the text deltas, a chunk with
the aggregator's ``finish_reason`` (``"length"`` when it was cut by its ``max_tokens``), a
usage chunk with empty ``choices`` (:func:`usage_chunk`) when
``stream_options.include_usage`` is true, then ``data: [DONE]``.

Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``
(:func:`error_body`, :class:`WireError`): 400 invalid JSON or a request the model rejects
(:func:`invalid_request` names the field in ``param``, e.g. ``"messages[0].role"``, and in the
message), 401 a missing or wrong key, 404 an unknown model or path, 413 a body over the size
limit, 415 a body not sent as ``application/json``, 421 a ``Host`` that does not name the
server, 502 a mixture failing upstream (``code: "upstream_error"``). Every 5xx carries
``x-should-retry: false``: the server has spent its own retries, and an SDK retrying would pay
for the whole mixture again.

Responses are plain dictionaries typed as :class:`~typing.TypedDict`, keys in OpenAI's order.
The fake upstream of :mod:`moa_search.testing.fake_openai` emits the same shapes through these
builders.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, NotRequired, TypedDict

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
)

__all__ = [
    "DONE_EVENT",
    "KEEPALIVE_EVENT",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "ErrorBody",
    "ErrorDetail",
    "StreamOptions",
    "Usage",
    "WireError",
    "chunk",
    "completion",
    "dumps",
    "error_body",
    "invalid_request",
    "model_card",
    "model_list",
    "sse_event",
    "usage",
    "usage_chunk",
]

#: The last event of a complete stream.
DONE_EVENT = b"data: [DONE]\n\n"
#: An SSE comment sent while a stream waits for its first token (proxies cut idle streams).
KEEPALIVE_EVENT = b": keepalive\n\n"

# ------------------------------------------------------------------------------------ request


def _text_of_parts(content: Any) -> Any:
    """OpenAI content parts as the text of their ``text`` parts, joined; other parts (images,
    audio) are ignored. Anything that is not a list is left for the ``str`` check."""
    if not isinstance(content, list):
        return content
    texts: list[str] = []
    for part in content:
        if isinstance(part, Mapping) and part.get("type") == "text":
            text = part.get("text", "")
            if not isinstance(text, str):
                raise ValueError("the 'text' of a text part must be a string")
            texts.append(text)
    return "".join(texts)


def _developer_as_system(role: Any) -> Any:
    """OpenAI's ``developer`` role is the newer name of ``system``."""
    return "system" if role == "developer" else role


class ChatMessage(BaseModel):
    """One message of the conversation; other fields a client sends (``name``, …) are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    role: Annotated[Literal["system", "user", "assistant"], BeforeValidator(_developer_as_system)]
    content: Annotated[StrictStr, BeforeValidator(_text_of_parts)] = Field(
        description="a string, or a list of content parts whose text parts are joined"
    )

    def to_openai(self) -> dict[str, str]:
        """The message as a ``{"role", "content"}`` dict, its content as plain text."""
        return {"role": self.role, "content": self.content}


class StreamOptions(BaseModel):
    """``stream_options``: only ``include_usage`` (any truthy value) is read."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    include_usage: Annotated[bool, BeforeValidator(bool)] = False


def _empty_if_falsy(value: Any) -> Any:
    """``stream_options: null`` (or any other falsy value) means no options."""
    return value or {}


class ChatCompletionRequest(BaseModel):
    """The body of ``POST /v1/chat/completions`` as a mixture server reads it.

    Fields not declared here — ``temperature``, ``max_tokens``, ``seed`` and the like — are
    accepted and ignored: a mixture's own sampling parameters apply. The server refuses the
    fields a mixture cannot honour (``tools``, ``response_format``, ...) before this model reads
    the body: :func:`moa_search.serve.protocol.check_supported`.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: StrictStr = Field(min_length=1, description="the name of a served mixture")
    messages: list[ChatMessage] = Field(
        min_length=1, description="a non-empty list of {role, content} objects"
    )
    stream: StrictBool | None = Field(default=False, description="a boolean")
    stream_options: Annotated[StreamOptions, BeforeValidator(_empty_if_falsy)] = Field(
        default_factory=StreamOptions, description="an object"
    )
    n: Literal[1] | None = Field(default=1, description="a mixture gives one answer: n=1 only")

    @property
    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk."""
        return self.stream_options.include_usage

    def openai_messages(self) -> list[dict[str, str]]:
        """The conversation as ``{"role", "content"}`` dicts with plain-text content."""
        return [m.to_openai() for m in self.messages]


class WireError(Exception):
    """An error a server answers with ``status`` and OpenAI's error body (:meth:`body`)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code

    def body(self) -> ErrorBody:
        return error_body(self.message, self.type, param=self.param, code=self.code)


def _param(loc: tuple[int | str, ...]) -> str:
    """A pydantic location as OpenAI names a parameter: ``messages[0].role``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def invalid_request(exc: ValidationError) -> WireError:
    """The 400 for a request body :class:`ChatCompletionRequest` rejected: its first problem,
    the field it is in as ``param``, and a count of any further problems."""
    errors = exc.errors(include_url=False, include_context=False)
    first = errors[0]
    loc = tuple(first["loc"])
    if not loc:
        return WireError(400, "The request body must be a JSON object.")
    param = _param(loc)
    field = ChatCompletionRequest.model_fields.get(str(loc[0])) if len(loc) == 1 else None
    described = field.description if field is not None else None
    kind = first["type"]
    if kind == "missing" or (first["input"] is None and field is not None):
        message = f"'{param}' is required" + (f": {described}" if described else "")
        code = "missing_required_parameter"
    else:
        problem = "Input should be an object" if kind == "model_type" else first["msg"]
        if kind == "literal_error":
            shown_input = repr(first["input"])
            if len(shown_input) > 60:
                shown_input = shown_input[:57] + "..."
            problem += f", not {shown_input}"
        message = f"Invalid '{param}'" + (f" ({described})" if described else "")
        message += f": {problem}"
        code = "invalid_type" if kind.endswith("_type") else "invalid_value"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return WireError(400, f"{message}.", param=param, code=code)


# ----------------------------------------------------------------------------------- response


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(TypedDict):
    role: Literal["assistant"]
    content: str
    refusal: None


class Choice(TypedDict):
    index: int
    message: AssistantMessage
    logprobs: None
    finish_reason: str


class ChatCompletion(TypedDict):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: str | None
    choices: list[Choice]
    usage: Usage
    moa_trace: NotRequired[dict[str, Any]]


class ChunkChoice(TypedDict):
    index: int
    delta: dict[str, str]
    logprobs: None
    finish_reason: str | None


class ChatCompletionChunk(TypedDict):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: str | None
    choices: list[ChunkChoice]
    usage: NotRequired[Usage | None]
    moa_trace: NotRequired[dict[str, Any]]


class ModelCard(TypedDict):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(TypedDict):
    object: Literal["list"]
    data: list[ModelCard]


class ErrorDetail(TypedDict):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(TypedDict):
    error: ErrorDetail


def usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(
    completion_id: str,
    *,
    created: int,
    model: str,
    content: str,
    usage: Usage,
    system_fingerprint: str | None = None,
    finish_reason: str = "stop",
) -> ChatCompletion:
    """A ``chat.completion`` with one choice that ended for ``finish_reason``."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": system_fingerprint,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage,
    }


def chunk(
    completion_id: str,
    *,
    created: int,
    model: str,
    delta: dict[str, str],
    finish_reason: str | None = None,
    system_fingerprint: str | None = None,
    include_usage: bool = False,
) -> ChatCompletionChunk:
    """A ``chat.completion.chunk`` of choice 0; with ``include_usage``, ``usage: null`` as
    OpenAI sends on every chunk but the last of such a stream."""
    obj: ChatCompletionChunk = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": system_fingerprint,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if include_usage:
        obj["usage"] = None
    return obj


def usage_chunk(
    completion_id: str,
    *,
    created: int,
    model: str,
    usage: Usage,
    system_fingerprint: str | None = None,
) -> ChatCompletionChunk:
    """The last chunk of a stream asked for ``stream_options.include_usage``: no choices."""
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": system_fingerprint,
        "choices": [],
        "usage": usage,
    }


def model_card(name: str, *, created: int, owned_by: str) -> ModelCard:
    """The body of ``GET /v1/models/{name}``."""
    return {"id": name, "object": "model", "created": created, "owned_by": owned_by}


def model_list(names: Iterable[str], *, created: int, owned_by: str) -> ModelList:
    """The body of ``GET /v1/models``."""
    return {
        "object": "list",
        "data": [model_card(name, created=created, owned_by=owned_by) for name in names],
    }


def error_body(
    message: str,
    type_: str = "invalid_request_error",
    *,
    param: str | None = None,
    code: str | None = None,
) -> ErrorBody:
    """OpenAI's error shape ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as OpenAI sends it."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sse_event(obj: Any) -> bytes:
    """One Server-Sent Event carrying ``obj`` as JSON."""
    return b"data: " + dumps(obj) + b"\n\n"
