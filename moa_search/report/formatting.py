"""How the report writes numbers: shared by the figures' hover texts and the template's filters.

Win rates, and differences or effects on win rate, are written by
:func:`moa_search.analysis.format.fmt_win_rate`, as everywhere in moa-search: a fraction with
three decimals.
"""

from __future__ import annotations

import math

from moa_search.analysis.format import fmt_interval, fmt_win_rate
from moa_search.judges import WinRate
from moa_search.search.records import TrialRecord

__all__ = ["description", "interval", "num", "points", "win_rate"]

#: What a missing number is shown as.
MISSING = "–"


def num(value: object, spec: str = ".3f", missing: str = MISSING) -> str:
    """A finite number formatted with ``spec``; anything else (``None``, NaN) as ``missing``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return missing
    return format(float(value), spec) if math.isfinite(float(value)) else missing


def points(value: float | None) -> str:
    """A difference or effect on win rate, signed, as a fraction (``+0.035``; no "-0.000")."""
    return fmt_win_rate(value, signed=True, missing=MISSING)


def win_rate(value: float | None) -> str:
    """A win rate as a fraction with three decimals."""
    return fmt_win_rate(value, missing=MISSING)


def interval(wr: WinRate | None) -> str:
    """A win rate's confidence interval as ``[low, high]``."""
    return MISSING if wr is None else fmt_interval(wr.ci_low, wr.ci_high, missing=MISSING)


def description(record: TrialRecord) -> str:
    """A trial's one-line mixture description, for people."""
    return record.mixture or "(no description)"
