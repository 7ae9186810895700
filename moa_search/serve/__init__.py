"""Serving mixtures as an OpenAI-compatible endpoint.

:mod:`~moa_search.serve.app` builds the Starlette app, :mod:`~moa_search.serve.service` holds
its handlers (authentication, the Host and Content-Type checks, runs cancelled when the client
leaves), :mod:`~moa_search.serve.streaming` the SSE body with its keep-alives,
:mod:`~moa_search.serve.wire` OpenAI's chat-completions wire format,
:mod:`~moa_search.serve.protocol` what the server refuses before reading a request,
:mod:`~moa_search.serve.masking` masks key-like strings in what it relays or logs, and
:mod:`~moa_search.serve.runner` runs an app under uvicorn.
"""

from __future__ import annotations

from moa_search.serve.app import (
    API_KEY_ENV,
    DEFAULT_KEEPALIVE_S,
    DEFAULT_MAX_BODY_BYTES,
    MixtureSource,
    app_from_files,
    create_app,
    serve,
)
from moa_search.serve.runner import run_until_interrupted, running
from moa_search.serve.wire import (
    ChatCompletionRequest,
    ChatMessage,
    WireError,
)

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_KEEPALIVE_S",
    "DEFAULT_MAX_BODY_BYTES",
    "ChatCompletionRequest",
    "ChatMessage",
    "MixtureSource",
    "WireError",
    "app_from_files",
    "create_app",
    "run_until_interrupted",
    "running",
    "serve",
]
