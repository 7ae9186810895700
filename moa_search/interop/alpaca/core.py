"""AlpacaEval's result format: recorded outputs and judge annotations, replayed offline.

AlpacaEval (tatsu-lab/alpaca_eval) publishes, per model, ``results/<model>/model_outputs.json``
(one record per instruction: ``instruction``, ``output``, ``generator``, ``dataset``) and
``results/<model>/<annotator>/annotations.json`` (one record per instruction: ``instruction``,
``output_1``/``generator_1`` — the reference —, ``output_2``/``generator_2`` — the model —, and
``preference``, a float in [1, 2]: 1 + the judge's probability that ``output_2`` is better, or
``null`` when the judge failed). This module reads those files and puts them to work:

- :func:`leaderboard_metrics` computes exactly the leaderboard's columns (``win_rate``,
  ``standard_error``, ``n_wins``, ``n_wins_base``, ``n_draws``, ``n_total``,
  ``discrete_win_rate``), following ``alpaca_eval.metrics.winrate.get_winrate``;
- :func:`length_controlled_winrate` is AlpacaEval's length-controlled win rate (the
  ``length_controlled_v1`` GLM of ``alpaca_eval.metrics.glm_winrate``), from stored GLM weights
  (:func:`load_lc_weights`) or a fit (:func:`fit_lc_weights`), and per-instruction
  difficulties (:func:`estimate_instruction_difficulty` — see there for how close it gets);
- :class:`RecordedJudge` is a :class:`~moa_search.judges.Judge` answering from annotations;
- :class:`ReplayBackend` is a :class:`~moa_search.runtime.backends.Backend` answering from recorded
  outputs, so mixtures, evaluations and studies run with no model call at all
  (:func:`replay_pool`, :func:`replay_backends`);
- :func:`recorded_diversity` and :func:`recorded_pairwise_distances` measure how different
  recorded models' answers really are.

Every malformed file raises :class:`~moa_search.errors.ConfigError` naming the file, the field
and what was expected.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from pathlib import Path

import numpy as np

from moa_search.config import REPLAY_BASE_URL, ModelSpec, Pool
from moa_search.config.dataset import TaskItem
from moa_search.config.recorded import (
    REFERENCE_MODEL,
    Annotation,
    ModelOutput,
    load_annotations,
    load_model_outputs,
)
from moa_search.errors import ConfigError, NotRecordedError
from moa_search.judges.recorded import RecordedJudge
from moa_search.runtime.backends import Backend
from moa_search.runtime.backends.replay import ReplayBackend
from moa_search.runtime.embeddings import TextEmbedder, diversity

__all__ = [
    "DEFAULT_ANNOTATOR",
    "LC_WEIGHTS_FILE",
    "LEADERBOARD_COLUMNS",
    "REFERENCE_MODEL",
    "REPLAY_BASE_URL",
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

log = logging.getLogger(__name__)

#: The annotator of AlpacaEval 2.0's leaderboard (a GPT-4-turbo judge, weighted by logprobs).
DEFAULT_ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
#: The file of fitted length-control GLM weights, one row per model.
LC_WEIGHTS_FILE = "length_controlled_v1_weights_baseline_gpt4_1106_preview.csv"
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

# The GLM's features, as AlpacaEval names its weight columns (patsy terms of
# "np.tanh(std_delta_len) + instruction_difficulty + not_gamed_baseline.astype(float) - 1").
_W_LENGTH = "np.tanh(std_delta_len)"
_W_DIFFICULTY = "instruction_difficulty"
_W_NOT_GAMED = "not_gamed_baseline.astype(float)"
# Mean preferences are clipped to [eps, 1 - eps] before the logit.
_LOGIT_EPS = 1e-6


# ----------------------------------------------------------------------------- records


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
    found = {
        d.name: d / annotator / "annotations.json"
        for d in sorted(results.iterdir())
        if (d / annotator / "annotations.json").is_file()
    }
    if not found:
        raise ConfigError(
            str(path),
            "",
            f"AlpacaEval results with results/<model>/{annotator}/annotations.json files",
            "none",
        )
    return found


# ----------------------------------------------------------------------------- leaderboard


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


# ----------------------------------------------------------------------------- length control


@dataclass(frozen=True)
class GLMWeights:
    """One model's ``length_controlled_v1`` GLM weights (AlpacaEval's column names in
    brackets): ``length`` [np.tanh(std_delta_len)], ``difficulty`` [instruction_difficulty],
    ``not_gamed_baseline`` [not_gamed_baseline.astype(float)]."""

    length: float
    difficulty: float
    not_gamed_baseline: float

    def to_dict(self) -> dict[str, float]:
        return {
            _W_LENGTH: self.length,
            _W_DIFFICULTY: self.difficulty,
            _W_NOT_GAMED: self.not_gamed_baseline,
        }


def load_lc_weights(path: str | os.PathLike[str]) -> dict[str, GLMWeights]:
    """Read AlpacaEval's length-control weights CSV (first column the model, then the three
    weight columns by name). A model listed twice keeps its last row, as AlpacaEval does.

    Raises:
        ConfigError: unreadable, not UTF-8, a missing column or a non-numeric weight.
    """
    p = Path(path)
    source = str(p)
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            source, "", "an existing weights CSV, but there is no such file"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            source, "", "a UTF-8 CSV", f"a byte that is not UTF-8 at offset {exc.start}"
        ) from None
    except OSError as exc:
        raise ConfigError(source, "", "a readable weights CSV", exc.strerror) from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise ConfigError(source, "", "a CSV with a header row", "an empty file")
    header = [h.strip() for h in rows[0]]
    cols: dict[str, int] = {}
    for name in (_W_LENGTH, _W_DIFFICULTY, _W_NOT_GAMED):
        if name not in header:
            raise ConfigError(source, "header", f"a column named {name!r}", ", ".join(header))
        cols[name] = header.index(name)
    out: dict[str, GLMWeights] = {}
    for line, row in enumerate(rows[1:], 2):
        if not row or not row[0].strip():
            continue
        try:
            w = GLMWeights(
                length=float(row[cols[_W_LENGTH]]),
                difficulty=float(row[cols[_W_DIFFICULTY]]),
                not_gamed_baseline=float(row[cols[_W_NOT_GAMED]]),
            )
        except (ValueError, IndexError):
            raise ConfigError(source, f"line {line}", "three numeric weights", repr(row)) from None
        out[row[0].strip()] = w
    return out


def _logistic(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def _tanh_std_delta_len(annotations: Sequence[Annotation]) -> np.ndarray:
    """AlpacaEval's length feature: tanh((len(output_1) − len(output_2)) / its std), the std
    (ddof=1) over all of the model's annotations; lengths in characters."""
    delta = np.array([len(a.output_1) - len(a.output_2) for a in annotations], dtype=np.float64)
    std = delta.std(ddof=1) if delta.size > 1 else 0.0
    return np.tanh(delta / std) if std > 0 else np.zeros_like(delta)


