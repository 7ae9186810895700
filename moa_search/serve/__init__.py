"""Serving mixtures as an OpenAI-compatible endpoint.

:mod:`~moa_search.serve.app` is the Starlette app (routes, authentication, streaming),
:mod:`~moa_search.serve.wire` OpenAI's chat-completions wire format, and
:mod:`~moa_search.serve.runner` runs an app under uvicorn.
"""

from __future__ import annotations

from moa_search.serve.app import (
    API_KEY_ENV,
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
