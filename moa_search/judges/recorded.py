"""A judge that answers from recorded verdicts (AlpacaEval annotations) instead of a model."""

from __future__ import annotations

from collections.abc import Iterable

from moa_search.config.dataset import TaskItem
from moa_search.config.recorded import Annotation
from moa_search.errors import NotRecordedError
from moa_search.judges.base import Judge, Verdict

__all__ = ["RecordedJudge"]


class RecordedJudge(Judge):
    """A judge that answers from recorded annotations instead of calling a model.

    A verdict is looked up by (instruction, candidate, baseline): when the candidate is a
    recorded ``output_2`` and the baseline its ``output_1``, the preference is P(output_2
    better) = preference − 1; the other way round it is 2 − preference. Texts must match the
    recording exactly. With ``check_baseline=False`` the baseline may be anything as long as the
    (instruction, candidate) pair has exactly one recording.

    Raises (from :meth:`apreference`):
        NotRecordedError: nothing recorded for that comparison, or the judge's recorded
            preference is null — a :class:`ValueError`, so an evaluation records a judge
            failure for the item.
    """

    def __init__(
        self,
        annotations: Iterable[Annotation],
        *,
        check_baseline: bool = True,
        name: str | None = None,
    ) -> None:
        self.check_baseline = check_baseline
        self._index: dict[tuple[str, str], list[tuple[str, Annotation, bool]]] = {}
        annotators: set[str] = set()
        for a in annotations:
            self._index.setdefault((a.instruction, a.output_2), []).append((a.output_1, a, True))
            self._index.setdefault((a.instruction, a.output_1), []).append((a.output_2, a, False))
            if a.annotator:
                annotators.add(a.annotator)
        label = ",".join(sorted(annotators)) or "annotations"
        self.name = name or f"recorded:{label}"

    @property
    def n_recorded(self) -> int:
        """How many verdicts the judge holds."""
        return sum(1 for entries in self._index.values() for e in entries if e[2])

    def lookup(self, instruction: str, candidate: str, baseline: str) -> float:
        """P(candidate better than baseline) as recorded; raises :class:`NotRecordedError`."""
        entries = self._index.get((instruction, candidate), [])
        match = [e for e in entries if e[0] == baseline]
        if not match and not self.check_baseline and len(entries) == 1:
            match = entries
        if not match:
            what = (
                "no recorded verdict" if not entries else "no recorded verdict with this baseline"
            )
            raise NotRecordedError(
                f"{self.name}: {what} for the candidate answer to instruction {instruction[:60]!r}"
            )
        _, annotation, candidate_is_2 = match[-1]
        p2 = annotation.p_output_2
        if p2 is None:
            raise NotRecordedError(
                f"{self.name}: the recorded verdict for instruction {instruction[:60]!r} is "
                f"null (the judge failed), got preference {annotation.preference!r}"
            )
        return p2 if candidate_is_2 else 1.0 - p2

    async def apreference(self, item: TaskItem, candidate: str, baseline: str) -> Verdict:
        p = self.lookup(item.prompt, candidate, baseline)
        return Verdict(min(max(p, 0.0), 1.0), f"recorded P(candidate better)={p:.6f}")
