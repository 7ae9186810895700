"""AlpacaEval's result format, checked against the real published files.

The data live outside the project, in ``<repo>/../shared/data/alpaca_eval`` (see its README);
tests that need them fail — never skip — when the folder is missing.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest

from moa_search.config import AgentSpec, MixtureConfig
from moa_search.config.dataset import TaskItem
from moa_search.config.study import BaselineSpec
from moa_search.errors import ConfigError, MoaSearchError, QuorumError
from moa_search.interop import alpaca
from moa_search.interop.alpaca import (
    Annotation,
    GLMWeights,
    NotRecordedError,
    RecordedJudge,
    ReplayBackend,
)
from moa_search.runtime.executor import Executor
from moa_search.search.objective import Evaluator

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "alpaca_eval"
RESULTS = DATA / "results"
LEADERBOARD_CSV = DATA / "leaderboard_AlpacaEval_2_weighted_alpaca_eval_gpt4_turbo.csv"
ANNOTATED = {
    "claude-2.1",
    "gpt-3.5-turbo-1106",
    "Qwen-14B-Chat",
    "OpenHermes-2.5-Mistral-7B",
    "gemma-7b-it",
    "vicuna-13b-v1.5",
    "alpaca-7b",
    "phi-2",
    "NullModel",
}
#: How close the length-controlled win rate gets without AlpacaEval's instruction_difficulty
#: file (see alpaca.estimate_instruction_difficulty): measured 0.80 points at worst.
LC_TOLERANCE = 1.0


@pytest.fixture(scope="module")
def data() -> Path:
    assert DATA.is_dir(), (
        f"the shared AlpacaEval data are missing: expected them at {DATA.resolve()} "
        "(they are never copied into the project)"
    )
    return DATA


@pytest.fixture(scope="module")
def published(data: Path) -> dict[str, dict[str, str]]:
    with LEADERBOARD_CSV.open(encoding="utf-8") as f:
        return {row[""]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def annotation_sets(data: Path) -> dict[str, list[Annotation]]:
    files = alpaca.annotated_models(data)
    return {m: alpaca.load_annotations(f) for m, f in files.items()}


@pytest.fixture(scope="module")
def weights(data: Path) -> dict[str, GLMWeights]:
    return alpaca.load_lc_weights(data / alpaca.LC_WEIGHTS_FILE)


@pytest.fixture(scope="module")
def difficulty(
    annotation_sets: dict[str, list[Annotation]], weights: dict[str, GLMWeights]
) -> dict[str, float]:
    return alpaca.estimate_instruction_difficulty(annotation_sets, weights)


# ----------------------------------------------------------------------------- leaderboard


def test_every_annotation_file_reproduces_the_leaderboard(
    data: Path, published: dict[str, dict[str, str]]
) -> None:
    files = sorted(RESULTS.glob("*/*/annotations.json"))
    assert {f.parents[1].name for f in files} == ANNOTATED
    mismatches: list[str] = []
    for f in files:
        model = f.parents[1].name
        got = alpaca.leaderboard_metrics(alpaca.load_annotations(f), model=model)
        assert got["model"] == model
        row = published[model]
        for column in alpaca.LEADERBOARD_COLUMNS:
            want = float(row[column])
            if column.startswith("n_"):
                if got[column] != int(want) or not isinstance(got[column], int):
                    mismatches.append(f"{model}.{column}: {got[column]!r} != {int(want)}")
            elif abs(got[column] - want) > 1e-4:
                mismatches.append(f"{model}.{column}: {got[column]!r} != {want}")
    assert not mismatches, "\n".join(mismatches)


def test_leaderboard_of_a_folder_matches_the_csv(
    data: Path, published: dict[str, dict[str, str]]
) -> None:
    rows = alpaca.leaderboard(data)
    assert set(rows) == ANNOTATED
    for model, row in rows.items():
        assert list(row) == [*alpaca.LEADERBOARD_COLUMNS, "length_controlled_winrate"]
        assert row["n_total"] == int(published[model]["n_total"])
        assert abs(row["win_rate"] - float(published[model]["win_rate"])) < 1e-4
        lc = float(published[model]["length_controlled_winrate"])
        assert abs(row["length_controlled_winrate"] - lc) <= LC_TOLERANCE, model
    # the results/ folder itself works as well
    assert set(alpaca.leaderboard(RESULTS)) == ANNOTATED


def test_metrics_follow_alpaca_eval_rules_for_nulls_zeros_and_draws() -> None:
    # 0 is a legacy draw, None is dropped, 3.0 is not a preference (dropped), 1.5 is a draw
    prefs: list[float | None] = [2.0, 1.0, 1.5, 0.0, None, 1.75, 1.25, 3.0]
    got = alpaca.leaderboard_metrics(prefs)
    kept = np.array([1.0, 0.0, 0.5, 0.5, 0.75, 0.25])
    assert got["n_total"] == 6
    assert got["n_draws"] == 2
    assert got["n_wins"] == 2 and got["n_wins_base"] == 2
    assert got["win_rate"] == pytest.approx(kept.mean() * 100)
    assert got["standard_error"] == pytest.approx(kept.std(ddof=1) / math.sqrt(6) * 100)
    # discrete: 2.0 and 1.75 win, 1.0 and 1.25 lose, 1.5 and 0 draw
    assert got["discrete_win_rate"] == pytest.approx((2 + 2 / 2) / 6 * 100)
    with pytest.raises(ValueError, match="no annotation"):
        alpaca.leaderboard_metrics([None, None])


# ----------------------------------------------------------------------------- length control


def test_length_controlled_winrate_is_close_to_the_leaderboard(
    annotation_sets: dict[str, list[Annotation]],
    weights: dict[str, GLMWeights],
    difficulty: dict[str, float],
    published: dict[str, dict[str, str]],
) -> None:
    errors = {}
    for model, anns in annotation_sets.items():
        lc = alpaca.length_controlled_winrate(anns, weights[model], difficulty)
        errors[model] = lc - float(published[model]["length_controlled_winrate"])
    assert max(abs(e) for e in errors.values()) <= LC_TOLERANCE, errors
    # and it is a real correction: the ranking follows the published LC, not the raw rate
    assert float(np.mean([abs(e) for e in errors.values()])) < 0.5, errors


def test_length_controlled_formula_given_difficulty() -> None:
    anns = [
        Annotation(f"q{i}", "ref" * (i + 1), "out", "gpt4_1106_preview", "m", 1.2) for i in range(4)
    ]
    w = GLMWeights(length=-1.5, difficulty=0.5, not_gamed_baseline=-1.0)
    gamma = [0.0, 1.0, -2.0, 3.0]
    want = 100 * np.mean([1 / (1 + math.exp(-(-1.0 + 0.5 * g))) for g in gamma])
    by_position = alpaca.length_controlled_winrate(anns, w, gamma)
    by_text = alpaca.length_controlled_winrate(anns, w, {f"q{i}": g for i, g in enumerate(gamma)})
    assert by_position == pytest.approx(want) and by_text == pytest.approx(want)
    same = [Annotation("q", "a", "b", "x", "x", 1.9)]
    assert alpaca.length_controlled_winrate(same, w, [5.0]) == 50.0
    with pytest.raises(ValueError, match="difficulty"):
        alpaca.length_controlled_winrate(anns, w, {"q0": 1.0})


def test_fitted_weights_without_stored_ones_are_a_rough_fallback(
    annotation_sets: dict[str, list[Annotation]],
    weights: dict[str, GLMWeights],
    difficulty: dict[str, float],
    published: dict[str, dict[str, str]],
) -> None:
    median_length = float(
        np.median([w.length for m, w in weights.items() if m != "gpt4_1106_preview"])
    )
    free, fixed = [], []
    for model, anns in annotation_sets.items():
        want = float(published[model]["length_controlled_winrate"])
        w_free = alpaca.fit_lc_weights(anns, difficulty)
        w_fixed = alpaca.fit_lc_weights(anns, difficulty, length_weight=median_length)
        assert w_fixed.length == median_length
        free.append(alpaca.length_controlled_winrate(anns, w_free, difficulty) - want)
        fixed.append(alpaca.length_controlled_winrate(anns, w_fixed, difficulty) - want)
    # the documented error bands (fit_lc_weights): up to 8.1 and 5.0 points
    assert max(map(abs, free)) < 8.5 and all(e < 0 for e in free), free
    assert max(map(abs, fixed)) < 5.5, fixed


def test_difficulty_needs_two_weighted_models(
    annotation_sets: dict[str, list[Annotation]], weights: dict[str, GLMWeights]
) -> None:
    one = {"claude-2.1": annotation_sets["claude-2.1"]}
    with pytest.raises(ValueError, match="at least two"):
        alpaca.estimate_instruction_difficulty(one, weights)


def test_lc_weights_file(tmp_path: Path, weights: dict[str, GLMWeights]) -> None:
    assert weights["gpt4_1106_preview"] == GLMWeights(0.0, 0.0, 0.0)
    assert weights["claude-2.1"].difficulty == pytest.approx(0.8304070732099538)
    f = tmp_path / "w.csv"
    header = ",np.tanh(std_delta_len),instruction_difficulty,not_gamed_baseline.astype(float)\n"
    f.write_text(header + "m,1,2,3\nm,4,5,6\n", encoding="utf-8")
    assert alpaca.load_lc_weights(f) == {"m": GLMWeights(4.0, 5.0, 6.0)}  # the last row wins
    f.write_text(",a,b\nm,1,2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="header"):
        alpaca.load_lc_weights(f)


# ----------------------------------------------------------------------------- bad files


def _write(tmp_path: Path, content: Any, name: str = "annotations.json") -> Path:
    f = tmp_path / name
    if isinstance(content, bytes):
        f.write_bytes(content)
    else:
        f.write_text(json.dumps(content), encoding="utf-8")
    return f


GOOD = {
    "instruction": "q",
    "output_1": "a",
    "output_2": "b",
    "generator_1": "ref",
    "generator_2": "m",
    "preference": 1.7,
}


@pytest.mark.parametrize(
    ("content", "field", "expected"),
    [
        ({"instruction": "q"}, "", "a JSON list"),
        ([{k: v for k, v in GOOD.items() if k != "preference"}], "[0].preference", "required"),
        ([GOOD, {**GOOD, "preference": "high"}], "[1].preference", "a number"),
        ([{**GOOD, "output_2": 3}], "[0].output_2", "a string"),
        ([{k: v for k, v in GOOD.items() if k != "instruction"}], "[0].instruction", "required"),
        (["not an object"], "[0]", "an object"),
        (b"\xff\xfe[]", "", "UTF-8"),
        (b"[{", "", "JSON"),
    ],
)
def test_bad_annotation_files_are_config_errors(
    tmp_path: Path, content: Any, field: str, expected: str
) -> None:
    f = _write(tmp_path, content)
    with pytest.raises(ConfigError) as info:
        alpaca.load_annotations(f)
    assert info.value.source == str(f)
    assert info.value.field == field
    assert expected in str(info.value)


def test_annotations_accept_null_preferences(tmp_path: Path) -> None:
    f = _write(tmp_path, [GOOD, {**GOOD, "instruction": "r", "preference": None}])
    anns = alpaca.load_annotations(f)
    assert [a.preference for a in anns] == [1.7, None]
    assert alpaca.leaderboard_metrics(anns)["n_total"] == 1


def test_bad_model_outputs_and_missing_files(tmp_path: Path) -> None:
    f = _write(tmp_path, [{"instruction": "q"}], "model_outputs.json")
    with pytest.raises(ConfigError, match=r"\[0\]\.output"):
        alpaca.load_model_outputs(f)
    with pytest.raises(ConfigError, match="no such file"):
        alpaca.load_model_outputs(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match=r"annotations\.json"):
        alpaca.annotated_models(tmp_path)


# ----------------------------------------------------------------------------- recorded judge


def test_recorded_judge(annotation_sets: dict[str, list[Annotation]]) -> None:
    anns = annotation_sets["claude-2.1"]
    judge = RecordedJudge(anns)
    assert judge.n_recorded == len(anns)
    a = anns[0]
    item = TaskItem("0", a.instruction)

    async def ask(candidate: str, baseline: str) -> float:
        return (await judge.apreference(item, candidate, baseline)).preference

    assert asyncio.run(ask(a.output_2, a.output_1)) == pytest.approx(a.preference - 1)
    assert asyncio.run(ask(a.output_1, a.output_2)) == pytest.approx(2 - a.preference)
    with pytest.raises(NotRecordedError) as info:
        asyncio.run(ask("an answer nobody recorded", a.output_1))
    assert isinstance(info.value, MoaSearchError) and isinstance(info.value, ValueError)
    with pytest.raises(NotRecordedError, match="baseline"):
        asyncio.run(ask(a.output_2, "another baseline"))
    loose = RecordedJudge(anns, check_baseline=False)
    assert loose.lookup(a.instruction, a.output_2, "another baseline") == pytest.approx(
        a.preference - 1
    )
    failed = RecordedJudge([Annotation("q", "x", "y", "ref", "m", None)])
    with pytest.raises(NotRecordedError, match="null"):
        failed.lookup("q", "y", "x")


# ----------------------------------------------------------------------------- replay


@pytest.fixture
def no_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to build an OpenAI client (the only way to reach a model) fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a replay made a real client")

    monkeypatch.setattr(openai, "AsyncOpenAI", refuse)


def test_replay_backend_drives_the_executor(data: Path, no_http: None) -> None:
    aliases = {
        "qwen110": "Qwen1.5-110B-Chat",
        "llama70": "Meta-Llama-3-70B-Instruct",
        "moa": "Together-MoA",
    }
    pool = alpaca.replay_pool(aliases, prices={"moa": (1.0, 2.0)})
    backends = alpaca.replay_backends(RESULTS, aliases, pool=pool)
    assert all(isinstance(b, ReplayBackend) for b in backends.values())
    # replay models: never reached over the network
    assert {(m.kind, m.base_url) for m in pool.models} == {("replay", None)}
    executor = Executor(pool, backends=backends)
    mixture = MixtureConfig(
        layers=((AgentSpec(model="qwen110"), AgentSpec(model="llama70")),),
        aggregator=AgentSpec(model="moa"),
    )
    recorded = {
        m: {
            o.instruction: o.output
            for o in alpaca.load_model_outputs(RESULTS / m / "model_outputs.json")
        }
        for m in aliases.values()
    }
    items = alpaca.alpaca_items(RESULTS, limit=3)
    assert [i.id for i in items] == ["0", "1", "2"] and all(i.reference for i in items)
    for item in items:
        result = executor.run(mixture, item.prompt)
        assert result.answer == recorded["Together-MoA"][item.prompt]
        assert result.layer_outputs == (
            (
                recorded["Qwen1.5-110B-Chat"][item.prompt],
                recorded["Meta-Llama-3-70B-Instruct"][item.prompt],
            ),
        )
        assert [c.role for c in result.trace.calls] == ["proposer", "proposer", "aggregator"]
        assert all(c.ok and c.usage_estimated for c in result.trace.calls)
        agg = result.trace.calls[-1]
        assert agg.cost_usd == pytest.approx((agg.tokens_in * 1.0 + agg.tokens_out * 2.0) / 1e6)
    with pytest.raises(QuorumError) as info:
        executor.run(mixture, "An instruction nobody recorded")
    assert {f.kind for f in info.value.failures} == {"not_found"}


def test_replay_pool_anchored_in_the_results_runs_on_its_own(data: Path, no_http: None) -> None:
    aliases = {"claude": "claude-2.1"}
    relative = alpaca.replay_pool(aliases)
    assert relative.get("claude").replay == str(Path("claude-2.1") / "model_outputs.json")
    pool = alpaca.replay_pool(aliases, results_dir=DATA)  # the folder holding results/
    assert pool == relative.relative_to(RESULTS)
    item = alpaca.alpaca_items(RESULTS, limit=1)[0]
    recorded = {
        o.instruction: o.output
        for o in alpaca.load_model_outputs(RESULTS / "claude-2.1" / "model_outputs.json")
    }
    # no replay_backends: the executor builds the replay backend from the pool model's kind
    answer = Executor(pool).run(MixtureConfig(aggregator=AgentSpec(model="claude")), item.prompt)
    assert answer.answer == recorded[item.prompt]


def test_strict_replay_refuses_requests_with_references(data: Path, no_http: None) -> None:
    aliases = ["Qwen1.5-72B-Chat", "Together-MoA-Lite"]
    backends = alpaca.replay_backends(RESULTS, aliases, plain_prompt_only=True)
    executor = Executor(alpaca.replay_pool(aliases), backends=backends)
    prompt = alpaca.alpaca_items(RESULTS, limit=1)[0].prompt
    alone = MixtureConfig(aggregator=AgentSpec(model="Qwen1.5-72B-Chat"))
    assert executor.run(alone, prompt).answer  # layer 0: what was recorded
    stacked = MixtureConfig(
        layers=((AgentSpec(model="Qwen1.5-72B-Chat"),),),
        aggregator=AgentSpec(model="Together-MoA-Lite"),
    )
    with pytest.raises(MoaSearchError, match="not_found"):
        executor.run(stacked, prompt)


def test_evaluation_with_replays_and_recorded_verdicts(
    data: Path, annotation_sets: dict[str, list[Annotation]], no_http: None
) -> None:
    """A whole evaluation — baseline, candidate, judge — with no model call."""
    aliases = {"claude": "claude-2.1", "gpt4": "gpt4_1106_preview"}
    executor = Executor(
        alpaca.replay_pool(aliases), backends=alpaca.replay_backends(RESULTS, aliases)
    )
    evaluator = Evaluator(
        executor,
        RecordedJudge(annotation_sets["claude-2.1"]),
        BaselineSpec(kind="model", model="gpt4"),
        None,
    )
    items = alpaca.alpaca_items(RESULTS, limit=10)
    mixture = MixtureConfig(aggregator=AgentSpec(model="claude"))

    async def go() -> Any:
        try:
            return await evaluator.aevaluate(mixture, items)
        finally:
            await executor.aclose()

    ev = asyncio.run(go())
    by_instruction = {a.instruction: a.preference - 1 for a in annotation_sets["claude-2.1"]}
    want = np.mean([by_instruction[i.prompt] for i in items])
    assert ev.judge_failures == 0 and ev.failures == 0
    assert ev.win_rate.mean == pytest.approx(want)
