"""Role analysis of a finished study: which models help, in which role, and does diversity?

Works on any :class:`optuna.Study` whose trials follow :mod:`moa_search.search.session`'s conventions:
the user attribute ``composition`` (samples per model in each layer, and the aggregator; per
layer when the study's params are ``L{i}/...``) or, failing that, params ``n_layers``,
``samples/<alias>`` or ``L{i}/samples/<alias>`` and ``aggregator``; user attribute ``metrics``
(:meth:`moa_search.search.objective.Evaluation.to_dict`, whose ``win_rate.mean`` and ``diversity`` are
used) and ``mixture`` (its description, which names the aggregator when the study fixed it).
Complete and pruned trials with metrics count (a pruned trial with the win rate of the
prompts it was evaluated on); a repeated mixture counts once.

- :func:`role_table` — per pool model, its effect on win rate as a proposer (per layer when the
  study chose compositions per layer, else "any layer") and as the aggregator: the
  coefficients of a ridge regression (scikit-learn :class:`~sklearn.linear_model.Ridge`) of
  win rate on role indicators, with seeded bootstrap intervals, next to the raw mean win rates
  of trials with and without the role.
- :func:`quality_vs_diversity` — whether proposer diversity explains win rate beyond which
  models were used: cross-validated and adjusted R² with and without diversity, diversity's
  coefficient with a bootstrap interval, and its partial correlation with win rate.
- :func:`analyze` bundles both in an :class:`AnalysisResult`; :func:`format_analysis` renders
  it as text.

The design: one 0/1 column per (layer, proposer) — "the model is in the layer" (or its sample
count, with ``proposer_feature="samples"``) —, one 0/1 column per aggregator, and, when the
study varied it, one per layer count (a control, not reported). Win rates are in [0, 1], so
an effect of 0.1 is ten points of win rate.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from moa_search.errors import MoaSearchError

__all__ = [
    "AnalysisError",
    "AnalysisResult",
    "DiversityEffect",
    "RoleEffect",
    "analyze",
    "format_analysis",
    "quality_vs_diversity",
    "role_table",
]

log = logging.getLogger(__name__)

ProposerFeature = Literal["presence", "samples"]

#: Fewer evaluated (complete or pruned) trials than this cannot be analysed.
MIN_TRIALS = 4
#: The partial correlation needs at least this many residual degrees of freedom (with fewer,
#: the residuals of a handful of trials correlate perfectly by construction).
_MIN_RESIDUAL_DOF = 3
#: Ridge penalties tried when none is given (chosen by leave-one-out on the full data).
_ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 13))

_PER_LAYER = re.compile(r"^L(\d+)/samples/(.+)$")
_SHARED = re.compile(r"^samples/(.+)$")
_LAYER_PARAM = re.compile(r"^L\d+/")


class AnalysisError(MoaSearchError):
    """The study cannot be analysed (too few evaluated trials with metrics)."""


# ----------------------------------------------------------------------------- results


def _opt(value: float) -> float | None:
    """A finite float, or ``None`` for NaN and infinities."""
    return float(value) if math.isfinite(value) else None


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become ``None``; tuples lists; recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


@dataclass(frozen=True)
class RoleEffect:
    """One model in one role.

    ``layer`` is the proposer layer (0 = the first) or ``None`` — for the aggregator, and for
    proposers of a study with one composition for every layer ("any layer"). ``effect`` is the
    ridge estimate of the change in win rate (in [0, 1] units) the role brings, with its
    bootstrap interval: for a proposer, being in the layer (or one more sample, with
    ``proposer_feature="samples"``) against not; for the aggregator, aggregating against the
    other aggregators (weighted by how often each was tried). ``None`` when the role never
    varied (always or never taken). ``mean_with``/``mean_without`` are raw mean win rates.
    """

    model: str
    role: Literal["proposer", "aggregator"]
    layer: int | None
    effect: float | None
    ci_low: float | None
    ci_high: float | None
    n_with: int
    n_without: int
    mean_with: float | None
    mean_without: float | None

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return (
            self.ci_low is not None
            and self.ci_high is not None
            and (self.ci_low > 0 or self.ci_high < 0)
        )

    def to_dict(self) -> dict[str, Any]:
        return _clean({**asdict(self), "significant": self.significant})


@dataclass(frozen=True)
class DiversityEffect:
    """Does diversity explain win rate beyond which models played which role?

    - ``r2_roles`` / ``r2_roles_diversity``: cross-validated R² (K-fold, pooled out-of-fold
      predictions) of win rate on the role design without / with diversity;
      ``adj_r2_*`` the in-sample adjusted R² (nominal parameter counts).
    - ``coefficient``: diversity's ridge coefficient in the model with roles — win rate per
      unit of diversity (mean pairwise cosine distance); ``coefficient_per_sd`` per standard
      deviation of diversity across trials; ``ci_low``/``ci_high`` the bootstrap interval of
      ``coefficient``.
    - ``partial_r``: the correlation of win rate and diversity after both are regressed
      (least squares) on the role design, with its t-test ``p_value`` and a bootstrap interval;
      ``None`` with fewer than three residual degrees of freedom (too few distinct trials).
    - ``significant``: the coefficient's interval excludes 0 *and* the partial correlation's
      p-value is below 1 − confidence (a bootstrap interval alone is too narrow on few trials).

    With ``diversity_varies`` false (e.g. every trial used one proposer) every estimate is
    ``None``.
    """

    n: int
    diversity_varies: bool
    r2_roles: float | None = None
    r2_roles_diversity: float | None = None
    adj_r2_roles: float | None = None
    adj_r2_roles_diversity: float | None = None
    coefficient: float | None = None
    coefficient_per_sd: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    partial_r: float | None = None
    partial_r_ci_low: float | None = None
    partial_r_ci_high: float | None = None
    p_value: float | None = None
    significant: bool = False

    def to_dict(self) -> dict[str, Any]:
        return _clean(asdict(self))


@dataclass(frozen=True)
class AnalysisResult:
    """Everything :func:`analyze` found (win rates in [0, 1])."""

    n_trials: int
    n_skipped: int
    roles: tuple[RoleEffect, ...]
    diversity: DiversityEffect
    alpha: float
    n_boot: int
    confidence: float
    seed: int
    proposer_feature: str = "presence"
    models: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (NaN as ``None``)."""
        return _clean(
            {
                "n_trials": self.n_trials,
                "n_skipped": self.n_skipped,
                "models": list(self.models),
                "alpha": self.alpha,
                "n_boot": self.n_boot,
                "confidence": self.confidence,
                "seed": self.seed,
                "proposer_feature": self.proposer_feature,
                "roles": [r.to_dict() for r in self.roles],
                "quality_vs_diversity": self.diversity.to_dict(),
            }
        )


