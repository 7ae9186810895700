"""The baselines a study's pick is judged against: best single model, Self-MoA, the MoA paper's
layer-wise rule, each built as a :class:`~moa_search.config.MixtureConfig` from the spec.

Every baseline is built from the search space's sampling settings, so its calls are the calls
the study's trials made wherever they are the same request, and the response cache answers
them:

- A model *answering alone* is the mixture with no proposer layer whose "aggregator" is the
  model with the space's **proposer** settings (:func:`proposer_agent`). With no references
  the aggregator sees exactly what a layer-1 proposer sees, and it is sample 0 of the mixture
  seed (the spec's ``seed``), so its request — model, messages, temperature, max_tokens, seed,
  sample index — is the request of that model's first layer-1 proposer call in every trial
  that used it at that temperature. When the space lists several ``temperatures`` the solo
  call uses ``default_temperature`` if listed, else the lowest one; trials that drew another
  temperature for the model do not share its calls.
- :func:`self_moa`'s layer is that model's proposer calls (samples 0..k-1), its aggregator the
  model with the space's aggregator settings.
- :func:`layerwise_rule`'s win rate of a model "as a proposer in layer i + 1" is the win rate
  of its own answer in that layer: the mixture of the rule's first ``i`` layers with the model,
  at proposer settings, in the aggregator's place — the same request as its call in layer
  ``i + 1`` of the rule's mixture (sample 0, the same references). For layer 1 that is the
  model answering alone, which :func:`best_single` measured already.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from moa_search.config import DEFAULT_AGGREGATION_PROMPT, AgentSpec, MixtureConfig, Pool
from moa_search.config.study import StudySpec

__all__ = [
    "aggregator_agent",
    "best_in_role",
    "best_single",
    "candidate_models",
    "layerwise_rule",
    "proposer_agent",
    "self_moa",
    "solo_mixture",
]

#: A mixture's mean win rate on the search split (the study's judge against its baseline).
Score = Callable[[MixtureConfig], float]


def _temperature(spec: StudySpec) -> float:
    space = spec.space
    if not space.temperatures or space.default_temperature in space.temperatures:
        return space.default_temperature
    return min(space.temperatures)


def proposer_agent(spec: StudySpec, model: str, samples: int = 1) -> AgentSpec:
    """``model`` as the study's trials run it in a proposer layer."""
    return AgentSpec(
        model=model,
        temperature=_temperature(spec),
        max_tokens=spec.space.proposer_max_tokens,
        samples=samples,
    )


def aggregator_agent(spec: StudySpec, model: str) -> AgentSpec:
    """``model`` as the study's trials run it as the aggregator."""
    return AgentSpec(
        model=model,
        temperature=spec.space.aggregator_temperature,
        max_tokens=spec.space.aggregator_max_tokens,
    )


def _mixture(
    spec: StudySpec, layers: Sequence[Sequence[AgentSpec]], aggregator: AgentSpec
) -> MixtureConfig:
    return MixtureConfig(
        layers=tuple(tuple(layer) for layer in layers),
        aggregator=aggregator,
        aggregation="synthesize",
        aggregation_prompt=spec.aggregation_prompt or DEFAULT_AGGREGATION_PROMPT,
        seed=spec.seed,
    )


def solo_mixture(spec: StudySpec, model: str) -> MixtureConfig:
    """``model`` answering alone, with the request of its first layer-1 proposer call."""
    return _mixture(spec, (), proposer_agent(spec, model))


def candidate_models(spec: StudySpec, pool: Pool) -> tuple[str, ...]:
    """The pool models the space allows as proposers or aggregators, in pool order."""
    allowed = set(spec.space.proposers or pool.aliases) | set(
        spec.space.aggregators or pool.aliases
    )
    return tuple(m for m in pool.aliases if m in allowed)


def best_single(spec: StudySpec, pool: Pool, score: Score) -> tuple[str, dict[str, float]]:
    """The candidate model with the highest win rate answering alone on the search split (ties
    go to the earlier in the pool), and every candidate's win rate."""
    rates = {m: score(solo_mixture(spec, m)) for m in candidate_models(spec, pool)}
    best = max(rates, key=lambda m: rates[m])  # max keeps the first of equal values
    return best, rates


def best_in_role(spec: StudySpec, pool: Pool, solo_win_rates: dict[str, float]) -> str:
    """The model the aggregating baselines use: the highest solo win rate among the models the
    space allows both as proposer and aggregator (Self-MoA samples and aggregates with one
    model), else among the allowed aggregators. The best single model itself when the space
    allows it to aggregate; a model the spec rules out as aggregator never is one."""
    aggregators = set(spec.space.aggregators or pool.aliases)
    proposers = set(spec.space.proposers or pool.aliases)
    order = [m for m in pool.aliases if m in aggregators]
    both = [m for m in order if m in proposers]
    pool_order = both or order
    return max(pool_order, key=lambda m: solo_win_rates.get(m, float("-inf")))


def self_moa(spec: StudySpec, model: str, calls_per_prompt: int) -> MixtureConfig:
    """``model`` sampled k times and aggregating its own samples (Li et al. 2025), with
    ``k + 1 == calls_per_prompt`` — or k = 1, the nearest, when that asks for fewer than 2."""
    k = max(1, calls_per_prompt - 1)
    return _mixture(
        spec, ((proposer_agent(spec, model, samples=k),),), aggregator_agent(spec, model)
    )


def layerwise_rule(
    spec: StudySpec,
    pool: Pool,
    n_layers: int,
    aggregator: str,
    solo_win_rates: dict[str, float],
    score: Score,
) -> tuple[MixtureConfig, tuple[dict[str, float], ...]]:
    """The MoA paper's selection rule (Wang et al. 2024, "the average win rate of models in
    layer i decides whether they are included in layer i+1"), exactly as implemented here:

    1. Layer 1 is every proposer model the space allows, one sample each.
    2. Each model's win rate as a proposer in layer i is the win rate, on the search split, of
       its own answer in that layer (see the module docstring; for layer 1, ``solo_win_rates``).
    3. Layer i + 1 keeps, in order, the models of layer i whose win rate is strictly above the
       mean of layer i's win rates; when none is (all equal), it keeps layer i unchanged.
    4. ``max(1, n_layers)`` layers (the chosen mixture's count), then ``aggregator``
       (:func:`best_in_role`: the best single model when the space lets it aggregate) with the
       space's aggregator settings, synthesising.

    Returns the mixture and, per layer but the last, the win rates step 3 selected on.
    """
    space_proposers = spec.space.proposers or pool.aliases
    layer = [m for m in pool.aliases if m in space_proposers]
    layers: list[list[str]] = [layer]
    rates: list[dict[str, float]] = []
    for i in range(1, max(1, n_layers)):
        prefix = [[proposer_agent(spec, m) for m in lay] for lay in layers]
        if i == 1:
            wr = {m: solo_win_rates[m] for m in layer}
        else:
            wr = {m: score(_mixture(spec, prefix[:-1], proposer_agent(spec, m))) for m in layer}
        rates.append(wr)
        mean = statistics.fmean(wr.values())
        layer = [m for m in layer if wr[m] > mean] or layer
        layers.append(layer)
    mixture = _mixture(
        spec,
        [[proposer_agent(spec, m) for m in lay] for lay in layers],
        aggregator_agent(spec, aggregator),
    )
    return mixture, tuple(rates)
