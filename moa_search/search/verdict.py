"""The held-out verdict: the chosen mixture and the baselines, judged on prompts the search never
saw, each as a win rate and a paired difference against the chosen mixture.

The study driver calls :func:`holdout_verdict` from :meth:`SearchSession.finalize
<moa_search.search.session.SearchSession.finalize>`. It evaluates, in this order (each after
the previous, so every later evaluation finds the earlier calls in the cache): the chosen
mixture on the held-out split; every candidate model alone on the *search* split, to pick the
best single model (those calls are the trials' layer-1 proposer calls, see
:mod:`moa_search.search.baselines`); the layer-wise rule's per-layer win rates on the search
split; then each baseline on the held-out split.

Win rates are against the study's baseline with the study's judge, with the judge module's
normal interval. A baseline's difference from the chosen mixture is *paired*: the per-prompt
preference differences (baseline − chosen) over the held-out prompts where both have a verdict,
with the normal interval mean ± z·stderr of those differences (z for 95%), clipped to [-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import TYPE_CHECKING

from moa_search.config import MixtureConfig
from moa_search.judges import WinRate
from moa_search.judges.stats import win_rate
from moa_search.search.baselines import (
    best_in_role,
    best_single,
    layerwise_rule,
    self_moa,
    solo_mixture,
)
from moa_search.search.objective import ItemOutcome
from moa_search.search.records import (
    FinalEvaluation,
    HoldoutVerdict,
    PairedDifference,
    TrialRecord,
    VerdictEntry,
)
from moa_search.search.space import composition, describe_mixture, mixture_key

if TYPE_CHECKING:
    from moa_search.config.dataset import TaskItem
    from moa_search.search.session import SearchSession

__all__ = ["conclusion", "holdout_verdict", "paired_difference", "preferences"]


def preferences(outcomes: Sequence[ItemOutcome]) -> dict[str, float]:
    """Item id -> the judge's preference, for the items the judge decided."""
    return {o.item_id: o.preference for o in outcomes if o.preference is not None}


def paired_difference(
    candidate: Mapping[str, float], chosen: Mapping[str, float], *, confidence: float = 0.95
) -> PairedDifference | None:
    """``candidate − chosen`` over the items both have: the mean per-item difference with a
    normal ``confidence`` interval (``None`` when no item has both)."""
    diffs = [candidate[i] - chosen[i] for i in chosen if i in candidate]
    if not diffs:
        return None
    n = len(diffs)
    mean = math.fsum(diffs) / n
    if n > 1:
        var = math.fsum((d - mean) ** 2 for d in diffs) / (n - 1)
        stderr = math.sqrt(var / n)
    else:
        stderr = 0.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    return PairedDifference(
        mean=mean,
        stderr=stderr,
        ci_low=max(-1.0, mean - z * stderr),
        ci_high=min(1.0, mean + z * stderr),
        n=n,
        confidence=confidence,
    )


def _entry(
    name: str,
    mixture: MixtureConfig,
    outcomes: Sequence[ItemOutcome],
    chosen: Mapping[str, float] | None,
) -> VerdictEntry:
    prefs = preferences(outcomes)
    wr = win_rate(list(prefs.values())) if prefs else WinRate(0.0, 0.0, 0.0, 0.0, 0)
    return VerdictEntry(
        name=name,
        mixture=describe_mixture(mixture),
        composition=composition(mixture),
        mixture_key=mixture_key(mixture),
        win_rate=wr,
        diff_vs_chosen=paired_difference(prefs, chosen) if chosen is not None else None,
        calls_per_prompt=composition(mixture).calls_per_prompt,
        cost_per_prompt=math.fsum(o.cost_usd for o in outcomes) / len(outcomes)
        if outcomes
        else 0.0,
    )


def holdout_verdict(
    session: SearchSession, chosen: TrialRecord
) -> tuple[FinalEvaluation, HoldoutVerdict]:
    """Judge ``chosen`` and the baselines on ``session``'s held-out split (see the module
    docstring); the caller stores the results."""
    spec, pool = session.spec, session.pool
    holdout = session.holdout_items
    spent: list[ItemOutcome] = []

    def outcomes(mixture: MixtureConfig, items: Sequence[TaskItem]) -> list[ItemOutcome]:
        out = session.outcomes(mixture, items)
        spent.extend(out)
        return out

    def score(mixture: MixtureConfig) -> float:
        prefs = preferences(outcomes(mixture, session.search_items))
        return math.fsum(prefs.values()) / len(prefs) if prefs else 0.0

    chosen_mixture = session.mixture_for(dict(chosen.params))
    chosen_out = outcomes(chosen_mixture, holdout)
    ev = session.evaluator.summarize(chosen_out)
    final = FinalEvaluation(
        chosen.number,
        len(holdout),
        ev,
        model_calls=ev.model_calls,
        calls_total=ev.calls_total,
        spent_usd=ev.spent_usd,
        spent_tokens=ev.spent_tokens,
        holdout=True,
    )
    best, solo = best_single(spec, pool, score)
    aggregator = best_in_role(spec, pool, solo)
    rule, rule_rates = layerwise_rule(
        spec, pool, len(chosen_mixture.layers), aggregator, solo, score
    )
    candidates = {
        "best_single": solo_mixture(spec, best),
        "self_moa": self_moa(spec, aggregator, composition(chosen_mixture).calls_per_prompt),
        "layerwise_rule": rule,
    }
    if session.incumbent is not None:
        candidates["incumbent"] = session.incumbent
    chosen_prefs = preferences(chosen_out)
    baselines = {
        name: _entry(name, m, outcomes(m, holdout), chosen_prefs) for name, m in candidates.items()
    }
    verdict = HoldoutVerdict(
        trial=chosen.number,
        n_search=len(session.search_items),
        n_holdout=len(holdout),
        chosen=_entry("chosen", chosen_mixture, chosen_out, None),
        baselines=baselines,
        solo_win_rates=solo,
        rule_win_rates=rule_rates,
        model_calls=sum(o.model_calls for o in spent),
        calls_total=sum(o.calls_total for o in spent),
        spent_usd=math.fsum(o.spent_usd for o in spent),
        spent_tokens=sum(o.spent_tokens for o in spent),
    )
    return final, verdict


def conclusion(v: HoldoutVerdict) -> str:
    """What ``v`` means in words, as ``moa-search best`` says it: whether the chosen mixture is
    significantly better than the baselines cheaper than it (naming the cheapest that it is not)."""
    cheaper = v.cheaper_and_not_worse()
    if cheaper:
        b = cheaper[0]
        d = b.diff_vs_chosen
        assert d is not None
        others = ", ".join(c.name for c in cheaper[1:])
        return (
            f"The chosen mixture is NOT significantly better than {b.name} ({b.mixture}), which "
            f"is cheaper ({_calls(b.calls_per_prompt)}, ${b.cost_per_prompt:.6f} per prompt "
            f"against {_calls(v.chosen.calls_per_prompt)}, ${v.chosen.cost_per_prompt:.6f}): "
            f"difference {d.mean:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}] on {d.n} held-out "
            "prompts." + (f" Nor than {others}, also cheaper." if others else "")
        )
    if any(b.cheaper_than(v.chosen) for b in v.baselines.values()):
        return "The chosen mixture is significantly better than every cheaper baseline."
    return "No baseline is cheaper than the chosen mixture."


def _calls(n: int) -> str:
    return f"{n} call" + ("" if n == 1 else "s")
