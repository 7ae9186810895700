"""Which proposers the aggregator actually uses: how much of each final answer comes from each
proposer, per proposer slot with an interval.

**The measure** (:func:`attribute`, :data:`METHOD`): lexical, no model. Texts are lower-cased
word tokens (``\\w+``). A final-answer token is *covered* by an answer when an n-gram of the
final answer containing it (n = 3, or the final answer's length when shorter) occurs in that
answer: copied as part of a phrase, not as a common word. Each covered token's credit is split
equally between the answers covering it; a token none covers is the aggregator's own
(``novel``). ``share[j]`` = answer j's credit / final tokens (shares + novel = 1, independent of
the answers' order); ``coverage[j]`` = the fraction of final tokens answer j covers, unsplit
(a ROUGE-like recall). A verbatim copy of A sharing no phrase with B gives A 1 and B 0; a failed
or empty answer covers nothing. Each proposer layer is attributed separately against the final
answer (the aggregator reads only the last one).

**Chance level.** Independent answers to one prompt share phrases (on AlpacaEval about 6% of a
final answer per proposer never shown to its aggregator), so a share alone does not prove use.
A *control* — an answer to the same prompt the aggregator never saw: the study's baseline answer
or reference — is attributed beside the proposers, and each slot gets its paired ``excess``
over it. :meth:`AttributionResult.idle` names the slots whose excess (share, without a control)
is surely below :data:`IDLE_SHARE`: they cost calls and contribute nothing beyond chance.

**Per slot** (:func:`summarize`): one model in one layer, its samples summed per prompt; the
mean over prompts with a normal interval (mean ± z·s.e., clipped), failures and cost per prompt.
**A study's chosen mixture** is replayed read-only from its response cache, with no model call,
by :mod:`moa_search.analysis.attribution_replay`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

from moa_search.analysis.regression import json_safe
from moa_search.runtime.executor import RunResult

__all__ = [
    "METHOD",
    "AttributionResult",
    "PromptAttribution",
    "PromptOutputs",
    "SlotAttribution",
    "attribute",
    "format_attribution",
    "outputs_of_run",
    "summarize",
    "tokenize",
]

#: The measure's name, as results report it.
METHOD = "ngram_copy"
#: The n-gram length of the measure.
DEFAULT_N = 3
#: A slot whose excess (or share) is surely below this contributes (almost) nothing.
IDLE_SHARE = 0.05

_WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class PromptAttribution:
    """One final answer against the answers it was built from (in their order)."""

    shares: tuple[float, ...]
    coverage: tuple[float, ...]
    novel: float
    n_tokens: int


def attribute(
    final: str, answers: Sequence[str | None], *, n: int = DEFAULT_N
) -> PromptAttribution | None:
    """How much of ``final`` comes from each of ``answers`` (see the module docstring); a
    ``None`` or empty answer gets 0. ``None`` when the final answer has no word at all."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n!r}")
    f = tokenize(final)
    m = len(f)
    if m == 0:
        return None
    k = min(n, m)
    grams = [tuple(f[s : s + k]) for s in range(m - k + 1)]
    covered: list[list[bool]] = []
    for answer in answers:
        mask = [False] * m
        if answer:
            toks = tokenize(answer)
            theirs = {tuple(toks[s : s + k]) for s in range(len(toks) - k + 1)}
            for s, gram in enumerate(grams):
                if gram in theirs:
                    mask[s : s + k] = [True] * k
        covered.append(mask)
    credit = [0.0] * len(answers)
    novel = 0
    for i in range(m):
        who = [j for j, mask in enumerate(covered) if mask[i]]
        if not who:
            novel += 1
        for j in who:
            credit[j] += 1.0 / len(who)
    return PromptAttribution(
        shares=tuple(c / m for c in credit),
        coverage=tuple(sum(mask) / m for mask in covered),
        novel=novel / m,
        n_tokens=m,
    )


@dataclass(frozen=True)
class PromptOutputs:
    """What one prompt's run produced: the final answer and, per proposer layer, each call's
    ``(model, answer)`` (``None`` for a call that gave no answer), with the cost of each
    ``(layer, model)``'s calls at the pool's prices; ``control`` is an answer to the same prompt
    the aggregator never saw (e.g. the study's baseline), for the chance level."""

    item_id: str
    final: str
    layers: tuple[tuple[tuple[str, str | None], ...], ...]
    cost_usd: Mapping[tuple[int, str], float] = field(default_factory=dict)
    control: str | None = None


