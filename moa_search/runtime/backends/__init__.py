"""Backends: one attempt at one model call, with typed errors.

- :mod:`~moa_search.runtime.backends.base` — :class:`Completion` and the :class:`Backend`
  contract;
- :mod:`~moa_search.runtime.backends.openai` — :class:`OpenAIBackend`, every OpenAI-compatible
  endpoint;
- :mod:`~moa_search.runtime.backends.replay` — :class:`ReplayBackend`, recorded answers;
- :mod:`~moa_search.runtime.backends.registry` — :func:`backend_for`, a pool model's backend by
  its kind.
"""

from __future__ import annotations

from moa_search.runtime.backends.base import Backend, Completion, estimate_tokens
from moa_search.runtime.backends.openai import OpenAIBackend, classify
from moa_search.runtime.backends.registry import BACKEND_FACTORIES, BackendFactory, backend_for
from moa_search.runtime.backends.replay import ReplayBackend

__all__ = [
    "BACKEND_FACTORIES",
    "Backend",
    "BackendFactory",
    "Completion",
    "OpenAIBackend",
    "ReplayBackend",
    "backend_for",
    "classify",
    "estimate_tokens",
]