def _difficulties(
    annotations: Sequence[Annotation], difficulty: Mapping[str, float] | Sequence[float]
) -> np.ndarray:
    if isinstance(difficulty, Mapping):
        try:
            return np.array([difficulty[a.instruction] for a in annotations], dtype=np.float64)
        except KeyError as exc:
            raise ValueError(
                f"no instruction difficulty for the instruction {str(exc)[:80]}"
            ) from None
    values = np.asarray(difficulty, dtype=np.float64)
    if values.size < len(annotations):
        raise ValueError(
            f"{values.size} instruction difficulties for {len(annotations)} annotations"
        )
    return values[: len(annotations)]


def length_controlled_winrate(
    annotations: Sequence[Annotation],
    weights: GLMWeights,
    difficulty: Mapping[str, float] | Sequence[float],
) -> float:
    """AlpacaEval's length-controlled win rate (``length_controlled_v1``), in percent.

    The GLM predicts each annotation's preference with the length difference set to zero and a
    non-gamed baseline: 100 · mean over the annotations (null preferences included, as in
    AlpacaEval) of logistic(w_not_gamed + w_difficulty · difficulty(instruction)). When the
    model is the baseline itself (``generator_2 == generator_1``) it is 50 by construction.

    Args:
        annotations: one model's annotations against the reference.
        weights: the model's GLM weights (stored: :func:`load_lc_weights`; or
            :func:`fit_lc_weights`).
        difficulty: per-instruction difficulty — keyed by instruction text, or a sequence by
            annotation position (AlpacaEval's ``instruction_difficulty.csv`` is by position in
            the evaluation set, and AlpacaEval looks it up by the annotation's position).

    Raises:
        ValueError: no annotations, or an instruction without a difficulty.
    """
    if not annotations:
        raise ValueError("no annotations: there is no length-controlled win rate")
    if all(a.generator_1 == a.generator_2 for a in annotations):
        return 50.0
    gamma = _difficulties(annotations, difficulty)
    p = _logistic(weights.not_gamed_baseline + weights.difficulty * gamma)
    return float(p.mean() * 100)


