"""Watching for a client that goes away, and the SSE body of a streamed completion.

A mixture keeps spending while it runs, so a run whose client has gone is cancelled:
:class:`DisconnectWatch` reads the ASGI channel once the request body is in (the next message
can only be ``http.disconnect``) and :meth:`DisconnectWatch.wait` races it against the run.
:func:`sse_events` is the body of a streamed completion; it sends an SSE comment
(:data:`~moa_search.serve.wire.KEEPALIVE_EVENT`) whenever ``keepalive_s`` pass without an
event, so proxies do not cut a stream whose layers are still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.types import Receive

from moa_search.errors import MoaSearchError
from moa_search.runtime.executor import RunStream
from moa_search.runtime.trace import Trace
from moa_search.serve import wire
from moa_search.serve.masking import mask_secrets, mask_tree
from moa_search.serve.wire import WireError, sse_event

__all__ = [
    "ClientGoneError",
    "DisconnectWatch",
    "completion_id",
    "sse_events",
    "trace_payload",
    "upstream_error",
    "usage_of",
]

log = logging.getLogger(__name__)


class ClientGoneError(Exception):
    """The client disconnected before its answer was complete; the run was cancelled."""


class DisconnectWatch:
    """Watches a request's ASGI ``receive`` channel for ``http.disconnect``.

    Start it only after the request body has been read in full. :meth:`stop` it when the
    answer is complete (or use it as a context manager).
    """

    def __init__(self, receive: Receive) -> None:
        self._task = asyncio.ensure_future(self._watch(receive))

    @staticmethod
    async def _watch(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    @property
    def gone(self) -> bool:
        return self._task.done() and not self._task.cancelled()

    async def wait(self, pending: asyncio.Future[Any], timeout: float | None) -> bool:
        """Wait until ``pending`` is done (True) or ``timeout`` seconds pass (False); if the
        client goes first, cancel ``pending``, wait for it to unwind and raise
        :class:`ClientGoneError`."""
        done, _ = await asyncio.wait(
            {pending, self._task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if pending in done:
            return True
        if self._task in done:
            await cancel(pending)
            raise ClientGoneError
        return False

    def stop(self) -> None:
        self._task.cancel()

    def __enter__(self) -> DisconnectWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


async def cancel(pending: asyncio.Future[Any]) -> None:
    """Cancel ``pending`` and wait until it has unwound (its outcome is dropped)."""
    if not pending.done():
        pending.cancel()
    with contextlib.suppress(BaseException):
        await pending


def upstream_error(exc: MoaSearchError) -> WireError:
    """The 502 for a mixture that failed upstream; key-like strings in the reason masked."""
    message = mask_secrets(f"the mixture failed upstream: {exc}")
    return WireError(502, message, type_="server_error", code="upstream_error")


def usage_of(trace: Trace) -> wire.Usage:
    return wire.usage(trace.tokens_in, trace.tokens_out)


def trace_payload(trace: Trace) -> dict[str, Any]:
    """The ``moa_trace`` field: the trace as a dict, key-like strings masked."""
    masked: dict[str, Any] = mask_tree(trace.to_dict())
    return masked


def completion_id() -> str:
    return f"chatcmpl-moa{uuid.uuid4().hex}"


async def sse_events(
    name: str,
    run: RunStream,
    pending: asyncio.Future[str],
    watch: DisconnectWatch,
    *,
    keepalive_s: float,
    include_usage: bool,
    want_trace: bool,
    on_cancel: Callable[[], None],
) -> AsyncIterator[bytes]:
    """The SSE body of a streamed completion; ``pending`` is the run's next delta, asked for
    (the module docstring of :mod:`moa_search.serve.app` has the contract)."""
    cid = completion_id()
    created = int(time.time())
    start = time.perf_counter()

    def chunk(delta: dict[str, str], finish: str | None = None) -> wire.ChatCompletionChunk:
        return wire.chunk(
            cid,
            created=created,
            model=name,
            delta=delta,
            finish_reason=finish,
            include_usage=include_usage,
        )

    finished = False
    try:
        yield sse_event(chunk({"role": "assistant", "content": ""}))
        # until the first text: keep-alives, and the watch cancels the run if the client goes
        while not await watch.wait(pending, keepalive_s):
            yield wire.KEEPALIVE_EVENT
        try:
            first: str | None = pending.result()
        except StopAsyncIteration:
            first = None  # an empty answer
        if first is not None:
            yield sse_event(chunk({"content": first}))
            # then the deltas as they come (a disconnect now cancels this generator itself)
            async for delta in run:
                yield sse_event(chunk({"content": delta}))
        finished = True
        result = run.result
        final = chunk({}, result.trace.finish_reason or "stop")
        if want_trace:
            final["moa_trace"] = trace_payload(result.trace)
        yield sse_event(final)
        if include_usage:
            last = wire.usage_chunk(cid, created=created, model=name, usage=usage_of(result.trace))
            yield sse_event(last)
        yield wire.DONE_EVENT
    except MoaSearchError as exc:
        finished = True
        log.warning("mixture %s failed while streaming: %s", name, mask_secrets(str(exc)))
        yield sse_event(upstream_error(exc).body())
    except ClientGoneError:
        pass  # seen by the watch; Starlette may instead cancel this generator: both end below
    finally:
        watch.stop()
        if not finished:
            on_cancel()
            log.info("chat %s: the client left after %.3fs; run cancelled", name, _since(start))
        # cancel the run's pending step, which cancels its calls in flight (synchronously: the
        # awaits below may themselves be cancelled when Starlette saw the disconnect first)
        await cancel(pending)
        with contextlib.suppress(Exception):
            await run.aclose()


def _since(start: float) -> float:
    return time.perf_counter() - start
