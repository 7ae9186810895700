"""What a judge is: a :class:`Verdict` on one comparison, and the :class:`Judge` contract.

A :class:`Judge` compares a *candidate* answer with a *baseline* answer to the same
:class:`~moa_search.config.dataset.TaskItem` and returns a :class:`Verdict` whose
``preference`` is 1 when the candidate is better, 0 when the baseline is, 0.5 for a tie
(fractions when a judge averages several looks). The mean preference over a task's items is
the candidate's win rate (:func:`moa_search.judges.stats.win_rate`).
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass

from moa_search.config.dataset import TaskItem
from moa_search.runtime.trace import CallRecord

__all__ = ["Judge", "Verdict"]


@dataclass(frozen=True)
class Verdict:
    """A judge's decision on one item.

    ``preference`` is in [0, 1]: 1 = candidate better, 0.5 = tie, 0 = baseline better.
    ``detail`` explains it for humans; ``calls`` are the judge's own model calls (cache hits
    included), for cost accounting.
    """

    preference: float
    detail: str = ""
    calls: tuple[CallRecord, ...] = ()

    def __post_init__(self) -> None:
        p = self.preference
        if isinstance(p, bool) or not isinstance(p, numbers.Real):
            raise TypeError(f"Verdict.preference must be a number in [0, 1], got {p!r}")
        p = float(p)
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise ValueError(f"Verdict.preference must be in [0, 1], got {p!r}")
        object.__setattr__(self, "preference", p)
        object.__setattr__(self, "calls", tuple(self.calls))


class Judge(ABC):
    """Compares a candidate answer with a baseline answer to the same task item.

    Contract:

    - :meth:`apreference` returns a :class:`Verdict` whose ``preference`` is 1.0 when the
      candidate is better, 0.0 when the baseline is, 0.5 for a tie; values in between are
      allowed (e.g. an average over both answer orders).
    - It is deterministic for the same inputs as far as the judge allows: LLM judges use
      temperature 0, a fixed seed and the executor's response cache, so asking again costs
      nothing and answers the same; other judges are pure functions of their inputs (an
      embedding judge's vectors are cached by text).
    - It may be called concurrently for many items from one event loop, and must not block
      that loop for long (slow work goes to a worker thread or an ``await``).
    - Model calls it makes are returned in ``Verdict.calls``. A judge model call that fails
      for good raises :class:`~moa_search.errors.ModelCallError` (with ``.calls`` attached).
    - Raising :class:`ValueError` (or :class:`TypeError`) means "this judge cannot decide this
      item" — e.g. a judge that needs ``item.reference`` and the item has none, or a recorded
      judge with nothing recorded for the comparison. It is not fatal: the study's evaluator
      records a judge failure for the item and goes on. What to do is the caller's decision.

    ``name`` identifies the judge in reports.
    """

    name: str

    @abstractmethod
    async def apreference(self, item: TaskItem, candidate: str, baseline: str) -> Verdict:
        """The preference for ``candidate`` over ``baseline`` on ``item``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