def _valid_rows(annotations: Sequence[Annotation]) -> tuple[np.ndarray, np.ndarray]:
    """(row positions with a usable preference, their P(output_2 better))."""
    rows = [(i, a.p_output_2) for i, a in enumerate(annotations) if a.p_output_2 is not None]
    idx = np.array([i for i, _ in rows], dtype=np.int64)
    y = np.array([p for _, p in rows], dtype=np.float64)
    return idx, y


def estimate_instruction_difficulty(
    annotation_sets: Mapping[str, Sequence[Annotation]],
    weights: Mapping[str, GLMWeights],
) -> dict[str, float]:
    """Per-instruction difficulty for :func:`length_controlled_winrate`, from annotations alone.

    AlpacaEval ships its ``instruction_difficulty`` as a fitted per-instruction value
    downloaded from the Hugging Face hub (``tatsu-lab/alpaca_eval``, ``instruction_difficulty
    .csv``) — not available offline. Its analysis code defines it, when not given, as the logit
    of the mean preference per instruction across the leaderboard's models. This estimate:

    1. takes that definition over the models at hand: z_i = logit(mean over models of
       P(output_2 better) on instruction i), standardized;
    2. rescales it, gamma_i = a + b · z_i, so that the stored GLM fits hold: each model's
       weights came from a maximum-likelihood fit whose score equation for the
       ``not_gamed_baseline`` term (present only on the model's own rows) is
       mean_i logistic(w_ng + w_d · gamma_i + w_len · tanh(std_delta_len_i)) = mean preference;
       (a, b) solve those equations in least squares over the models with ``weights``.

    Step 2 corrects for the models at hand being a small, unrepresentative set (nine models
    weaker on average than the leaderboard's). It uses only annotations and stored weights —
    never a published length-controlled win rate. On the nine annotated models shipped with
    moa-search's test data the resulting length-controlled win rates are within 0.8 points of
    the leaderboard's (mean absolute error about 0.4).

    Raises:
        ValueError: fewer than two of the annotated models have weights (b and a need two).
    """
    from scipy.optimize import least_squares

    fitted = [m for m in annotation_sets if m in weights and annotation_sets[m]]
    if len(fitted) < 2:
        raise ValueError(
            "estimating instruction difficulty needs the annotations of at least two models "
            f"with stored GLM weights; got {len(fitted)}"
        )
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for anns in annotation_sets.values():
        for a in anns:
            p = a.p_output_2
            if p is not None:
                sums[a.instruction] = sums.get(a.instruction, 0.0) + p
                counts[a.instruction] = counts.get(a.instruction, 0) + 1
    instructions = list(sums)
    position = {s: i for i, s in enumerate(instructions)}
    mean = np.clip(
        np.array([sums[s] / counts[s] for s in instructions]), _LOGIT_EPS, 1 - _LOGIT_EPS
    )
    logit = np.log(mean / (1 - mean))
    z = (logit - logit.mean()) / (logit.std() or 1.0)

    cases = []
    for m in fitted:
        anns = annotation_sets[m]
        rows, y = _valid_rows(anns)
        if rows.size == 0:
            continue
        x_len = _tanh_std_delta_len(anns)[rows]
        where = np.array([position[anns[i].instruction] for i in rows], dtype=np.int64)
        cases.append((weights[m], x_len, where, float(y.mean())))

    def residuals(ab: np.ndarray) -> np.ndarray:
        gamma = ab[0] + ab[1] * z
        return np.array(
            [
                _logistic(w.not_gamed_baseline + w.difficulty * gamma[where] + w.length * x).mean()
                - target
                for w, x, where, target in cases
            ]
        )

    fit = least_squares(residuals, x0=np.array([0.0, 1.0]))
    a, b = (float(v) for v in fit.x)
    log.info(
        "instruction difficulty: gamma = %.4f + %.4f z over %d instructions; score-equation "
        "residuals (percent) %s",
        a,
        b,
        len(instructions),
        np.round(fit.fun * 100, 3).tolist(),
    )
    return {s: a + b * float(z[i]) for s, i in position.items()}