def outputs_of_run(item_id: str, result: RunResult) -> PromptOutputs:
    """A run's outputs: the trace's proposer calls (in order) matched with its answers."""
    layers: list[list[tuple[str, str | None]]] = [[] for _ in result.layer_outputs]
    cost: dict[tuple[int, str], float] = {}
    texts = [list(answers) for answers in result.layer_outputs]
    for call in result.trace.calls:
        if call.role != "proposer" or call.layer >= len(layers):
            continue
        text = texts[call.layer].pop(0) if call.ok and texts[call.layer] else None
        layers[call.layer].append((call.model, text))
        cost[(call.layer, call.model)] = cost.get((call.layer, call.model), 0.0) + call.cost_usd
    return PromptOutputs(item_id, result.answer, tuple(tuple(x) for x in layers), cost)


@dataclass(frozen=True)
class SlotAttribution:
    """One model in one proposer layer (``layer`` from 0) over the attributed prompts:
    ``calls`` per prompt, mean ``share`` with its interval, mean ``coverage`` (of its best
    sample, per prompt), calls that gave no answer (``failed``), ``cost_per_prompt`` at the
    pool's prices and, with a control, ``excess``: its share minus the control's, per prompt,
    with its interval."""

    layer: int
    model: str
    calls: int
    share: float
    ci_low: float
    ci_high: float
    coverage: float
    n: int
    failed: int = 0
    cost_per_prompt: float = 0.0
    excess: float | None = None
    excess_ci_low: float | None = None
    excess_ci_high: float | None = None


@dataclass(frozen=True)
class AttributionResult:
    """Per-slot attribution of a mixture's final answers (see the module docstring).

    ``novel[k]`` is the mean share of the final answer no answer of layer ``k`` covers, with its
    interval (``(mean, low, high)``). ``source`` says where the answers came from, ``mixture``
    what ran; ``n_prompts`` were attributed, ``n_skipped`` not (no final answer, or not all of
    its calls recorded). Without any attributed prompt ``slots`` is empty and ``note`` says why.
    ``control`` names the answer attributed beside the proposers' that the aggregator never saw
    (the chance level), ``chance[k]`` its share against layer ``k``.
    """

    method: str
    n: int
    confidence: float
    source: str
    mixture: str
    n_prompts: int
    n_skipped: int
    slots: tuple[SlotAttribution, ...]
    novel: tuple[tuple[float, float, float], ...] = ()
    note: str | None = None
    control: str | None = None
    chance: tuple[tuple[float, float, float], ...] = ()

    def idle(self, threshold: float = IDLE_SHARE) -> list[SlotAttribution]:
        """Slots that contribute (almost) nothing: the interval of their excess over the
        control (of their share, without a control) lies below ``threshold``."""
        return [
            s
            for s in self.slots
            if (s.excess_ci_high if s.excess_ci_high is not None else s.ci_high) < threshold
        ]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        keys = ("mean", "ci_low", "ci_high")
        d["novel"] = [dict(zip(keys, v, strict=True)) for v in self.novel]
        d["chance"] = [dict(zip(keys, v, strict=True)) for v in self.chance]
        d["idle"] = [f"layer {s.layer + 1}: {s.model}" for s in self.idle()]
        return json_safe(d)


def _interval(
    values: Sequence[float], confidence: float, low: float = 0.0
) -> tuple[float, float, float]:
    """The mean with its normal interval, clipped to [low, 1]."""
    n = len(values)
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    half = NormalDist().inv_cdf(0.5 + confidence / 2.0) * sd / math.sqrt(n)
    return mean, max(low, mean - half), min(1.0, mean + half)