# ----------------------------------------------------------------------------- trials


@dataclass(frozen=True)
class _TrialRow:
    number: int
    win_rate: float
    diversity: float
    n_layers: int | None
    samples: Mapping[tuple[int | None, str], int]
    aggregator: str | None


def _aggregator_from(trial: FrozenTrial) -> str | None:
    agg = trial.params.get("aggregator")
    if agg is not None:
        return str(agg)
    description = trial.user_attrs.get("mixture")
    if not isinstance(description, str) or not description.strip():
        return None
    text = description.strip()
    if text.endswith(" alone"):
        return text[: -len(" alone")].strip() or None
    if "->" in text:
        return text.rsplit("->", 1)[1].strip() or None
    return None


def _row(trial: FrozenTrial, per_layer: bool = False) -> _TrialRow | None:
    metrics = trial.user_attrs.get("metrics")
    if not isinstance(metrics, Mapping):
        return None
    wr = metrics.get("win_rate")
    mean = wr.get("mean") if isinstance(wr, Mapping) else wr
    if not isinstance(mean, int | float) or not math.isfinite(float(mean)):
        return None
    div = metrics.get("diversity", 0.0)
    div = float(div) if isinstance(div, int | float) and math.isfinite(float(div)) else 0.0
    samples: dict[tuple[int | None, str], int] = {}
    composition = trial.user_attrs.get("composition")
    if isinstance(composition, Mapping) and isinstance(composition.get("layers"), list):
        # the study's own record of the roles (see moa_search.search.session.composition)
        layers = composition["layers"]
        for i, layer in enumerate(layers):
            for model, count in dict(layer).items():
                key = (i if per_layer else None, str(model))
                samples[key] = max(samples.get(key, 0), int(count))
        agg = composition.get("aggregator")
        return _TrialRow(
            number=trial.number,
            win_rate=float(mean),
            diversity=div,
            n_layers=len(layers),
            samples=samples,
            aggregator=str(agg) if agg is not None else _aggregator_from(trial),
        )
    for name, value in trial.params.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue  # not a sample count (e.g. another study's categorical param)
        per_layer = _PER_LAYER.match(name)
        shared = _SHARED.match(name)
        if per_layer:
            samples[(int(per_layer.group(1)), per_layer.group(2))] = int(value)
        elif shared:
            samples[(None, shared.group(1))] = int(value)
    raw_layers = trial.params.get("n_layers")
    n_layers = int(raw_layers) if isinstance(raw_layers, int | float) else None
    if n_layers is not None:
        # a per-layer param beyond the trial's layers (not suggested in practice) is ignored
        samples = {k: v for k, v in samples.items() if k[0] is None or k[0] < n_layers}
        if n_layers == 0:
            samples = {}
    return _TrialRow(
        number=trial.number,
        win_rate=float(mean),
        diversity=div,
        n_layers=n_layers,
        samples=samples,
        aggregator=_aggregator_from(trial),
    )