def _soft_logistic_fit(
    x: np.ndarray, y: np.ndarray, offset: np.ndarray, *, l2: float = 1e-6, iters: int = 100
) -> np.ndarray:
    """Weights b maximising sum_i y_i log q_i + (1 − y_i) log(1 − q_i), q = logistic(x b +
    offset), by Newton's method; ``l2`` only keeps the Hessian invertible."""
    b = np.zeros(x.shape[1])
    for _ in range(iters):
        q = _logistic(x @ b + offset)
        grad = x.T @ (y - q) - l2 * b
        hess = (x * (q * (1 - q))[:, None]).T @ x + l2 * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        b = b + step
        if float(np.max(np.abs(step))) < 1e-10:
            break
    return b


def fit_lc_weights(
    annotations: Sequence[Annotation],
    difficulty: Mapping[str, float] | Sequence[float],
    *,
    length_weight: float | None = None,
) -> GLMWeights:
    """Fit a model's ``length_controlled_v1`` GLM, for a model without stored weights.

    As ``alpaca_eval.metrics.glm_winrate.fit_LogisticRegressionCV`` with probabilities as
    targets: logistic regression of P(output_2 better) on tanh(std_delta_len), instruction
    difficulty and 1 (not a gamed baseline), no intercept, soft labels (the log loss of the
    probabilities). AlpacaEval's L1 penalty (C chosen by 5-fold cross-validation, about no
    penalty at these sample sizes) is left out.

    What cannot be reproduced offline is AlpacaEval's regularisation towards its gamed
    baselines (gpt4_1106_preview prompted to be verbose or concise, ``df_gamed.csv`` on the
    Hugging Face hub): those rows are what pin the length weight. Without them the length
    weight comes out much weaker and the length-controlled win rate lower — by 1.8 to 8.1
    points on the nine annotated models of the test data. Passing ``length_weight`` (e.g. the
    median stored length weight, as :func:`leaderboard` does) fixes that weight and fits the
    other two; the error is then 1.2 to 5.0 points. Prefer stored weights whenever they exist.

    Raises:
        ValueError: no annotation with a usable preference.
    """
    rows, y = _valid_rows(annotations)
    if rows.size == 0:
        raise ValueError("no annotation holds a preference in [1, 2]: nothing to fit")
    x_len = _tanh_std_delta_len(annotations)[rows]
    gamma = _difficulties(annotations, difficulty)[rows]
    ones = np.ones(rows.size)
    if length_weight is None:
        b = _soft_logistic_fit(np.column_stack([x_len, gamma, ones]), y, np.zeros(rows.size))
        return GLMWeights(
            length=float(b[0]), difficulty=float(b[1]), not_gamed_baseline=float(b[2])
        )
    b = _soft_logistic_fit(np.column_stack([gamma, ones]), y, length_weight * x_len)
    return GLMWeights(
        length=float(length_weight), difficulty=float(b[0]), not_gamed_baseline=float(b[1])
    )


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
        metrics = leaderboard_metrics(anns, model=model)
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
            lc = length_controlled_winrate(anns, w, difficulty)
        row["length_controlled_winrate"] = lc
        rows[model] = row
    return rows


# ----------------------------------------------------------------------------- judge


# ----------------------------------------------------------------------------- replay


