"""What a study will spend, before it spends (:func:`project`); the hard limits while it
spends are in :mod:`moa_search.search.spend`.

:func:`project` walks the study as the search would, without a call: the trials (with
``sampler: auto``, the ones it would plan if every mixture tied — its solos and role probes
first, then the candidates most uncertain per uncached call; any other sampler's drawn as
random search draws them) through the rungs
with the spec's pruning, then the final evaluation (held-out verdict and baselines, or the
re-evaluation on every prompt), building each call's exact request, so calls shared between
trials count once and cached answers are free. What cannot be known before calling (answer
lengths, latency, which mixtures the sampler favours) is named in :attr:`Projection.assumptions`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from moa_search.config import AgentSpec, MixtureConfig, Pool
from moa_search.config.dataset import TaskItem
from moa_search.config.study import StudySpec
from moa_search.errors import InvalidMixture
from moa_search.judges.pairwise import DEFAULT_JUDGE_SYSTEM_PROMPT, DEFAULT_TEMPLATE
from moa_search.runtime.budget import Spend
from moa_search.runtime.cache import CachedAnswer
from moa_search.runtime.executor import expand_layer
from moa_search.runtime.prompting import (
    ChatRequest,
    Message,
    normalize_messages,
    ranking_messages,
    with_references,
)
from moa_search.search.auto import AutoSampler, composition_key, params_for, tried
from moa_search.search.auto_model import Observation
from moa_search.search.baselines import best_single, layerwise_rule, self_moa, solo_mixture
from moa_search.search.records import TrialRecord
from moa_search.search.space import composition, mixture_key, suggest_mixture
from moa_search.search.storage import make_sampler

__all__ = ["Assumptions", "Inputs", "PhaseProjection", "Projection", "project"]


@dataclass(frozen=True)
class Assumptions:
    """What a projection cannot know before calling, as numbers (see :func:`project`).

    ``answer_tokens``: every answer's length in tokens (capped by each call's ``max_tokens``);
    ``None``: the mean of the answers the response cache holds, or — with fewer than
    :data:`MIN_CALIBRATION` of them — ``max_tokens`` itself (the worst case).
    ``chars_per_token``: how text becomes tokens; ``None``: measured on the cached answers, else 4.
    ``first_token_s``, ``tokens_per_s``: one call's latency, ``first_token_s + tokens_out /
    tokens_per_s`` (a cached answer takes no time). ``prune_fraction``: the share of trials a
    median pruner stops at each rung but the last. ``replicas``: simulated searches averaged.
    """

    answer_tokens: int | None = None
    chars_per_token: float | None = None
    first_token_s: float = 0.5
    tokens_per_s: float = 50.0
    prune_fraction: float = 0.5
    replicas: int = 4


#: Cached answers needed before their mean length replaces the worst case.
MIN_CALIBRATION = 20


@dataclass(frozen=True)
class PhaseProjection:
    """One phase's projected model calls (new ones), cached answers, tokens, dollars, time."""

    name: str
    calls: float = 0.0
    cached: float = 0.0
    tokens_in: float = 0.0
    tokens_out: float = 0.0
    usd: float = 0.0
    wall_s: float = 0.0

    @property
    def tokens(self) -> float:
        return self.tokens_in + self.tokens_out

    def __add__(self, o: PhaseProjection) -> PhaseProjection:
        return PhaseProjection(self.name, *(getattr(self, f) + getattr(o, f) for f in _FIELDS))

    def scaled(self, k: float) -> PhaseProjection:
        return PhaseProjection(self.name, *(getattr(self, f) * k for f in _FIELDS))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **{f: getattr(self, f) for f in _FIELDS}}


_FIELDS = ("calls", "cached", "tokens_in", "tokens_out", "usd", "wall_s")


@dataclass(frozen=True)
class Projection:
    """What a study's budget implies, before any call: per phase and in total, beside what the
    study already spent (``prior``) and the spec's limits."""

    study: str
    trials_done: int
    trials_planned: int
    phases: tuple[PhaseProjection, ...]
    prior: Spend
    max_usd: float | None
    max_tokens: int | None
    timeout_s: float | None
    cache_entries: int
    assumptions: tuple[str, ...]

    @property
    def total(self) -> PhaseProjection:
        return sum(self.phases, PhaseProjection("total"))

    def over_budget(self) -> list[str]:
        """Why the projection does not fit the spec's dollar or token budget (empty: it fits)."""
        t, reasons = self.total, []
        if self.max_usd is not None and self.prior.usd + t.usd > self.max_usd:
            reasons.append(
                f"the projected spend ${self.prior.usd + t.usd:.4f} (${self.prior.usd:.4f} "
                f"spent already + ${t.usd:.4f} to come) exceeds budget.max_usd ${self.max_usd:g}"
            )
        if self.max_tokens is not None and self.prior.tokens + t.tokens > self.max_tokens:
            reasons.append(
                f"the projected {self.prior.tokens + t.tokens:,.0f} tokens exceed "
                f"budget.max_tokens {self.max_tokens:,}"
            )
        return reasons

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "trials": {"done": self.trials_done, "planned": self.trials_planned},
            "phases": [p.to_dict() for p in self.phases],
            "total": self.total.to_dict(),
            "spent_already": asdict(self.prior),
            "budget": {
                "max_usd": self.max_usd,
                "max_tokens": self.max_tokens,
                "timeout_s": self.timeout_s,
            },
            "over_budget": self.over_budget(),
            "cache_entries": self.cache_entries,
            "assumptions": list(self.assumptions),
        }


