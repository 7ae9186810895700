"""The fault model: how the fake server behaves for a model, and which fault a request gets.

Faults (one per chat request, chosen by :class:`ModelState` from a :class:`ModelBehavior`):

- ``"ok"``: no fault.
- ``"429"``: status 429 with ``Retry-After`` (seconds) and ``retry-after-ms`` headers.
- ``"500"``, ``"502"``, ``"503"``: that status with an OpenAI error body.
- ``"hang"``: wait ``hang_s`` (or until the client goes away), then answer normally.
- ``"reset"``: abort the TCP connection with an RST, sending nothing.
- ``"malformed"``: status 200 whose body is not valid JSON (for ``stream=true``: an SSE stream
  whose first event's data is not valid JSON).
- ``"truncate"``: ``stream=true``: some chunks, then the connection is closed without the final
  chunk, without ``data: [DONE]`` and without the chunked-encoding terminator;
  ``stream=false``: a ``Content-Length`` larger than the body, then the connection is closed.
- ``"content_filter"``: status 200, ``content: null`` and ``finish_reason: "content_filter"``
  (streamed: no content delta, then that finish reason).
- ``"empty"``: status 200 whose content is ``""`` with ``finish_reason: "stop"``.
- ``"length"``: status 200, the answer cut to its first half (at least one word) with
  ``finish_reason: "length"``, as when ``max_tokens`` stops a model.

The last three are never drawn by default (``fault_kinds``): they are answers, not transport
faults, and a test asks for them by name.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moa_search.testing.fake_openai.wire import content_text

__all__ = [
    "ERROR_STATUSES",
    "FAULT_KINDS",
    "Answer",
    "ModelBehavior",
    "ModelState",
    "RecordedRequest",
    "before_answer",
    "default_answer",
    "finished_answer",
    "resolve_answer",
]

#: Every fault name :class:`ModelBehavior` accepts (``"ok"`` is "no fault").
FAULT_KINDS: tuple[str, ...] = (
    "ok",
    "429",
    "500",
    "502",
    "503",
    "hang",
    "reset",
    "malformed",
    "truncate",
    "content_filter",
    "empty",
    "length",
)

#: The faults answered with an error status of that number.
ERROR_STATUSES: frozenset[str] = frozenset({"500", "502", "503"})


@dataclass(frozen=True)
class RecordedRequest:
    """One chat-completion request as the server received it.

    Attributes:
        model: the ``model`` field of the request.
        messages: the ``messages`` list of dicts, as sent.
        stream: whether ``stream`` was true.
        seed: the ``seed`` field, or None.
        temperature: the ``temperature`` field, or None.
        max_tokens: ``max_tokens`` (or else ``max_completion_tokens``), or None.
        arrived_at: :func:`time.monotonic` when the request had been read in full.
        fault: the fault applied to it (``"ok"`` for none).
        body: the whole parsed JSON body.
    """

    model: str
    messages: list[dict[str, Any]]
    stream: bool
    seed: int | None
    temperature: float | None
    max_tokens: int | None
    arrived_at: float
    fault: str
    body: dict[str, Any]

    @classmethod
    def of(cls, body: dict[str, Any], *, arrived_at: float, fault: str) -> RecordedRequest:
        """The record of a chat request body that has a string ``model`` and a list of
        ``messages``; the other fields are taken as sent, unchecked."""
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            max_tokens = body.get("max_completion_tokens")
        return cls(
            model=body["model"],
            messages=body["messages"],
            stream=bool(body.get("stream", False)),
            seed=body.get("seed"),
            temperature=body.get("temperature"),
            max_tokens=max_tokens,
            arrived_at=arrived_at,
            fault=fault,
            body=body,
        )


Answer = str | Callable[[RecordedRequest], str] | None


@dataclass(frozen=True)
class ModelBehavior:
    """How the fake server behaves for one model.

    Attributes:
        latency_s: delay before the response (before the first byte, for streams); applies to
            faulty responses too.
        stream_chunk_delay_s: delay between consecutive SSE chunks of a stream.
        answer: the assistant's content: a fixed string, a function of the request, or None
            for :func:`default_answer` (model name, seed and the first words of the last user
            message, so distinct seeds give distinct answers).
        faults: faults consumed in order, one per successive chat request to this model
            (``"ok"`` means none). Once exhausted, ``fault_rate`` applies.
        fault_rate: probability that a request past ``faults`` gets a fault drawn from
            ``fault_kinds``; drawn from ``random.Random(seed)`` kept per model, so a run is
            reproducible for a given order of requests.
        fault_kinds: the faults ``fault_rate`` draws from (uniformly).
        retry_after_s: value of the ``Retry-After`` header on a 429 (``retry-after-ms`` carries
            the same in milliseconds).
        hang_s: how long a ``"hang"`` waits before answering (it stops early when the client
            disconnects).
        seed: seed of the per-model random generator used by ``fault_rate``.

    Raises:
        ValueError: for an unknown fault name, a negative delay or a rate outside [0, 1].
    """

    latency_s: float = 0.0
    stream_chunk_delay_s: float = 0.0
    answer: Answer = None
    faults: tuple[str, ...] = ()
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = ("429", "500", "hang", "reset", "malformed", "truncate")
    retry_after_s: float = 0.1
    hang_s: float = 30.0
    seed: int = 0

    def __post_init__(self) -> None:
        # Accept lists (e.g. from JSON) but store tuples so the dataclass stays immutable.
        object.__setattr__(self, "faults", tuple(self.faults))
        object.__setattr__(self, "fault_kinds", tuple(self.fault_kinds))
        for name in (*self.faults, *self.fault_kinds):
            if name not in FAULT_KINDS:
                raise ValueError(f"unknown fault {name!r}; expected one of {FAULT_KINDS}")
        for attr in ("latency_s", "stream_chunk_delay_s", "retry_after_s", "hang_s"):
            if getattr(self, attr) < 0:
                raise ValueError(f"{attr} must be >= 0, got {getattr(self, attr)!r}")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be within [0, 1], got {self.fault_rate!r}")
        if self.fault_rate > 0 and not self.fault_kinds:
            raise ValueError("fault_rate > 0 needs at least one entry in fault_kinds")


class ModelState:
    """Per-model fault bookkeeping: position in ``faults`` and the seeded generator."""

    def __init__(self, behavior: ModelBehavior) -> None:
        self.behavior = behavior
        self.position = 0
        self.rng = random.Random(behavior.seed)

    def next_fault(self) -> str:
        """The fault of the next request: the next of ``faults``, else drawn at
        ``fault_rate``."""
        behavior = self.behavior
        if self.position < len(behavior.faults):
            fault = behavior.faults[self.position]
            self.position += 1
            return fault
        if behavior.fault_rate <= 0:
            return "ok"
        if self.rng.random() < behavior.fault_rate:
            return self.rng.choice(behavior.fault_kinds)
        return "ok"


def default_answer(request: RecordedRequest) -> str:
    """The deterministic answer used when :attr:`ModelBehavior.answer` is None.

    It names the model and the seed and quotes the first eight words of the last user
    message, e.g. ``"m1 answer (seed=3): What is the capital of France?"``.
    """
    last_user = next(
        (m for m in reversed(request.messages) if isinstance(m, dict) and m.get("role") == "user"),
        None,
    )
    words = content_text(last_user.get("content")).split()[:8] if last_user else []
    snippet = " ".join(words) or "(no user message)"
    return f"{request.model} answer (seed={request.seed}): {snippet}"


def resolve_answer(answer: Answer, request: RecordedRequest) -> str:
    """The content of the answer to ``request``; a callable's exceptions propagate."""
    if answer is None:
        return default_answer(request)
    if isinstance(answer, str):
        return answer
    return str(answer(request))


def before_answer(behavior: ModelBehavior, n: int, action: Callable[[], object]) -> ModelBehavior:
    """``behavior``, running ``action()`` just before its ``n``-th answer (counted from 1, in
    arrival order, on the server's thread): something outside the server goes wrong (a cache
    dropped, a process killed) at a known point of a run, while that answer is still owed."""
    answered = 0
    inner = behavior.answer

    def answer(request: RecordedRequest) -> str:
        nonlocal answered
        answered += 1
        if answered == n:
            action()
        return resolve_answer(inner, request)

    return dataclasses.replace(behavior, answer=answer)


def finished_answer(fault: str, answer: str) -> tuple[str | None, str]:
    """The content (``None`` for ``content: null``) and finish reason a 200 answer carries
    under ``fault``: ``answer`` and ``"stop"`` unless the fault is one of the answer faults
    (``"content_filter"``, ``"empty"``, ``"length"``)."""
    if fault == "content_filter":
        return None, "content_filter"
    if fault == "empty":
        return "", "stop"
    if fault == "length":
        words = answer.split(" ")
        return " ".join(words[: max(1, len(words) // 2)]), "length"
    return answer, "stop"
