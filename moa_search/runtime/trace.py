"""What a mixture run did: one :class:`CallRecord` per model call, gathered in a :class:`Trace`.

Records are plain frozen data. ``cost_usd`` is what the call's tokens cost at the pool's
prices whether or not the answer came from the cache (the mixture's intrinsic cost);
``spent_usd`` on the trace counts only calls that really went to a provider.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["CallRecord", "Role", "Trace"]

Role = Literal["proposer", "aggregator", "judge"]


@dataclass(frozen=True)
class CallRecord:
    """One model call (or one cache hit standing in for it).

    ``layer`` counts from 0; the aggregator's layer is ``len(mixture.layers)``. ``latency_s``
    runs from the moment the call was wanted to its end, so it includes waiting for a
    concurrency slot and every retry; ``started_s`` is that moment relative to the run's start.
    ``error`` is ``None`` on success, otherwise a kind from ``moa_search.errors.CALL_ERROR_KINDS``
    and ``error_detail`` says more. ``usage_estimated`` is true when the provider reported no
    token counts and they were estimated from the text. ``finish_reason`` is what the provider
    said about why the answer ended (``"stop"``, ``"length"``, ``"content_filter"``, ...), or
    ``None`` when it said nothing or no answer arrived.
    """

    layer: int
    role: Role
    model: str
    sample: int
    tokens_in: int
    tokens_out: int
    latency_s: float
    cost_usd: float
    cache_hit: bool
    attempts: int
    started_s: float = 0.0
    error: str | None = None
    error_detail: str | None = None
    status: int | None = None
    usage_estimated: bool = False
    finish_reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Trace:
    """Every call of one run plus the run's wall-clock latency."""

    calls: tuple[CallRecord, ...] = ()
    latency_s: float = 0.0
    first_token_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, calls: Iterable[CallRecord], latency_s: float, **kw: Any) -> Trace:
        return cls(tuple(calls), latency_s, **kw)

    @property
    def cost_usd(self) -> float:
        """The mixture's cost for this prompt at the pool's prices, cache hits included."""
        return sum(c.cost_usd for c in self.calls)

    @property
    def spent_usd(self) -> float:
        """Dollars really spent: cache hits cost nothing."""
        return sum(c.cost_usd for c in self.calls if not c.cache_hit)

    @property
    def tokens_in(self) -> int:
        return sum(c.tokens_in for c in self.calls)

    @property
    def tokens_out(self) -> int:
        return sum(c.tokens_out for c in self.calls)

    @property
    def model_calls(self) -> int:
        """Requests that went to a provider (retries counted once per call)."""
        return sum(1 for c in self.calls if not c.cache_hit)

    @property
    def attempts(self) -> int:
        return sum(c.attempts for c in self.calls if not c.cache_hit)

    @property
    def cache_hits(self) -> int:
        return sum(1 for c in self.calls if c.cache_hit)

    @property
    def failures(self) -> tuple[CallRecord, ...]:
        return tuple(c for c in self.calls if not c.ok)

    @property
    def finish_reason(self) -> str | None:
        """The aggregator call's finish reason (``"length"`` when its answer was cut short).

        ``None`` when the run had no aggregator call or the provider gave no reason.
        """
        for call in reversed(self.calls):
            if call.role == "aggregator":
                return call.finish_reason
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "latency_s": self.latency_s,
            "first_token_s": self.first_token_s,
            "cost_usd": self.cost_usd,
            "spent_usd": self.spent_usd,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "model_calls": self.model_calls,
            "cache_hits": self.cache_hits,
            "finish_reason": self.finish_reason,
            "calls": [c.to_dict() for c in self.calls],
            **self.extra,
        }
