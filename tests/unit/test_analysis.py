"""Role analysis on synthetic studies with planted effects.

Each study is built in memory with optuna.trial.create_trial, with what a study stores (params
n_layers, samples/<m> or L{i}/samples/<m>, aggregator; user attributes metrics, mixture and
composition — or, like an older study, no composition). Win rate = 0.30 + 0.20 if A
aggregates + 0.10 if B proposes (at layer 0 in the per-layer study) + (optionally)
0.5 x (diversity − 0.3) + noise; diversity itself is drawn independently of the roles. The data
seeds are fixed; at them every planted value lies well inside its 99% interval (not at an
interval's edge), so the checks are not knife-edge.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from moa_search.analysis import (
    AnalysisError,
    RoleEffect,
    analyze,
    format_analysis,
    quality_vs_diversity,
    role_table,
)

MODELS = ("A", "B", "C", "D")
N_BOOT = 300
#: The planted effects are checked against 99% intervals: a 95% interval misses the truth one
#: time in twenty, and these tests check about twenty intervals.
CONFIDENCE = 0.99


def _metrics(win_rate: float, diversity: float) -> dict[str, Any]:
    return {
        "n": 20,
        "win_rate": {
            "mean": win_rate,
            "stderr": 0.01,
            "ci_low": max(0.0, win_rate - 0.02),
            "ci_high": min(1.0, win_rate + 0.02),
            "n": 20,
            "confidence": 0.95,
            "method": "normal",
        },
        "diversity": diversity,
        "cost_usd": 0.0,
        "tokens": 100.0,
    }


def planted_study(
    *,
    n: int = 150,
    seed: int = 2,
    diversity_effect: float = 0.0,
    per_layer: bool = False,
    aggregator_param: bool = True,
    with_composition: bool = True,
) -> optuna.Study:
    rng = np.random.default_rng(seed)
    study = optuna.create_study(directions=["maximize"])
    trials = []
    while len(trials) < n:
        n_layers = int(rng.integers(1, 3))
        params: dict[str, Any] = {"n_layers": n_layers}
        dists: dict[str, Any] = {"n_layers": IntDistribution(1, 2)}
        prefixes = [f"L{i}/" for i in range(n_layers)] if per_layer else [""]
        for prefix in prefixes:
            for m in MODELS:
                params[f"{prefix}samples/{m}"] = int(rng.integers(0, 3))
                dists[f"{prefix}samples/{m}"] = IntDistribution(0, 2)
        if any(sum(params[f"{p}samples/{m}"] for m in MODELS) == 0 for p in prefixes):
            continue  # an empty layer: the search prunes it before any call
        b_proposes = params[f"{prefixes[0]}samples/B"] > 0
        aggregator = str(rng.choice(MODELS))
        if aggregator_param:
            params["aggregator"] = aggregator
            dists["aggregator"] = CategoricalDistribution(MODELS)
        diversity = float(rng.uniform(0.1, 0.5))
        win = (
            0.30
            + 0.20 * (aggregator == "A")
            + 0.10 * b_proposes
            + diversity_effect * (diversity - 0.3)
            + rng.normal(0.0, 0.04)
        )
        win = float(np.clip(win, 0.0, 1.0))
        user_attrs: dict[str, Any] = {
            "metrics": _metrics(win, diversity),
            "mixture": f"{n_layers}x[...] -> {aggregator}",
        }
        if with_composition:
            # what the study records (moa_search.search.space.composition), from the same params
            layers = [
                {m: params[f"{p}samples/{m}"] for m in MODELS if params[f"{p}samples/{m}"]}
                for p in (prefixes if per_layer else prefixes * n_layers)
            ]
            user_attrs["composition"] = {
                "layers": layers,
                "aggregator": aggregator,
                "aggregation": "synthesize",
            }
        trials.append(
            create_trial(params=params, distributions=dists, values=[win], user_attrs=user_attrs)
        )
    study.add_trials(trials)
    return study


def _role(
    roles: list[RoleEffect] | tuple[RoleEffect, ...],
    role: str,
    model: str,
    layer: int | None = None,
) -> RoleEffect:
    (found,) = [r for r in roles if r.role == role and r.model == model and r.layer == layer]
    return found


def _inside(r: RoleEffect, value: float) -> bool:
    assert r.ci_low is not None and r.ci_high is not None
    return r.ci_low <= value <= r.ci_high


@pytest.fixture(scope="module")
def shared_result() -> Any:
    return analyze(planted_study(), n_boot=N_BOOT, seed=1, confidence=CONFIDENCE)


def test_planted_roles_are_recovered(shared_result: Any) -> None:
    roles = shared_result.roles
    assert shared_result.n_trials == 150 and shared_result.models == MODELS
    a_agg = _role(roles, "aggregator", "A")
    assert a_agg.effect is not None and a_agg.effect > 0 and a_agg.significant
    assert _inside(a_agg, 0.20) and abs(a_agg.effect - 0.20) < 0.04
    b_prop = _role(roles, "proposer", "B")
    assert b_prop.effect is not None and b_prop.effect > 0 and b_prop.significant
    assert _inside(b_prop, 0.10) and abs(b_prop.effect - 0.10) < 0.03
    # the other aggregators are worse than the rest (which include A) by about 0.2 / 3
    for m in ("B", "C", "D"):
        r = _role(roles, "aggregator", m)
        assert r.effect is not None and r.effect < 0 and abs(r.effect + 0.2 / 3) < 0.04
    # no proposer effect was planted for A, C and D
    for m in ("A", "C", "D"):
        r = _role(roles, "proposer", m)
        assert r.effect is not None and abs(r.effect) < 0.03 and _inside(r, 0.0)
    # raw means and counts
    assert a_agg.n_with + a_agg.n_without == 150
    assert a_agg.mean_with is not None and a_agg.mean_without is not None
    assert a_agg.mean_with - a_agg.mean_without > 0.15
    assert all(r.layer is None for r in roles)  # one composition for every layer: "any layer"


def test_diversity_not_planted_is_not_significant(shared_result: Any) -> None:
    d = shared_result.diversity
    assert d.diversity_varies and not d.significant
    assert d.ci_low < 0 < d.ci_high
    at_95 = quality_vs_diversity(planted_study(), n_boot=N_BOOT, seed=1)
    assert at_95["significant"] is False and at_95["ci_low"] < 0 < at_95["ci_high"]
    assert abs(d.partial_r) < 0.2 and d.p_value > 0.05
    assert d.r2_roles > 0.7
    assert d.r2_roles_diversity - d.r2_roles < 0.02


def test_planted_diversity_is_found() -> None:
    result = analyze(
        planted_study(diversity_effect=0.5, seed=3), n_boot=N_BOOT, seed=1, confidence=CONFIDENCE
    )
    d = result.diversity
    assert d.significant and d.ci_low <= 0.5 <= d.ci_high
    assert d.coefficient == pytest.approx(0.5, abs=0.08)
    assert d.partial_r > 0.5 and d.p_value < 1e-6
    assert d.r2_roles_diversity > d.r2_roles + 0.1
    assert d.adj_r2_roles_diversity > d.adj_r2_roles
    # the role effects survive
    assert _inside(_role(result.roles, "aggregator", "A"), 0.20)
    assert _inside(_role(result.roles, "proposer", "B"), 0.10)


def test_per_layer_effects() -> None:
    result = analyze(
        planted_study(per_layer=True, seed=5), n_boot=N_BOOT, seed=1, confidence=CONFIDENCE
    )
    b0 = _role(result.roles, "proposer", "B", layer=0)
    assert b0.significant and _inside(b0, 0.10)
    b1 = _role(result.roles, "proposer", "B", layer=1)
    assert b1.effect is not None and _inside(b1, 0.0) and abs(b1.effect) < 0.04
    assert {r.layer for r in result.roles if r.role == "proposer"} == {0, 1}
    assert _inside(_role(result.roles, "aggregator", "A"), 0.20)


def test_aggregator_read_from_the_composition() -> None:
    result = analyze(
        planted_study(aggregator_param=False, seed=7), n_boot=N_BOOT, confidence=CONFIDENCE
    )
    a_agg = _role(result.roles, "aggregator", "A")
    assert a_agg.significant and _inside(a_agg, 0.20)


def test_older_studies_without_compositions_read_the_params() -> None:
    kwargs: dict[str, Any] = {"n_boot": 100, "seed": 1}
    for per_layer in (False, True):
        with_comp = planted_study(n=60, seed=19, per_layer=per_layer)
        params_only = planted_study(n=60, seed=19, per_layer=per_layer, with_composition=False)
        assert analyze(params_only, **kwargs) == analyze(with_comp, **kwargs)
    # the aggregator comes from its param or the composition, never from the description
    neither = planted_study(n=60, seed=19, aggregator_param=False, with_composition=False)
    roles = analyze(neither, **kwargs).roles
    assert roles and all(r.role == "proposer" for r in roles)


def test_complete_and_pruned_trials_with_metrics_count() -> None:
    study = planted_study(n=30, seed=11)
    dist = {"aggregator": CategoricalDistribution(MODELS)}
    study.add_trials(
        [
            create_trial(
                params={"aggregator": "B"},
                distributions=dist,
                state=TrialState.PRUNED,
                user_attrs={"metrics": _metrics(0.99, 0.9)},
            ),
            create_trial(params={"aggregator": "B"}, distributions=dist, state=TrialState.FAIL),
            create_trial(params={"aggregator": "C"}, distributions=dist, values=[0.5]),
        ]
    )
    result = analyze(study, n_boot=50)
    # the pruned trial counts (with the win rate it had when pruned); the failed one does not;
    # the complete one without metrics is skipped
    assert result.n_trials == 31 and result.n_skipped == 1


def test_standalone_functions_agree_with_analyze(shared_result: Any) -> None:
    study = planted_study()
    kwargs: dict[str, Any] = {"n_boot": N_BOOT, "seed": 1, "confidence": CONFIDENCE}
    roles = role_table(study, alpha=shared_result.alpha, **kwargs)
    assert roles == list(shared_result.roles)
    qd = quality_vs_diversity(study, alpha=shared_result.alpha, **kwargs)
    assert qd == shared_result.diversity.to_dict()
    again = analyze(study, **kwargs)
    assert again == shared_result  # seeded: the same intervals


def test_result_is_json_safe_and_printable(shared_result: Any) -> None:
    d = shared_result.to_dict()
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    assert back["n_trials"] == 150
    assert {r["role"] for r in back["roles"]} == {"proposer", "aggregator"}
    assert back["quality_vs_diversity"]["significant"] is False
    report = format_analysis(shared_result)
    assert "aggregator" in report and "no evidence that diversity" in report


def test_constant_diversity_and_too_few_trials() -> None:
    study = optuna.create_study(directions=["maximize"])
    dist = {"aggregator": CategoricalDistribution(MODELS)}
    for i in range(3):
        study.add_trial(
            create_trial(
                params={"aggregator": MODELS[i]},
                distributions=dist,
                values=[0.4],
                user_attrs={"metrics": _metrics(0.1 * i, 0.0)},
            )
        )
    with pytest.raises(AnalysisError, match="at least 4"):
        analyze(study)
    study.add_trial(
        create_trial(
            params={"aggregator": "D"},
            distributions=dist,
            values=[0.4],
            user_attrs={"metrics": _metrics(0.3, 0.0)},
        )
    )
    result = analyze(study, n_boot=20)
    assert not result.diversity.diversity_varies and result.diversity.coefficient is None
    assert json.dumps(result.to_dict(), allow_nan=False)
    with pytest.raises(ValueError, match="n_boot"):
        analyze(study, n_boot=0)


def test_few_trials_give_no_partial_correlation() -> None:
    study = optuna.create_study(directions=["maximize"])
    dist = {"aggregator": CategoricalDistribution(MODELS), "samples/A": IntDistribution(0, 2)}
    for i in range(5):
        win, div = 0.1 * i, 0.1 + 0.05 * ((i * 3) % 5)
        study.add_trial(
            create_trial(
                params={"aggregator": MODELS[i % 4], "samples/A": i % 3},
                distributions=dist,
                values=[win],
                user_attrs={"metrics": _metrics(win, div)},
            )
        )
    d = analyze(study, n_boot=50).diversity
    assert d.diversity_varies and d.partial_r is None and d.p_value is None
    assert not d.significant


def test_a_study_in_rdb_storage(tmp_path: Any) -> None:
    memory = planted_study(n=40, seed=13)
    stored = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s", directions=["maximize"]
    )
    stored.add_trials(memory.get_trials())
    loaded = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
    kwargs: dict[str, Any] = {"n_boot": 100, "seed": 4}
    assert analyze(loaded, **kwargs).to_dict() == analyze(memory, **kwargs).to_dict()


def test_sample_count_coding() -> None:
    study = planted_study(n=80, seed=17)
    roles = role_table(study, n_boot=100, proposer_feature="samples")
    b = _role(roles, "proposer", "B")
    assert b.effect is not None and b.effect > 0.02  # per sample; the planted effect is 0.1
    with pytest.raises(ValueError, match="proposer_feature"):
        role_table(study, proposer_feature="count")  # type: ignore[arg-type]
