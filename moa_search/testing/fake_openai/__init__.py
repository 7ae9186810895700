"""A fake OpenAI-compatible server with latency and faults, for tests and benchmarks.
"""

from __future__ import annotations

from moa_search.testing.fake_openai.server import (
    FAULT_KINDS,
    FakeOpenAIServer,
    ModelBehavior,
    RecordedRequest,
    default_answer,
    main,
)

__all__ = [
    "FAULT_KINDS",
    "FakeOpenAIServer",
    "ModelBehavior",
    "RecordedRequest",
    "default_answer",
    "main",
]
