"""The one exception hierarchy of moa-search.

Every error the library raises on purpose derives from :class:`MoaSearchError`. Errors carry
structured fields so callers (the CLI, the server, a user's app) can act on them without
parsing messages:

- :class:`ConfigError` — a user-supplied file, flag or dataset is wrong. ``str()`` is one
  paragraph naming the file, the field path and what was expected; the CLI prints it and
  exits with code 2.
- :class:`ModelCallError` — one model call failed after its retries. ``kind`` is one of
  :data:`CALL_ERROR_KINDS`.
- :class:`QuorumError` — too few proposers of a layer answered.
- :class:`BudgetExceededError` — a search or run hit a hard spending limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

__all__ = [
    "CALL_ERROR_KINDS",
    "BudgetExceededError",
    "CallErrorKind",
    "ConfigError",
    "MoaSearchError",
    "NotRecordedError",
    "ModelCallError",
    "QuorumError",
]

CallErrorKind = Literal[
    "rate_limit",
    "server_error",
    "timeout",
    "connection",
    "malformed_response",
    "stream_interrupted",
    "auth",
    "bad_request",
    "not_found",
    "missing_api_key",
]
CALL_ERROR_KINDS: tuple[str, ...] = CallErrorKind.__args__  # type: ignore[attr-defined]

#: Kinds worth retrying: the same request may succeed a moment later.
RETRYABLE_KINDS: frozenset[str] = frozenset(
    {"rate_limit", "server_error", "timeout", "connection", "malformed_response"}
)


class MoaSearchError(Exception):
    """Root of every error moa-search raises deliberately."""


class ConfigError(MoaSearchError):
    """A user-supplied input is invalid.

    Args:
        source: the file (or flag, or "environment") the bad value came from.
        field: dotted path of the field inside it, e.g. ``layers[0][1].temperature``; empty
            when the whole file is wrong.
        expected: what a valid value looks like, in words.
        got: a short rendering of the value found, if useful.
    """

    def __init__(self, source: str, field: str, expected: str, got: str | None = None) -> None:
        self.source = source
        self.field = field
        self.expected = expected
        self.got = got
        super().__init__(self.paragraph())

    def paragraph(self) -> str:
        where = f"{self.source}: field '{self.field}'" if self.field else f"{self.source}"
        text = f"{where}: expected {self.expected}"
        if self.got is not None:
            text += f", got {self.got}"
        return text.rstrip(".") + "."


class ModelCallError(MoaSearchError):
    """A model call failed for good (after any retries).

    Attributes:
        model: the pool alias of the model.
        kind: one of :data:`CALL_ERROR_KINDS`.
        status: the HTTP status, when there was one.
        attempts: how many attempts were made.
        detail: a short description from the provider or the transport.
        retry_after: seconds the provider asked us to wait (Retry-After), if it said.
    """

    def __init__(
        self,
        model: str,
        kind: str,
        detail: str,
        *,
        status: int | None = None,
        attempts: int = 1,
        retry_after: float | None = None,
    ) -> None:
        self.model = model
        self.retry_after = retry_after
        self.kind = kind
        self.status = status
        self.attempts = attempts
        self.detail = detail
        status_text = f" (HTTP {status})" if status is not None else ""
        super().__init__(
            f"model '{model}' failed: {kind}{status_text} after {attempts} attempt(s): {detail}"
        )

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE_KINDS


class QuorumError(MoaSearchError):
    """Fewer proposers of a layer answered than the mixture's quorum requires."""

    def __init__(
        self, layer: int, answered: int, required: int, failures: Sequence[ModelCallError]
    ) -> None:
        self.layer = layer
        self.answered = answered
        self.required = required
        self.failures = tuple(failures)
        reasons = "; ".join(str(f) for f in self.failures) or "no failures recorded"
        super().__init__(
            f"layer {layer}: {answered} of the proposers answered but the quorum is {required}: "
            f"{reasons}"
        )


class BudgetExceededError(MoaSearchError):
    """A hard spending limit (tokens, dollars, calls or time) was reached."""

    def __init__(self, what: str, limit: float, spent: float) -> None:
        self.what = what
        self.limit = limit
        self.spent = spent
        super().__init__(f"budget exceeded: {what} spent {spent:g} of a limit of {limit:g}")


class NotRecordedError(MoaSearchError, ValueError):
    """No recorded verdict (or output) for what was asked.

    A :class:`ValueError` too, because that is how a :class:`~moa_search.judges.Judge` says it
    cannot judge an input: :class:`~moa_search.search.objective.Evaluator` records the item as a judge
    failure instead of stopping.
    """
