"""Test helpers for moa-search: a fake OpenAI-compatible server with latency and faults.

Planted worlds of fake models of known skill: :mod:`moa_search.testing.worlds`.
The search benchmark's rich world (six models in three families, answered in process through
the pool kind ``world``, every mixture's true value known): :mod:`moa_search.testing.rich_world`.
"""

from __future__ import annotations

from moa_search.testing.fake_openai import FakeOpenAIServer, ModelBehavior, RecordedRequest

__all__ = ["FakeOpenAIServer", "ModelBehavior", "RecordedRequest"]
