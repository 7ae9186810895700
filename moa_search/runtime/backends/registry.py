"""The backend of each kind of pool model: one factory per :data:`~moa_search.config.ModelKind`.

The executor asks :func:`backend_for` and never looks at a model's kind itself; a new kind of
model is a new entry here (and in the pool schema).

The kind ``world`` is a model simulated in process (no network): its factory is installed by
whoever provides the simulation, through :func:`register_backend` — the search benchmark's
world in ``moa_search.testing.rich_world`` registers itself on import. Until then a ``world``
model is reported as bad input, naming what to import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import get_args

from moa_search.config import ModelKind, ModelSpec
from moa_search.errors import ConfigError
from moa_search.runtime.backends.base import Backend
from moa_search.runtime.backends.openai import OpenAIBackend
from moa_search.runtime.backends.replay import ReplayBackend

__all__ = ["BACKEND_FACTORIES", "BackendFactory", "backend_for", "register_backend"]

#: Makes the backend of one pool model.
BackendFactory = Callable[[ModelSpec], Backend]

#: Kinds whose factory is built in and cannot be replaced.
_BUILT_IN: frozenset[str] = frozenset({"openai", "replay"})


def _unregistered(spec: ModelSpec) -> Backend:
    raise ConfigError(
        f"pool model '{spec.alias}'",
        "kind",
        f"a kind with a registered backend; kind '{spec.kind}' is simulated in process and "
        "its backend is registered by the code providing it (for the search benchmark's "
        "world: import moa_search.testing.rich_world)",
        repr(spec.kind),
    )


_FACTORIES: dict[ModelKind, BackendFactory] = {
    "openai": OpenAIBackend,
    "replay": ReplayBackend.from_spec,
    "world": _unregistered,
}

#: The factory of each model kind (read-only; change it with :func:`register_backend`).
BACKEND_FACTORIES: Mapping[ModelKind, BackendFactory] = MappingProxyType(_FACTORIES)


def register_backend(kind: ModelKind, factory: BackendFactory) -> None:
    """Install the factory of the in-process kind ``kind`` (``world``), replacing any earlier
    one. The built-in kinds (``openai``, ``replay``) cannot be replaced.

    Raises:
        ValueError: ``kind`` is built in or not a model kind.
    """
    if kind not in get_args(ModelKind):
        raise ValueError(f"unknown model kind {kind!r}; kinds: {', '.join(get_args(ModelKind))}")
    if kind in _BUILT_IN:
        raise ValueError(f"the backend of kind {kind!r} is built in and cannot be replaced")
    _FACTORIES[kind] = factory


def backend_for(spec: ModelSpec) -> Backend:
    """The backend that reaches ``spec``: an OpenAI-compatible client, the recorded answers
    of a replayed model, or a registered in-process simulation."""
    return _FACTORIES[spec.kind](spec)