def _rows(study: optuna.Study) -> tuple[list[_TrialRow], int]:
    complete = [
        t
        # pruned trials count too, with the win rate of the prompts they were evaluated on:
        # dropping them would leave out exactly the mixtures that did badly
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if "duplicate_of" not in t.user_attrs  # a repeated mixture is one observation
    ]
    # compositions chosen per layer show as "L{i}/..." params (moa_search.search.space)
    per_layer = any(_LAYER_PARAM.match(name) for t in complete for name in t.params)
    rows = [r for r in (_row(t, per_layer) for t in complete) if r is not None]
    skipped = len(complete) - len(rows)
    if skipped:
        log.info("skipped %d trials without a win rate in their metrics", skipped)
    if len(rows) < MIN_TRIALS:
        raise AnalysisError(
            f"study {study.study_name!r} has {len(rows)} evaluated trial(s) with metrics; the "
            f"analysis needs at least {MIN_TRIALS}"
        )
    return rows, skipped


# ----------------------------------------------------------------------------- design


@dataclass(frozen=True)
class _Design:
    x: np.ndarray  # n x k
    y: np.ndarray
    diversity: np.ndarray
    # ("proposer", layer, model) | ("aggregator", model) | ("layers", n_layers)
    columns: tuple[tuple[Any, ...], ...]
    models: tuple[str, ...]


def _design(rows: Sequence[_TrialRow], proposer_feature: ProposerFeature) -> _Design:
    proposer_keys = sorted(
        {k for r in rows for k in r.samples},
        key=lambda k: (-1 if k[0] is None else k[0], k[1]),
    )
    aggregators = sorted({r.aggregator for r in rows if r.aggregator is not None})
    layer_counts = sorted({r.n_layers for r in rows if r.n_layers is not None})
    columns: list[tuple[Any, ...]] = [("proposer", layer, m) for layer, m in proposer_keys]
    columns += [("aggregator", m) for m in aggregators]
    if len(layer_counts) > 1:
        columns += [("layers", n) for n in layer_counts]
    x = np.zeros((len(rows), len(columns)))
    for i, r in enumerate(rows):
        for j, col in enumerate(columns):
            if col[0] == "proposer":
                k = r.samples.get((col[1], col[2]), 0)
                x[i, j] = float(k) if proposer_feature == "samples" else float(k > 0)
            elif col[0] == "aggregator":
                x[i, j] = float(r.aggregator == col[1])
            else:
                x[i, j] = float(r.n_layers == col[1])
    models = sorted({m for _, m in proposer_keys} | set(aggregators))
    return _Design(
        x=x,
        y=np.array([r.win_rate for r in rows]),
        diversity=np.array([r.diversity for r in rows]),
        columns=tuple(columns),
        models=tuple(models),
    )


