"""The one exception hierarchy of moa-search.

Every error the library raises on purpose derives from :class:`MoaSearchError`. Errors carry
declared, typed fields so callers (the CLI, the server, a user's app) can act on them without
parsing messages:

- :class:`ConfigError` — a user-supplied file, setting or dataset is wrong. ``str()`` is one
  paragraph naming the source, the field path and what was expected; the CLI prints it and
  exits with code 2.
- :class:`ModelCallError` — one model call failed after its retries. ``kind`` is one of
  :data:`CALL_ERROR_KINDS`.
- :class:`QuorumError` — too few proposers of a layer answered.
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
    "stream_interrupted",
    "auth",
    "bad_request",
    "not_found",
    "missing_api_key",
]
CALL_ERROR_KINDS: tuple[CallErrorKind, ...] = get_args(CallErrorKind)

#: Kinds worth retrying: the same request may succeed a moment later.
RETRYABLE_KINDS: frozenset[CallErrorKind] = frozenset(
    {"rate_limit", "server_error", "timeout", "connection", "malformed_response"}
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

    Attributes:
        model: the pool alias of the model.
        kind: one of :data:`CALL_ERROR_KINDS`.
        status: the HTTP status, when there was one.
        attempts: how many attempts were made.
        detail: a short description from the provider or the transport.
        retry_after: seconds the provider asked us to wait (Retry-After), if it said.
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
        trace: Trace | None = None,
        calls: Sequence[CallRecord] = (),
    ) -> None:
        self.model = model
        self.retry_after = retry_after
        self.kind: CallErrorKind = kind
        self.status = status
        self.attempts = attempts
        self.detail = detail
        self.trace: Trace | None = trace
        self.calls: tuple[CallRecord, ...] = tuple(calls)
        status_text = f" (HTTP {status})" if status is not None else ""
        super().__init__(
            f"model '{model}' failed: {kind}{status_text} after {attempts} attempt(s): {detail}"
        )

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE_KINDS


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
