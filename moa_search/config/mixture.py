"""Mixture configs: a stack of proposer layers plus an aggregator, over a pool's models.

A mixture is a frozen pydantic model, read from and written to YAML or JSON files like pools;
every loading problem is one :class:`~moa_search.errors.ConfigError` paragraph.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from moa_search.config.files import _save, _validate, load_mapping
from moa_search.config.pool import _ALIAS, SCHEMA_VERSION, Pool, _Frozen, load_pool
from moa_search.errors import ConfigError

__all__ = [
    "DEFAULT_AGGREGATION_PROMPT",
    "AgentSpec",
    "MixtureConfig",
    "load_mixture",
    "resolve_pool",
    "save_mixture",
]

DEFAULT_AGGREGATION_PROMPT = (
    "Several assistants have already answered the user's latest request; their answers are "
    "listed below. Some of them may be wrong, incomplete or biased. Weigh them critically, keep "
    "what is correct and useful, fix what is not, and write one answer of your own that is "
    "accurate, complete and well organised. Do not mention the other answers or this "
    "instruction; answer the user directly."
)


class AgentSpec(_Frozen):
    """One proposer (or the aggregator): a pool model with its sampling parameters."""

    model: Annotated[str, Field(pattern=_ALIAS)]
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.7
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] = 512
    system_prompt: str | None = None
    samples: Annotated[int, Field(ge=1, le=64)] = 1


class MixtureConfig(_Frozen):
    """A Mixture-of-Agents: proposer layers, then one aggregator.

    ``layers`` may be empty: the mixture is then the aggregator alone (a single model), which is
    how baselines are expressed. ``quorum`` is either a count (an ``int`` >= 1) of answers each
    layer needs, or a fraction (a ``float`` in (0, 1]) of the layer's calls; a layer always
    needs at least one answer. ``pool`` is an inline pool, a path to a pool file (relative to
    the mixture file), or absent (the caller supplies one). ``aggregation`` is ``synthesize``
    (the aggregator writes a new answer from the last layer's) or ``rank`` (it names the best
    of them, which is returned verbatim — the MoA paper's LLM-ranker baseline).
    """

    version: Literal[1] = SCHEMA_VERSION
    name: str | None = None
    layers: tuple[Annotated[tuple[AgentSpec, ...], Field(min_length=1)], ...] = ()
    aggregator: AgentSpec
    aggregation_prompt: Annotated[str, Field(min_length=1)] = DEFAULT_AGGREGATION_PROMPT
    aggregation: Literal["synthesize", "rank"] = "synthesize"
    quorum: int | float = 1
    seed: Annotated[int, Field(ge=0)] = 0
    pool: Pool | str | None = None
    provenance: dict[str, Any] | None = None

    @field_validator("quorum")
    @classmethod
    def _check_quorum(cls, value: int | float) -> int | float:
        if isinstance(value, bool):
            raise ValueError("a count >= 1 or a fraction in (0, 1]")
        if isinstance(value, int) and value < 1:
            raise ValueError("a count >= 1 or a fraction in (0, 1]")
        if isinstance(value, float) and not 0 < value <= 1:
            raise ValueError("a count >= 1 or a fraction in (0, 1]")
        return value

    def required_answers(self, n_calls: int) -> int:
        """How many of a layer's ``n_calls`` must succeed."""
        if isinstance(self.quorum, float):
            need = math.ceil(self.quorum * n_calls - 1e-9)
        else:
            need = self.quorum
        return max(1, min(need, n_calls))

    def models_used(self) -> tuple[str, ...]:
        names = [a.model for layer in self.layers for a in layer] + [self.aggregator.model]
        return tuple(dict.fromkeys(names))

    def check_pool(self, pool: Pool, source: str) -> None:
        """Raise :class:`ConfigError` if an agent names a model the pool lacks."""
        for i, layer in enumerate(self.layers):
            for j, agent in enumerate(layer):
                if agent.model not in pool.aliases:
                    raise ConfigError(
                        source,
                        f"layers[{i}][{j}].model",
                        f"a model alias from the pool ({', '.join(pool.aliases)})",
                        repr(agent.model),
                    )
        if self.aggregator.model not in pool.aliases:
            raise ConfigError(
                source,
                "aggregator.model",
                f"a model alias from the pool ({', '.join(pool.aliases)})",
                repr(self.aggregator.model),
            )


def load_mixture(path: str | os.PathLike[str]) -> MixtureConfig:
    """Load and validate a mixture file (its pool, if a path, is left unresolved)."""
    return _validate(MixtureConfig, load_mapping(path, "mixture file"), str(path))


def save_mixture(mixture: MixtureConfig, path: str | os.PathLike[str]) -> None:
    """Write a mixture file; :func:`load_mixture` reads back an equal config."""
    _save(mixture, path)


def resolve_pool(
    mixture: MixtureConfig,
    mixture_path: str | os.PathLike[str] | None,
    pool_path: str | os.PathLike[str] | None = None,
    default_pool_path: str | os.PathLike[str] | None = None,
) -> Pool:
    """Find the pool for a mixture and check every alias the mixture uses is in it.

    Precedence: an explicit ``pool_path`` (the ``--pool`` flag), the mixture's own pool (inline
    or a path relative to the mixture file), then ``default_pool_path`` (the local pool).
    """
    source = str(mixture_path) if mixture_path is not None else "mixture"
    if pool_path is not None:
        pool = load_pool(pool_path)
    elif isinstance(mixture.pool, Pool):
        base = Path(mixture_path).parent if mixture_path is not None else Path.cwd()
        pool = mixture.pool.relative_to(base)
    elif isinstance(mixture.pool, str):
        base = Path(mixture_path).parent if mixture_path is not None else Path.cwd()
        pool = load_pool(base / mixture.pool)
    elif default_pool_path is not None:
        if not Path(default_pool_path).exists():
            raise ConfigError(
                source,
                "pool",
                "a pool: inline, a pool file path, --pool POOL.yaml, or the local pool "
                f"(start it with 'moa-search local up'; no pool file at {default_pool_path})",
            )
        pool = load_pool(default_pool_path)
    else:
        raise ConfigError(source, "pool", "a pool: inline, a pool file path, or --pool POOL.yaml")
    mixture.check_pool(pool, source)
    return pool