def _ridge_coef(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """scikit-learn Ridge (intercept unpenalised) coefficients; constant columns get 0."""
    from sklearn.linear_model import Ridge

    if x.shape[1] == 0:
        return np.zeros(0)
    return np.asarray(Ridge(alpha=alpha, solver="cholesky").fit(x, y).coef_, dtype=np.float64)


def _choose_alpha(x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.linear_model import RidgeCV

    if x.shape[1] == 0 or np.allclose(y, y[0]):
        return 1.0
    return float(RidgeCV(alphas=_ALPHAS).fit(x, y).alpha_)


def _percentile_ci(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(samples, [tail, 1.0 - tail], axis=0)
    return low, high


def _effects(d: _Design, coef: np.ndarray) -> np.ndarray:
    """Role effects from the coefficients: proposer columns as they are; each aggregator
    against the other aggregators weighted by their counts."""
    out = np.array(coef, dtype=np.float64, copy=True)
    agg = [j for j, c in enumerate(d.columns) if c[0] == "aggregator"]
    counts = d.x[:, agg].sum(axis=0) if agg else np.zeros(0)
    for pos, j in enumerate(agg):
        others = [(agg[q], counts[q]) for q in range(len(agg)) if q != pos and counts[q] > 0]
        total = sum(n for _, n in others)
        baseline = sum(coef[jj] * n for jj, n in others) / total if total > 0 else 0.0
        out[j] = coef[j] - baseline
    return out


def _bootstrap(
    n: int, n_boot: int, seed: int
) -> np.ndarray:  # n_boot x n indices, one resample per row
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_boot, n))


def _check(n_boot: int, confidence: float, proposer_feature: str) -> None:
    if proposer_feature not in ("presence", "samples"):
        raise ValueError(
            f"proposer_feature must be 'presence' or 'samples', got {proposer_feature!r}"
        )
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


# ----------------------------------------------------------------------------- role table


def _role_table(
    d: _Design, alpha: float, n_boot: int, confidence: float, seed: int
) -> tuple[RoleEffect, ...]:
    varies = d.x.std(axis=0) > 0
    point = _effects(d, _ridge_coef(d.x, d.y, alpha))
    boots = np.empty((n_boot, d.x.shape[1]))
    for b, idx in enumerate(_bootstrap(len(d.y), n_boot, seed)):
        boots[b] = _effects(d, _ridge_coef(d.x[idx], d.y[idx], alpha))
    low, high = _percentile_ci(boots, confidence) if d.x.shape[1] else (point, point)
    out: list[RoleEffect] = []
    for j, col in enumerate(d.columns):
        if col[0] == "layers":
            continue
        present = d.x[:, j] > 0
        n_with = int(present.sum())
        ok = bool(varies[j]) and 0 < n_with < len(d.y)
        out.append(
            RoleEffect(
                model=str(col[-1]),
                role="proposer" if col[0] == "proposer" else "aggregator",
                layer=col[1] if col[0] == "proposer" else None,
                effect=float(point[j]) if ok else None,
                ci_low=float(low[j]) if ok else None,
                ci_high=float(high[j]) if ok else None,
                n_with=n_with,
                n_without=len(d.y) - n_with,
                mean_with=float(d.y[present].mean()) if n_with else None,
                mean_without=float(d.y[~present].mean()) if n_with < len(d.y) else None,
            )
        )
    out.sort(key=lambda r: (r.role != "proposer", -1 if r.layer is None else r.layer, r.model))
    return tuple(out)


def role_table(
    study: optuna.Study,
    *,
    alpha: float | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    proposer_feature: ProposerFeature = "presence",
) -> list[RoleEffect]:
    """Each pool model's effect on win rate in each role it took (see :class:`RoleEffect`).

    Args:
        study: any study following the module's conventions; COMPLETE trials only.
        alpha: the ridge penalty; ``None`` picks it by leave-one-out over a grid.
        n_boot: bootstrap resamples of the trials (the penalty stays fixed).
        confidence: the intervals' coverage.
        seed: seeds the bootstrap (same seed, same intervals).
        proposer_feature: ``"presence"`` (in the layer or not) or ``"samples"`` (per sample).

    Raises:
        AnalysisError: fewer than :data:`MIN_TRIALS` evaluated trials with metrics.
    """
    _check(n_boot, confidence, proposer_feature)
    rows, _ = _rows(study)
    d = _design(rows, proposer_feature)
    a = _choose_alpha(d.x, d.y) if alpha is None else float(alpha)
    return list(_role_table(d, a, n_boot, confidence, seed))


# ----------------------------------------------------------------------------- diversity


def _cv_r2(x: np.ndarray, y: np.ndarray, alpha: float, seed: int) -> float:
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold, cross_val_predict

    sst = float(np.sum((y - y.mean()) ** 2))
    if sst == 0.0:
        return math.nan
    folds = KFold(n_splits=min(5, len(y)), shuffle=True, random_state=seed)
    if x.shape[1] == 0:
        pred = np.empty_like(y)
        for train, test in folds.split(y):
            pred[test] = y[train].mean()
    else:
        pred = cross_val_predict(Ridge(alpha=alpha, solver="cholesky"), x, y, cv=folds)
    return 1.0 - float(np.sum((y - pred) ** 2)) / sst


def _adj_r2(x: np.ndarray, y: np.ndarray, alpha: float) -> float:
    from sklearn.linear_model import Ridge

    n = len(y)
    sst = float(np.sum((y - y.mean()) ** 2))
    p = int(np.sum(x.std(axis=0) > 0)) if x.shape[1] else 0
    if sst == 0.0 or n - p - 1 <= 0:
        return math.nan
    pred = (
        Ridge(alpha=alpha, solver="cholesky").fit(x, y).predict(x)
        if x.shape[1]
        else np.full(n, y.mean())
    )
    r2 = 1.0 - float(np.sum((y - pred) ** 2)) / sst
    return 1.0 - (1.0 - r2) * (n - 1) / (n - p - 1)


def _residualize(x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, int]:
    """Least-squares residuals of ``v`` on [1, x], and the design's rank."""
    design = np.column_stack([np.ones(len(v)), x])
    beta, _, rank, _ = np.linalg.lstsq(design, v, rcond=None)
    return v - design @ beta, int(rank)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = a.std(), b.std()
    if sa < 1e-12 or sb < 1e-12:
        return math.nan
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))


