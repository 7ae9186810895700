"""The held-out verdict on a planted world served by the fault-injecting test server: the split
never leaks into the search, the baselines are built as documented (best single model, Self-MoA
at the chosen mixture's calls, the layer-wise rule) and reuse the search's calls, and
``moa-search best --json`` prints the verdict's keys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest

from moa_search.cli.main import main
from moa_search.cli.study import verdict_spend_line
from moa_search.config.dataset import TaskItem, load_dataset
from moa_search.config.study import load_study_spec, spec_pool
from moa_search.errors import ConfigError
from moa_search.runtime.prompting import sample_seed
from moa_search.search.baselines import layerwise_rule
from moa_search.search.records import FinalEvaluation, HoldoutVerdict, StudyTotals, TrialRecord
from moa_search.search.session import SearchSession
from moa_search.search.split import split_items
from moa_search.search.verdict import paired_difference
from moa_search.testing import FakeOpenAIServer
from moa_search.testing.worlds import PlantedWorld, write_planted_study

# 'strong' and 'mid' answer well alone, 'weak' (also the study's baseline) rarely; only 'mid'
# aggregates well.
WORLD = PlantedWorld(
    skill={"strong": 0.9, "mid": 0.8, "weak": 0.1},
    aggregation_skill={"strong": 0.3, "mid": 1.0, "weak": 0.0},
)
SEED = 3


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(WORLD.behaviors()) as srv:
        yield srv


def write_spec(tmp_path: Path, server: FakeOpenAIServer, **overrides: Any) -> Path:
    return write_planted_study(
        tmp_path,
        server.base_url,
        n_items=20,
        model_fields={"max_concurrency": 8, "input_price_per_mtok": 1.0},
        **{
            "baseline": {"kind": "model", "model": "weak", "max_tokens": 32},
            "objectives": ["win_rate"],
            "space": {"min_layers": 1, "max_layers": 1, "max_samples": 3, "max_proposers": 3},
            "evaluation": {"rungs": [7, 20], "concurrency": 4, "holdout": 0.3},
            "budget": {"n_trials": 5},
            "seed": SEED,
            **overrides,
        },
    )


def _prompt_in(prompt: str, messages: list[dict[str, Any]]) -> bool:
    return any(prompt in str(m.get("content", "")) for m in messages)


def test_split_keeps_groups_together_and_is_seeded() -> None:
    items = tuple(
        TaskItem(f"q{i}", f"prompt {i}", group=f"g{i // 3}" if i < 12 else None) for i in range(20)
    )
    split = split_items(items, 0.3, seed=7)
    assert split == split_items(items, 0.3, seed=7)
    assert 6 <= len(split.holdout) < 9 and len(split.search) + len(split.holdout) == 20
    held = set(split.holdout_ids)
    for g in range(4):
        members = {f"q{i}" for i in range(g * 3, g * 3 + 3)}
        assert members <= held or not members & held
    assert [i.id for i in split.search] == [i.id for i in items if i.id not in held]
    assert split_items(items, 0.0, seed=7).holdout == ()
    # one group cannot be divided: nothing is held out
    one = tuple(TaskItem(f"q{i}", "p", group="one") for i in range(5))
    assert split_items(one, 0.3, seed=0).holdout == ()


def test_dataset_group_field(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "a", "group": 4}\n{"prompt": "b"}\n')
    assert [i.group for i in load_dataset(path)] == ["4", None]
    path.write_text('{"prompt": "a", "group": [1]}\n')
    with pytest.raises(ConfigError, match=r"line 1\.group"):
        load_dataset(path)


def test_paired_difference_is_paired_on_common_items() -> None:
    d = paired_difference({"a": 1.0, "b": 0.5, "c": 1.0}, {"a": 0.0, "b": 0.5, "x": 1.0})
    assert d is not None and d.n == 2 and d.mean == pytest.approx(0.5)
    assert d.ci_low < d.mean < d.ci_high and d.method == "paired normal"
    assert paired_difference({"a": 1.0}, {"b": 1.0}) is None


def test_search_never_sees_held_out_prompts_and_verdict_reuses_its_calls(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, server)
    session = SearchSession(spec)
    try:
        assert (len(session.search_items), len(session.holdout_items)) == (14, 6)
        assert session.rungs == (7, 14)  # clipped to the search split
        study = session.optimize()
        searched = list(server.requests)
        assert searched
        held = [i.prompt for i in session.holdout_items]
        for r in searched:
            assert not any(_prompt_in(p, r.messages) for p in held), r
        assert all(TrialRecord.of(t).n_items <= 14 for t in study.trials)
        # the first layer-1 proposer call of each (model, search prompt) the trials made
        first_calls = {
            (r.model, r.messages[0]["content"])
            for r in searched
            if len(r.messages) == 1
            and r.max_tokens == 256
            and r.temperature == 0.7
            and r.seed == sample_seed(SEED, 0)
        }
        assert first_calls
        final = session.finalize()
        verdict = session.verdict()
    finally:
        session.close()
    assert final is not None and final.holdout and final.n_items == 6
    assert verdict is not None and (verdict.n_search, verdict.n_holdout) == (14, 6)
    after = server.requests[len(searched) :]
    assert any(_prompt_in(p, r.messages) for r in after for p in held)
    # picking the best single model on the search split asked none of those calls again
    solo_asked = {(r.model, r.messages[0]["content"]) for r in after if len(r.messages) == 1}
    assert not solo_asked & first_calls
    # Self-MoA makes as many calls per prompt as the chosen mixture (reachable: it has a layer)
    assert verdict.chosen.calls_per_prompt >= 2
    self_moa = verdict.baselines["self_moa"]
    assert self_moa.calls_per_prompt == verdict.chosen.calls_per_prompt
    best = verdict.baselines["best_single"].composition
    assert best is not None and best.layers == ()
    assert best.aggregator == max(verdict.solo_win_rates, key=verdict.solo_win_rates.__getitem__)
    assert self_moa.composition.aggregator == best.aggregator
    assert self_moa.composition.layers == ({best.aggregator: self_moa.calls_per_prompt - 1},)
    assert verdict.chosen.diff_vs_chosen is None
    for entry in verdict.baselines.values():
        d = entry.diff_vs_chosen
        assert d is not None and d.n == 6 and d.ci_low <= d.mean <= d.ci_high

    assert main(["best", str(spec), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"split", "chosen", "baselines"}
    assert out["split"] == {"search": 14, "holdout": 6}
    assert set(out["baselines"]) == {"best_single", "self_moa", "layerwise_rule"}
    keys = {"mixture", "win_rate", "diff_vs_chosen", "calls_per_prompt", "cost_per_prompt"}
    for entry in [out["chosen"], *out["baselines"].values()]:
        assert set(entry) == keys
        assert set(entry["win_rate"]) == {"mean", "ci_low", "ci_high"}
    assert out["chosen"]["diff_vs_chosen"] is None
    for entry in out["baselines"].values():
        assert {"mean", "ci_low", "ci_high"} <= set(entry["diff_vs_chosen"])
    assert main(["best", str(spec)]) == 0
    table = capsys.readouterr().out
    assert "held-out verdict" in table and "best_single" in table
    assert "The chosen mixture is" in table or "No baseline is cheaper" in table


def test_layerwise_rule_keeps_the_proposers_above_the_layer_mean(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    (tmp_path / "current.yaml").write_text(
        "layers: [[{model: strong}, {model: weak}]]\naggregator: {model: mid}\n"
    )
    spec = write_spec(
        tmp_path,
        server,
        space={"min_layers": 2, "max_layers": 2, "max_samples": 2, "max_proposers": 2},
        budget={"n_trials": 3},
        incumbent="current.yaml",
    )
    session = SearchSession(spec)
    try:
        session.optimize()
        session.finalize()
        verdict = session.verdict()
    finally:
        session.close()
    assert verdict is not None
    solo = verdict.solo_win_rates
    # layer 2's rule inputs are the proposers' own layer-1 answers: the models alone
    assert verdict.rule_win_rates == ({m: solo[m] for m in ("strong", "mid", "weak")},)
    rule = verdict.baselines["layerwise_rule"].composition
    # planted: strong and mid answer alone far better than weak, so only they are above the mean
    assert rule.layers == ({"strong": 1, "mid": 1, "weak": 1}, {"strong": 1, "mid": 1})
    mean = sum(solo.values()) / 3
    assert {m for m, w in solo.items() if w > mean} == {"strong", "mid"}
    assert rule.aggregator == verdict.baselines["best_single"].composition.aggregator
    # the spec's incumbent is judged on the same held-out prompts
    incumbent = verdict.baselines["incumbent"]
    assert incumbent.mixture == "[strong, weak] -> mid" and incumbent.calls_per_prompt == 3
    assert incumbent.diff_vs_chosen is not None and incumbent.diff_vs_chosen.n == 6


def test_layerwise_rule_later_layers_use_answers_in_that_layer(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    path = write_spec(tmp_path, server)
    spec = load_study_spec(path)
    pool = spec_pool(spec, path, None)
    asked: list[tuple[int, str]] = []
    planted = {"strong": 0.9, "mid": 0.6, "weak": 0.3}

    def score(mixture: Any) -> float:
        # a model's answer in layer i+1 = the rule's first i layers, with it aggregating
        asked.append((len(mixture.layers), mixture.aggregator.model))
        assert mixture.aggregator.max_tokens == spec.space.proposer_max_tokens
        return planted[mixture.aggregator.model]

    solo = {"strong": 0.7, "mid": 0.65, "weak": 0.2}
    mixture, rates = layerwise_rule(spec, pool, 3, "mid", solo, score)
    # layer 1: all; layer 2: above mean(0.7, 0.65, 0.2) = 0.517 -> strong, mid;
    # layer 3: above mean(0.9, 0.6) -> strong
    assert [[a.model for a in layer] for layer in mixture.layers] == [
        ["strong", "mid", "weak"],
        ["strong", "mid"],
        ["strong"],
    ]
    assert rates == (solo, {"strong": 0.9, "mid": 0.6})
    assert asked == [(1, "strong"), (1, "mid")]
    assert mixture.aggregator.model == "mid"
    assert mixture.aggregator.max_tokens == spec.space.aggregator_max_tokens


def test_holdout_zero_keeps_the_old_behaviour(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(
        tmp_path, server, evaluation={"rungs": [7, 20], "holdout": 0}, budget={"n_trials": 3}
    )
    session = SearchSession(spec)
    try:
        assert session.search_items == session.items and session.holdout_items == ()
        assert session.rungs == (7, 20)
        session.optimize()
        final = session.finalize()
        assert session.verdict() is None
    finally:
        session.close()
    assert final is not None and final.n_items == 20 and not final.holdout
    assert main(["best", str(spec), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list) and any(r["chosen"] for r in rows)


def test_a_stored_study_keeps_its_split(tmp_path: Path, server: FakeOpenAIServer) -> None:
    spec = write_spec(tmp_path, server)
    session = SearchSession(spec)
    try:
        session.study()
    finally:
        session.close()
    spec = write_spec(tmp_path, server, evaluation={"rungs": [7, 20], "holdout": 0.5})
    session = SearchSession(spec)
    try:
        with pytest.raises(ConfigError, match="held-out split"):
            session.study()
    finally:
        session.close()


def test_a_study_stored_before_splits_holds_nothing_out(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    spec = write_spec(tmp_path, server)
    session = SearchSession(spec)
    try:
        # a study an older version stored: a trial, and no split
        old = optuna.create_study(
            storage=session.storage_url, study_name="planted", direction="maximize"
        )
        old.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
        session.study()
        assert session.holdout_items == () and session.search_items == session.items
        assert session.rungs == (7, 20)
    finally:
        session.close()


def test_cli_search_prints_the_verdict_and_best_says_when_there_is_none(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, server, budget={"n_trials": 2})
    session = SearchSession(spec)
    try:
        session.optimize()  # searched, not finalized: no verdict yet
    finally:
        session.close()
    capsys.readouterr()
    assert main(["best", str(spec), "--json"]) == 1
    assert f"run 'moa-search search {spec}'" in capsys.readouterr().err
    before = server.count()
    assert main(["search", str(spec)]) == 0
    verdict_requests = server.count() - before  # the budget was spent: only the verdict calls
    out = capsys.readouterr().out
    assert "on the 6 held-out prompts" in out and "held-out verdict: 6 prompts" in out
    assert "self_moa" in out and "layerwise_rule" in out
    session = SearchSession(spec)
    try:
        study = session.study()
    finally:
        session.close()
    verdict, final = HoldoutVerdict.load(study), FinalEvaluation.load(study)
    assert verdict is not None and final is not None
    assert verdict_requests == verdict.model_calls > final.model_calls > 0
    searched = StudyTotals.of(TrialRecord.all(study)).model_calls
    assert verdict_spend_line(verdict, final.model_calls, searched) in out.splitlines()
    assert f"held-out verdict: {verdict_requests:,} more model calls (" in out
    assert f": {final.model_calls:,} for the chosen mixture, " in out


def test_aggregating_baselines_use_only_models_the_space_lets_aggregate(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    # every model may propose, only 'mid' and 'weak' may aggregate: the best model alone
    # ('strong' with this seed) is the best_single baseline whatever its role, but
    # Self-MoA and the layer-wise rule aggregate with an allowed model only
    spec = write_spec(
        tmp_path,
        server,
        space={
            "min_layers": 1,
            "max_layers": 1,
            "max_samples": 2,
            "max_proposers": 2,
            "aggregators": ["mid", "weak"],
        },
        budget={"n_trials": 3},
    )
    session = SearchSession(spec)
    try:
        session.optimize()
        session.finalize()
        verdict = session.verdict()
    finally:
        session.close()
    assert verdict is not None
    solo = verdict.solo_win_rates
    assert set(solo) == {"strong", "mid", "weak"}
    best = max(solo, key=lambda m: solo[m])
    assert best == "strong"  # so the rule must not simply reuse the best single model
    assert verdict.baselines["best_single"].composition.aggregator == best
    allowed = max(("mid", "weak"), key=lambda m: solo[m])
    assert allowed == "mid"  # planted: 'weak' answers alone far worse
    self_moa = verdict.baselines["self_moa"].composition
    assert self_moa.aggregator == "mid" and set(self_moa.layers[0]) == {"mid"}
    assert verdict.baselines["layerwise_rule"].composition.aggregator == "mid"
