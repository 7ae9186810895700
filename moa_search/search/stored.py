"""The stored (plain-data) forms of evaluations and of a held-out verdict's entries.

:mod:`moa_search.search.records` reads and writes them as Optuna attributes; these types only
convert to and from plain dicts and know nothing of Optuna.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from moa_search.judges import WinRate
from moa_search.search.objective import Evaluation
from moa_search.search.space import Composition

__all__ = ["PairedDifference", "VerdictEntry", "evaluation_from_dict"]


def evaluation_from_dict(d: Mapping[str, Any]) -> Evaluation:
    """An :class:`Evaluation` from its stored form (``Evaluation.to_dict()``)."""
    names = {f.name for f in fields(Evaluation)} - {"preferences"}
    data = {k: v for k, v in d.items() if k in names}
    wr = d["win_rate"]
    if isinstance(wr, Mapping):
        data["win_rate"] = _win_rate_from(wr, int(d.get("n", 0)))
    else:  # a bare number, as very early studies stored it
        data["win_rate"] = WinRate(float(wr), 0.0, float(wr), float(wr), int(d.get("n", 0)))
    for name in names - data.keys():  # a field a study stored by an older version lacks
        data[name] = 0
    return Evaluation(**data)


def _win_rate_from(wr: Mapping[str, Any], n: int = 0) -> WinRate:
    mean = float(wr["mean"])
    return WinRate(
        mean=mean,
        stderr=float(wr.get("stderr", 0.0)),
        ci_low=float(wr.get("ci_low", mean)),
        ci_high=float(wr.get("ci_high", mean)),
        n=int(wr.get("n", n)),
        confidence=float(wr.get("confidence", 0.95)),
        method=str(wr.get("method", "normal")),
    )


@dataclass(frozen=True)
class PairedDifference:
    """A candidate's win rate minus the chosen mixture's, paired on the same held-out prompts.

    ``mean`` is the mean per-prompt difference of judge preferences (both against the study's
    baseline) over the ``n`` prompts where both have one; ``[ci_low, ci_high]`` is the normal
    interval mean ± z·stderr of those paired differences (``method``), in [-1, 1]. A negative
    interval means the chosen mixture is significantly better.
    """

    mean: float
    stderr: float
    ci_low: float
    ci_high: float
    n: int
    confidence: float = 0.95
    method: str = "paired normal"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PairedDifference:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VerdictEntry:
    """One mixture judged on the held-out prompts: the chosen one or a baseline (``name``)."""

    name: str
    mixture: str
    composition: Composition
    mixture_key: str
    win_rate: WinRate
    diff_vs_chosen: PairedDifference | None
    calls_per_prompt: int
    cost_per_prompt: float

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VerdictEntry:
        diff = d.get("diff_vs_chosen")
        return cls(
            name=str(d["name"]),
            mixture=str(d["mixture"]),
            composition=Composition.from_dict(d["composition"]),
            mixture_key=str(d["mixture_key"]),
            win_rate=_win_rate_from(d["win_rate"]),
            diff_vs_chosen=PairedDifference.from_dict(diff) if diff else None,
            calls_per_prompt=int(d["calls_per_prompt"]),
            cost_per_prompt=float(d["cost_per_prompt"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mixture": self.mixture,
            "composition": self.composition.to_dict(),
            "mixture_key": self.mixture_key,
            "win_rate": self.win_rate.to_dict(),
            "diff_vs_chosen": self.diff_vs_chosen.to_dict() if self.diff_vs_chosen else None,
            "calls_per_prompt": self.calls_per_prompt,
            "cost_per_prompt": self.cost_per_prompt,
        }

    def summary(self) -> dict[str, Any]:
        """The entry as ``moa-search best --json`` prints it."""
        wr, diff = self.win_rate, self.diff_vs_chosen
        return {
            "mixture": self.mixture,
            "win_rate": {"mean": wr.mean, "ci_low": wr.ci_low, "ci_high": wr.ci_high},
            "diff_vs_chosen": (
                {
                    "mean": diff.mean,
                    "ci_low": diff.ci_low,
                    "ci_high": diff.ci_high,
                    "n": diff.n,
                    "method": diff.method,
                }
                if diff is not None
                else None
            ),
            "calls_per_prompt": self.calls_per_prompt,
            "cost_per_prompt": self.cost_per_prompt,
        }

    def cheaper_than(self, other: VerdictEntry) -> bool:
        """Cheaper per prompt: fewer dollars, or as many dollars (a free pool) and fewer calls."""
        if self.cost_per_prompt != other.cost_per_prompt:
            return self.cost_per_prompt < other.cost_per_prompt
        return self.calls_per_prompt < other.calls_per_prompt
