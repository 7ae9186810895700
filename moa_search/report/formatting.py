"""How the report writes numbers: shared by the figures' hover texts and the template's filters."""

from __future__ import annotations

import math

from moa_search.judges import WinRate
from moa_search.search.records import TrialRecord

__all__ = ["description", "interval", "num", "points"]

#: What a missing number is shown as.
MISSING = "–"


def num(value: object, spec: str = ".3f", missing: str = MISSING) -> str:
    """A finite number formatted with ``spec``; anything else (``None``, NaN) as ``missing``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return missing
    return format(float(value), spec) if math.isfinite(float(value)) else missing


def points(value: float | None) -> str:
    """A win-rate difference in signed points (no "-0.0")."""
    return MISSING if value is None else f"{round(value * 100, 1) + 0.0:+.1f}"


def interval(wr: WinRate | None) -> str:
    """A win rate's confidence interval as ``[low, high]``."""
    if wr is None or num(wr.ci_low) == MISSING or num(wr.ci_high) == MISSING:
        return MISSING
    return f"[{wr.ci_low:.3f}, {wr.ci_high:.3f}]"


def description(record: TrialRecord) -> str:
    """A trial's one-line mixture description, for people."""
    return record.mixture or "(no description)"
