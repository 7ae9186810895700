"""The backend of each kind of pool model: one factory per :data:`~moa_search.config.ModelKind`.

The executor asks :func:`backend_for` and never looks at a model's kind itself; a new kind of
model is a new entry here (and in the pool schema).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from moa_search.config import ModelKind, ModelSpec
from moa_search.runtime.backends.base import Backend
from moa_search.runtime.backends.openai import OpenAIBackend
from moa_search.runtime.backends.replay import ReplayBackend

__all__ = ["BACKEND_FACTORIES", "BackendFactory", "backend_for"]

#: Makes the backend of one pool model.
BackendFactory = Callable[[ModelSpec], Backend]

#: The factory of each model kind.
BACKEND_FACTORIES: Mapping[ModelKind, BackendFactory] = {
    "openai": OpenAIBackend,
    "replay": ReplayBackend.from_spec,
}


def backend_for(spec: ModelSpec) -> Backend:
    """The backend that reaches ``spec``: an OpenAI-compatible client, or the recorded answers
    of a replayed model."""
    return BACKEND_FACTORIES[spec.kind](spec)
