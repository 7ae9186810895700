"""Checks on a run's trace for tests: concurrency proven from per-call start and end times.

Every :class:`~moa_search.runtime.trace.CallRecord` carries ``started_s`` (from the start of the
run) and ``latency_s``; these helpers turn them into intervals, so a test can prove that calls
ran side by side — or one after another — without timing the test itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from moa_search.runtime.trace import CallRecord

if TYPE_CHECKING:
    import pytest

__all__ = [
    "all_overlap",
    "interval",
    "max_concurrency",
    "record_retry_waits",
    "starts_after",
]


def interval(call: CallRecord) -> tuple[float, float]:
    """(start, end) of a call, in seconds from the start of its run."""
    return call.started_s, call.started_s + call.latency_s


def all_overlap(calls: Iterable[CallRecord]) -> bool:
    """Whether some instant lies inside every call: they all ran at the same time."""
    spans = [interval(c) for c in calls]
    return bool(spans) and max(s for s, _ in spans) < min(e for _, e in spans)


def max_concurrency(calls: Iterable[CallRecord]) -> int:
    """The largest number of calls running at one instant."""
    events = sorted(
        (t, delta) for c in calls for t, delta in zip(interval(c), (1, -1), strict=True)
    )
    # at equal times an end (-1) sorts before a start (+1): touching calls do not overlap
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def starts_after(later: Iterable[CallRecord], earlier: Iterable[CallRecord]) -> bool:
    """Whether every call in ``later`` started once every call in ``earlier`` had ended."""
    ends = [interval(c)[1] for c in earlier]
    starts = [c.started_s for c in later]
    return bool(ends) and bool(starts) and min(starts) >= max(ends)


def record_retry_waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record every wait the executor makes between attempts (and still wait it): the list
    fills as calls are retried, so a test sees that Retry-After was honoured without timing."""
    from moa_search.runtime import retry

    waits: list[float] = []
    real = retry.wait

    async def recording(delay_s: float) -> None:
        waits.append(delay_s)
        await real(delay_s)

    monkeypatch.setattr(retry, "wait", recording)
    return waits
