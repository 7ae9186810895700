"""A whole study under injected faults, with every attempt accounted for."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from moa_search.search.session import SearchSession
from moa_search.testing import FakeOpenAIServer, ModelBehavior
from moa_search.testing.worlds import PlantedWorld, write_planted_study

# Client timeout for these tests: long enough that every request reaches the in-process server
# even on a loaded machine (so an attempt never times out before it arrives), short enough that
# a "hang" (hang_s below) is cut by it.
TIMEOUT_S = 2.0

FAULTS = dict(
    fault_rate=0.2,
    fault_kinds=("429", "500", "hang", "reset", "malformed", "truncate"),
    retry_after_s=0.05,
    hang_s=5.0,
)


def faulty(world: PlantedWorld) -> dict[str, ModelBehavior]:
    return {
        name: dataclasses.replace(b, seed=i, **FAULTS)
        for i, (name, b) in enumerate(world.behaviors().items())
    }


def test_study_completes_under_faults_with_exact_accounting(tmp_path: Path) -> None:
    world = PlantedWorld(
        skill={"strong": 0.7, "mid": 0.35, "weak": 0.2},
        aggregation_skill={"strong": 0.0, "mid": 1.0, "weak": 0.0},
    )
    with FakeOpenAIServer(faulty(world)) as server:
        path = write_planted_study(
            tmp_path,
            server.base_url,
            n_items=8,
            model_fields={
                "timeout_s": TIMEOUT_S,
                "max_retries": 3,
                "input_price_per_mtok": 1.0,
                "output_price_per_mtok": 1.0,
            },
            name="faulty",
            space={"max_layers": 2, "max_samples": 2, "max_proposers": 3},
            evaluation={"rungs": [4, 8], "concurrency": 4},
            budget={"n_trials": 5},
        )
        session = SearchSession(path)
        try:
            session.optimize()
            totals = session.totals()
        finally:
            session.close()
        assert totals.trials >= 5
        assert {r.fault for r in server.requests} - {"ok"}  # faults really happened
        assert totals.attempts == server.count()
        assert totals.model_calls < totals.attempts  # retries were needed and counted
