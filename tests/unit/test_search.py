"""The search end to end on a planted world served by the fault-injecting test server: trials
replay to their mixtures, cache reuse across trials is counted, studies resume, the export
runs, and the CLI reports bad specs as one paragraph with exit code 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import optuna
import pytest

from moa_search.analysis import analyze
from moa_search.cli.main import main
from moa_search.config import load_mixture
from moa_search.runtime.executor import Executor
from moa_search.search.choose import choose_trial
from moa_search.search.records import TrialRecord
from moa_search.search.session import SearchSession
from moa_search.search.space import describe_mixture, mixture_from_params
from moa_search.serve.app import app_from_files, running
from moa_search.testing import FakeOpenAIServer
from moa_search.testing.worlds import PlantedWorld, planted_items, write_planted_study

WORLD = PlantedWorld(
    skill={"strong": 0.7, "mid": 0.35, "weak": 0.2},
    aggregation_skill={"strong": 0.0, "mid": 1.0, "weak": 0.0},
)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(WORLD.behaviors()) as srv:
        yield srv


def write_spec(
    tmp_path: Path, server: FakeOpenAIServer, n_items: int = 12, **overrides: Any
) -> Path:
    """The planted study; with nothing held out (the search sees every prompt, as before
    held-out splits) unless ``evaluation`` says ``holdout``."""
    evaluation = overrides.pop("evaluation", {"rungs": [4, 12], "concurrency": 4})
    overrides["evaluation"] = {"holdout": 0, **evaluation}
    return write_planted_study(
        tmp_path,
        server.base_url,
        n_items=n_items,
        model_fields={
            "max_concurrency": 8,
            "input_price_per_mtok": 1.0,
            "output_price_per_mtok": 2.0,
        },
        **{
            "baseline": {"kind": "model", "model": "weak", "max_tokens": 32},
            "objectives": ["win_rate", "diversity", "cost_usd"],
            "seed": 3,
            **overrides,
        },
    )


def test_trials_replay_calls_are_reused_and_accounted(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    session = SearchSession(write_spec(tmp_path, server))
    try:
        study = session.optimize()
        trials = study.get_trials()
        assert len([t for t in trials if t.state.is_finished()]) >= 6
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert complete
        for t in complete:
            # a stored trial rebuilds exactly the mixture it evaluated
            m = mixture_from_params(t.params, session.spec.space, session.pool, seed=3)
            assert m == session.mixture_for(t.params)
            record = TrialRecord.of(t)
            assert describe_mixture(m) == record.mixture
            assert record.metrics is not None
            wr = record.metrics.win_rate
            assert wr.ci_low <= wr.mean <= wr.ci_high
            assert t.values[0] == pytest.approx(wr.mean)
        totals = session.totals()
        # every real call reached the server, and the cache saved the rest
        assert totals.model_calls == server.count()
        assert totals.calls_total > totals.model_calls
        assert session.cache is not None and session.cache.stats.hits > 0
        # the baseline model answered each prompt once, however many trials compared with it
        baseline_requests = [
            r
            for r in server.requests
            if r.model == "weak"
            and not r.stream
            and r.messages[0]["role"] == "user"
            and r.max_tokens == 32
        ]
        assert len(baseline_requests) == 12
        final = session.finalize()
        assert final is not None and final.n_items == 12
    finally:
        session.close()


def test_study_resumes_without_repeating_trials(tmp_path: Path, server: FakeOpenAIServer) -> None:
    spec = write_spec(tmp_path, server)
    first = SearchSession(spec)
    try:
        first.optimize(n_trials=3)
        before = [(t.number, t.params, t.state) for t in first.study().get_trials()]
    finally:
        first.close()
    calls_after_first = server.count()
    second = SearchSession(spec)
    try:
        second.optimize(n_trials=5)
        after = second.study().get_trials()
    finally:
        second.close()
    counted = [t for t in after if TrialRecord.of(t).counts]
    assert len(counted) == 5
    assert [(t.number, t.params, t.state) for t in after[: len(before)]] == before
    # nothing the first run paid for was asked again: each request reached the server once
    keys = [
        (r.model, json.dumps(r.messages), r.seed, r.max_tokens, r.temperature)
        for r in server.requests
    ]
    assert len(keys) == len(set(keys)) and len(keys) >= calls_after_first
    # a third run with the same target does nothing
    third = SearchSession(spec)
    try:
        third.optimize(n_trials=5)
        assert len(third.study().get_trials()) == len(after)
    finally:
        third.close()


def test_search_finds_self_moa_with_the_good_aggregator(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    # Planted: 'mid' is the only model that aggregates well; 'strong' is the best proposer.
    # Over 200 prompts the best mixtures are strong*3 -> mid (0.83), strong*2+mid -> mid (0.81);
    # the best with another aggregator scores 0.77.
    spec = write_spec(
        tmp_path,
        server,
        n_items=40,
        space={"min_layers": 1, "max_layers": 1, "max_samples": 3, "max_proposers": 3},
        objectives=["win_rate"],
        evaluation={"rungs": [40]},
        budget={"n_trials": 14},
        n_startup_trials=5,
    )
    session = SearchSession(spec)
    try:
        study = session.optimize()
        best = choose_trial(study, session.spec)
        assert best is not None
        composition = best.composition
        assert composition is not None and composition.aggregator == "mid"
        assert composition.layers[0].get("strong", 0) >= 2
        assert "weak" not in composition.layers[0]
        assert session.mixture_for(dict(best.params)).aggregator.model == "mid"
        # the role analysis reads the same study and credits 'mid' as the aggregator
        roles = {(r.role, r.model): r for r in analyze(study, n_boot=200).roles}
        assert roles[("aggregator", "mid")].effect > 0
        assert roles[("aggregator", "mid")].mean_with > roles[("aggregator", "mid")].mean_without
    finally:
        session.close()


def test_cli_search_best_export_run(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, server, budget={"n_trials": 4})
    assert main(["search", str(spec)]) == 0
    captured = capsys.readouterr()
    assert "[trial" in captured.err and "cached" in captured.err
    assert "chosen: trial" in captured.out
    assert main(["best", str(spec)]) == 0
    table = capsys.readouterr().out
    assert "win rate" in table and "*" in table
    out = tmp_path / "chosen.yaml"
    assert main(["export", str(spec), "--out", str(out)]) == 0
    mixture = load_mixture(out)
    assert mixture.pool is not None and not isinstance(mixture.pool, str)
    prov = mixture.provenance or {}
    assert prov["study"] == "planted" and "win_rate" in prov["metrics"]
    assert len(prov["dataset"]["sha256"]) == 64 and prov["package_version"]
    result = Executor(mixture.pool).run(mixture, planted_items(1)[0].prompt)  # type: ignore[arg-type]
    assert "code word" in result.answer
    assert main(["run", str(out), "--cache", "none", planted_items(2)[1].prompt]) == 0
    assert "code word" in capsys.readouterr().out
    # the exported file, served as is, streams its answer to the official openai client
    with running(app_from_files([out])) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        model = client.models.list().data[0].id
        assert model == mixture.name
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": planted_items(3)[2].prompt}],
            stream=True,
        )
        pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
        client.close()
    assert len([p for p in pieces if p]) > 1 and "code word" in "".join(pieces)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"judge": {"kind": "telepathy"}}, "judge.kind"),
        ({"baseline": {"kind": "model", "model": "nobody"}}, "baseline.model"),
        ({"dataset": "missing.jsonl"}, "missing.jsonl"),
        ({"budget": {"n_trials": -3}}, "budget.n_trials"),
        ({"objectives": ["win_rate", "happiness"]}, "objectives"),
        ({"evaluation": {"rungs": [8, 4]}}, "evaluation.rungs"),
    ],
)
def test_cli_bad_spec_is_one_paragraph_and_exit_2(
    tmp_path: Path,
    server: FakeOpenAIServer,
    capsys: pytest.CaptureFixture[str],
    override: dict[str, Any],
    field: str,
) -> None:
    spec = write_spec(tmp_path, server, **override)
    assert main(["search", str(spec)]) == 2
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err
    assert err.count("\n") == 1
