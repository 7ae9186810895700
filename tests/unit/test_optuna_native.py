"""Studies that Optuna's own tools read correctly: invalid proposals and repeated mixtures are
failed trials with their reason (never complete copies, never "pruned"), so ``best_trials``,
``trials_dataframe()`` and the real optuna-dashboard (its API, called in-process) show exactly
the trials the study counts; the records still count them right, and resuming still works."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from moa_search.search.records import TrialRecord
from moa_search.search.session import SearchSession
from moa_search.testing import FakeOpenAIServer
from moa_search.testing.worlds import PlantedWorld, write_planted_study

WORLD = PlantedWorld(
    skill={"strong": 0.7, "mid": 0.35, "weak": 0.2},
    aggregation_skill={"strong": 0.0, "mid": 1.0, "weak": 0.0},
)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(WORLD.behaviors()) as srv:
        yield srv


def _spec(tmp_path: Path, server: FakeOpenAIServer, **overrides: Any) -> Path:
    """A small space (one layer, at most two proposers, each model once: 3 aggregators x 6
    proposer sets), so a study of 12 trials meets invalid proposals and repeats."""
    return write_planted_study(
        tmp_path,
        server.base_url,
        n_items=6,
        **{
            "space": {"min_layers": 1, "max_layers": 1, "max_samples": 1, "max_proposers": 2},
            "objectives": ["win_rate", "cost_usd"],
            "evaluation": {"rungs": [2, 6], "holdout": 0, "concurrency": 4},
            "budget": {"n_trials": 12},
            "n_startup_trials": 2,
            "sampler": "tpe",  # proposes slot by slot: invalid proposals and repeats happen
            "pruner": "median",
            "seed": 11,
            **overrides,
        },
    )


@pytest.fixture(scope="module")
def searched(
    tmp_path_factory: pytest.TempPathFactory, server: FakeOpenAIServer
) -> Iterator[SearchSession]:
    tmp_path = tmp_path_factory.mktemp("native")
    session = SearchSession(_spec(tmp_path, server))
    try:
        session.optimize()
        yield session
    finally:
        session.close()


def test_invalid_and_repeated_proposals_are_failed_trials_with_a_reason(
    searched: SearchSession,
) -> None:
    study = searched.study()
    records = TrialRecord.all(study)
    invalid = [r for r in records if r.invalid is not None]
    repeats = [r for r in records if r.duplicate_of is not None]
    assert invalid and repeats  # the space makes both happen
    for r in invalid + repeats:
        assert r.state == "fail" and not r.counts
        assert r.reason is not None and "not counted" in r.reason
    for r in repeats:
        original = next(o for o in records if o.number == r.duplicate_of)
        assert original.counts and original.mixture_key == r.mixture_key
        assert r.model_calls == 0  # no call was made for the repeat
    for r in invalid:
        assert "slots" in r.invalid  # type: ignore[operator]
    # every complete or pruned trial in storage is a counted evaluation; each complete one is
    # a distinct mixture (a pruned mixture may be proposed again: the median it lost to moves)
    counted = [r for r in records if r.state in ("complete", "pruned")]
    assert all(r.counts for r in counted)
    keys = [r.mixture_key for r in counted if r.state == "complete"]
    assert len(keys) == len(set(keys))
    totals = searched.totals()
    assert totals.trials == len(counted) == 12 and totals.started == len(records)


def test_best_trials_and_the_dataframe_show_the_real_study(searched: SearchSession) -> None:
    study = searched.study()
    best = study.best_trials
    assert best
    keys = [TrialRecord.of(t).mixture_key for t in best]
    assert len(keys) == len(set(keys))  # no mixture twice on the front
    assert all(TrialRecord.of(t).counts for t in best)
    df = study.trials_dataframe()
    states = df["state"].value_counts().to_dict()
    counted = [r for r in TrialRecord.all(study) if r.counts]
    assert states.get("COMPLETE", 0) + states.get("PRUNED", 0) == len(counted)
    assert states.get("FAIL", 0) == len(study.trials) - len(counted)
    failed = df[df["state"] == "FAIL"]
    # why each failed, in the columns a user filters on
    reasons = failed["user_attrs_invalid"].fillna(
        failed["user_attrs_duplicate_of"].map(lambda v: f"repeats {v:.0f}", na_action="ignore")
    )
    assert reasons.notna().all()


def _dashboard_get(app: Any, path: str) -> Any:
    """GET ``path`` from a WSGI app in-process; the JSON body."""
    from wsgiref.util import setup_testing_defaults

    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    route, _, query = path.partition("?")
    environ.update({"PATH_INFO": route, "QUERY_STRING": query, "REQUEST_METHOD": "GET"})
    environ["wsgi.input"] = io.BytesIO(b"")
    status: list[str] = []

    def start_response(s: str, headers: Any, exc_info: Any = None) -> None:
        status.append(s)

    body = b"".join(app(environ, start_response))
    assert status[0].startswith("200"), (status, body[:300])
    return json.loads(body)


def test_optuna_dashboard_lists_exactly_the_counted_trials(searched: SearchSession) -> None:
    optuna_dashboard = pytest.importorskip("optuna_dashboard")
    storage = optuna.storages.RDBStorage(searched.storage_url)
    app = optuna_dashboard.wsgi(storage)
    studies = _dashboard_get(app, "/api/studies")["study_summaries"]
    (summary,) = [s for s in studies if s["study_name"] == "planted"]
    detail = _dashboard_get(app, f"/api/studies/{summary['study_id']}?after=0")
    shown = detail["trials"]
    counted = {r.number for r in TrialRecord.all(searched.study()) if r.counts}
    assert {t["number"] for t in shown if t["state"] in ("Complete", "Pruned")} == counted
    assert all(t["state"] == "Fail" for t in shown if t["number"] not in counted)
    best = detail["best_trials"]
    assert best
    best_keys = []
    for t in best:
        attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
        best_keys.append(attrs["mixture_key"])
        assert t["number"] in counted
    assert len(best_keys) == len(set(best_keys))  # no duplicates among the best trials
    for t in shown:  # each failed trial says why, in the attributes the dashboard shows
        if t["state"] == "Fail":
            attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
            assert "invalid" in attrs or "duplicate_of" in attrs


def test_resume_continues_the_count_and_the_sampler_moves_on(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    spec = _spec(tmp_path, server, budget={"n_trials": 5})
    first = SearchSession(spec)
    try:
        first.optimize()
        before = [(t.number, t.state) for t in first.study().get_trials()]
    finally:
        first.close()
    second = SearchSession(spec)
    try:
        second.optimize(n_trials=9)
        records = TrialRecord.all(second.study())
    finally:
        second.close()
    assert [(r.number, r.state) for r in records[: len(before)]] == [
        (n, s.name.lower()) for n, s in before
    ]
    counted = [r for r in records if r.counts]
    assert len(counted) == 9
    # the sampler still reaches the budget, well short of the driver's give-up point
    assert len(records) < 5 * 9 + 20
    complete = second.study().get_trials(states=(TrialState.COMPLETE,))
    keys = [TrialRecord.of(t).mixture_key for t in complete]
    assert len(keys) == len(set(keys))
