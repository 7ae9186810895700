"""Test helpers for moa-search: a fake OpenAI-compatible server with latency and faults.

The names are loaded lazily so that ``python -m moa_search.testing.fake_openai`` does not
import its own module twice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moa_search.testing.fake_openai import FakeOpenAIServer, ModelBehavior, RecordedRequest

__all__ = ["FakeOpenAIServer", "ModelBehavior", "RecordedRequest"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        module = importlib.import_module("moa_search.testing.fake_openai")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
