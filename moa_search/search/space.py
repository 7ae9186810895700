"""The search space: a mixture as a pure function of an Optuna trial.

:func:`suggest_mixture` asks the trial for every choice (define-by-run) and builds a
:class:`~moa_search.config.MixtureConfig` from the answers alone, so any stored trial rebuilds
exactly with ``optuna.trial.FixedTrial(trial.params)``.

A layer is a number of proposer calls and, for each call (a *slot*), which model makes it;
a model in k slots contributes k samples, so subsets, mixes and Self-MoA (one model sampled k
times) are all in the space, and every combination of answers is a valid layer — the sampler
never wastes a trial on an empty or oversized layer. Parameters (``m`` is a pool alias):

- ``n_layers``: proposer layers, ``min_layers..max_layers``;
- ``proposers`` and ``proposer/{k}`` (one composition shared by every layer), or
  ``L{i}/proposers`` and ``L{i}/proposer/{k}`` (per layer): the call count and each slot's model;
- ``temperature/m``: when the space lists temperatures;
- ``aggregator``: the aggregating model;
- ``aggregation``: ``synthesize`` or ``rank``, when the space lists both.

A model in more than ``max_samples`` slots makes the mixture invalid: :func:`suggest_mixture`
raises :class:`InvalidMixture` (the study records a failed trial, with the reason, before any
call).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from moa_search.config import DEFAULT_AGGREGATION_PROMPT, AgentSpec, MixtureConfig, Pool
from moa_search.config.study import SearchSpaceSpec
from moa_search.errors import InvalidMixture

__all__ = [
    "Composition",
    "InvalidMixture",
    "composition",
    "describe_mixture",
    "mixture_from_params",
    "mixture_key",
    "suggest_mixture",
]


def _proposers(space: SearchSpaceSpec, pool: Pool) -> tuple[str, ...]:
    return tuple(space.proposers) if space.proposers else pool.aliases


def _aggregators(space: SearchSpaceSpec, pool: Pool) -> tuple[str, ...]:
    return tuple(space.aggregators) if space.aggregators else pool.aliases


def suggest_mixture(
    trial: optuna.trial.BaseTrial,
    space: SearchSpaceSpec,
    pool: Pool,
    *,
    aggregation_prompt: str | None = None,
    seed: int = 0,
) -> MixtureConfig:
    """Ask ``trial`` for a mixture in ``space``; raise :class:`InvalidMixture` if it is empty."""
    proposers = _proposers(space, pool)
    if space.min_layers == space.max_layers:
        n_layers = space.min_layers
    else:
        n_layers = trial.suggest_int("n_layers", space.min_layers, space.max_layers)
    temps: dict[str, float] = {}
    if space.temperatures:
        choices = sorted(set(space.temperatures))
        for m in proposers:
            temps[m] = (
                choices[0]
                if len(choices) == 1
                else float(trial.suggest_categorical(f"temperature/{m}", choices))
            )

    def layer(prefix: str) -> tuple[AgentSpec, ...]:
        if space.min_proposers == space.max_proposers:
            n_calls = space.min_proposers
        else:
            n_calls = trial.suggest_int(
                f"{prefix}proposers", space.min_proposers, space.max_proposers
            )
        counts = dict.fromkeys(proposers, 0)
        for k in range(n_calls):
            model = (
                proposers[0]
                if len(proposers) == 1
                else str(trial.suggest_categorical(f"{prefix}proposer/{k}", list(proposers)))
            )
            counts[model] += 1
        too_many = [m for m, c in counts.items() if c > space.max_samples]
        if too_many:
            raise InvalidMixture(
                f"model {too_many[0]} in {counts[too_many[0]]} slots of a layer; the space "
                f"allows {space.max_samples} samples per model"
            )
        return tuple(
            AgentSpec(
                model=m,
                temperature=temps.get(m, space.default_temperature),
                max_tokens=space.proposer_max_tokens,
                samples=c,
            )
            for m, c in counts.items()
            if c
        )

    layers: tuple[tuple[AgentSpec, ...], ...]
    if n_layers == 0:
        layers = ()
    elif space.shared_proposers:
        shared = layer("")
        layers = tuple(shared for _ in range(n_layers))
    else:
        layers = tuple(layer(f"L{i}/") for i in range(n_layers))
    aggregators = _aggregators(space, pool)
    aggregator = (
        aggregators[0]
        if len(aggregators) == 1
        else str(trial.suggest_categorical("aggregator", list(aggregators)))
    )
    modes = tuple(dict.fromkeys(space.aggregation))
    aggregation = (
        modes[0] if len(modes) == 1 else str(trial.suggest_categorical("aggregation", list(modes)))
    )
    return MixtureConfig(
        layers=layers,
        aggregation=aggregation,  # type: ignore[arg-type]
        aggregator=AgentSpec(
            model=aggregator,
            temperature=space.aggregator_temperature,
            max_tokens=space.aggregator_max_tokens,
        ),
        aggregation_prompt=aggregation_prompt or DEFAULT_AGGREGATION_PROMPT,
        seed=seed,
    )


def mixture_from_params(
    params: dict[str, object],
    space: SearchSpaceSpec,
    pool: Pool,
    *,
    aggregation_prompt: str | None = None,
    seed: int = 0,
) -> MixtureConfig:
    """Rebuild a stored trial's mixture from its params (``optuna.trial.FixedTrial``)."""
    return suggest_mixture(
        optuna.trial.FixedTrial(params),
        space,
        pool,
        aggregation_prompt=aggregation_prompt,
        seed=seed,
    )


