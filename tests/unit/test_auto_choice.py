"""Empirical-Bayes win rates (``auto_model.shrink``): what the search-efficiency benchmark's
``exhaustive_shrunk`` strategy picks by, tried as the choice of ``sampler: auto`` and not
adopted (on the rich world the mixture model is too far from the truth at the top; see the
README). ``choose_trial`` keeps the best observed win rate, with ``auto`` as with the others.

The planted studies here follow a truth of the mixture model's own form (so the model is
right and only the noise of the prompts misleads): a few good and many poor mixtures, every
one judged on the same prompts, prompts sharing their difficulty across mixtures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import optuna
import pytest

from moa_search.config.study import SearchSpaceSpec, StudySpec
from moa_search.judges.stats import WinRate
from moa_search.search.auto import candidate_compositions
from moa_search.search.auto_model import MixtureModel, Observation, paired_noise, shrink
from moa_search.search.choose import choose_trial
from moa_search.search.objective import Evaluation
from moa_search.search.records import TrialRecord
from moa_search.search.space import Composition

MODELS = ("a", "b", "c")
P = {"a": 0.75, "b": 0.55, "c": 0.35}  # proposer quality
AGG = {"a": (0.05, 0.8), "b": (0.25, 0.75), "c": (0.0, 0.6)}  # aggregator (own, uses)


def truth(c: Composition) -> float:
    layer = c.layers[0]
    q = sum(P[m] * n for m, n in layer.items()) / sum(layer.values())
    own, uses = AGG[c.aggregator]
    return own + uses * q


def compositions() -> list[Composition]:
    space = SearchSpaceSpec(min_layers=1, max_layers=1, max_samples=2, max_proposers=3)
    return candidate_compositions(space, MODELS, MODELS, np.random.RandomState(0))


def judged(values: Sequence[float], n: int, rng: np.random.RandomState) -> np.ndarray:
    """Per-prompt wins (0/1) of mixtures with true win rates ``values`` on the same ``n``
    prompts: half of each mixture's draws are the prompt's shared difficulty."""
    shared = rng.uniform(size=n)
    own = rng.uniform(size=(len(values), n))
    u = np.where(rng.uniform(size=(len(values), n)) < 0.5, shared, own)
    return (u < np.asarray(values)[:, None]).astype(float)


def record(number: int, c: Composition, prefs: np.ndarray, state: str = "complete") -> TrialRecord:
    n = len(prefs)
    mean = float(prefs.mean())
    se = float(prefs.std(ddof=1) / np.sqrt(n))
    ev = Evaluation(
        n=n,
        win_rate=WinRate(mean, se, max(0.0, mean - 2 * se), min(1.0, mean + 2 * se), n),
        diversity=0.0,
        cost_usd=0.0,
        tokens=0.0,
        latency_s=0.0,
        failures=0,
        judge_failures=0,
        model_calls=0,
        calls_total=0,
        spent_usd=0.0,
        spent_tokens=0,
        preferences=tuple(float(p) for p in prefs),
    )
    return TrialRecord(
        number=number,
        state=state,  # type: ignore[arg-type]
        params={},
        values=(mean,),
        composition=c,
        metrics=ev,
        n_items=n,
        preferences={f"q{i}": float(p) for i, p in enumerate(prefs)},
    )


def planted_records(seed: int, n: int = 40) -> tuple[list[TrialRecord], list[float]]:
    comps = compositions()
    values = [truth(c) for c in comps]
    wins = judged(values, n, np.random.RandomState(seed))
    return [record(i, c, wins[i]) for i, c in enumerate(comps)], values


def shrunk(records: Sequence[TrialRecord]) -> dict[int, float]:
    """Trial number -> shrunk win rate, every record a target."""
    wins = np.array([[r.preferences[f"q{i}"] for i in range(r.n_items)] for r in records])
    obs = [Observation(r.composition, r.win_rate or 0.0, r.n_items) for r in records]  # type: ignore[arg-type]
    est = shrink(obs, list(range(len(obs))), paired_noise(wins), MODELS, MODELS)
    return {r.number: float(e) for r, e in zip(records, est, strict=True)}


def test_shrinking_beats_the_best_observed_on_a_planted_truth() -> None:
    picked_obs, picked_shrunk, err_obs, err_shrunk = [], [], [], []
    for seed in range(12):
        records, values = planted_records(seed)
        est = shrunk(records)
        observed = {r.number: r.win_rate or 0.0 for r in records}
        picked_obs.append(values[max(observed, key=lambda k: (observed[k], -k))])
        picked_shrunk.append(values[max(est, key=lambda k: (est[k], -k))])
        err_obs.append(np.mean([(observed[k] - values[k]) ** 2 for k in observed]))
        err_shrunk.append(np.mean([(est[k] - values[k]) ** 2 for k in est]))
    # closer to every true value, and a better pick on average (the truth's best is 0.85)
    assert np.mean(err_shrunk) < 0.5 * np.mean(err_obs)
    assert np.mean(picked_shrunk) > np.mean(picked_obs)


def test_a_lucky_outlier_is_pulled_to_the_structure_and_a_precise_one_is_not() -> None:
    comps = compositions()
    obs = [Observation(c, truth(c), 2000) for c in comps]
    lucky = next(i for i, c in enumerate(comps) if c.aggregator == "c")
    obs[lucky] = Observation(comps[lucky], truth(comps[lucky]) + 0.3, 2000)
    targets = list(range(len(obs)))
    noisy = [0.0004] * len(obs)
    noisy[lucky] = 0.04  # its lead is within its noise: mostly luck
    est = shrink(obs, targets, noisy, MODELS, MODELS)
    assert abs(est[lucky] - truth(comps[lucky])) < 0.1
    precise = [0.0004] * len(obs)
    precise[lucky] = 1e-6  # measured without noise: the model is what is wrong
    est = shrink(obs, targets, precise, MODELS, MODELS)
    assert est[lucky] == pytest.approx(truth(comps[lucky]) + 0.3, abs=0.01)


def test_paired_noise_ignores_what_every_mixture_shares() -> None:
    rng = np.random.RandomState(4)
    shared = (rng.uniform(size=60) < 0.5).astype(float)
    wins = np.tile(shared, (5, 1))
    wins[0, :6] = 1 - wins[0, :6]  # one mixture differs from the others on 6 prompts
    noise = paired_noise(wins)
    assert noise[1:] == pytest.approx(noise[1])  # the four alike are alike
    assert noise[0] > noise[1] > 0.0
    assert noise[0] < np.var(wins[0], ddof=1) / 60  # far below the binomial variance


def test_leave_one_out_prediction_matches_a_refit_without_the_trial() -> None:
    comps = compositions()
    rng = np.random.RandomState(3)
    obs = [Observation(c, truth(c) + rng.normal(0, 0.05), 60) for c in comps]
    j = 5
    model = MixtureModel.fit(obs, MODELS, MODELS)
    f, sd = model.predict([comps[j]])
    h = sd[0] ** 2 / (0.25 / 60 + 0.05**2)
    loo = obs[j].win_rate - (obs[j].win_rate - f[0]) / (1 - h)
    refit = MixtureModel.fit(obs[:j] + obs[j + 1 :], MODELS, MODELS).predict([comps[j]])[0][0]
    assert loo == pytest.approx(refit, abs=0.01)


def study_of(records: Sequence[TrialRecord]) -> optuna.Study:
    """An in-memory single-objective study holding ``records`` as complete trials."""
    study = optuna.create_study(direction="maximize")
    for r in records:
        assert r.metrics is not None and r.composition is not None
        study.add_trial(
            optuna.trial.create_trial(
                value=r.win_rate,
                user_attrs={
                    "metrics": r.metrics.to_dict(),
                    "composition": r.composition.to_dict(),
                    "n_items": r.n_items,
                    "preferences": dict(r.preferences),
                },
            )
        )
    return study


def spec(sampler: str) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": "planted",
            "dataset": "tasks.jsonl",
            "baseline": {"kind": "references"},
            "judge": {"kind": "exact_match"},
            "objectives": ["win_rate"],
            "sampler": sampler,
        }
    )


def test_choose_trial_keeps_the_best_observed_with_sampler_auto() -> None:
    records, _ = planted_records(0)
    study = study_of(records)
    observed = {r.number: r.win_rate or 0.0 for r in records}
    best = max(observed, key=lambda k: (observed[k], -k))
    for sampler in ("auto", "tpe"):
        chosen = choose_trial(study, spec(sampler))
        assert chosen is not None and chosen.number == best
