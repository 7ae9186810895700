"""Correctness against the reference answer, by containment or a regular expression."""

from __future__ import annotations

import re
import unicodedata

from moa_search.config.dataset import TaskItem
from moa_search.errors import ConfigError
from moa_search.judges.base import Judge, Verdict

__all__ = ["ExactMatchJudge", "normalize_answer"]


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and symbols (Unicode categories P* and S*), collapse
    whitespace. ``"The answer: $1,000!"`` becomes ``"the answer 1000"``."""
    kept = "".join(ch for ch in text.lower() if unicodedata.category(ch)[0] not in "PS")
    return " ".join(kept.split())


class ExactMatchJudge(Judge):
    """Correctness against the item's reference; the correct answer wins.

    Without ``pattern`` an answer is correct when it contains the reference as a whole word
    sequence (not inside a longer word or number: reference "4" is not found in "14"). With
    ``pattern``, a regular expression with a capturing group, the answer is the group's text in
    the pattern's *last* match in the raw answer, and it is correct when it equals the
    reference. With ``normalize`` both sides go through :func:`normalize_answer` first (after
    extraction); without it they are only stripped of surrounding whitespace.

    preference = 0.5 + (correct(candidate) - correct(baseline)) / 2, so 1, 0.5 or 0.
    Raises :class:`ValueError` for an item without a reference (or one that normalises to
    nothing) and :class:`ConfigError` for a bad ``pattern``.
    """

    def __init__(
        self, *, pattern: str | None = None, normalize: bool = True, name: str | None = None
    ) -> None:
        self.pattern = pattern
        self.normalize = normalize
        self._regex: re.Pattern[str] | None = None
        if pattern is not None:
            try:
                self._regex = re.compile(pattern)
            except re.error as exc:
                raise ConfigError(
                    "exact-match judge",
                    "pattern",
                    "a regular expression with a capturing group that extracts the answer",
                    f"{pattern!r} ({exc})",
                ) from None
            if self._regex.groups < 1:
                raise ConfigError(
                    "exact-match judge",
                    "pattern",
                    "a regular expression with a capturing group that extracts the answer",
                    f"{pattern!r}, which has no group",
                )
        self.name = name or ("exact-match" if pattern is None else "regex-match")

    def _norm(self, text: str) -> str:
        return normalize_answer(text) if self.normalize else text.strip()

    def is_correct(self, answer: str, reference: str) -> bool:
        """Whether ``answer`` matches ``reference`` under this judge's rule."""
        ref = self._norm(reference)
        if not ref:
            raise ValueError(f"the reference {reference!r} is empty after normalisation")
        if self._regex is not None:
            extracted = [m.group(1) for m in self._regex.finditer(answer) if m.group(1) is not None]
            return bool(extracted) and self._norm(extracted[-1]) == ref
        return re.search(r"(?<!\w)" + re.escape(ref) + r"(?!\w)", self._norm(answer)) is not None

    async def apreference(self, item: TaskItem, candidate: str, baseline: str) -> Verdict:
        if item.reference is None:
            raise ValueError(f"{self.name} needs a reference answer, but item {item.id!r} has none")
        c = self.is_correct(candidate, item.reference)
        b = self.is_correct(baseline, item.reference)
        return Verdict(0.5 + (int(c) - int(b)) / 2, f"candidate correct={c}; baseline correct={b}")
