"""Retry and timeout constants, in one place."""

from __future__ import annotations

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
#: Placeholder sent as the bearer token to endpoints that need no key (local servers).
NO_KEY_PLACEHOLDER = "no-key"