@dataclass(frozen=True)
class Composition:
    """A mixture's roles as data: samples per model in each proposer layer, and the aggregator."""

    layers: tuple[Mapping[str, int], ...]
    aggregator: str
    aggregation: str = "synthesize"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Composition:
        return cls(
            layers=tuple(
                {str(m): int(n) for m, n in layer.items()} for layer in d.get("layers", ())
            ),
            aggregator=str(d["aggregator"]),
            aggregation=str(d.get("aggregation", "synthesize")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [dict(layer) for layer in self.layers],
            "aggregator": self.aggregator,
            "aggregation": self.aggregation,
        }

    @property
    def calls_per_prompt(self) -> int:
        """Model calls one prompt costs: every proposer sample, plus the aggregator."""
        return sum(sum(layer.values()) for layer in self.layers) + 1


def mixture_key(m: MixtureConfig) -> str:
    """A hash of everything that makes a mixture what it is."""
    blob = json.dumps(m.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def composition(m: MixtureConfig) -> Composition:
    """A mixture's roles as plain data: samples per model in each layer, and the aggregator."""
    layers = []
    for layer in m.layers:
        counts: dict[str, int] = {}
        for agent in layer:
            counts[agent.model] = counts.get(agent.model, 0) + agent.samples
        layers.append(counts)
    return Composition(tuple(layers), m.aggregator.model, m.aggregation)


def describe_mixture(m: MixtureConfig) -> str:
    """A one-line summary like ``2x[smollm2*2, gemma3] -> smollm2``."""

    def layer(agents: Sequence[Any]) -> str:
        return (
            "["
            + ", ".join(a.model + (f"*{a.samples}" if a.samples > 1 else "") for a in agents)
            + "]"
        )

    if not m.layers:
        return f"{m.aggregator.model} alone"
    if all(lay == m.layers[0] for lay in m.layers):
        body = (f"{len(m.layers)}x" if len(m.layers) > 1 else "") + layer(m.layers[0])
    else:
        body = " -> ".join(layer(lay) for lay in m.layers)
    arrow = "-> rank by" if m.aggregation == "rank" else "->"
    return f"{body} {arrow} {m.aggregator.model}"
