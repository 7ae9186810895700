"""A hard budget: a spend meter shared by every call an executor makes.

:class:`SpendMeter` holds the limits (dollars, tokens, wall time) and what was spent against
them: the spend before this process started (``prior``, from the study's stored totals) plus
every call made since. The executor asks :meth:`SpendMeter.check` before each *new* model call
(a cache hit costs nothing and is always answered) and reports each finished call with
:meth:`SpendMeter.add`. Once a limit is reached, :meth:`check` raises
:class:`~moa_search.errors.BudgetExhausted`, whatever the phase: trials, the final evaluation,
the held-out verdict, the baselines. Calls already in flight finish and are counted, so the
spend can pass a cap by at most the calls that were in flight when it was reached.

The meter is plain data guarded by a lock: one meter may be shared by concurrent runs of an
event loop and by threads.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from moa_search.errors import BudgetExhausted

__all__ = ["Spend", "SpendMeter"]


@dataclass(frozen=True)
class Spend:
    """Dollars, tokens and model calls (cache hits are not calls)."""

    usd: float = 0.0
    tokens: int = 0
    calls: int = 0

    def __add__(self, other: Spend) -> Spend:
        return Spend(self.usd + other.usd, self.tokens + other.tokens, self.calls + other.calls)

    def __sub__(self, other: Spend) -> Spend:
        return Spend(self.usd - other.usd, self.tokens - other.tokens, self.calls - other.calls)


class SpendMeter:
    """Limits and the spend against them.

    Args:
        max_usd: dollars (prior spend included), or ``None`` for no limit.
        max_tokens: tokens in + out (prior spend included), or ``None``.
        timeout_s: seconds from :meth:`start` (or from creation), or ``None``.
        phase: what is running, for the error message; the caller updates :attr:`phase`.
    """

    def __init__(
        self,
        *,
        max_usd: float | None = None,
        max_tokens: int | None = None,
        timeout_s: float | None = None,
        phase: str = "the run",
    ) -> None:
        self.max_usd = max_usd
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.phase = phase
        self._lock = threading.Lock()
        self._prior = Spend()
        self._spent = Spend()
        self._start = time.monotonic()
        self._refused = 0

    @property
    def limited(self) -> bool:
        """Whether any limit is set."""
        return self.max_usd is not None or self.max_tokens is not None or self.timeout_s is not None

    def start(
        self, prior: Spend, *, timeout_s: float | None = None, restart_clock: bool = True
    ) -> None:
        """Begin a phase of spending: ``prior`` is what was spent before (read from storage,
        so it replaces the spend counted so far); the clock restarts unless ``restart_clock``
        is false (``timeout_s`` replaces the time limit when given)."""
        with self._lock:
            self._prior = prior
            self._spent = Spend()
            if restart_clock:
                self._start = time.monotonic()
            if timeout_s is not None:
                self.timeout_s = timeout_s

    @property
    def spent(self) -> Spend:
        """Prior spend plus every call reported since :meth:`start`."""
        with self._lock:
            return self._prior + self._spent

    @property
    def session_spent(self) -> Spend:
        """Only the calls reported since :meth:`start`."""
        with self._lock:
            return self._spent

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._start

    @property
    def refused(self) -> int:
        """Calls refused so far."""
        with self._lock:
            return self._refused

    def reached(self) -> tuple[str, float, float] | None:
        """The first limit reached, as (name, cap, spent), or ``None``."""
        with self._lock:
            total = self._prior + self._spent
        if self.max_usd is not None and total.usd >= self.max_usd:
            return "max_usd", self.max_usd, total.usd
        if self.max_tokens is not None and total.tokens >= self.max_tokens:
            return "max_tokens", float(self.max_tokens), float(total.tokens)
        if self.timeout_s is not None and self.elapsed_s >= self.timeout_s:
            return "timeout_s", self.timeout_s, self.elapsed_s
        return None

    @property
    def exhausted(self) -> bool:
        return self.reached() is not None

    def check(self) -> None:
        """Before a new model call: raise :class:`BudgetExhausted` if a limit is reached."""
        reached = self.reached()
        if reached is None:
            return
        with self._lock:
            self._refused += 1
            refused = self._refused
        name, cap, spent = reached
        raise BudgetExhausted(name, cap, spent, self.phase, refused)

    def add(self, usd: float, tokens: int) -> None:
        """After a model call that was made (not a cache hit): count what it cost."""
        with self._lock:
            self._spent = self._spent + Spend(usd, tokens, 1)
