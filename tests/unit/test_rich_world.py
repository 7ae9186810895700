"""The rich benchmark world: its planted properties hold, its in-process backend answers exactly
as its vectorised simulation says, and a study over it makes no network call."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import numpy as np
import pytest

from moa_search.config import AgentSpec, MixtureConfig, ModelSpec
from moa_search.errors import ConfigError
from moa_search.judges.exact import ExactMatchJudge
from moa_search.runtime.backends.registry import backend_for, register_backend
from moa_search.runtime.executor import Executor
from moa_search.search.session import SearchSession
from moa_search.search.space import composition
from moa_search.testing.rich_world import (
    TRUTH_OFFSET,
    RichWorld,
    WorldBackend,
    all_mixes,
    world_backend,
)

WORLD = RichWorld()
NAMES = [m.name for m in WORLD.models]
FRESH = np.arange(TRUTH_OFFSET, TRUTH_OFFSET + 4000, dtype=np.int64)


def solo(model: str) -> float:
    return float(WORLD.correct(WORLD.mix([], model), FRESH).mean())


def test_the_space_has_at_least_500_distinct_mixtures_over_six_models_in_three_families() -> None:
    mixes = all_mixes(WORLD)
    assert len(set(mixes)) == len(mixes) == 996
    assert len(NAMES) == 6 and len({m.family for m in WORLD.models}) == 3


def test_the_best_proposer_is_not_the_best_aggregator() -> None:
    best_proposer = max(NAMES, key=solo)
    # the same references for every aggregator: one sample of each large model
    layer = {"atlas-l": 1, "boreal-l": 1, "cirrus-l": 1}
    as_aggregator = {a: float(WORLD.correct(WORLD.mix([layer], a), FRESH).mean()) for a in NAMES}
    best_aggregator = max(as_aggregator, key=lambda a: as_aggregator[a])
    assert best_proposer == "atlas-l" and best_aggregator == "boreal-l"
    assert as_aggregator["boreal-l"] > as_aggregator["atlas-l"] + 0.05
    assert solo("atlas-l") > solo("boreal-l") + 0.05


def test_family_members_share_wrong_answers_and_blind_spots() -> None:
    sim = WORLD.simulation(FRESH)
    codes = {n: sim.propose(WORLD.model_index(n), 7) for n in NAMES}

    def same_wrong(a: str, b: str) -> float:
        both_wrong = (codes[a] != 0) & (codes[b] != 0)
        return float((codes[a][both_wrong] == codes[b][both_wrong]).mean())

    assert same_wrong("atlas-l", "atlas-s") > 0.5
    assert same_wrong("boreal-l", "boreal-s") > 0.5
    assert same_wrong("atlas-l", "boreal-l") < 0.05
    assert same_wrong("cirrus-l", "atlas-s") < 0.05
    # members of a family are wrong together (shared blind spot); other models independently
    wrong = {n: codes[n] != 0 for n in NAMES}

    def covariance(a: str, b: str) -> float:
        return float((wrong[a] & wrong[b]).mean() - wrong[a].mean() * wrong[b].mean())

    families = {m.name: m.family for m in WORLD.models}
    for a in NAMES:
        for b in NAMES:
            if a < b:
                assert (covariance(a, b) > 0.02) == (families[a] == families[b]), (a, b)
    for n in NAMES:  # on its blind spot a model is right in under a quarter of the items
        m = WORLD.model_index(n)
        assert float((codes[n][sim.blind(m)] == 0).mean()) < 0.25
        assert float((codes[n][~sim.blind(m)] == 0).mean()) > 0.4


def test_true_values_are_deterministic_and_differ_across_mixtures() -> None:
    mixes = all_mixes(WORLD)[::37]
    first = WORLD.true_values(mixes, n_items=3000)
    again = RichWorld().true_values(mixes, n_items=3000)
    assert first == again
    assert len(set(first.values())) > len(mixes) // 2


def test_the_backend_answers_exactly_as_the_simulation_predicts() -> None:
    pool = WORLD.pool()
    executor = Executor(pool, cache=None)
    judge = ExactMatchJudge()
    items = WORLD.items(500, 40)
    index = np.array([int(t.id[1:]) for t in items], dtype=np.int64)
    mixtures = [
        MixtureConfig(
            layers=((AgentSpec(model="atlas-l", samples=2), AgentSpec(model="cirrus-s")),)
            * n_layers,
            aggregator=AgentSpec(model=agg, temperature=0.3),
            seed=seed,
        )
        for n_layers, agg, seed in ((1, "boreal-l", 0), (2, "atlas-s", 3), (1, "cirrus-l", 9))
    ]
    # three families' small models: references often split three ways (ties broken in order)
    small = tuple(AgentSpec(model=m) for m in ("atlas-s", "boreal-s", "cirrus-s"))
    mixtures += [
        MixtureConfig(layers=(small,) * n, aggregator=AgentSpec(model=agg), seed=4)
        for n, agg in ((1, "cirrus-s"), (2, "boreal-l"))
    ]
    mixtures.append(MixtureConfig(aggregator=AgentSpec(model="atlas-l"), seed=2))  # alone

    async def run_all() -> list[list[str]]:
        out = []
        for m in mixtures:
            results = await asyncio.gather(*(executor.arun(m, t.prompt) for t in items))
            out.append([r.answer for r in results])
        await executor.aclose()
        return out

    served = asyncio.run(run_all())
    right = 0
    for m, answers in zip(mixtures, served, strict=True):
        c = composition(m)
        mix = WORLD.mix(c.layers, c.aggregator)
        codes = WORLD.simulation(index).final_codes(mix, m.seed)
        # the very same answer, right or wrong (which wrong answer, too)
        assert answers == [
            f"The code word is {WORLD.word(i, code)}." for i, code in zip(index, codes, strict=True)
        ]
        correct = WORLD.correct(mix, index, m.seed)
        graded = [
            judge.is_correct(a, t.reference or "") for a, t in zip(answers, items, strict=True)
        ]
        assert graded == correct.tolist()
        right += int(correct.sum())
    assert 0 < right < len(mixtures) * len(items)


def test_the_backend_keeps_the_contract(tmp_path: Path) -> None:
    spec = WORLD.pool().get("boreal-s")
    backend = backend_for(spec)
    assert isinstance(backend, WorldBackend) and backend.deterministic
    executor = Executor(WORLD.pool(), cache=None)
    short = MixtureConfig(aggregator=AgentSpec(model="boreal-s", max_tokens=2))
    result = asyncio.run(executor.arun(short, WORLD.prompt(3)))
    call = result.trace.calls[0]
    assert call.finish_reason == "length" and call.tokens_out == 2 and call.usage_estimated
    assert len(result.answer) == 8
    with pytest.raises(ConfigError, match="registered world"):
        world_backend(ModelSpec(alias="x", kind="world", model="nowhere/atlas-l"))
    with pytest.raises(ValueError, match="built in"):
        register_backend("openai", world_backend)


def test_a_search_over_the_world_completes_with_no_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    spec = WORLD.write_study(
        tmp_path, n_items=12, evaluation={"rungs": [6, 12], "holdout": 0}, budget={"n_trials": 4}
    )
    session = SearchSession(spec, cache="memory")
    session.evaluator.embedder = None
    try:
        study = session.optimize()
        totals = session.totals()
        backends = [session.executor.backend(a) for a in session.pool.aliases]
        assert all(isinstance(b, WorldBackend) for b in backends)
        assert totals.trials == 4 and totals.model_calls > 0
        assert sum(b.calls for b in backends if isinstance(b, WorldBackend)) == totals.model_calls
        assert any(t.state.name == "COMPLETE" for t in study.trials)
    finally:
        session.close()
