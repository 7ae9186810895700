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
- :class:`RepeatedMixture` — a search trial proposed a mixture already evaluated.
- :class:`AnalysisError` — a study cannot be analysed.
- :class:`LocalServerError` — a local llama server could not be started or stopped.
- :class:`NoVerdictError` — nothing was judged where the mixture answered: no verdict to give.
- :class:`BudgetExhausted` — a hard budget (dollars, tokens, time) is spent: no call starts.
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
    "BudgetExhausted",
    "CacheError",
    "CallErrorKind",
    "ConfigError",
    "InvalidMixture",
    "LocalServerError",
    "MoaSearchError",
    "ModelCallError",
    "NoVerdictError",
    "NotRecordedError",
    "QuorumError",
    "RepeatedMixture",
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

    Only a :class:`ValueError`: the study records such a trial as failed, with this reason,
    before any call; it is never reported as an error.
    """


class RepeatedMixture(ValueError):  # noqa: N818 - reads better at the call site
    """A search trial proposed a mixture an earlier trial (``of``) already evaluated.

    Only a :class:`ValueError`, like :class:`InvalidMixture`: the study records such a trial as
    failed, with this reason, before any call; it is never reported as an error.
    """

    def __init__(self, of: int) -> None:
        self.of = of
        super().__init__(f"repeats trial {of}")


class AnalysisError(MoaSearchError):
    """The study cannot be analysed (too few evaluated trials with metrics)."""


class NoVerdictError(MoaSearchError):
    """There is no verdict to give: nothing was judged on a prompt where the mixture answered
    (the baseline or the judge failed on every prompt, or the mixture failed on all of them).

    Args:
        subject: what has no verdict, in words (``"study 'quickstart'"``, ``"trial 3"``).
        reason: why, in words, with what to do about it.
    """

    def __init__(self, subject: str, reason: str) -> None:
        self.subject = subject
        self.reason = reason
        super().__init__(f"no verdict for {subject}: {reason}")


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


class BudgetExhausted(MoaSearchError):  # noqa: N818 - reads better at the call site
    """A hard budget is spent: no new model call starts, whatever the phase.

    Args:
        limit: which limit was reached: ``"max_usd"``, ``"max_tokens"`` or ``"timeout_s"``.
        cap: the limit's value (dollars, tokens or seconds).
        spent: what was spent against it (dollars, tokens or seconds), prior spend included.
        phase: what was running, in words (``"the search"``, ``"the held-out verdict"``).
        calls_refused: how many calls were refused so far (this one included).
    """

    def __init__(
        self, limit: str, cap: float, spent: float, phase: str, calls_refused: int = 1
    ) -> None:
        self.limit = limit
        self.cap = cap
        self.spent = spent
        self.phase = phase
        self.calls_refused = calls_refused
        #: the run's trace up to the refusal (calls in flight finished and are in it), when a
        #: mixture's run was stopped; the executor attaches it
        self.trace: Trace | None = None
        if limit == "max_usd":
            amount = f"${spent:.6f} spent of budget.max_usd ${cap:.6f}"
            todo = "raise budget.max_usd in the spec to go on"
        elif limit == "max_tokens":
            amount = f"{int(spent):,} tokens spent of budget.max_tokens {int(cap):,}"
            todo = "raise budget.max_tokens in the spec to go on"
        else:
            amount = f"{spent:.1f} s elapsed of the time limit {cap:.1f} s"
            todo = "run the command again (the time limit counts from each start)"
        super().__init__(
            f"the budget ran out during {phase} ({amount}): no further model call was started, "
            f"so {phase} is incomplete and no numbers are given for it; {todo}"
        )
