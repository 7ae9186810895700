"""``sampler: auto`` on the planted world behind the fake OpenAI server: solo trials first,
paired racing stops a planted-bad candidate early (and spares a cheaper one in a cost-aware
study), plans are deterministic per seed, the study resumes, and the role model ranks
compositions the way a planted truth does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from moa_search.config.study import SearchSpaceSpec, StudySpec
from moa_search.search.auto import (
    AutoSampler,
    candidate_compositions,
    composition_key,
    params_for,
    solo_compositions,
)
from moa_search.search.auto_model import MixtureModel, Observation
from moa_search.search.choose import choose_trial
from moa_search.search.racing import paired_worse
from moa_search.search.records import TrialRecord
from moa_search.search.session import SearchSession
from moa_search.search.space import Composition, composition, mixture_from_params
from moa_search.search.storage import make_pruner, make_sampler
from moa_search.testing import FakeOpenAIServer
from moa_search.testing.worlds import PlantedWorld, write_planted_study

WORLD = PlantedWorld(
    skill={"strong": 0.7, "mid": 0.35, "weak": 0.2},
    aggregation_skill={"strong": 0.0, "mid": 1.0, "weak": 0.0},
)
MODELS = ("strong", "mid", "weak")
SPACE = {"min_layers": 1, "max_layers": 1, "max_samples": 3, "max_proposers": 3}


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(WORLD.behaviors()) as srv:
        yield srv


def write_spec(tmp_path: Path, server: FakeOpenAIServer, **overrides: Any) -> Path:
    """A planted study with the default sampler and pruner (``auto``), nothing held out."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    return write_planted_study(
        tmp_path,
        server.base_url,
        n_items=overrides.pop("n_items", 24),
        model_fields={"max_concurrency": 8},
        **{
            "space": SPACE,
            "objectives": ["win_rate"],
            "evaluation": {"rungs": [4, 12, 24], "concurrency": 4, "holdout": 0},
            "budget": {"n_trials": 6},
            "seed": 5,
            **overrides,
        },
    )


def compositions(study: optuna.Study) -> list[dict[str, Any]]:
    return [r.composition.to_dict() for r in TrialRecord.all(study) if r.composition is not None]


def test_auto_is_the_default_and_racing_its_pruner(tmp_path: Path) -> None:
    spec = StudySpec.model_validate(
        {
            "name": "s",
            "dataset": "d.jsonl",
            "pool": {
                "models": [{"alias": m, "base_url": "http://x/v1", "model": m} for m in MODELS]
            },
            "baseline": {"kind": "model", "model": "weak"},
            "judge": {"kind": "exact_match"},
        }
    )
    assert spec.sampler == "auto" and spec.pruner == "auto"
    assert isinstance(make_sampler(spec), AutoSampler)
    assert isinstance(make_pruner(spec), optuna.pruners.NopPruner)  # racing is the driver's
    tpe = spec.model_copy(update={"sampler": "tpe"})
    assert isinstance(make_pruner(tpe), optuna.pruners.MedianPruner)


def test_solo_trials_come_first(tmp_path: Path, server: FakeOpenAIServer) -> None:
    session = SearchSession(write_spec(tmp_path, server))
    try:
        study = session.optimize(n_trials=5)
        comps = compositions(study)
        assert comps[:3] == [
            {"layers": [{m: 1}], "aggregator": m, "aggregation": "synthesize"} for m in MODELS
        ]
        # later trials are mixtures, not more solos
        assert all(c not in comps[:3] for c in comps[3:])
        # the solos' layer-1 answers are reused: each later mixture got the first sample of
        # each of its layer-1 models from the cache on every prompt that model's solo had seen
        records = TrialRecord.all(study)
        seen = {r.composition.aggregator: r.n_items for r in records[:3] if r.composition}
        later = [r for r in records[3:] if r.composition is not None and r.n_items]
        assert later
        for r in later:
            assert r.composition is not None
            reused = sum(min(r.n_items, seen[m]) for m in r.composition.layers[0])
            assert r.calls_total - r.model_calls >= reused > 0
    finally:
        session.close()


