"""From a study's trial records to regression rows, and the rows to the role design.

A row is one evaluated trial: its win rate, its proposer diversity, and its roles — the samples
each model contributed to each proposer layer, and the aggregator. The roles come from the
trial's :class:`~moa_search.search.space.Composition` (what every study of this version
records) or, for older studies without one, from its params: ``n_layers``, ``samples/<alias>``
or ``L{i}/samples/<alias>``, and ``aggregator``. A trial with neither an ``aggregator`` param
nor a composition has no aggregator in the analysis.

Complete and pruned trials with metrics count (a pruned trial with the win rate of the prompts
it was evaluated on); a repeated mixture counts once.

The design: one column per (layer, proposer) — "the model is in the layer" (or its sample
count, with ``proposer_feature="samples"``) —, one 0/1 column per aggregator, and, when the
study varied it, one per layer count (a control, not reported).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import optuna

from moa_search.errors import AnalysisError
from moa_search.search.records import TrialRecord

__all__ = ["MIN_TRIALS", "AnalysisError", "ProposerFeature"]

log = logging.getLogger(__name__)

ProposerFeature = Literal["presence", "samples"]

#: Fewer evaluated (complete or pruned) trials than this cannot be analysed.
MIN_TRIALS = 4

_PER_LAYER = re.compile(r"^L(\d+)/samples/(.+)$")
_SHARED = re.compile(r"^samples/(.+)$")
_LAYER_PARAM = re.compile(r"^L\d+/")


@dataclass(frozen=True)
class TrialRow:
    """One evaluated trial as the regression sees it; ``samples`` maps (layer, model) to the
    model's samples in that layer (layer ``None``: any layer, for a shared composition)."""

    number: int
    win_rate: float
    diversity: float
    n_layers: int | None
    samples: Mapping[tuple[int | None, str], int]
    aggregator: str | None


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(float(value))


def trial_row(record: TrialRecord, per_layer: bool = False) -> TrialRow | None:
    """The row of one trial; ``None`` without a finite win rate in its metrics."""
    if record.metrics is None:
        return None
    mean = record.metrics.win_rate.mean
    if not _finite(mean):
        return None
    div = float(record.metrics.diversity) if _finite(record.metrics.diversity) else 0.0
    samples: dict[tuple[int | None, str], int] = {}
    comp = record.composition
    if comp is not None:
        # the study's own record of the roles (see moa_search.search.space.composition)
        for i, layer in enumerate(comp.layers):
            for model, count in layer.items():
                key = (i if per_layer else None, model)
                samples[key] = max(samples.get(key, 0), count)
        return TrialRow(
            number=record.number,
            win_rate=float(mean),
            diversity=div,
            n_layers=len(comp.layers),
            samples=samples,
            aggregator=comp.aggregator,
        )
    # an older study without compositions: the roles are in the params
    for name, value in record.params.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue  # not a sample count (e.g. another study's categorical param)
        in_layer = _PER_LAYER.match(name)
        shared = _SHARED.match(name)
        if in_layer:
            samples[(int(in_layer.group(1)), in_layer.group(2))] = int(value)
        elif shared:
            samples[(None, shared.group(1))] = int(value)
    raw_layers = record.params.get("n_layers")
    n_layers = int(raw_layers) if isinstance(raw_layers, int | float) else None
    if n_layers is not None:
        # a per-layer param beyond the trial's layers (not suggested in practice) is ignored
        samples = {k: v for k, v in samples.items() if k[0] is None or k[0] < n_layers}
        if n_layers == 0:
            samples = {}
    agg = record.params.get("aggregator")
    return TrialRow(
        number=record.number,
        win_rate=float(mean),
        diversity=div,
        n_layers=n_layers,
        samples=samples,
        aggregator=str(agg) if agg is not None else None,
    )


def trial_rows(study: optuna.Study) -> tuple[list[TrialRow], int]:
    """The rows of a study's evaluated trials, and how many were skipped for lacking a win rate.

    Raises:
        AnalysisError: fewer than :data:`MIN_TRIALS` rows.
    """
    evaluated = [
        r
        # pruned trials count too, with the win rate of the prompts they were evaluated on:
        # dropping them would leave out exactly the mixtures that did badly
        for r in TrialRecord.all(study)
        if r.state in ("complete", "pruned")
        and r.duplicate_of is None  # a repeated mixture is one observation
    ]
    # compositions chosen per layer show as "L{i}/..." params (moa_search.search.space)
    per_layer = any(_LAYER_PARAM.match(name) for r in evaluated for name in r.params)
    rows = [row for row in (trial_row(r, per_layer) for r in evaluated) if row is not None]
    skipped = len(evaluated) - len(rows)
    if skipped:
        log.info("skipped %d trials without a win rate in their metrics", skipped)
    if len(rows) < MIN_TRIALS:
        raise AnalysisError(
            f"study {study.study_name!r} has {len(rows)} evaluated trial(s) with metrics; the "
            f"analysis needs at least {MIN_TRIALS}"
        )
    return rows, skipped


class Column(NamedTuple):
    """One design column: a model as a proposer in a layer (``layer`` ``None``: any layer), a
    model as the aggregator, or a layer count (``layer`` holds it; a control, not reported)."""

    kind: Literal["proposer", "aggregator", "layers"]
    model: str = ""
    layer: int | None = None


@dataclass(frozen=True)
class Design:
    """The regression's data: role columns ``x`` (n x k), win rates ``y``, diversities."""

    x: np.ndarray
    y: np.ndarray
    diversity: np.ndarray
    columns: tuple[Column, ...]
    models: tuple[str, ...]


def role_design(rows: Sequence[TrialRow], proposer_feature: ProposerFeature) -> Design:
    """The design matrix of ``rows`` (see the module's docstring)."""
    proposer_keys = sorted(
        {k for r in rows for k in r.samples},
        key=lambda k: (-1 if k[0] is None else k[0], k[1]),
    )
    aggregators = sorted({r.aggregator for r in rows if r.aggregator is not None})
    layer_counts = sorted({r.n_layers for r in rows if r.n_layers is not None})
    columns = [Column("proposer", m, layer) for layer, m in proposer_keys]
    columns += [Column("aggregator", m) for m in aggregators]
    if len(layer_counts) > 1:
        columns += [Column("layers", layer=n) for n in layer_counts]
    x = np.zeros((len(rows), len(columns)))
    for i, r in enumerate(rows):
        for j, col in enumerate(columns):
            if col.kind == "proposer":
                k = r.samples.get((col.layer, col.model), 0)
                x[i, j] = float(k) if proposer_feature == "samples" else float(k > 0)
            elif col.kind == "aggregator":
                x[i, j] = float(r.aggregator == col.model)
            else:
                x[i, j] = float(r.n_layers == col.layer)
    models = sorted({m for _, m in proposer_keys} | set(aggregators))
    return Design(
        x=x,
        y=np.array([r.win_rate for r in rows]),
        diversity=np.array([r.diversity for r in rows]),
        columns=tuple(columns),
        models=tuple(models),
    )
