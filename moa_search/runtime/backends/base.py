"""The backend contract: how one attempt at one call reaches a model.

A backend makes exactly one attempt per method call and turns every failure into a typed
:class:`~moa_search.errors.ModelCallError`; retries, caching and tracing live in the executor.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass

from moa_search.config import ModelSpec
from moa_search.runtime.prompting import ChatRequest

__all__ = ["Backend", "Completion", "estimate_tokens"]


@dataclass(frozen=True)
class Completion:
    """A model's whole answer with its token counts."""

    text: str
    tokens_in: int
    tokens_out: int
    finish_reason: str | None = None
    usage_estimated: bool = False


def estimate_tokens(text: str) -> int:
    """A rough token count (about four characters a token) for providers that report none."""
    return max(1, (len(text) + 3) // 4) if text else 0


class Backend(ABC):
    """One pool model.

    Contract: :meth:`complete` and :meth:`stream` make one attempt and raise only
    :class:`~moa_search.errors.ModelCallError` (with ``kind`` telling whether a retry may help).
    :meth:`stream` yields text deltas and finally one :class:`Completion` holding the whole text
    and usage. :attr:`semaphore` bounds this model's concurrent requests; callers hold it for the
    attempt. A backend may be used from several event loops in turn (one at a time): per-loop
    resources are made again in :meth:`_on_new_loop`. A :attr:`deterministic` backend answers
    the same request the same way every time, so its failed attempts are never retried.
    """

    #: Whether the same request always gets the same answer (a recording): retrying cannot help.
    deterministic: bool = False

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore: asyncio.Semaphore | None = None

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._semaphore = asyncio.Semaphore(self.spec.max_concurrency)
            self._on_new_loop()

    def _on_new_loop(self) -> None:  # noqa: B027 - optional hook
        """Called when first used from a new event loop (per-loop resources)."""

    @property
    def semaphore(self) -> asyncio.Semaphore:
        self._bind_loop()
        assert self._semaphore is not None
        return self._semaphore

    @abstractmethod
    async def complete(self, request: ChatRequest) -> Completion: ...

    @abstractmethod
    def stream(self, request: ChatRequest) -> AsyncIterator[str | Completion]: ...

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
