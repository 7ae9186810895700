"""A study's chosen mixture replayed read-only from its response cache, for
:mod:`moa_search.analysis.attribution`: which proposers its aggregator uses, on the held-out
prompts (every prompt when none is held out), with the study's baseline answer as the control.

Every call must be a cache hit, except for recorded (``replay``) models, which answer from their
files: a model that would have to be called fails at once instead, and a prompt without all of
its calls is skipped and counted. No model is called and nothing is written to the cache.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from moa_search.analysis.attribution import (
    DEFAULT_N,
    METHOD,
    AttributionResult,
    PromptOutputs,
    outputs_of_run,
    summarize,
)
from moa_search.config import ModelSpec
from moa_search.errors import MoaSearchError, ModelCallError
from moa_search.runtime.backends import Backend, Completion, backend_for
from moa_search.runtime.cache import Cache, CachedAnswer, open_cache
from moa_search.runtime.executor import Executor
from moa_search.runtime.prompting import ChatRequest

if TYPE_CHECKING:
    from moa_search.config import MixtureConfig
    from moa_search.config.dataset import TaskItem
    from moa_search.search.objective import Evaluator
    from moa_search.search.session import SearchSession

__all__ = ["replay_outputs", "study_attribution"]

T = TypeVar("T")


class _ReadOnly(Cache):
    """A response cache through which nothing is ever written (or claimed)."""

    def __init__(self, inner: Cache | sqlite3.Connection) -> None:
        super().__init__()
        self._inner = inner

    async def apeek(self, key: str) -> CachedAnswer | None:
        if isinstance(self._inner, Cache):
            return await self._inner.apeek(key)
        sql = "SELECT value FROM responses WHERE key = ?"
        try:
            row = self._inner.execute(sql, (key,)).fetchone()
        except sqlite3.Error:
            return None
        return CachedAnswer.from_json(row[0]) if row else None

    async def aset(self, key: str, value: CachedAnswer) -> None:
        """Read-only: answers are never stored."""

    def close(self) -> None:
        self._inner.close()


class _NotCached(Backend):
    """Stands in for a model that would have to be called: every attempt fails at once."""

    deterministic = True

    async def complete(self, request: ChatRequest) -> Completion:
        raise ModelCallError(self.spec.alias, "not_found", "not in the study's response cache")

    async def stream(self, request: ChatRequest) -> AsyncIterator[str | Completion]:
        raise ModelCallError(self.spec.alias, "not_found", "not in the study's response cache")
        yield ""  # pragma: no cover - makes this an async generator


def _backend(spec: ModelSpec) -> Backend:
    return backend_for(spec) if spec.kind == "replay" else _NotCached(spec)


def _open_read_only(location: str) -> Cache | None:
    """The cache at ``location`` (a path or a URL), read-only; ``None`` if there is none."""
    if location.lower() in {"none", "off", "", "memory"}:
        return None
    if location.startswith(("redis://", "rediss://", "unix://")):
        inner = open_cache(location)
        return _ReadOnly(inner) if inner is not None else None
    path = Path(location.removeprefix("sqlite:///"))
    if not path.is_file():
        return None
    uri = f"{path.resolve().as_uri()}?mode=ro"
    return _ReadOnly(sqlite3.connect(uri, uri=True, check_same_thread=False))


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion, on a helper thread when an event loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def replay_outputs(
    executor: Executor,
    mixture: MixtureConfig,
    items: Sequence[TaskItem],
    controls: Evaluator | None = None,
    *,
    concurrency: int = 8,
) -> tuple[list[PromptOutputs], int]:
    """Run ``mixture`` on ``items`` through ``executor``, with the baseline answers of
    ``controls`` as the controls; the outputs of the runs that finished, and how many did not."""
    gate = asyncio.Semaphore(concurrency)

    async def one(item: TaskItem) -> PromptOutputs | None:
        async with gate:
            try:
                result = await executor.arun(mixture, item.prompt)
            except MoaSearchError:
                return None
            control: str | None = None
            if controls is not None:
                with contextlib.suppress(MoaSearchError):
                    control = (await controls.abaseline(item))[0]
        return replace(outputs_of_run(item.id, result), control=control)

    try:
        done = await asyncio.gather(*(one(i) for i in items))
    finally:
        await executor.aclose()
    kept = [o for o in done if o is not None]
    return kept, len(done) - len(kept)


def study_attribution(
    session: SearchSession,
    *,
    cache: str | None = None,
    n: int = DEFAULT_N,
    confidence: float = 0.95,
) -> AttributionResult:
    """Attribution of the study's chosen mixture, replayed read-only from its response cache
    (``cache``: a location as ``search --cache`` takes it; default the study's own cache file)
    on the held-out prompts, or on every prompt when none is held out. Never calls a model."""
    from moa_search.search.choose import choose_trial
    from moa_search.search.objective import Evaluator
    from moa_search.search.space import describe_mixture

    study = session.study()
    chosen = choose_trial(study, session.spec)
    if chosen is None:
        return _empty("", "", "the study has no complete trial yet", n, confidence)
    mixture = session.mixture_for(dict(chosen.params))
    described = f"trial {chosen.number}: {describe_mixture(mixture)}"
    if not mixture.layers:
        return _empty(described, "", "the mixture has no proposer", n, confidence)
    items, split = (
        (session.holdout_items, "held-out prompts")
        if session.holdout_items
        else (session.items, "all prompts")
    )
    source = f"{len(items)} {split}, replayed from the response cache"
    location = cache if cache is not None else str(session.results / "cache.sqlite")
    store = _open_read_only(location)
    if store is None and any(session.pool.get(a).kind != "replay" for a in mixture.models_used()):
        return _empty(described, source, f"no response cache at {location}", n, confidence)
    backends = {spec.alias: _backend(spec) for spec in session.pool.models}
    executor = Executor(session.pool, cache=store, backends=backends)
    controls = Evaluator(executor, session.judge, session.spec.baseline, None)
    try:
        outputs, missing = _run_sync(replay_outputs(executor, mixture, items, controls))
    finally:
        if store is not None:
            store.close()
    if not outputs:
        note = f"none of its {len(items)} runs is complete in the response cache at {location}"
        return _empty(described, source, note, n, confidence)
    control = (
        "the baseline's reference answer"
        if session.spec.baseline.kind == "references"
        else f"the baseline {session.spec.baseline.model}'s answer"
    )
    return summarize(
        outputs,
        n=n,
        confidence=confidence,
        source=source,
        mixture=described,
        n_skipped=missing,
        control=control,
    )


def _empty(mixture: str, source: str, note: str, n: int, confidence: float) -> AttributionResult:
    return AttributionResult(METHOD, n, confidence, source, mixture, 0, 0, (), note=note)