#: A read-only view of the response cache: the answer stored under a key, or ``None``.
Lookup = Callable[[str], CachedAnswer | None]


@dataclass(frozen=True)
class Inputs:
    """Everything :func:`project` reads: the study's spec, pool, prompts and rungs, what the
    cache holds, and what storage says was done and spent."""

    spec: StudySpec
    pool: Pool
    search: tuple[TaskItem, ...]
    holdout: tuple[TaskItem, ...]
    rungs: tuple[int, ...]
    lookup: Lookup
    cached_answers: tuple[CachedAnswer, ...] = ()
    cache_entries: int = 0
    trials_done: int = 0
    prior: Spend = field(default_factory=Spend)
    final_done: bool = False
    incumbent: MixtureConfig | None = None
    n_trials: int | None = None
    notes: tuple[str, ...] = ()
    #: the study's stored trials (``sampler: auto`` plans the next ones from them)
    records: tuple[TrialRecord, ...] = ()


class _Draw:
    """A stand-in for an Optuna trial: the ``fixed`` params, else uniform draws."""

    def __init__(self, rng: random.Random, fixed: dict[str, Any] | None = None) -> None:
        self.rng, self.fixed = rng, fixed or {}

    def suggest_int(self, name: str, low: int, high: int) -> int:
        return int(self.fixed[name]) if name in self.fixed else self.rng.randint(low, high)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self.fixed[name] if name in self.fixed else self.rng.choice(list(choices))


class _Sim:
    """One simulated search: builds the executor's requests and counts the new ones."""

    def __init__(
        self, inputs: Inputs, answer_tokens: Callable[[int], int], cpt: float, a: Assumptions
    ) -> None:
        self.i, self.answer_tokens, self.cpt, self.a = inputs, answer_tokens, cpt, a
        self.seen: dict[str, str] = {}
        self.phase = PhaseProjection("")

    def call(self, request: ChatRequest) -> tuple[str, float]:
        """The answer (real if cached, else a placeholder of the assumed length) and the
        seconds it takes (0 when cached or already made)."""
        key = request.cache_key()
        if key in self.seen:
            self.phase += PhaseProjection("", cached=1)
            return self.seen[key], 0.0
        hit = self.i.lookup(key)
        if hit is not None and hit.usable:
            self.seen[key] = hit.text
            self.phase += PhaseProjection("", cached=1)
            return hit.text, 0.0
        tin = sum(len(c) for _, c in request.messages) / self.cpt
        tout = float(min(request.max_tokens, self.answer_tokens(request.max_tokens)))
        usd = self.i.pool.get(request.alias).cost(round(tin), round(tout))
        secs = self.a.first_token_s + tout / self.a.tokens_per_s
        self.phase += PhaseProjection("", 1, 0, tin, tout, usd, 0.0)
        text = f"~{key[:12]} " + "x" * max(0, round(tout * self.cpt) - 14)
        self.seen[key] = text
        return text, secs

    def run(self, m: MixtureConfig, messages: tuple[Message, ...]) -> tuple[str, float]:
        """A mixture's answer and critical path (per layer its slowest call), as the
        executor runs it."""
        refs: tuple[str, ...] = ()
        path = 0.0

        def call(agent: AgentSpec, seen: tuple[Message, ...], sample: int) -> tuple[str, float]:
            spec = self.i.pool.get(agent.model)
            return self.call(
                ChatRequest.build(spec, agent, seen, sample=sample, mixture_seed=m.seed)
            )

        def seen_by(agent: AgentSpec) -> tuple[Message, ...]:
            prompt = m.aggregation_prompt
            return with_references(
                messages, refs, aggregation_prompt=prompt, system_prompt=agent.system_prompt
            )

        for agents in m.layers:
            out = [call(agent, seen_by(agent), s) for agent, s in expand_layer(agents)]
            refs = tuple(t for t, _ in out)
            path += max((s for _, s in out), default=0.0)
        agg = m.aggregator
        if m.aggregation == "rank" and len(refs) > 1:
            ranked = ranking_messages(messages, refs, system_prompt=agg.system_prompt)
            ranker = agg.model_copy(update={"max_tokens": min(agg.max_tokens, 16)})
            text, secs = call(ranker, ranked, 0)
        else:
            text, secs = call(agg, seen_by(agg), 0)
        return text, path + secs

    def evaluate(self, m: MixtureConfig, items: Sequence[TaskItem]) -> None:
        """``m`` on ``items`` as the evaluator runs it: baseline, mixture, judge per item."""
        spec, pool = self.i.spec, self.i.pool
        paths: list[float] = []
        for item in items:
            messages = normalize_messages(item.prompt)
            path, baseline = 0.0, item.reference or ""
            if spec.baseline.kind == "model":
                agent = spec.baseline.agent()
                baseline, path = self.call(
                    ChatRequest.build(
                        pool.get(agent.model), agent, messages, sample=0, mixture_seed=0
                    )
                )
            answer, secs = self.run(m, messages)
            path += secs
            if spec.judge.kind == "pairwise_llm" and spec.judge.model is not None:
                judge = pool.get(spec.judge.model)
                user = _JUDGE_TEXT + item.prompt + answer + baseline
                for order in range(2 if spec.judge.both_orders else 1):
                    path += self.call(
                        ChatRequest(
                            judge.alias, judge.model, (("user", f"{order}{user}"),), 0.0, 16, 0, 0
                        )
                    )[1]
            paths.append(path)
        if paths:
            wall = sum(paths) / min(spec.evaluation.concurrency, len(paths))
            self.phase += PhaseProjection("", wall_s=wall)


