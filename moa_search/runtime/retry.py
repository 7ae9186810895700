"""Retry and timeout constants, and the back-off delay between attempts, in one place."""

from __future__ import annotations

import asyncio
import random

__all__ = [
    "CLAIM_TTL_S",
    "CONNECT_TIMEOUT_S",
    "INITIAL_RETRY_DELAY_S",
    "MAX_RETRY_AFTER_S",
    "MAX_RETRY_DELAY_S",
    "NO_KEY_PLACEHOLDER",
    "RETRY_JITTER",
    "retry_delay",
    "wait",
]

#: First back-off delay (seconds) after a retryable failure; doubles each attempt.
INITIAL_RETRY_DELAY_S = 0.25
#: Cap on the computed back-off delay.
MAX_RETRY_DELAY_S = 8.0
#: Fraction of the delay removed at random (full jitter would be 1.0).
RETRY_JITTER = 0.25
#: A provider's Retry-After is honoured up to this many seconds; beyond it we use our own delay.
MAX_RETRY_AFTER_S = 60.0
#: Connect timeout, capped by the model's own timeout.
CONNECT_TIMEOUT_S = 10.0
#: A claim on a call in a shared cache lives this long unless the worker making the call renews
#: it (every third of it, while the call runs): a killed worker's claims expire this soon, so
#: the workers waiting for its answers make the calls themselves instead of waiting for good.
CLAIM_TTL_S = 30.0
#: Placeholder sent as the bearer token to endpoints that need no key (local servers).
NO_KEY_PLACEHOLDER = "no-key"


def retry_delay(attempt: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1).

    A provider's Retry-After wins when it is given and reasonable; otherwise exponential
    back-off from :data:`INITIAL_RETRY_DELAY_S`, capped, with jitter.
    """
    if retry_after is not None and 0 <= retry_after <= MAX_RETRY_AFTER_S:
        return retry_after
    base = min(MAX_RETRY_DELAY_S, INITIAL_RETRY_DELAY_S * 2 ** (attempt - 1))
    return base * (1 - RETRY_JITTER * rng.random())


async def wait(delay_s: float) -> None:
    """Wait ``delay_s`` before the next attempt: the one place the executor sleeps between
    attempts (a seam: tests observe the delays it was asked to wait)."""
    await asyncio.sleep(delay_s)
