"""Recorded AlpacaEval models as pool models: mixtures, evaluations and studies run on the
recorded outputs with no model call at all.

:func:`replay_pool` declares the models, :func:`replay_backends` answers for them with
:class:`~moa_search.runtime.backends.replay.ReplayBackend` (see there for where a replay is
faithful), and :func:`alpaca_items` is the evaluation set with the reference model's outputs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from moa_search.config import ModelSpec, Pool
from moa_search.config.dataset import TaskItem
from moa_search.config.recorded import REFERENCE_MODEL, load_model_outputs
from moa_search.errors import ConfigError
from moa_search.interop.alpaca.io import _OUTPUTS_FILE, _results_dir
from moa_search.runtime.backends import Backend
from moa_search.runtime.backends.replay import ReplayBackend

__all__ = [
    "ReplayBackend",
    "alpaca_items",
    "replay_backends",
    "replay_pool",
]


def replay_pool(
    models: Sequence[str] | Mapping[str, str],
    *,
    results_dir: str | os.PathLike[str] | None = None,
    prices: Mapping[str, tuple[float, float]] | None = None,
    max_concurrency: int = 64,
) -> Pool:
    """A pool of replayed models (kind ``replay``): alias -> recorded model (folder) name, with
    ``prices`` (alias -> (input, output) dollars per million tokens; 0 by default) applied to
    estimated token counts.

    Each model replays ``<model>/model_outputs.json`` in ``results_dir``; without
    ``results_dir`` that path stays relative to the results folder (``pool.relative_to(folder)``
    anchors it). Either way :func:`replay_backends` serves the pool from the folder it is given.
    """
    mapping = dict(models) if isinstance(models, Mapping) else {m: m for m in models}
    prices = prices or {}
    pool = Pool(
        models=tuple(
            ModelSpec(
                alias=alias,
                kind="replay",
                replay=str(Path(model) / _OUTPUTS_FILE),
                model=model,
                input_price_per_mtok=prices.get(alias, (0.0, 0.0))[0],
                output_price_per_mtok=prices.get(alias, (0.0, 0.0))[1],
                max_concurrency=max_concurrency,
                max_retries=0,
            )
            for alias, model in mapping.items()
        )
    )
    return pool if results_dir is None else pool.relative_to(_results_dir(results_dir))


def replay_backends(
    results_dir: str | os.PathLike[str],
    aliases: Sequence[str] | Mapping[str, str],
    *,
    pool: Pool | None = None,
    plain_prompt_only: bool = False,
) -> dict[str, Backend]:
    """alias -> :class:`ReplayBackend` over ``results_dir/<model>/model_outputs.json``, whatever
    the pool's ``replay`` paths say.

    ``aliases`` maps each alias to a recorded model's folder name (a sequence: alias = folder).
    ``pool`` supplies the models' specs (prices, concurrency); by default
    :func:`replay_pool`. Pass the result as ``Executor(pool, backends=...)``.

    Raises:
        ConfigError: a model has no readable ``model_outputs.json``, or an alias is not in
            ``pool``.
    """
    results = _results_dir(results_dir)
    mapping = dict(aliases) if isinstance(aliases, Mapping) else {a: a for a in aliases}
    pool = pool or replay_pool(mapping)
    out: dict[str, Backend] = {}
    for alias, model in mapping.items():
        try:
            spec = pool.get(alias)
        except KeyError:
            raise ConfigError(
                "replay pool", "models", f"a model with alias {alias!r}", ", ".join(pool.aliases)
            ) from None
        outputs = load_model_outputs(results / model / _OUTPUTS_FILE)
        out[alias] = ReplayBackend(spec, outputs, plain_prompt_only=plain_prompt_only)
    return out


def alpaca_items(
    results_dir: str | os.PathLike[str],
    *,
    reference_model: str = REFERENCE_MODEL,
    limit: int | None = None,
) -> tuple[TaskItem, ...]:
    """The evaluation set as task items, in recorded order: ``id`` the position, ``prompt``
    the instruction, ``reference`` ``reference_model``'s recorded output."""
    outputs = load_model_outputs(_results_dir(results_dir) / reference_model / _OUTPUTS_FILE)
    chosen = outputs if limit is None else outputs[:limit]
    return tuple(TaskItem(str(i), o.instruction, o.output) for i, o in enumerate(chosen))