def _quality_vs_diversity(
    d: _Design, alpha: float, n_boot: int, confidence: float, seed: int
) -> DiversityEffect:
    from scipy import stats

    n = len(d.y)
    sd = float(d.diversity.std())
    if sd < 1e-12:
        return DiversityEffect(n=n, diversity_varies=False)
    z = (d.diversity - d.diversity.mean()) / sd
    x_roles = d.x
    x_full = np.column_stack([d.x, z])
    per_sd = float(_ridge_coef(x_full, d.y, alpha)[-1])
    ey, _ = _residualize(x_roles, d.y)
    ed, rank = _residualize(x_roles, d.diversity)
    dof = n - rank - 1
    r = p_value = math.nan
    if dof >= _MIN_RESIDUAL_DOF:
        r = _corr(ey, ed)
        if math.isfinite(r):
            t = r * math.sqrt(dof / max(1e-300, 1.0 - r * r))
            p_value = float(2.0 * stats.t.sf(abs(t), dof))
    boot_coef = np.empty(n_boot)
    boot_r = np.empty(n_boot)
    for b, idx in enumerate(_bootstrap(n, n_boot, seed + 1)):
        boot_coef[b] = _ridge_coef(x_full[idx], d.y[idx], alpha)[-1]
        by, _ = _residualize(x_roles[idx], d.y[idx])
        bd, _ = _residualize(x_roles[idx], d.diversity[idx])
        boot_r[b] = _corr(by, bd)
    (c_low, c_high) = (float(v) for v in _percentile_ci(boot_coef, confidence))
    if not math.isfinite(r) or np.all(np.isnan(boot_r)):
        r_low = r_high = math.nan
    else:
        r_low, r_high = (float(v) for v in _percentile_ci(boot_r, confidence))
    return DiversityEffect(
        n=n,
        diversity_varies=True,
        r2_roles=_opt(_cv_r2(x_roles, d.y, alpha, seed)),
        r2_roles_diversity=_opt(_cv_r2(x_full, d.y, alpha, seed)),
        adj_r2_roles=_opt(_adj_r2(x_roles, d.y, alpha)),
        adj_r2_roles_diversity=_opt(_adj_r2(x_full, d.y, alpha)),
        coefficient=_opt(per_sd / sd),
        coefficient_per_sd=_opt(per_sd),
        ci_low=_opt(c_low / sd),
        ci_high=_opt(c_high / sd),
        partial_r=_opt(r),
        partial_r_ci_low=_opt(r_low),
        partial_r_ci_high=_opt(r_high),
        p_value=_opt(p_value),
        significant=bool(
            (c_low > 0 or c_high < 0) and math.isfinite(p_value) and p_value < 1.0 - confidence
        ),
    )


