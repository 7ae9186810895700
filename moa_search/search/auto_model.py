"""A small model of mixtures, fitted to a study's trials: the role priors of ``sampler: auto``.

Each model ``m`` has a quality as a first-layer proposer ``P[m]``; each aggregating role ``r``
(a model and an aggregation mode) has its own quality ``A[r]`` and how much it uses the answers
it sees ``S[r]``. A composition is predicted layer by layer:

- layer 1: ``q = mean of P over its samples``;
- a later layer: ``q = mean over its samples of A[m] + S[m] * q`` (a later-layer proposer
  aggregates too);
- the answer set the aggregator sees: ``q + D * (1 - 1/k) + F * variety``, where ``k`` is its
  number of answers and ``variety`` the Gini-Simpson index of its models (more, and more
  varied, answers);
- the mixture: ``A[r] + S[r] * that``; with no layer, the aggregator answers alone: ``P[r]``.

It is fitted by regularised least squares on each trial's win rate (weighted by the prompts it
was evaluated on; pruned trials count with the prompts they saw), with weak priors, and
predicts each candidate's win rate with a standard deviation from the Laplace approximation.
The role analysis in :mod:`moa_search.analysis.roles` is the descriptive counterpart; search
cannot import analysis (imports point down), hence this compact estimator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import least_squares

from moa_search.search.space import Composition

__all__ = ["MixtureModel", "Observation", "paired_noise", "shrink"]

_MODES = ("synthesize", "rank")
#: Misfit the model allows beyond sampling noise (win-rate units).
_TAU = 0.05

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Observation:
    """A composition's win rate over ``n_items`` prompts."""

    composition: Composition
    win_rate: float
    n_items: int


@dataclass(frozen=True)
class _Encoded:
    counts: Array  # (layers, C, M) samples per model in each layer
    n_layers: NDArray[np.int64]  # (C,)
    head: NDArray[np.int64]  # (C,) role index of the aggregator
    alone: NDArray[np.int64]  # (C,) model index of the aggregator (for 0-layer mixtures)
    k_last: Array  # (C,) answers the aggregator sees
    variety: Array  # (C,) Gini-Simpson index of the last layer's models


class MixtureModel:
    """The fitted model; build it with :meth:`fit`."""

    def __init__(self, models: Sequence[str], theta: Array, cov: Array) -> None:
        self.models = tuple(models)
        self.index = {m: i for i, m in enumerate(self.models)}
        self.theta = theta
        self.cov = cov

    # layout of theta: P (M), A (R), S (R), D, F with R = M * len(_MODES)
    @property
    def _m(self) -> int:
        return len(self.models)

    def _role(self, model: str, mode: str) -> int:
        return self.index[model] * len(_MODES) + _MODES.index(mode)

    def _encode(self, comps: Sequence[Composition]) -> _Encoded:
        depth = max([len(c.layers) for c in comps] + [1])
        counts = np.zeros((depth, len(comps), self._m))
        n_layers = np.zeros(len(comps), dtype=np.int64)
        head = np.zeros(len(comps), dtype=np.int64)
        alone = np.zeros(len(comps), dtype=np.int64)
        k_last = np.ones(len(comps))
        variety = np.zeros(len(comps))
        for j, c in enumerate(comps):
            n_layers[j] = len(c.layers)
            head[j] = self._role(c.aggregator, c.aggregation)
            alone[j] = self.index[c.aggregator]
            for i, layer in enumerate(c.layers):
                for m, n in layer.items():
                    counts[i, j, self.index[m]] = n
            if c.layers:
                last = np.array(list(c.layers[-1].values()), dtype=float)
                k_last[j] = max(1.0, last.sum())
                variety[j] = 1.0 - float(np.sum((last / k_last[j]) ** 2))
        return _Encoded(counts, n_layers, head, alone, k_last, variety)

    def _mean(self, theta: Array, e: _Encoded) -> Array:
        m, r = self._m, self._m * len(_MODES)
        p, a, s = theta[:m], theta[m : m + r], theta[m + r : m + 2 * r]
        d, f = theta[-2], theta[-1]
        syn = np.arange(m) * len(_MODES)  # each model's synthesize role
        k = np.maximum(e.counts.sum(axis=2), 1.0)  # (layers, C)
        q = e.counts[0] @ p / k[0]
        for i in range(1, e.counts.shape[0]):
            nxt = (e.counts[i] @ a[syn] + (e.counts[i] @ s[syn]) * q) / k[i]
            q = np.where(e.n_layers > i, nxt, q)
        q_eff = q + d * (1.0 - 1.0 / e.k_last) + f * e.variety
        out = a[e.head] + s[e.head] * q_eff
        return np.where(e.n_layers == 0, p[e.alone], out)

    @staticmethod
    def _prior(
        models: Sequence[str], y_mean: float, solo: Mapping[str, float]
    ) -> tuple[Array, Array]:
        """Weak priors; a model's proposer quality is centred on its win rate alone, when
        known (an aggregator that only repeats its one answer scores just that)."""
        r = len(models) * len(_MODES)
        p_mean = np.array([solo.get(x, y_mean) for x in models])
        p_sd = np.array([0.15 if x in solo else 0.3 for x in models])
        mean = np.concatenate([p_mean, np.full(r, y_mean / 2), np.full(r, 0.5), np.zeros(2)])
        sd = np.concatenate([p_sd, np.full(r, 0.3), np.full(r, 0.4), np.full(2, 0.15)])
        return mean, sd

    @classmethod
    def fit(
        cls,
        observations: Sequence[Observation],
        proposers: Sequence[str],
        aggregators: Sequence[str],
        solo: Mapping[str, float] | None = None,
    ) -> MixtureModel:
        """Fit to ``observations`` (at least one); ``solo``: each model's win rate alone."""
        models = tuple(dict.fromkeys([*proposers, *aggregators]))
        y = np.array([o.win_rate for o in observations])
        sigma = np.sqrt(0.25 / np.array([max(1, o.n_items) for o in observations]) + _TAU**2)
        prior_mean, prior_sd = cls._prior(models, float(y.mean()), solo or {})
        model = cls(models, prior_mean, np.diag(prior_sd**2))
        enc = model._encode([o.composition for o in observations])

        def residuals(theta: Array) -> Array:
            fit = (model._mean(theta, enc) - y) / sigma
            return np.concatenate([fit, (theta - prior_mean) / prior_sd])

        result = least_squares(residuals, prior_mean, method="trf", x_scale=prior_sd)
        jac = np.asarray(result.jac)
        cov = np.linalg.pinv(jac.T @ jac)
        return cls(models, np.asarray(result.x, dtype=float), cov)

    def predict(self, comps: Sequence[Composition]) -> tuple[Array, Array]:
        """Predicted win rate and its standard deviation for each composition."""
        e = self._encode(comps)
        mean = self._mean(self.theta, e)
        h = 1e-4
        grad = np.empty((len(comps), len(self.theta)))
        for j in range(len(self.theta)):
            t = self.theta.copy()
            t[j] += h
            grad[:, j] = (self._mean(t, e) - mean) / h
        var = np.einsum("cj,jk,ck->c", grad, self.cov, grad)
        return mean, np.sqrt(np.maximum(var, 0.0))


