"""What a mixture server refuses before it reads a chat request: bodies it cannot parse safely,
and requests for things a mixture cannot do.

:func:`parse_body` turns the raw bytes into JSON, answering 400 (never 500 or 502) for a body
that is not UTF-8 JSON, an integer of more than :data:`MAX_INT_DIGITS` digits, nesting deeper
than :data:`MAX_DEPTH`, or a string holding a lone UTF-16 surrogate (it cannot be sent upstream
as UTF-8). :func:`check_supported` answers 400 in OpenAI's error shape, naming the field in
``param`` (``code: "unsupported_parameter"``), for what a mixture would otherwise silently
ignore: ``tools``, ``tool_choice``, ``functions``, ``function_call``, a ``response_format``
other than ``{"type": "text"}``, ``logprobs`` or ``top_logprobs``, content parts other than
text (images, audio, files), and a conversation that carries tool calls or their results.
"""

from __future__ import annotations

import json
import re
from typing import Any

from moa_search.serve.wire import WireError

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "check_supported", "parse_body"]

#: The deepest nesting of arrays and objects a request may have.
MAX_DEPTH = 64
#: The most digits an integer in a request may have.
MAX_INT_DIGITS = 100

_TOOL_FIELDS = ("tools", "tool_choice", "functions", "function_call")
_NO_TOOLS = "this server answers with a mixture's plain text and cannot call tools or functions"
_SURROGATE = re.compile("[\ud800-\udfff]")


class _IntegerTooLongError(ValueError):
    pass


def _parse_int(text: str) -> int:
    if len(text) - text.startswith("-") > MAX_INT_DIGITS:
        raise _IntegerTooLongError(text)
    return int(text)


def parse_body(raw: bytes) -> Any:
    """The JSON value of a request body; :class:`WireError` (400) for one the server must not
    read or pass on (see the module docstring)."""
    try:
        value = json.loads(raw, parse_int=_parse_int)
    except _IntegerTooLongError:
        raise WireError(
            400,
            f"The request body holds an integer longer than {MAX_INT_DIGITS} digits.",
            code="invalid_value",
        ) from None
    except RecursionError:
        raise _too_deep() from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WireError(400, f"The request body is not valid JSON: {exc}.") from None
    except ValueError as exc:  # anything else json refuses (e.g. a huge exponent)
        raise WireError(400, f"The request body is not valid JSON: {exc}.") from None
    _check_tree(value)
    return value


def _too_deep() -> WireError:
    return WireError(
        400,
        f"The request body is nested deeper than {MAX_DEPTH} levels.",
        code="invalid_value",
    )


def _check_tree(value: Any) -> None:
    """Depth and lone surrogates, walked without recursion; the param of a bad string."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        node, where, depth = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                raise WireError(
                    400,
                    f"Invalid '{where or 'body'}': the string holds a lone UTF-16 surrogate, "
                    "which is not valid Unicode text.",
                    param=where or None,
                    code="invalid_value",
                )
            continue
        if not isinstance(node, dict | list):
            continue
        if depth >= MAX_DEPTH:
            raise _too_deep()
        if isinstance(node, dict):
            for key, item in node.items():
                stack.append((key, where, depth + 1))
                stack.append((item, f"{where}.{key}" if where else str(key), depth + 1))
        else:
            stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(node))


def _unsupported(param: str, message: str) -> WireError:
    return WireError(400, message, param=param, code="unsupported_parameter")


def check_supported(body: Any) -> None:
    """Refuse (400) a request asking for what a mixture cannot do; anything else, malformed
    fields included, is left to :class:`~moa_search.serve.wire.ChatCompletionRequest`."""
    if not isinstance(body, dict):
        return
    for field in _TOOL_FIELDS:
        value = body.get(field)
        if value is not None and value != [] and value != "none":
            raise _unsupported(field, f"'{field}' is not supported: {_NO_TOOLS}.")
    response_format = body.get("response_format")
    if response_format is not None and response_format != {"type": "text"}:
        raise _unsupported(
            "response_format",
            "'response_format' is not supported: a mixture answers in plain text and cannot "
            'promise JSON or a schema (only {"type": "text"} is accepted).',
        )
    for field in ("logprobs", "top_logprobs"):
        if body.get(field):
            raise _unsupported(
                field, f"'{field}' is not supported: a mixture's answer has no log-probabilities."
            )
    messages = body.get("messages")
    if isinstance(messages, list):
        for index, message in enumerate(messages):
            if isinstance(message, dict):
                _check_message(message, f"messages[{index}]")


def _check_message(message: dict[str, Any], where: str) -> None:
    if message.get("role") in ("tool", "function"):
        raise _unsupported(
            f"{where}.role",
            f"Invalid '{where}.role': '{message['role']}' messages carry tool results, and "
            f"tools are not supported: {_NO_TOOLS}.",
        )
    for field in ("tool_calls", "function_call"):
        if message.get(field):
            raise _unsupported(
                f"{where}.{field}",
                f"Invalid '{where}.{field}': the conversation holds tool calls, and tools are not "
                f"supported: {_NO_TOOLS}.",
            )
    content = message.get("content")
    if not isinstance(content, list):
        return
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text":
            shown = f"'{kind}' parts" if isinstance(kind, str) else "parts other than text"
            raise _unsupported(
                f"{where}.content[{index}]",
                f"Invalid '{where}.content[{index}]': {shown} are not supported; a mixture "
                'reads text only (content parts of {"type": "text", "text": "..."}).',
            )