def summarize(
    outputs: Sequence[PromptOutputs],
    *,
    n: int = DEFAULT_N,
    confidence: float = 0.95,
    source: str = "",
    mixture: str = "",
    n_skipped: int = 0,
    control: str | None = None,
) -> AttributionResult:
    """Attribute every prompt's final answer and summarise per slot (see the module
    docstring). Prompts whose final answer has no word are counted in ``n_skipped``. With
    ``control`` (what each prompt's :attr:`PromptOutputs.control` is), that answer joins every
    layer's answers and each slot gets its paired excess over it."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    slots: dict[tuple[int, str], int] = {}
    for o in outputs:
        for k, layer in enumerate(o.layers):
            counts: dict[str, int] = {}
            for model, _ in layer:
                counts[model] = counts.get(model, 0) + 1
            for model, c in counts.items():
                slots[(k, model)] = max(slots.get((k, model), 0), c)
    per: dict[tuple[int, str], list[tuple[float, float, float | None]]] = {s: [] for s in slots}
    failed = dict.fromkeys(slots, 0)
    cost = dict.fromkeys(slots, 0.0)
    novel: dict[int, list[float]] = {}
    chance: dict[int, list[float]] = {}
    for o in outputs:
        extra = [o.control] if control is not None and o.control is not None else []
        found = [attribute(o.final, [*(t for _, t in layer), *extra], n=n) for layer in o.layers]
        if not o.layers or any(a is None for a in found):
            n_skipped += 1
            continue
        for k, (layer, a) in enumerate(zip(o.layers, found, strict=True)):
            assert a is not None
            novel.setdefault(k, []).append(a.novel)
            base = a.shares[-1] if extra else None
            if base is not None:
                chance.setdefault(k, []).append(base)
            got: dict[str, list[float]] = {}
            for (model, text), share, cov in zip(layer, a.shares, a.coverage, strict=False):
                g = got.setdefault(model, [0.0, 0.0])
                g[0] += share
                g[1] = max(g[1], cov)
                failed[(k, model)] += text is None
            for slot in (x for x in slots if x[0] == k):
                share, cov = got.get(slot[1], [0.0, 0.0])
                per[slot].append((share, cov, None if base is None else share - base))
                cost[slot] += o.cost_usd.get(slot, 0.0)
    done = len(next(iter(novel.values()), []))
    if done == 0:
        why = "no final answer with words" if outputs else "no recorded outputs to attribute"
        return AttributionResult(METHOD, n, confidence, source, mixture, 0, n_skipped, (), note=why)
    rows = []
    for slot, calls in slots.items():
        values = per[slot]
        if not values:
            continue
        mean, low, high = _interval([v[0] for v in values], confidence)
        excess = [v[2] for v in values if v[2] is not None]
        ex = _interval(excess, confidence, -1.0) if excess else (None, None, None)
        rows.append(
            SlotAttribution(
                layer=slot[0],
                model=slot[1],
                calls=calls,
                share=mean,
                ci_low=low,
                ci_high=high,
                coverage=math.fsum(v[1] for v in values) / len(values),
                n=len(values),
                failed=failed[slot],
                cost_per_prompt=cost[slot] / len(values),
                excess=ex[0],
                excess_ci_low=ex[1],
                excess_ci_high=ex[2],
            )
        )
    rows.sort(key=lambda r: (r.layer, -r.share, r.model))
    return AttributionResult(
        METHOD,
        n,
        confidence,
        source,
        mixture,
        done,
        n_skipped,
        tuple(rows),
        tuple(_interval(novel[k], confidence) for k in sorted(novel)),
        control=control if chance else None,
        chance=tuple(_interval(chance[k], confidence) for k in sorted(chance)),
    )


def format_attribution(result: AttributionResult) -> str:
    """The attribution as plain text: one line per slot (shares in percent)."""
    pct, ctl = round(result.confidence * 100), result.control is not None
    head = f"which proposers the aggregator uses ({result.mixture}"
    head += f"; {result.source})" if result.source else ")"
    if not result.slots:
        return f"{head}:\n  {result.note or 'nothing to attribute'}"
    lines = [
        f"{head}:\n  {result.n_prompts} prompts attributed, {result.n_skipped} skipped; share "
        f"(%) of the final answer's words copied, in {result.n}-word phrases, from each "
        f"proposer; {pct}% CI" + (f"; excess = share - the control's ({result.control})" * ctl),
        f"  {'layer':>5}  {'model':<30} {'calls':>5} {'share':>6} {f'{pct}% CI':>13} "
        f"{'coverage':>8} {'failed':>6} {'$/prompt':>10}" + f" {'excess':>6} {'CI':>15}" * ctl,
    ]
    for s in result.slots:
        line = (
            f"  {s.layer + 1:>5}  {s.model:<30} {s.calls:>5} {s.share * 100:>6.1f} "
            f"{f'[{s.ci_low * 100:.1f}, {s.ci_high * 100:.1f}]':>13} {s.coverage * 100:>8.1f} "
            f"{s.failed:>6} {s.cost_per_prompt:>10.6f}"
        )
        if s.excess is not None and s.excess_ci_low is not None and s.excess_ci_high is not None:
            ci = f"[{s.excess_ci_low * 100:+.1f}, {s.excess_ci_high * 100:+.1f}]"
            line += f" {s.excess * 100:>+6.1f} {ci:>15}"
        lines.append(line)
    for k, (mean, low, high) in enumerate(result.novel):
        lines.append(
            f"  layer {k + 1}: {mean * 100:.1f}% [{low * 100:.1f}, {high * 100:.1f}] of the final "
            "answer is in no answer of this layer (the aggregator's own)"
        )
    for k, (mean, low, high) in enumerate(result.chance):
        lines.append(
            f"  layer {k + 1}: the control's share (chance level) {mean * 100:.1f}% "
            f"[{low * 100:.1f}, {high * 100:.1f}]"
        )
    for s in result.idle():
        what = "its excess over the control" if ctl else "its share"
        lines.append(
            f"  layer {s.layer + 1} {s.model} contributes almost nothing ({what} is below "
            f"{IDLE_SHARE:.0%} at the interval's upper end)"
            + (f" at ${s.cost_per_prompt:.6f} per prompt" if s.cost_per_prompt else "")
        )
    return "\n".join(lines)