def replay_pool(
    models: Sequence[str] | Mapping[str, str],
    *,
    prices: Mapping[str, tuple[float, float]] | None = None,
    max_concurrency: int = 64,
) -> Pool:
    """A pool of replayed models: alias -> recorded model (folder) name, at
    :data:`REPLAY_BASE_URL`, with ``prices`` (alias -> (input, output) dollars per million
    tokens; 0 by default) applied to estimated token counts.

    Use it with :func:`replay_backends`; without those backends an executor would try (and
    fail) to reach the ``.invalid`` URL.
    """
    mapping = dict(models) if isinstance(models, Mapping) else {m: m for m in models}
    prices = prices or {}
    return Pool(
        models=tuple(
            ModelSpec(
                alias=alias,
                base_url=REPLAY_BASE_URL,
                model=model,
                input_price_per_mtok=prices.get(alias, (0.0, 0.0))[0],
                output_price_per_mtok=prices.get(alias, (0.0, 0.0))[1],
                max_concurrency=max_concurrency,
                max_retries=0,
            )
            for alias, model in mapping.items()
        )
    )


def replay_backends(
    results_dir: str | os.PathLike[str],
    aliases: Sequence[str] | Mapping[str, str],
    *,
    pool: Pool | None = None,
    plain_prompt_only: bool = False,
) -> dict[str, Backend]:
    """alias -> :class:`ReplayBackend` over ``results_dir/<model>/model_outputs.json``.

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
        outputs = load_model_outputs(results / model / "model_outputs.json")
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
    outputs = load_model_outputs(_results_dir(results_dir) / reference_model / "model_outputs.json")
    chosen = outputs if limit is None else outputs[:limit]
    return tuple(TaskItem(str(i), o.instruction, o.output) for i, o in enumerate(chosen))


# ----------------------------------------------------------------------------- diversity


def _aligned_outputs(
    results_dir: str | os.PathLike[str], models: Sequence[str], limit: int | None
) -> list[list[str]]:
    """Per instruction recorded by every model (the first model's order), each model's
    output; the first ``limit`` such instructions."""
    if len(models) < 2:
        raise ValueError(f"diversity needs at least two models, got {list(models)}")
    results = _results_dir(results_dir)
    recorded = [load_model_outputs(results / m / "model_outputs.json") for m in models]
    tables = [{o.instruction: o.output for o in outputs} for outputs in recorded]
    rows: list[list[str]] = []
    for o in recorded[0]:
        if all(o.instruction in t for t in tables):
            rows.append([t[o.instruction] for t in tables])
            if limit is not None and len(rows) >= limit:
                break
    if not rows:
        raise ValueError(f"no instruction was recorded by all of {list(models)}")
    return rows


def recorded_diversity(
    results_dir: str | os.PathLike[str],
    models: Sequence[str],
    embedder: TextEmbedder,
    *,
    limit: int | None = None,
) -> float:
    """How different ``models``' recorded answers are: per instruction the mean pairwise
    cosine distance of their embeddings, averaged over the instructions every model answered
    (the first ``limit`` of them, in the first model's order) — the study's diversity measure
    (:func:`moa_search.runtime.embeddings.diversity`) applied to one layer of these proposers.

    Raises:
        ConfigError: a model's outputs are missing or malformed.
        ValueError: fewer than two models, or no instruction they all answered.
    """
    return diversity(_aligned_outputs(results_dir, models, limit), embedder)


def recorded_pairwise_distances(
    results_dir: str | os.PathLike[str],
    models: Sequence[str],
    embedder: TextEmbedder,
    *,
    limit: int | None = None,
) -> dict[tuple[str, str], float]:
    """(model a, model b) -> mean cosine distance between their answers to the same
    instruction, over the same instructions as :func:`recorded_diversity` (pairs in
    ``models`` order, a before b). Their mean is :func:`recorded_diversity`.
    """
    rows = _aligned_outputs(results_dir, models, limit)
    k = len(models)
    vectors = np.asarray(embedder.embed([text for row in rows for text in row]), dtype=np.float64)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    v = vectors.reshape(len(rows), k, -1)
    out: dict[tuple[str, str], float] = {}
    for i, j in combinations(range(k), 2):
        cos = np.clip(np.einsum("nd,nd->n", v[:, i], v[:, j]), -1.0, 1.0)
        out[(models[i], models[j])] = float(np.mean(1.0 - cos))
    return out
