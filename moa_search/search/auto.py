"""``sampler: auto``: a search that uses the structure of mixtures.

TPE sees a mixture as unrelated categorical slots. :class:`AutoSampler` (an Optuna
:class:`~optuna.samplers.BaseSampler`) instead plans each trial's whole composition:

1. **Solo first.** Each pool model alone comes first (``[m] -> m``: one proposer call and the
   same model aggregating, or ``m alone`` when the space allows no layer-1 form). Each is a
   baseline, and its layer-1 answers are the ones every later mixture with ``m`` reuses through
   the response cache.
2. **Role probes.** The best solo model's answers go to each other aggregator in turn (one
   uncached call per prompt each): which aggregators use good answers, which no solo shows.
3. **Role priors.** A small model of mixtures (:mod:`moa_search.search.auto_model`) is fitted to
   every evaluated trial: each model's quality as a proposer, and as an aggregator its own
   quality and how much it uses the answers it sees, plus the value of more and more varied
   answers. It predicts every candidate composition, with an uncertainty.
4. **Cost-aware choice.** The next candidate maximises the optimistic improvement over the best
   predicted mixture per uncached model call per prompt (layer-1 answers already made by earlier
   trials are free), so cheap, cache-sharing candidates are tried first.

Pruning is paired racing (:mod:`moa_search.search.racing`). Temperatures, when the space lists
several, are not modelled: they are drawn at random. The sampler decides on win rate (the
objective every study has); other objectives enter through the cost term and the racing rule.
Every plan is a deterministic function of the study's trials and the seed, so a study resumes.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

from moa_search.config.study import SearchSpaceSpec
from moa_search.search.auto_model import MixtureModel, Observation
from moa_search.search.records import TrialRecord
from moa_search.search.space import Composition

__all__ = [
    "AutoSampler",
    "candidate_compositions",
    "composition_key",
    "params_for",
    "solo_compositions",
    "tried",
]

log = logging.getLogger(__name__)

#: Above this many compositions the candidates are a seeded sample plus the neighbours of the
#: best trials, not the whole space.
MAX_CANDIDATES = 6000


def _layers(space: SearchSpaceSpec, models: Sequence[str]) -> list[dict[str, int]]:
    """Every layer composition: samples per model, 0..max_samples each, summing to
    min_proposers..max_proposers."""
    out: list[dict[str, int]] = []

    def rec(i: int, left: int, acc: dict[str, int]) -> None:
        if i == len(models):
            if sum(acc.values()) >= space.min_proposers:
                out.append({m: c for m, c in acc.items() if c})
            return
        for c in range(min(space.max_samples, left) + 1):
            acc[models[i]] = c
            rec(i + 1, left - c, acc)
        acc.pop(models[i], None)

    rec(0, space.max_proposers, {})
    return out


def composition_key(c: Composition) -> tuple[Any, ...]:
    """What makes two compositions the same trial: samples per model in each layer (in any
    order), the aggregator and the aggregation mode."""
    return (
        tuple(tuple(sorted(layer.items())) for layer in c.layers),
        c.aggregator,
        c.aggregation,
    )


def candidate_compositions(
    space: SearchSpaceSpec,
    proposers: Sequence[str],
    aggregators: Sequence[str],
    rng: np.random.RandomState,
    near: Sequence[Composition] = (),
    cap: int = MAX_CANDIDATES,
) -> list[Composition]:
    """The compositions of the space (a seeded sample of ``cap`` of them, plus the neighbours
    of ``near``, when it is larger)."""
    layer_choices = _layers(space, proposers)
    modes = tuple(dict.fromkeys(space.aggregation))
    heads = [(g, a) for g in aggregators for a in modes]
    sizes = []
    for n in range(space.min_layers, space.max_layers + 1):
        per = len(layer_choices) if (space.shared_proposers or n == 0) else len(layer_choices) ** n
        sizes.append((n, (per if n else 1) * len(heads)))
    total = sum(s for _, s in sizes)

    def build(n: int, layers: Sequence[Mapping[str, int]], head: tuple[str, str]) -> Composition:
        return Composition(tuple(dict(x) for x in layers), head[0], head[1])

    if total <= cap:
        out: list[Composition] = []
        for n, _ in sizes:
            if n == 0:
                out.extend(build(0, (), h) for h in heads)
            elif space.shared_proposers:
                out.extend(build(n, (lay,) * n, h) for lay in layer_choices for h in heads)
            else:
                for combo in itertools.product(layer_choices, repeat=n):
                    out.extend(build(n, combo, h) for h in heads)
        return out
    seen: dict[tuple[Any, ...], Composition] = {}
    weights = np.array([s for _, s in sizes], dtype=float)
    for _ in range(cap):
        n = sizes[int(rng.choice(len(sizes), p=weights / weights.sum()))][0]
        head = heads[int(rng.randint(len(heads)))]
        if n == 0:
            layers: tuple[Mapping[str, int], ...] = ()
        elif space.shared_proposers:
            layers = (layer_choices[int(rng.randint(len(layer_choices)))],) * n
        else:
            layers = tuple(layer_choices[int(rng.randint(len(layer_choices)))] for _ in range(n))
        c = build(n, layers, head)
        seen.setdefault(composition_key(c), c)
    for c in near:
        for nb in _neighbours(c, space, layer_choices, heads):
            seen.setdefault(composition_key(nb), nb)
    return list(seen.values())


def _neighbours(
    c: Composition,
    space: SearchSpaceSpec,
    layer_choices: Sequence[Mapping[str, int]],
    heads: Sequence[tuple[str, str]],
) -> Iterator[Composition]:
    """Compositions one change away: another aggregator, or one layer replaced."""
    for g, a in heads:
        yield Composition(c.layers, g, a)
    for i in range(len(c.layers)):
        for lay in layer_choices:
            if space.shared_proposers:
                yield Composition((lay,) * len(c.layers), c.aggregator, c.aggregation)
            else:
                yield Composition(
                    (*c.layers[:i], lay, *c.layers[i + 1 :]), c.aggregator, c.aggregation
                )


def solo_compositions(
    space: SearchSpaceSpec, proposers: Sequence[str], aggregators: Sequence[str]
) -> list[Composition]:
    """Each model alone, in the cheapest form the space allows (see the module docstring)."""
    mode = space.aggregation[0]
    n_layers = min(max(1, space.min_layers), space.max_layers)
    k = space.min_proposers
    out: list[Composition] = []
    for m in dict.fromkeys([*proposers, *aggregators]):
        if m in proposers and n_layers >= 1 and k <= space.max_samples:
            agg = m if m in aggregators else aggregators[0]
            out.append(Composition(({m: k},) * n_layers, agg, mode))
        elif space.min_layers == 0 and m in aggregators:
            out.append(Composition((), m, mode))
    return out


def params_for(
    c: Composition,
    space: SearchSpaceSpec,
    proposers: Sequence[str],
    aggregators: Sequence[str],
) -> dict[str, Any]:
    """The trial params :func:`moa_search.search.space.suggest_mixture` turns into ``c``."""
    p: dict[str, Any] = {}
    if space.min_layers != space.max_layers:
        p["n_layers"] = len(c.layers)

    def layer(prefix: str, counts: Mapping[str, int]) -> None:
        slots = [m for m in proposers for _ in range(counts.get(m, 0))]
        if space.min_proposers != space.max_proposers:
            p[f"{prefix}proposers"] = len(slots)
        if len(proposers) > 1:
            for k, m in enumerate(slots):
                p[f"{prefix}proposer/{k}"] = m

    if c.layers:
        if space.shared_proposers:
            layer("", c.layers[0])
        else:
            for i, counts in enumerate(c.layers):
                layer(f"L{i}/", counts)
    if len(aggregators) > 1:
        p["aggregator"] = c.aggregator
    if len(dict.fromkeys(space.aggregation)) > 1:
        p["aggregation"] = c.aggregation
    return p


def tried(
    records: Iterable[TrialRecord],
) -> tuple[dict[tuple[Any, ...], Observation], set[tuple[Any, ...]]]:
    """What :meth:`AutoSampler.choose` reads from stored trials: the win rate observed on each
    composition (its record with the most prompts; repeats and unevaluated trials left out),
    and every composition tried, by :func:`composition_key`."""
    observed: dict[tuple[Any, ...], Observation] = {}
    taken: set[tuple[Any, ...]] = set()
    for r in records:
        if r.composition is None:
            continue
        k = composition_key(r.composition)
        taken.add(k)
        if r.metrics is not None and r.duplicate_of is None and r.n_items > 0:
            old = observed.get(k)
            if old is None or r.n_items > old.n_items:
                observed[k] = Observation(r.composition, r.metrics.win_rate.mean, r.n_items)
    return observed, taken


def _fits(dist: BaseDistribution, value: Any) -> bool:
    if isinstance(dist, CategoricalDistribution):
        return value in dist.choices
    if isinstance(dist, IntDistribution):
        return isinstance(value, int) and dist.low <= value <= dist.high
    return False


class AutoSampler(BaseSampler):
    """Plans each trial's composition from the study so far (see the module docstring).

    Args:
        space: the study's search space.
        proposers, aggregators: the models the space draws on (the pool's aliases unless the
            space names them).
        seed: seeds the candidate sample and the random draws (temperatures).
        kappa: how optimistic the choice is (standard deviations of the prediction). 2 was
            tried as the default: on the rich benchmark world it evaluated a mixture within
            0.02 of the optimum in 8/10 seeds where 1 did in 6/10, but on the planted world
            of ``tests/unit/test_search.py`` (14 trials) it chose the true best kind of mixture
            in 1 of 8 seeds where 1 did in 8 of 8, spending its few trials on exploration.
        cost_power: 0 ignores cost; 1 divides the improvement by the uncached calls.
    """

    def __init__(
        self,
        space: SearchSpaceSpec,
        proposers: Sequence[str],
        aggregators: Sequence[str],
        *,
        seed: int = 0,
        kappa: float = 1.0,
        cost_power: float = 0.5,
    ) -> None:
        self.space = space
        self.proposers = tuple(proposers)
        self.aggregators = tuple(aggregators)
        self.seed = seed
        self.kappa = kappa
        self.cost_power = cost_power
        self._random = RandomSampler(seed=seed)
        self._plans: dict[int, dict[str, Any]] = {}

    # Optuna's interface ------------------------------------------------------------

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        search_space: dict[str, BaseDistribution],
    ) -> dict[str, Any]:
        return {}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.system_attrs.get("fixed_params"):
            return  # an enqueued trial: its params are given
        self._plans[trial.number] = self.plan(study, trial.number)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        plan = self._plans.get(trial.number, {})
        if param_name in plan and _fits(param_distribution, plan[param_name]):
            return plan[param_name]
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._plans.pop(trial.number, None)

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    # The plan ----------------------------------------------------------------------

    def plan(self, study: optuna.Study, number: int) -> dict[str, Any]:
        """The params of trial ``number``: the next solo, else the next probe, else the best
        candidate (``{}``, every param drawn at random, when there is none)."""
        records = (TrialRecord.of(t) for t in study.get_trials(deepcopy=False))
        observed, taken = tried(r for r in records if r.number != number)
        choice = self.choose(observed, taken, number)
        if choice is None:
            return {}
        log.debug("auto: trial %d plans %s", number, choice.to_dict())
        return params_for(choice, self.space, self.proposers, self.aggregators)

    def choose(
        self,
        observed: Mapping[tuple[Any, ...], Observation],
        taken: AbstractSet[tuple[Any, ...]],
        number: int,
    ) -> Composition | None:
        """The composition of trial ``number`` given the compositions tried so far (``taken``,
        by :func:`composition_key`) and the win rates observed on them: the first solo not
        taken, else the first probe not taken, else the candidate with the best optimistic
        improvement per uncached call; None when no candidate is left. ``moa-search plan``
        calls it with every win rate equal, to project the trials as the sampler would run
        them (see :mod:`moa_search.search.plan`)."""
        solos = solo_compositions(self.space, self.proposers, self.aggregators)
        for c in solos:
            if composition_key(c) not in taken:
                return c
        solo_values = {
            c.aggregator: observed[composition_key(c)].win_rate
            for c in solos
            if composition_key(c) in observed
        }
        for c in self._probes(solos, solo_values):
            if composition_key(c) not in taken:
                return c
        rng = np.random.RandomState((self.seed * 100_003 + number) % 2**32)
        obs = list(observed.values())
        best = sorted(obs, key=lambda o: -o.win_rate)[:5]
        candidates = [
            c
            for c in candidate_compositions(
                self.space, self.proposers, self.aggregators, rng, [o.composition for o in best]
            )
            if composition_key(c) not in taken
        ]
        if not candidates or not obs:
            return None
        model = MixtureModel.fit(obs, self.proposers, self.aggregators, solo_values)
        mean, sd = model.predict(candidates)
        best_mean = float(np.max(model.predict([o.composition for o in obs])[0]))
        cost = np.array([self._uncached_calls(c, obs) for c in candidates], dtype=float)
        gain = mean + self.kappa * sd - best_mean
        scale = np.power(cost, self.cost_power)
        score = np.where(gain > 0, gain / scale, gain * scale)
        return candidates[int(np.argmax(score))]

    def _probes(
        self, solos: Sequence[Composition], solo_values: Mapping[str, float]
    ) -> list[Composition]:
        """Role probes: the best solo model's answers given to each other aggregator (its
        layer-1 answers are cached, so each probe costs one call per prompt). They show which
        aggregators use good answers, which no solo can."""
        best = max(
            (c for c in solos if c.layers and c.aggregator in solo_values),
            key=lambda c: solo_values[c.aggregator],
            default=None,
        )
        if best is None:
            return []
        return [Composition(best.layers, g, best.aggregation) for g in self.aggregators]

    @staticmethod
    def _uncached_calls(c: Composition, obs: Sequence[Observation]) -> int:
        """Model calls per prompt no earlier trial has made: layer-1 samples beyond those some
        trial already drew, every later-layer call and the aggregator."""
        cached: dict[str, int] = {}
        for o in obs:
            if o.composition.layers:
                for m, n in o.composition.layers[0].items():
                    cached[m] = max(cached.get(m, 0), n)
        if not c.layers:
            return 1
        first = sum(max(0, n - cached.get(m, 0)) for m, n in c.layers[0].items())
        later = sum(sum(layer.values()) for layer in c.layers[1:])
        return first + later + 1