def paired_noise(preferences: Array) -> Array:
    """The noise variance of each row's mean that matters when rows are ranked: rows are
    mixtures, columns the same prompts, and a prompt every mixture finds easy moves them all
    alike, so the variance is that of each row's lead over the mean row, over the number of
    prompts (not each row's own binomial variance)."""
    prefs = np.asarray(preferences, dtype=float)
    lead = prefs - prefs.mean(axis=0)
    return np.asarray(np.var(lead, axis=1, ddof=1) / prefs.shape[1], dtype=float)


def shrink(
    observations: Sequence[Observation],
    targets: Sequence[int],
    noise_var: Sequence[float] | Array,
    proposers: Sequence[str],
    aggregators: Sequence[str],
) -> Array:
    """Empirical-Bayes estimates of the true win rates of ``observations[targets]``.

    Picking the highest observed win rate among many mixtures picks the luckiest (the
    winner's curse). Here each target's observed win rate ``y`` (noise variance ``noise_var``)
    is combined with what the :class:`MixtureModel`, fitted to every observation, predicts for
    it *without* it: the leave-one-out prediction ``y - (y - f) / (1 - h)`` (``f`` the fitted
    value, ``h`` the target's leverage; exact for a linear model, first-order here), which is
    independent of the target's own noise. How far the truth strays from the model
    (``tau**2``) is estimated from the targets' leave-one-out residuals (method of moments).
    Each estimate is the precision-weighted mean of ``y`` and the leave-one-out prediction.
    """
    model = MixtureModel.fit(observations, proposers, aggregators)
    obs = [observations[j] for j in targets]
    y = np.array([o.win_rate for o in obs])
    s2 = np.maximum(np.asarray(noise_var, dtype=float), 1e-6)
    f, sd = model.predict([o.composition for o in obs])
    weight_var = 0.25 / np.array([max(1, o.n_items) for o in obs]) + _TAU**2
    h = np.clip(sd**2 / weight_var, 0.0, 0.95)
    loo = y - (y - f) / (1.0 - h)
    loo_var = sd**2 / (1.0 - h)
    tau2 = max(0.0, float(np.mean((y - loo) ** 2 - s2 - loo_var)))
    prior_var = np.maximum(tau2 + loo_var, 1e-6)
    return np.asarray((y / s2 + loo / prior_var) / (1.0 / s2 + 1.0 / prior_var), dtype=float)
