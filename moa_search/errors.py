"""The one exception hierarchy of moa-search.

Every error the library raises on purpose derives from :class:`MoaSearchError`. Errors carry
declared, typed fields so callers (the CLI, the server, a user's app) can act on them without
parsing messages:

- :class:`ConfigError` — a user-supplied file, setting or dataset is wrong. ``str()`` is one
  paragraph naming the source, the field path and what was expected; the CLI prints it and
  exits with code 2.
- :class:`ModelCallError` — one model call failed after its retries. ``kind`` is one of
  :data:`CALL_ERROR_KINDS`; ``str()`` states the attempts really made.
- :class:`QuorumError` — too few proposers of a layer answered.
- :class:`CacheError` — the response cache stopped working during a run (e.g. Redis went
  away); a cache that cannot be opened is a :class:`ConfigError` instead.
- :class:`NotRecordedError` — no recorded verdict or output for what was asked.
- :class:`InvalidMixture` — a search trial's choices make no valid mixture.
- :class:`AnalysisError` — a study cannot be analysed.
- :class:`LocalServerError` — a local llama server could not be started or stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from moa_search.runtime.trace import CallRecord, Trace

__all__ = [
    "CALL_ERROR_KINDS",
    "RETRYABLE_KINDS",
    "AnalysisError",
    "CacheError",
    "CallErrorKind",
    "ConfigError",
    "InvalidMixture",
    "LocalServerError",
    "MoaSearchError",
    "ModelCallError",
    "NotRecordedError",
    "QuorumError",
]

CallErrorKind = Literal[
    "rate_limit",
    "server_error",
    "timeout",
    "connection",
    "malformed_response",
    "empty_response",
    "stream_interrupted",
    "auth",
    "bad_request",
    "not_found",
    "missing_api_key",
]
CALL_ERROR_KINDS: tuple[CallErrorKind, ...] = get_args(CallErrorKind)

#: Kinds worth retrying: the same request may succeed a moment later. An empty answer
#: (``content: null``, ``""`` or only whitespace, e.g. with ``finish_reason: content_filter``) is
#: retried like a malformed one: providers sample (and filter) anew on each request, so a second
#: attempt often answers, and the model's ``max_retries`` bounds what a persistent one costs.
RETRYABLE_KINDS: frozenset[CallErrorKind] = frozenset(
    {"rate_limit", "server_error", "timeout", "connection", "malformed_response", "empty_response"}
)


class MoaSearchError(Exception):
    """Root of every error moa-search raises deliberately."""


class ConfigError(MoaSearchError):
    """A user-supplied input is invalid.

    Args:
        source: where the bad value came from: a file, or a neutral name for a setting such as
            ``"cache location"`` or ``"storage URL"`` (the CLI re-labels those with its flag
            through :meth:`with_source`).
        field: dotted path of the field inside it, e.g. ``layers[0][1].temperature``; empty
            when the whole source is wrong.
        expected: what a valid value looks like, in words.
        got: a short rendering of the value found, if useful.
        also: paths of other fields worth checking, named at the end of the paragraph.
    """

    def __init__(
        self,
        source: str,
        field: str,
        expected: str,
        got: str | None = None,
        *,
        also: Sequence[str] = (),
    ) -> None:
        self.source = source
        self.field = field
        self.expected = expected
        self.got = got
        self.also: tuple[str, ...] = tuple(also)
        super().__init__(self.paragraph())

    def paragraph(self) -> str:
        where = f"{self.source}: field '{self.field}'" if self.field else f"{self.source}"
        text = f"{where}: expected {self.expected}"
        if self.got is not None:
            text += f", got {self.got}"
        text = text.rstrip(".")
        if self.also:
            text += f" (also check: {', '.join(self.also)})"
        return text + "."

    def with_source(self, source: str) -> ConfigError:
        """The same error with another ``source``: how a caller names the setting in its own
        words (the CLI turns ``"cache location"`` into ``"--cache"``)."""
        return ConfigError(source, self.field, self.expected, self.got, also=self.also)


class ModelCallError(MoaSearchError):
    """A model call failed for good (after any retries).

    A backend raises it for one attempt (``attempts=1``); the caller that retried reports the
    call's failure with :meth:`with_attempts`, so the message always states the attempts made.

    Attributes:
        model: the pool alias of the model.
        kind: one of :data:`CALL_ERROR_KINDS`.
        status: the HTTP status, when there was one.
        attempts: how many attempts were made.
        detail: a short description from the provider or the transport.
        retry_after: seconds the provider asked us to wait (Retry-After), if it said.
        finish_reason: the provider's finish reason, when an answer arrived but was unusable
            (``"content_filter"`` for a filtered, empty ``empty_response``).
        trace: the run's trace up to the failure, when the aggregator of a mixture failed.
        calls: the records of the calls behind the failure, when a caller that makes its own
            calls (a judge, a baseline) attaches them.
    """

    def __init__(
        self,
        model: str,
        kind: CallErrorKind,
        detail: str,
        *,
        status: int | None = None,
        attempts: int = 1,
        retry_after: float | None = None,
        finish_reason: str | None = None,
        trace: Trace | None = None,
        calls: Sequence[CallRecord] = (),
    ) -> None:
        self.model = model
        self.retry_after = retry_after
        self.kind: CallErrorKind = kind
        self.status = status
        self.attempts = attempts
        self.detail = detail
        self.finish_reason = finish_reason
        self.trace: Trace | None = trace
        self.calls: tuple[CallRecord, ...] = tuple(calls)
        status_text = f" (HTTP {status})" if status is not None else ""
        finish_text = f" (finish reason {finish_reason})" if finish_reason is not None else ""
        super().__init__(
            f"model '{model}' failed: {kind}{status_text}{finish_text} after {attempts} "
            f"attempt(s): {detail}"
        )

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE_KINDS

    def with_attempts(self, attempts: int) -> ModelCallError:
        """The same failure after ``attempts`` attempts: a new error whose message says so
        (the cause is kept)."""
        error = ModelCallError(
            self.model,
            self.kind,
            self.detail,
            status=self.status,
            attempts=attempts,
            retry_after=self.retry_after,
            finish_reason=self.finish_reason,
            trace=self.trace,
            calls=self.calls,
        )
        error.__cause__ = self.__cause__
        return error


class QuorumError(MoaSearchError):
    """Fewer proposers of a layer answered than the mixture's quorum requires.

    ``trace`` is the run's trace up to the failure (the executor attaches it).
    """

    def __init__(
        self,
        layer: int,
        answered: int,
        required: int,
        failures: Sequence[ModelCallError],
        *,
        trace: Trace | None = None,
    ) -> None:
        self.layer = layer
        self.answered = answered
        self.required = required
        self.failures = tuple(failures)
        self.trace: Trace | None = trace
        reasons = "; ".join(str(f) for f in self.failures) or "no failures recorded"
        super().__init__(
            f"layer {layer}: {answered} of the proposers answered but the quorum is {required}: "
            f"{reasons}"
        )


class CacheError(MoaSearchError):
    """The response cache failed while a run was using it (it opened fine).

    Args:
        location: the cache's file or URL, without any password.
        operation: what the cache was doing, in words (``"storing an answer"``).
        detail: what went wrong, from the store's client.
    """

    def __init__(self, location: str, operation: str, detail: str) -> None:
        self.location = location
        self.operation = operation
        self.detail = detail
        super().__init__(
            f"the response cache at {location} failed while {operation}: {detail}. Check that it "
            "is reachable (a Redis server running, the file readable and writable) and run "
            "again; answers stored before the failure are kept."
        )


class NotRecordedError(MoaSearchError, ValueError):
    """No recorded verdict (or output) for what was asked.

    A :class:`ValueError` too, because that is how a :class:`~moa_search.judges.Judge` says it
    cannot judge an input: :class:`~moa_search.search.objective.Evaluator` records the item as a
    judge failure instead of stopping.
    """


class InvalidMixture(ValueError):  # noqa: N818 - reads better at the call site
    """A search trial's choices do not make a valid mixture (e.g. an empty layer).

    Only a :class:`ValueError`: the study prunes such a trial before any call; it is never
    reported as an error.
    """


class AnalysisError(MoaSearchError):
    """The study cannot be analysed (too few evaluated trials with metrics)."""


class LocalServerError(MoaSearchError):
    """A local llama server could not be started or stopped.

    ``log_tail`` holds the last lines of the failing server's log, when there is one.
    """

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.log_tail = log_tail
        text = message
        if log_tail:
            text += f"\nLast lines of the server log:\n{log_tail}"
        super().__init__(text)
