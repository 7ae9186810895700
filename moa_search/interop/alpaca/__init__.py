"""AlpacaEval's result format: recorded outputs and judge annotations, replayed offline.

AlpacaEval (tatsu-lab/alpaca_eval) publishes, per model, ``results/<model>/model_outputs.json``
and ``results/<model>/<annotator>/annotations.json`` (:mod:`.io` describes them; their readers
live in :mod:`moa_search.config.recorded`). This package puts them to work:

- :mod:`.leaderboard`: :func:`leaderboard_metrics` computes exactly the leaderboard's columns,
  :func:`leaderboard` every annotated model's row, length control included;
- :mod:`.lc`: AlpacaEval's length-controlled win rate (the ``length_controlled_v1`` GLM), from
  stored GLM weights (:func:`load_lc_weights`) or a fit (:func:`fit_lc_weights`), and
  per-instruction difficulties (:func:`estimate_instruction_difficulty`);
- :mod:`.replay`: recorded models as a pool (:func:`replay_pool`, :func:`replay_backends`,
  :func:`alpaca_items`), so mixtures, evaluations and studies run with no model call at all;
  :class:`RecordedJudge` judges from the annotations;
- :mod:`.diversity`: :func:`recorded_diversity` and :func:`recorded_pairwise_distances`
  measure how different recorded models' answers really are.

Every malformed file raises :class:`~moa_search.errors.ConfigError` naming the file, the field
and what was expected.
"""

from __future__ import annotations

from moa_search.errors import NotRecordedError
from moa_search.interop.alpaca.board import (
    LEADERBOARD_COLUMNS,
    leaderboard,
    leaderboard_metrics,
)
from moa_search.interop.alpaca.diversity import (
    recorded_diversity,
    recorded_pairwise_distances,
)
from moa_search.interop.alpaca.io import (
    DEFAULT_ANNOTATOR,
    REFERENCE_MODEL,
    Annotation,
    ModelOutput,
    annotated_models,
    load_annotations,
    load_model_outputs,
)
from moa_search.interop.alpaca.lc import (
    LC_WEIGHTS_FILE,
    GLMWeights,
    estimate_instruction_difficulty,
    fit_lc_weights,
    length_controlled_winrate,
    load_lc_weights,
)
from moa_search.interop.alpaca.replay import (
    ReplayBackend,
    alpaca_items,
    replay_backends,
    replay_pool,
)
from moa_search.judges.recorded import RecordedJudge

__all__ = [
    "DEFAULT_ANNOTATOR",
    "LC_WEIGHTS_FILE",
    "LEADERBOARD_COLUMNS",
    "REFERENCE_MODEL",
    "Annotation",
    "GLMWeights",
    "ModelOutput",
    "NotRecordedError",
    "RecordedJudge",
    "ReplayBackend",
    "alpaca_items",
    "annotated_models",
    "estimate_instruction_difficulty",
    "fit_lc_weights",
    "leaderboard",
    "leaderboard_metrics",
    "length_controlled_winrate",
    "load_annotations",
    "load_lc_weights",
    "load_model_outputs",
    "recorded_diversity",
    "recorded_pairwise_distances",
    "replay_backends",
    "replay_pool",
]
