"""What the study driver reports after each trial, for a progress display."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TrialReport"]


@dataclass(frozen=True)
class TrialReport:
    """Progress after each trial, for a progress display."""

    number: int
    state: str
    values: dict[str, float] | None
    win_rate: float | None
    n_items: int
    best_number: int | None
    best_win_rate: float | None
    done: int
    target: int
    spent_usd: float
    spent_tokens: int
    model_calls: int
    calls_total: int
    elapsed_s: float
