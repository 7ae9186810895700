"""Backends: one attempt at one model call, with typed errors.
"""

from __future__ import annotations

from moa_search.runtime.backends.base import (
    Backend,
    Completion,
    OpenAIBackend,
    estimate_tokens,
    retry_delay,
)

__all__ = [
    "Backend",
    "Completion",
    "OpenAIBackend",
    "estimate_tokens",
    "retry_delay",
]