def quality_vs_diversity(
    study: optuna.Study,
    *,
    alpha: float | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    proposer_feature: ProposerFeature = "presence",
) -> dict[str, Any]:
    """Does diversity explain win rate beyond which models played which role?

    Returns :meth:`DiversityEffect.to_dict` (see :class:`DiversityEffect` for each field);
    arguments as :func:`role_table` (the penalty is chosen on the role design).

    Raises:
        AnalysisError: fewer than :data:`MIN_TRIALS` evaluated trials with metrics.
    """
    _check(n_boot, confidence, proposer_feature)
    rows, _ = _rows(study)
    d = _design(rows, proposer_feature)
    a = _choose_alpha(d.x, d.y) if alpha is None else float(alpha)
    return _quality_vs_diversity(d, a, n_boot, confidence, seed).to_dict()


def analyze(
    study: optuna.Study,
    *,
    alpha: float | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    proposer_feature: ProposerFeature = "presence",
) -> AnalysisResult:
    """:func:`role_table` and :func:`quality_vs_diversity` in one pass (one penalty, one
    design); arguments as :func:`role_table`.

    Raises:
        AnalysisError: fewer than :data:`MIN_TRIALS` evaluated trials with metrics.
    """
    _check(n_boot, confidence, proposer_feature)
    rows, skipped = _rows(study)
    d = _design(rows, proposer_feature)
    a = _choose_alpha(d.x, d.y) if alpha is None else float(alpha)
    return AnalysisResult(
        n_trials=len(rows),
        n_skipped=skipped,
        roles=_role_table(d, a, n_boot, confidence, seed),
        diversity=_quality_vs_diversity(d, a, n_boot, confidence, seed),
        alpha=a,
        n_boot=n_boot,
        confidence=confidence,
        seed=seed,
        proposer_feature=proposer_feature,
        models=d.models,
    )


# ----------------------------------------------------------------------------- text


def _pct(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v * 100:+.1f}" if signed else f"{v * 100:.1f}"


def format_analysis(result: AnalysisResult) -> str:
    """A plain-text report: the role table (win rates in percentage points), then diversity."""
    pct = round(result.confidence * 100)
    lines = [
        f"{result.n_trials} evaluated trials (ridge alpha {result.alpha:g}, {result.n_boot} "
        f"bootstrap resamples, {pct}% intervals; effects in win-rate points)",
        "",
        f"{'role':<10} {'layer':>5}  {'model':<28} {'effect':>7} {f'{pct}% CI':>16}  "
        f"{'with':>11} {'without':>11}",
    ]
    for r in result.roles:
        layer = (
            "any"
            if r.layer is None and r.role == "proposer"
            else ("-" if r.layer is None else str(r.layer))
        )
        ci = f"[{_pct(r.ci_low, True)}, {_pct(r.ci_high, True)}]" if r.ci_low is not None else "-"
        mark = "*" if r.significant else " "
        lines.append(
            f"{r.role:<10} {layer:>5}  {r.model:<28} {_pct(r.effect, True):>7} {ci:>16}{mark} "
            f"{_pct(r.mean_with):>6} ({r.n_with:>3}) {_pct(r.mean_without):>6} ({r.n_without:>3})"
        )
    lines.append("* interval excludes 0; with/without: raw mean win rate (trials)")
    d = result.diversity
    lines.append("")
    if not d.diversity_varies:
        lines.append("diversity: constant across trials; nothing to estimate")
    else:

        def num(v: float | None, fmt: str = ".3f") -> str:
            return "-" if v is None or not math.isfinite(v) else format(v, fmt)

        lines += [
            "quality vs diversity:",
            f"  cross-validated R²: roles {num(d.r2_roles)}, roles + diversity "
            f"{num(d.r2_roles_diversity)} (adjusted: {num(d.adj_r2_roles)} -> "
            f"{num(d.adj_r2_roles_diversity)})",
            f"  diversity coefficient: {num(d.coefficient_per_sd, '+.4f')} win rate per SD "
            f"({num(d.coefficient, '+.3f')} per unit, {pct}% CI [{num(d.ci_low, '+.3f')}, "
            f"{num(d.ci_high, '+.3f')}])",
            f"  partial correlation: {num(d.partial_r, '+.3f')} (p = {num(d.p_value, '.3g')}, "
            f"{pct}% CI [{num(d.partial_r_ci_low, '+.3f')}, {num(d.partial_r_ci_high, '+.3f')}])",
            "  diversity explains win rate beyond the roles"
            if d.significant
            else "  no evidence that diversity explains win rate beyond the roles",
        ]
    return "\n".join(lines)
