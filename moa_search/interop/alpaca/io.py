"""AlpacaEval's results folder: which models it holds, and their recorded files.

AlpacaEval (tatsu-lab/alpaca_eval) publishes, per model, ``results/<model>/model_outputs.json``
(one record per instruction: ``instruction``, ``output``, ``generator``, ``dataset``) and
``results/<model>/<annotator>/annotations.json`` (one record per instruction: ``instruction``,
``output_1``/``generator_1`` — the reference —, ``output_2``/``generator_2`` — the model —, and
``preference``, a float in [1, 2]: 1 + the judge's probability that ``output_2`` is better, or
``null`` when the judge failed).

The readers of those files live in :mod:`moa_search.config.recorded` (the replay backend and
the recorded judge use them too) and are re-exported here. Every malformed file raises
:class:`~moa_search.errors.ConfigError` naming the file, the field and what was expected.
"""

from __future__ import annotations

import os
from pathlib import Path

from moa_search.config.recorded import (
    REFERENCE_MODEL,
    Annotation,
    ModelOutput,
    load_annotations,
    load_model_outputs,
)
from moa_search.errors import ConfigError

__all__ = [
    "DEFAULT_ANNOTATOR",
    "REFERENCE_MODEL",
    "Annotation",
    "ModelOutput",
    "annotated_models",
    "load_annotations",
    "load_model_outputs",
]

#: The annotator of AlpacaEval 2.0's leaderboard (a GPT-4-turbo judge, weighted by logprobs).
DEFAULT_ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
# A model's recorded outputs, in its folder of the results.
_OUTPUTS_FILE = "model_outputs.json"


def _results_dir(path: str | os.PathLike[str]) -> Path:
    """``path/results`` when it exists (an AlpacaEval checkout or data folder), else ``path``."""
    p = Path(path)
    return p / "results" if (p / "results").is_dir() else p


def annotated_models(
    path: str | os.PathLike[str], annotator: str = DEFAULT_ANNOTATOR
) -> dict[str, Path]:
    """Model name (its folder) -> ``annotations.json``, for every model annotated by
    ``annotator`` under ``path`` (a folder holding ``results/``, or ``results/`` itself).

    Raises:
        ConfigError: ``path`` is not a folder, or holds no such annotations.
    """
    results = _results_dir(path)
    if not results.is_dir():
        raise ConfigError(
            str(path), "", "a folder of AlpacaEval results (results/<model>/...)", "no such folder"
        )
    try:
        found = {
            d.name: d / annotator / "annotations.json"
            for d in sorted(results.iterdir())
            if (d / annotator / "annotations.json").is_file()
        }
    except OSError as exc:
        raise ConfigError(
            str(path), "", "a readable folder of AlpacaEval results", exc.strerror
        ) from None
    if not found:
        raise ConfigError(
            str(path),
            "",
            f"AlpacaEval results with results/<model>/{annotator}/annotations.json files",
            "none",
        )
    return found
