"""One model call: the cache, a shared cache's claim, the model's concurrency slot, retries with
back-off, and a streamed answer that resumes where a failed attempt stopped.

An answer with no text (``content: null``, e.g. withheld by a content filter, ``""`` or only
whitespace) is not an answer: the attempt fails as ``empty_response`` (with the provider's
finish reason) and is retried like a malformed one. Only a whole, usable answer is ever cached;
a call that fails releases its claim on a shared cache.

:class:`Caller` does this for the :class:`~moa_search.runtime.executor.Executor`, which runs
whole mixtures out of such calls. Every call, cache hits and failures included, ends in one
:class:`~moa_search.runtime.trace.CallRecord`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from moa_search.config import ModelSpec, Pool
from moa_search.errors import CacheError, MoaSearchError, ModelCallError
from moa_search.runtime import retry
from moa_search.runtime.backends import Backend, Completion
from moa_search.runtime.budget import SpendMeter
from moa_search.runtime.cache import Cache, CachedAnswer
from moa_search.runtime.prompting import ChatRequest
from moa_search.runtime.retry import CLAIM_TTL_S, MAX_RETRY_DELAY_S, retry_delay
from moa_search.runtime.trace import CallRecord, Role

__all__ = ["CallOutcome", "Caller"]

log = logging.getLogger(__name__)


@dataclass
class CallOutcome:
    """A finished call: its trace record, and the completion or the error."""

    record: CallRecord
    completion: Completion | None
    error: ModelCallError | None = None


class Caller:
    """Makes single calls to a pool's models, each through its :class:`Backend`, sharing one
    cache and each model's concurrency limit; ``rng`` draws the retry jitter."""

    def __init__(
        self,
        pool: Pool,
        cache: Cache | None,
        backends: Mapping[str, Backend],
        rng: random.Random,
    ) -> None:
        self.pool = pool
        self.cache = cache
        self.backends = dict(backends)
        self._rng = rng
        #: the hard budget every new call is checked against (set by the executor)
        self.budget: SpendMeter | None = None

    def backend(self, alias: str) -> Backend:
        try:
            return self.backends[alias]
        except KeyError:
            raise MoaSearchError(f"model alias '{alias}' is not in the pool") from None

    async def call(
        self,
        request: ChatRequest,
        layer: int,
        role: Role,
        run_start: float | None,
        on_delta: Callable[[str], None] | None,
    ) -> CallOutcome:
        """One call with cache, concurrency limit and retries; never raises ModelCallError.

        With ``on_delta`` the answer streams: each text delta is passed to it as it arrives.
        ``run_start`` (a :func:`time.perf_counter` value) dates the record's ``started_s``.
        """
        start = time.perf_counter()
        started_s = start - run_start if run_start is not None else 0.0
        spec = self.pool.get(request.alias)
        key = request.cache_key() if self.cache is not None else ""
        claimed = False
        if self.cache is not None:
            hit = await self.cache.aget(key)
            if hit is None:
                hit, claimed = await self._claim_or_wait(key, spec)
            if hit is not None:
                if on_delta is not None and hit.text:
                    on_delta(hit.text)
                completion = Completion(
                    hit.text, hit.tokens_in, hit.tokens_out, hit.finish_reason, hit.usage_estimated
                )
                record = CallRecord(
                    layer=layer,
                    role=role,
                    model=request.alias,
                    sample=request.sample,
                    tokens_in=hit.tokens_in,
                    tokens_out=hit.tokens_out,
                    latency_s=time.perf_counter() - start,
                    cost_usd=spec.cost(hit.tokens_in, hit.tokens_out),
                    cache_hit=True,
                    attempts=0,
                    started_s=started_s,
                    usage_estimated=hit.usage_estimated,
                    finish_reason=hit.finish_reason,
                )
                return CallOutcome(record, completion)
        if on_delta is not None:
            on_delta = _HoldBlank(on_delta)
        outcome: CallOutcome | None = None
        renewal = (
            asyncio.create_task(self._renew_claim(key))
            if claimed and self.cache is not None and self.cache.shared_claims
            else None
        )
        try:
            if self.budget is not None:
                self.budget.check()  # a hard budget: no new call once it is spent
            outcome = await self._make_call(
                request, layer, role, on_delta, start, started_s, key, spec
            )
            if self.budget is not None:
                r = outcome.record
                self.budget.add(r.cost_usd, r.tokens_in + r.tokens_out)
        finally:
            if renewal is not None:
                renewal.cancel()
            # a failed or cancelled call releases its claim too: a worker waiting for it then
            # makes the call itself instead of waiting for an answer that never comes
            if claimed and self.cache is not None:
                try:
                    await self.cache.arelease(key)
                except CacheError:
                    if outcome is not None:
                        raise
                    # else the call's own error is on its way out and says more
        return outcome

    async def _renew_claim(self, key: str) -> None:
        """Keep this worker's claim alive while its call runs (see :data:`CLAIM_TTL_S`)."""
        assert self.cache is not None
        while True:
            await asyncio.sleep(CLAIM_TTL_S / 3)
            try:
                await self.cache.arenew(key, CLAIM_TTL_S)
            except CacheError:
                return  # the call itself meets the broken cache when it stores its answer

    async def _claim_or_wait(self, key: str, spec: ModelSpec) -> tuple[CachedAnswer | None, bool]:
        """Before paying for a call, claim it in a shared cache; if another worker already
        has it in flight, wait for its answer. Returns (the other worker's answer or None,
        whether this worker holds the claim). A claim lives :data:`CLAIM_TTL_S` unless renewed
        while its call runs, so a worker that dies drops its claims within that time; a wait
        never outlasts the call's own worst case."""
        cache = self.cache
        assert cache is not None
        budget = spec.timeout_s * (spec.max_retries + 1) + MAX_RETRY_DELAY_S * spec.max_retries
        deadline = time.perf_counter() + budget
        delay = 0.02
        while not await cache.aclaim(key, CLAIM_TTL_S):
            hit = await cache.apeek(key)
            if hit is not None and hit.usable:
                cache.stats.count(True)
                return hit, False
            if time.perf_counter() >= deadline:
                return None, False
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        return None, True

    async def _make_call(
        self,
        request: ChatRequest,
        layer: int,
        role: Role,
        on_delta: Callable[[str], None] | None,
        start: float,
        started_s: float,
        key: str,
        spec: ModelSpec,
    ) -> CallOutcome:
        backend = self.backend(request.alias)
        attempts = 0
        emitted = ""
        error: ModelCallError | None = None
        completion: Completion | None = None
        while True:
            attempts += 1
            try:
                async with backend.semaphore:
                    if on_delta is None:
                        answer = await backend.complete(request)
                    else:
                        answer = await self._stream_once(backend, request, emitted, on_delta)
                completion = _usable(request.alias, answer)
                break
            except _Emitted as partial:
                emitted = partial.text
                error = partial.error
            except ModelCallError as exc:
                error = exc
            assert error is not None
            retryable = error.retryable or error.kind == "stream_interrupted"
            if not retryable or backend.deterministic or attempts > spec.max_retries:
                break
            delay = retry_delay(attempts, error.retry_after, self._rng)
            log.info(
                "retrying %s (%s) in %.2fs, attempt %d", request.alias, error.kind, delay, attempts
            )
            await retry.wait(delay)
        latency = time.perf_counter() - start
        if completion is None:
            assert error is not None
            error = error.with_attempts(attempts)
            record = CallRecord(
                layer=layer,
                role=role,
                model=request.alias,
                sample=request.sample,
                tokens_in=0,
                tokens_out=0,
                latency_s=latency,
                cost_usd=0.0,
                cache_hit=False,
                attempts=attempts,
                started_s=started_s,
                error=error.kind,
                error_detail=error.detail,
                status=error.status,
                finish_reason=error.finish_reason,
            )
            return CallOutcome(record, None, error)
        if self.cache is not None:
            # only a whole, usable answer reaches this line: failures, partial streams and
            # empty answers returned above, and a cancelled call never gets here
            await self.cache.aset(
                key,
                CachedAnswer(
                    completion.text,
                    completion.tokens_in,
                    completion.tokens_out,
                    completion.usage_estimated,
                    completion.finish_reason,
                ),
            )
        record = CallRecord(
            layer=layer,
            role=role,
            model=request.alias,
            sample=request.sample,
            tokens_in=completion.tokens_in,
            tokens_out=completion.tokens_out,
            latency_s=latency,
            cost_usd=spec.cost(completion.tokens_in, completion.tokens_out),
            cache_hit=False,
            attempts=attempts,
            started_s=started_s,
            usage_estimated=completion.usage_estimated,
            finish_reason=completion.finish_reason,
        )
        return CallOutcome(record, completion)

    async def _stream_once(
        self,
        backend: Backend,
        request: ChatRequest,
        emitted: str,
        on_delta: Callable[[str], None],
    ) -> Completion:
        """One streaming attempt. Text already passed on by an earlier attempt is not repeated:
        the new attempt's text must start with it (same seed, same request), and only the rest
        is passed on; if it diverges the call fails as ``stream_interrupted``."""
        received = ""
        try:
            async for item in backend.stream(request):
                if isinstance(item, Completion):
                    if len(item.text) < len(emitted):
                        raise ModelCallError(
                            request.alias, "stream_interrupted", "a retry answered differently"
                        )
                    return item
                before = len(received)
                received += item
                if len(received) <= len(emitted):
                    if not emitted.startswith(received):
                        raise ModelCallError(
                            request.alias, "stream_interrupted", "a retry answered differently"
                        )
                    continue
                if before < len(emitted):
                    if not received.startswith(emitted):
                        raise ModelCallError(
                            request.alias, "stream_interrupted", "a retry answered differently"
                        )
                    on_delta(received[len(emitted) :])
                else:
                    on_delta(item)
        except ModelCallError as exc:
            if len(received) > len(emitted):
                raise _Emitted(received, exc) from exc
            raise
        raise ModelCallError(request.alias, "malformed_response", "the stream gave no completion")


