"""The Python API: load an exported mixture and run it from your own code.

::

    from moa_search.runtime.mixture import Mixture

    async with Mixture.load("mixture.yaml") as mixture:      # pool: its own, else the local one
        result = await mixture.acomplete("How do I boil an egg?")
        print(result.answer, result.trace.cost_usd)

        stream = mixture.astream([{"role": "user", "content": "And a duck egg?"}])
        async for delta in stream:
            print(delta, end="", flush=True)
        print(stream.result.trace.latency_s)

    print(Mixture.load("mixture.yaml").complete("Hi").answer)  # synchronous, outside a loop

:class:`Mixture` is a thin handle on a :class:`~moa_search.config.MixtureConfig`, its
:class:`~moa_search.config.Pool` and an :class:`~moa_search.runtime.executor.Executor`: every run is
delegated to the executor, so retries, quorum, caching, concurrency limits and the trace behave
exactly as in ``moa-search run``. Errors are the library's own: a bad file or pool raises
:class:`~moa_search.errors.ConfigError`; a run raises :class:`~moa_search.errors.QuorumError` or
:class:`~moa_search.errors.ModelCallError` (each carrying ``.trace``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from moa_search.config import MixtureConfig, Pool, load_mixture, resolve_pool
from moa_search.runtime.cache import Cache, open_cache
from moa_search.runtime.executor import Executor, ProgressEvent, RunResult, RunStream

__all__ = ["Mixture", "Prompt", "load_mixture_and_pool"]

log = logging.getLogger(__name__)

#: A prompt string, or OpenAI-style ``[{"role": ..., "content": ...}]`` messages.
Prompt = str | Sequence[Mapping[str, Any]]

PathLike = str | os.PathLike[str]


def load_mixture_and_pool(
    path: PathLike, pool: Pool | PathLike | None = None
) -> tuple[MixtureConfig, Pool]:
    """Load a mixture file and find its pool; every alias it uses is checked against the pool.

    ``pool`` is a :class:`Pool`, a pool file path (like ``--pool``), or ``None``: then the
    mixture's own pool (inline or a path relative to the file), else the local pool at
    :func:`moa_search.local.default_pool_path`. Raises :class:`ConfigError` for any problem.
    """
    from moa_search.config.paths import default_pool_path

    config = load_mixture(path)
    if isinstance(pool, Pool):
        config.check_pool(pool, str(path))
        return config, pool
    return config, resolve_pool(config, path, pool, default_pool_path())


class Mixture:
    """A runnable mixture: a config, the pool it names models from, and an executor.

    Args:
        config: the mixture.
        pool: the models; every alias ``config`` uses must be in it (else ``ConfigError``).
        cache: a response cache for the executor this handle creates (ignored when
            ``executor`` is given).
        executor: an executor to share (e.g. between mixtures on one pool, so they share each
            model's concurrency limit); it must run against ``pool``. A handle closes only the
            executor (and cache) it created itself.
        name: the mixture's public name; defaults to ``config.name`` or ``"mixture"``.

    One handle may run many prompts concurrently from one event loop.
    """

    def __init__(
        self,
        config: MixtureConfig,
        pool: Pool,
        *,
        cache: Cache | None = None,
        executor: Executor | None = None,
        name: str | None = None,
    ) -> None:
        config.check_pool(pool, config.name or "mixture")
        if executor is not None and executor.pool != pool:
            raise ValueError("the executor runs against a different pool than the mixture's")
        self.config = config
        self.pool = pool
        self.name = name or config.name or "mixture"
        self._owns_executor = executor is None
        self.executor = executor if executor is not None else Executor(pool, cache=cache)
        self._owned_cache: Cache | None = None

    @classmethod
    def load(
        cls,
        path: PathLike,
        *,
        pool: Pool | PathLike | None = None,
        cache: Cache | PathLike | None = None,
    ) -> Mixture:
        """Load a mixture file (YAML or JSON) with its pool; see :func:`load_mixture_and_pool`.

        ``cache`` is a :class:`Cache`, a location as ``--cache`` takes it (a file path,
        ``"memory"``, ``"none"``), or ``None`` for no cache. A cache opened here from a
        location is closed by :meth:`aclose`. The name defaults to the file's stem when the
        mixture has no ``name``.
        """
        config, resolved = load_mixture_and_pool(path, pool)
        owned: Cache | None = None
        if cache is not None and not isinstance(cache, Cache):
            owned = open_cache(cache)
            cache = owned
        mixture = cls(config, resolved, cache=cache, name=config.name or Path(path).stem)
        mixture._owned_cache = owned
        return mixture

    # ------------------------------------------------------------------ running

    def astream(
        self,
        prompt: Prompt,
        *,
        on_progress: Callable[[ProgressEvent], None] | None = None,
    ) -> RunStream:
        """Run on ``prompt``; iterate the result for the final answer's text deltas as they
        arrive. After the iteration ends, ``.result`` holds the :class:`RunResult` (answer and
        trace). Raises ``ValueError`` at once for malformed messages; ``QuorumError`` or
        ``ModelCallError`` while iterating."""
        return self.executor.astream(self.config, prompt, on_progress=on_progress)

    async def acomplete(
        self,
        prompt: Prompt,
        *,
        on_progress: Callable[[ProgressEvent], None] | None = None,
    ) -> RunResult:
        """Run on ``prompt`` and return the whole answer with its trace."""
        return await self.executor.arun(self.config, prompt, on_progress=on_progress)

    def complete(
        self,
        prompt: Prompt,
        *,
        on_progress: Callable[[ProgressEvent], None] | None = None,
    ) -> RunResult:
        """Synchronous :meth:`acomplete`; it runs its own event loop, so it must not be called
        from inside a running one (``RuntimeError``). Connections opened for the call are
        closed before it returns; the handle stays usable."""

        async def main() -> RunResult:
            try:
                return await self.acomplete(prompt, on_progress=on_progress)
            finally:
                # the backends' HTTP clients belong to this loop, which ends here
                await self.executor.aclose()

        return asyncio.run(main())

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Close the executor's connections and the cache this handle opened (if any)."""
        if self._owns_executor:
            await self.executor.aclose()
        if self._owned_cache is not None:
            self._owned_cache.close()
            self._owned_cache = None

    async def __aenter__(self) -> Mixture:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        layers = len(self.config.layers)
        agg = self.config.aggregator.model
        return f"Mixture({self.name!r}, {layers} proposer layer(s), aggregator {agg!r})"