_JUDGE_TEXT = DEFAULT_JUDGE_SYSTEM_PROMPT + DEFAULT_TEMPLATE


def _replica(
    inputs: Inputs, a: Assumptions, answer_tokens: Callable[[int], int], cpt: float, seed: int
) -> tuple[PhaseProjection, PhaseProjection]:
    """One simulated search and final evaluation: (search phase, final phase)."""
    spec, pool, rungs = inputs.spec, inputs.pool, inputs.rungs
    sim, rng = _Sim(inputs, answer_tokens, cpt, a), random.Random(seed)
    target = inputs.n_trials or spec.budget.n_trials
    todo = max(0, target - inputs.trials_done)
    keys: set[str] = set()
    full: list[MixtureConfig] = []
    prunes = spec.pruner == "median" and len(rungs) > 1
    # sampler auto plans the trials itself (the search's own sampler, as make_sampler builds it)
    sampler = make_sampler(spec, pool) if spec.sampler == "auto" else None
    auto = sampler if isinstance(sampler, AutoSampler) else None
    observed, taken = tried(inputs.records) if auto is not None else ({}, set())
    # every mixture ties before calling: simulated trials get the stored trials' mean win rate
    tie = sum(o.win_rate for o in observed.values()) / len(observed) if observed else 0.5
    n = draws = 0
    while n < todo and draws < 5 * target + 20:
        draws += 1
        fixed = None
        if auto is not None:
            planned = auto.choose(observed, taken, inputs.trials_done + n)
            if planned is not None:
                taken.add(composition_key(planned))  # never planned twice, even if invalid
                fixed = params_for(planned, auto.space, auto.proposers, auto.aggregators)
        m = _suggest(inputs, rng, fixed)
        if m is None or mixture_key(m) in keys:
            continue  # invalid, or a repeat answered from the trial it repeats
        keys.add(mixture_key(m))
        if auto is not None:
            c = composition(m)
            observed[composition_key(c)] = Observation(c, tie, len(inputs.search))
            taken.add(composition_key(c))
        seen = 0
        for k, r in enumerate(rungs):
            sim.evaluate(m, inputs.search[seen:r])
            seen = r
            startup = inputs.trials_done + n >= max(1, spec.n_startup_trials)
            if k < len(rungs) - 1 and prunes and startup and rng.random() < a.prune_fraction:
                break
        else:
            full.append(m)
        n += 1
    search, sim.phase = sim.phase, PhaseProjection("")
    if todo == 0 and inputs.final_done:
        return search, sim.phase
    if not full:  # resuming with no trial left to run: a typical mixture of the space
        full = [m for m in (_suggest(inputs, rng) for _ in range(30)) if m is not None]
    full.sort(key=lambda m: composition(m).calls_per_prompt)
    chosen = full[len(full) // 2] if full else None
    if chosen is None:
        return search, sim.phase
    if not inputs.holdout:
        sim.evaluate(chosen, inputs.search)  # every prompt; the trial's own calls are cached
        return search, sim.phase

    def score(mixture: MixtureConfig) -> float:
        sim.evaluate(mixture, inputs.search)
        return 0.5  # unknown before calling: every model ties (see the assumptions)

    sim.evaluate(chosen, inputs.holdout)
    best, solo = best_single(spec, pool, score)
    rule, _ = layerwise_rule(spec, pool, len(chosen.layers), best, solo, score)
    calls = composition(chosen).calls_per_prompt
    for m in (solo_mixture(spec, best), self_moa(spec, best, calls), rule, inputs.incumbent):
        if m is not None:
            sim.evaluate(m, inputs.holdout)
    return search, sim.phase


def _suggest(
    inputs: Inputs, rng: random.Random, fixed: dict[str, Any] | None = None
) -> MixtureConfig | None:
    """A random search's draw but for the ``fixed`` params (``None``: an invalid proposal)."""
    spec = inputs.spec
    try:
        return suggest_mixture(
            cast(Any, _Draw(rng, fixed)),
            spec.space,
            inputs.pool,
            aggregation_prompt=spec.aggregation_prompt,
            seed=spec.seed,
        )
    except InvalidMixture:
        return None


def project(inputs: Inputs, a: Assumptions = Assumptions()) -> Projection:
    """The calls, tokens, dollars and time the rest of a study will take (see the module
    docstring): the mean of ``a.replicas`` simulated searches, each with its final evaluation
    (the held-out verdict and its baselines, or the re-evaluation on every prompt)."""
    spec = inputs.spec
    cached = inputs.cached_answers
    out_total = sum(c.tokens_out for c in cached)
    chars = sum(len(c.text) for c in cached)
    calibrated = len(cached) >= MIN_CALIBRATION and out_total > 0
    cpt = a.chars_per_token or (chars / out_total if calibrated else 4.0)
    mean_out = a.answer_tokens or (round(out_total / len(cached)) if calibrated else None)

    def answer_tokens(max_tokens: int) -> int:
        return mean_out if mean_out is not None else max_tokens

    runs = [
        _replica(inputs, a, answer_tokens, cpt, seed=spec.seed * 7919 + r)
        for r in range(max(1, a.replicas))
    ]
    k = 1.0 / len(runs)
    search, final = PhaseProjection("search"), PhaseProjection("")
    for s, f in runs:
        search, final = search + s.scaled(k), final + f.scaled(k)
    final_name = "held-out verdict" if inputs.holdout else "final evaluation"
    target = inputs.n_trials or spec.budget.n_trials
    todo = max(0, target - inputs.trials_done)
    if a.answer_tokens is not None:
        answers = f"every answer is {a.answer_tokens} tokens long (as given)"
    elif calibrated:
        answers = f"answers are {mean_out} tokens long: the mean of the {len(cached)} cached"
    else:
        answers = "every answer runs to its max_tokens (the worst case: too few cached answers "
        answers += f"to measure, {len(cached)} of {MIN_CALIBRATION})"
    how = "as given" if a.chars_per_token else "measured on the cached answers"
    how = how if a.chars_per_token or calibrated else "assumed"
    how_drawn = (
        "planned as sampler auto plans them when every mixture ties (each model alone, the role "
        "probes, then the candidates most uncertain per uncached call); racing stops none"
        if spec.sampler == "auto"
        else "drawn as random search draws them; a sampler favouring some mixtures spends less"
    )
    notes = [
        f"trials: {todo} more to reach {target} ({inputs.trials_done} done), {how_drawn}",
        (
            f"pruning: {a.prune_fraction:.0%} of the trials stop at each rung but the last, "
            f"after the first {spec.n_startup_trials}"
            if spec.pruner == "median" and len(inputs.rungs) > 1
            else "no pruning: every trial is evaluated on every rung"
        ),
        answers,
        f"{cpt:.2f} characters per token ({how})",
        f"a call takes {a.first_token_s:g} s + its answer at {a.tokens_per_s:g} tokens/s; "
        f"{spec.evaluation.concurrency} prompts at a time; a cached answer takes no time",
        "every call answers the first time (no quorum failures, no retries), and differently "
        "from any other request (identical answers would let later calls share the cache)",
        "the final evaluation judges a typical mixture (median calls per prompt of the fully "
        "evaluated trials); the best single model is the first candidate and the layer-wise "
        "rule keeps every model (its largest form)",
        f"means over {len(runs)} simulated searches",
        *inputs.notes,
    ]
    if spec.judge.kind == "pairwise_llm":
        notes.append("judge verdicts are counted as new calls (the cache is not searched)")
    return Projection(
        study=spec.name,
        trials_done=inputs.trials_done,
        trials_planned=todo,
        phases=(search, PhaseProjection(final_name, *(getattr(final, f) for f in _FIELDS))),
        prior=inputs.prior,
        max_usd=spec.budget.max_usd,
        max_tokens=spec.budget.max_tokens,
        timeout_s=spec.budget.timeout_s,
        cache_entries=inputs.cache_entries,
        assumptions=tuple(notes),
    )
