"""AlpacaEval's leaderboard, recomputed from the recorded annotations.

:func:`leaderboard_metrics` computes exactly the leaderboard's columns (``win_rate``,
``standard_error``, ``n_wins``, ``n_wins_base``, ``n_draws``, ``n_total``,
``discrete_win_rate``), following ``alpaca_eval.metrics.winrate.get_winrate``;
:func:`leaderboard` adds the length-controlled win rate (:mod:`.lc`) for every annotated model
of a results folder.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moa_search.config.recorded import REFERENCE_MODEL, Annotation, load_annotations
from moa_search.errors import ConfigError
from moa_search.interop.alpaca.io import DEFAULT_ANNOTATOR, annotated_models
from moa_search.interop.alpaca.lc import (
    LC_WEIGHTS_FILE,
    estimate_instruction_difficulty,
    fit_lc_weights,
    length_controlled_winrate,
    load_lc_weights,
)

__all__ = [
    "DEFAULT_ANNOTATOR",
    "LEADERBOARD_COLUMNS",
    "leaderboard",
    "leaderboard_metrics",
]

log = logging.getLogger(__name__)

#: The leaderboard columns :func:`leaderboard_metrics` reproduces, in the CSV's order.
LEADERBOARD_COLUMNS = (
    "win_rate",
    "standard_error",
    "n_wins",
    "n_wins_base",
    "n_draws",
    "n_total",
    "discrete_win_rate",
)


def _preferences(annotations: Iterable[Annotation | float | None]) -> np.ndarray:
    values = [a.preference if isinstance(a, Annotation) else a for a in annotations]
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _head2head(p: np.ndarray) -> dict[str, Any]:
    """``BaseScoringRule.describe_head2head`` after a rule's preprocessing (NaN = null)."""
    n_draws = int(np.sum((p == 1.5) | (p == 0.0)))
    p = np.where(p == 0.0, 1.5, p)
    valid = (p >= 1.0) & (p <= 2.0)  # NaN compares False: nulls are dropped
    x = p[valid] - 1.0
    n = int(x.size)
    if n == 0:
        raise ValueError("no annotation holds a preference in [1, 2]: there is no win rate")
    sem = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return {
        "win_rate": float(x.mean() * 100),
        "standard_error": sem * 100,
        "n_wins": int(np.sum(x > 0.5)),
        "n_wins_base": int(np.sum(x < 0.5)),
        "n_draws": n_draws,
        "n_total": n,
    }


def leaderboard_metrics(
    annotations: Sequence[Annotation] | Sequence[float | None], *, model: str | None = None
) -> dict[str, Any]:
    """The AlpacaEval leaderboard's columns for one model's annotations.

    As ``alpaca_eval.metrics.winrate.get_winrate`` (AbsoluteScoringRule and
    ZeroOneScoringRule of ``alpaca_eval.metrics.helpers``):

    - a legacy preference 0 is a draw (1.5); null preferences and values outside [1, 2] are
      dropped, so ``n_total`` counts the judged annotations;
    - ``win_rate`` = 100 · mean(preference − 1); ``standard_error`` = 100 · its standard error
      (sample standard deviation, ddof=1, over √n; NaN for one annotation);
    - ``n_wins`` / ``n_wins_base``: preference above / below 1.5; ``n_draws``: exactly 1.5
      (or 0);
    - ``discrete_win_rate``: each preference rounded (half to even) to a win or a loss, exactly
      1.5 staying a draw worth half: 100 · (wins + draws / 2) / n.

    ``model`` is the name to report (default: the annotations' ``generator_2``).

    Raises:
        ValueError: no annotation holds a usable preference.
    """
    p = _preferences(annotations)
    out = _head2head(p)
    # ZeroOneScoringRule: 1.5 -> 0 (kept as a draw), then rounded to 1 or 2
    discrete = np.round(np.where(p == 1.5, 0.0, p))
    out["discrete_win_rate"] = _head2head(discrete)["win_rate"]
    if model is None:
        names = {a.generator_2 for a in annotations if isinstance(a, Annotation)}
        model = names.pop() if len(names) == 1 else None
    return {"model": model, **out}


def leaderboard(
    path: str | os.PathLike[str],
    *,
    annotator: str = DEFAULT_ANNOTATOR,
    weights_path: str | os.PathLike[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The leaderboard of every model annotated under ``path``, keyed by model folder name.

    Each row holds :data:`LEADERBOARD_COLUMNS` and ``length_controlled_winrate``. The GLM
    weights come from ``weights_path`` (default: :data:`LC_WEIGHTS_FILE` in ``path``, when
    present); a model without stored weights gets :func:`fit_lc_weights` with the length weight
    fixed at the stored weights' median (logged; a few points less exact). Instruction
    difficulty is :func:`estimate_instruction_difficulty` over all the annotated models; with
    fewer than two weighted models there is no length-controlled win rate (``None``).

    Raises:
        ConfigError: no annotations under ``path`` or a malformed file.
    """
    files = annotated_models(path, annotator)
    sets = {m: load_annotations(f) for m, f in files.items()}
    if weights_path is None:
        default = Path(path) / LC_WEIGHTS_FILE
        weights = load_lc_weights(default) if default.is_file() else {}
    else:
        weights = load_lc_weights(weights_path)
    try:
        difficulty: dict[str, float] | None = estimate_instruction_difficulty(sets, weights)
    except ValueError as exc:
        log.warning("no length-controlled win rates: %s", exc)
        difficulty = None
    stored = [w.length for m, w in weights.items() if m != REFERENCE_MODEL]
    prior_length = float(np.median(stored)) if stored else None
    rows: dict[str, dict[str, Any]] = {}
    for model, anns in sets.items():
        try:
            metrics = leaderboard_metrics(anns, model=model)
        except ValueError:  # an empty list, or every preference null: bad input, said so
            raise ConfigError(
                str(files[model]),
                "preference",
                "annotations of which at least one holds a preference in [1, 2] (null is unjudged)",
                "an empty list" if not anns else f"none of {len(anns)}",
            ) from None
        row: dict[str, Any] = {c: metrics[c] for c in LEADERBOARD_COLUMNS}
        lc: float | None = None
        if difficulty is not None:
            w = weights.get(model)
            if w is None:
                log.warning(
                    "%s has no stored length-control weights; fitting them (expect a few "
                    "points of error, see fit_lc_weights)",
                    model,
                )
                w = fit_lc_weights(anns, difficulty, length_weight=prior_length)
            try:
                lc = length_controlled_winrate(anns, w, difficulty)
            except ValueError as exc:  # an instruction no model's annotations judge
                raise ConfigError(
                    str(files[model]),
                    "instruction",
                    "instructions that some model's annotations judge (length control needs "
                    "each one's difficulty)",
                    str(exc),
                ) from None
        row["length_controlled_winrate"] = lc
        rows[model] = row
    return rows