def test_zero_layer_space_solos_answer_alone() -> None:
    space = SearchSpaceSpec(min_layers=0, max_layers=1, min_proposers=2, max_samples=1)
    solos = solo_compositions(space, MODELS, MODELS)
    # two calls of one model exceed max_samples: the 0-layer form is the solo
    assert solos == [Composition((), m) for m in MODELS]
    params = params_for(solos[0], space, MODELS, MODELS)
    assert params == {"n_layers": 0, "aggregator": "strong"}


def test_params_rebuild_each_candidate(tmp_path: Path) -> None:
    space = SearchSpaceSpec(max_layers=2, max_proposers=3, max_samples=2, shared_proposers=False)
    from moa_search.config import Pool

    pool = Pool.model_validate(
        {"models": [{"alias": m, "base_url": "http://x/v1", "model": m} for m in MODELS]}
    )
    cands = candidate_compositions(space, MODELS, MODELS, np.random.RandomState(0), cap=400)
    assert len(cands) == 400 or len({json.dumps(c.to_dict()) for c in cands}) == len(cands)
    for c in cands[:60]:
        rebuilt = composition(
            mixture_from_params(params_for(c, space, MODELS, MODELS), space, pool)
        )
        assert rebuilt == c


def test_with_every_mixture_tied_it_opens_with_solos_then_probes_then_cheap_candidates() -> None:
    """What ``moa-search plan`` projects for ``auto``: the sampler's own choices when every
    observed win rate is the same."""
    space = SearchSpaceSpec(max_layers=2, max_proposers=3, max_samples=2)
    sampler = AutoSampler(space, MODELS, MODELS, seed=0)
    observed: dict[tuple[Any, ...], Observation] = {}
    taken: set[tuple[Any, ...]] = set()
    chosen, uncached = [], []
    for number in range(14):
        c = sampler.choose(observed, taken, number)
        assert c is not None and composition_key(c) not in taken
        chosen.append(c)
        uncached.append(AutoSampler._uncached_calls(c, list(observed.values())))
        taken.add(composition_key(c))
        observed[composition_key(c)] = Observation(c, 0.5, 20)
    solos = solo_compositions(space, MODELS, MODELS)
    assert chosen[: len(solos)] == solos
    # the first solo's layers given to every other aggregator (to itself it is the solo)
    probes = chosen[len(solos) : 2 * len(solos) - 1]
    assert [c.aggregator for c in probes] == list(MODELS[1:])
    assert all(c.layers == solos[0].layers for c in probes)
    # then, with nothing to tell mixtures apart, the cost term favours cached layer-1 answers:
    # the later candidates make fewer than half their calls anew
    later = range(2 * len(solos) - 1, len(chosen))
    assert sum(uncached[i] for i in later) < 0.5 * sum(chosen[i].calls_per_prompt for i in later)