def _usable(alias: str, completion: Completion) -> Completion:
    """The completion, if it holds an answer; an empty one (``content: null``, ``""`` or only
    whitespace) raises ``empty_response`` with the provider's finish reason."""
    if completion.text.strip():
        return completion
    finish = completion.finish_reason
    if finish == "content_filter":
        detail = "the provider's content filter withheld the answer"
    elif finish == "length":
        detail = "the answer reached max_tokens before any text"
    else:
        detail = "the answer has no text"
    raise ModelCallError(alias, "empty_response", detail, finish_reason=finish)


class _HoldBlank:
    """Passes a streamed answer's deltas on from its first non-blank character: an answer of
    only whitespace fails as ``empty_response`` without any of it having been passed on."""

    def __init__(self, on_delta: Callable[[str], None]) -> None:
        self._on_delta = on_delta
        self._held = ""
        self._open = False

    def __call__(self, text: str) -> None:
        if self._open:
            self._on_delta(text)
            return
        self._held += text
        if self._held.strip():
            self._open = True
            held, self._held = self._held, ""
            self._on_delta(held)


class _Emitted(Exception):  # noqa: N818 - internal signal, not an error users see
    """A streaming attempt failed after passing on ``text``."""

    def __init__(self, text: str, error: ModelCallError) -> None:
        super().__init__(str(error))
        self.text = text
        self.error = error
