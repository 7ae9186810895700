"""A fake OpenAI-compatible server with latency and faults, for tests and benchmarks.

The server speaks raw HTTP/1.1 over :mod:`asyncio` streams (no web framework) so that faults can
reach down to the socket: answering late, never answering, resetting the TCP connection,
sending a body that is not JSON, or cutting a response short. It is meant for integration
tests and benchmarks that drive the official ``openai`` client against it::

    with FakeOpenAIServer({"m1": ModelBehavior(latency_s=0.2, faults=("429", "ok"))}) as server:
        client = OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        ...

Endpoints (also without the ``/v1`` prefix):

- ``POST /v1/chat/completions`` with ``stream`` false or true (SSE, chunked transfer encoding).
- ``GET /v1/models``: the models named in the behaviors mapping.
- ``GET /health``: ``{"status": "ok"}``, never needs an API key.
- anything else: 404 (or 405 for a known path with the wrong method) in OpenAI's error shape
  ``{"error": {"message", "type", "param", "code"}}``.

The faults and how they are chosen: :mod:`~moa_search.testing.fake_openai.faults`. Run from a
shell (for benchmarks in other processes): :mod:`~moa_search.testing.fake_openai.cli`.

Modules: ``server`` (:class:`FakeOpenAIServer`), ``faults`` (:class:`ModelBehavior`, the
fault model), ``wire`` (the bodies it reads and emits), ``http`` (raw HTTP/1.1 over streams)
and ``cli`` (the command line).
"""

from __future__ import annotations

from moa_search.testing.fake_openai.cli import main
from moa_search.testing.fake_openai.faults import (
    FAULT_KINDS,
    ModelBehavior,
    RecordedRequest,
    default_answer,
)
from moa_search.testing.fake_openai.server import FakeOpenAIServer

__all__ = [
    "FAULT_KINDS",
    "FakeOpenAIServer",
    "ModelBehavior",
    "RecordedRequest",
    "default_answer",
    "main",
]