def test_racing_stops_a_planted_bad_candidate_early(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    spec_path = write_spec(tmp_path, server, pruner="racing", sampler="random")
    session = SearchSession(spec_path)
    space = session.spec.space
    try:
        study = session.study()
        good = Composition(({"strong": 3},), "mid")
        bad = Composition(({"weak": 1},), "weak")
        study.enqueue_trial(params_for(good, space, MODELS, MODELS))
        study.enqueue_trial(params_for(bad, space, MODELS, MODELS))
        session.optimize(n_trials=2)
        first, second = TrialRecord.all(study)[:2]
        assert first.state == "complete" and first.n_items == 24
        assert second.composition == bad
        assert second.state == "pruned"
        # stopped at the first rung (4 of 24 prompts)
        assert second.n_items == 4
        full_calls = 24 * bad.calls_per_prompt
        assert second.model_calls < full_calls / 2
    finally:
        session.close()


def test_racing_spares_a_cheaper_candidate_when_cost_is_an_objective(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    spec_path = write_spec(
        tmp_path, server, pruner="racing", sampler="random", objectives=["win_rate", "cost_usd"]
    )
    session = SearchSession(spec_path)
    space = session.spec.space
    try:
        study = session.study()
        study.enqueue_trial(params_for(Composition(({"strong": 3},), "mid"), space, MODELS, MODELS))
        study.enqueue_trial(params_for(Composition(({"weak": 1},), "weak"), space, MODELS, MODELS))
        session.optimize(n_trials=2)
        second = TrialRecord.all(study)[1]
        # a 2-call mixture is not raced against a 4-call incumbent: it may be on the front
        assert second.state == "complete" and second.n_items == 24
    finally:
        session.close()


def test_paired_test_needs_evidence() -> None:
    same = {f"q{i}": 1.0 for i in range(30)}
    assert not paired_worse(same, same)
    worse = {f"q{i}": 0.0 for i in range(30)}
    assert paired_worse(worse, same)
    assert not paired_worse({"q0": 0.0, "q1": 0.0}, same)  # too few prompts in common
    noisy = {f"q{i}": float(i % 2) for i in range(30)}
    half = {f"q{i}": float((i // 2) % 2) for i in range(30)}
    assert not paired_worse(noisy, half)


def test_plans_are_deterministic_per_seed(tmp_path: Path, server: FakeOpenAIServer) -> None:
    runs = []
    for name in ("a", "b"):
        session = SearchSession(write_spec(tmp_path / name, server), cache="memory")
        try:
            runs.append([(t.params, t.state) for t in session.optimize(n_trials=7).get_trials()])
        finally:
            session.close()
    assert runs[0] == runs[1]
    assert len(runs[0]) >= 7


def test_multi_objective_study_runs_and_chooses(tmp_path: Path, server: FakeOpenAIServer) -> None:
    session = SearchSession(
        write_spec(tmp_path, server, objectives=["win_rate", "cost_usd", "tokens"])
    )
    try:
        study = session.optimize(n_trials=7)
        assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE"]
        counted = [r for r in TrialRecord.all(study) if r.counts]
        assert len(counted) == 7
        assert choose_trial(study, session.spec) is not None
    finally:
        session.close()


def test_resume_continues_the_plan(tmp_path: Path, server: FakeOpenAIServer) -> None:
    spec = write_spec(tmp_path, server)
    first = SearchSession(spec)
    try:
        first.optimize(n_trials=2)
        before = [(t.number, t.params, t.state) for t in first.study().get_trials()]
    finally:
        first.close()
    second = SearchSession(spec)
    try:
        after = second.optimize(n_trials=6).get_trials()
    finally:
        second.close()
    assert [(t.number, t.params, t.state) for t in after[: len(before)]] == before
    comps = [json.dumps(c, sort_keys=True) for c in compositions(second.study())]
    assert len(comps) == len(set(comps))  # no mixture planned twice across the two runs
    assert comps[2] == json.dumps(
        {"layers": [{"weak": 1}], "aggregator": "weak", "aggregation": "synthesize"},
        sort_keys=True,
    )  # the third solo, planned by the second run
    keys = [
        (r.model, json.dumps(r.messages), r.seed, r.max_tokens, r.temperature)
        for r in server.requests
    ]
    assert len(keys) == len(set(keys))  # nothing paid for twice


def test_role_model_ranks_a_planted_truth() -> None:
    # truth: 'mid' aggregates (copies the answers it sees), 'strong' proposes best
    p = {"strong": 0.8, "mid": 0.4, "weak": 0.2}
    a = {"strong": (0.7, 0.0), "mid": (0.0, 1.0), "weak": (0.2, 0.0)}

    def truth(c: Composition) -> float:
        layer = c.layers[0]
        q = sum(p[m] * n for m, n in layer.items()) / sum(layer.values())
        base, uses = a[c.aggregator]
        return base + uses * q

    space = SearchSpaceSpec(min_layers=1, max_layers=1, max_samples=2, max_proposers=2)
    cands = candidate_compositions(space, MODELS, MODELS, np.random.RandomState(0))
    rng = np.random.RandomState(1)
    seen = [cands[i] for i in rng.choice(len(cands), 14, replace=False)]
    seen += solo_compositions(space, MODELS, MODELS)
    model = MixtureModel.fit([Observation(c, truth(c), 200) for c in seen], MODELS, MODELS)
    mean, sd = model.predict(cands)
    values = [truth(c) for c in cands]
    assert truth(cands[int(np.argmax(mean))]) == pytest.approx(max(values))  # strong -> mid
    assert np.all(sd >= 0)
    corr = np.corrcoef(mean, values)[0, 1]
    assert corr > 0.9
