"""Search progress through the command line over the fake server: a line per trial with its
ETA and the spend against the budget, progress inside a trial, the reason for every trial that
is not a complete evaluation, a "best" that only moves on a strictly better win rate, a clear
line on a study already complete, a terminal bar, and ``search --json``'s one object."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moa_search.cli.main import main
from moa_search.search.progress import best_so_far, eta_seconds, spend_text, stop_reason
from moa_search.search.records import StudyTotals, TrialRecord
from moa_search.testing import FakeOpenAIServer
from moa_search.testing.worlds import PlantedWorld, write_planted_study

WORLD = PlantedWorld(
    skill={"strong": 0.7, "mid": 0.35, "weak": 0.2},
    aggregation_skill={"strong": 0.0, "mid": 1.0, "weak": 0.0},
)
TRIAL_LINE = re.compile(
    r"^\[trial +(\d+) (\w+) *\] (.*?) \| best (?:#(\d+) ([0-9.]+)|-) \| (\d+)/(\d+) trials \| "
    r"spent \$([0-9.]+) of \$([0-9.]+) \(\d+%\), [0-9,]+ tok \| calls .* \| \S+, ETA (\S+)$"
)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(WORLD.behaviors()) as srv:
        yield srv


def _spec(tmp_path: Path, server: FakeOpenAIServer, n_items: int = 8, **overrides: Any) -> Path:
    """The planted study, priced, with a dollar budget far above what it spends; a space where
    some proposals are invalid (a model in more slots than max_samples) and repeats happen."""
    return write_planted_study(
        tmp_path,
        server.base_url,
        n_items=n_items,
        model_fields={"input_price_per_mtok": 1.0, "output_price_per_mtok": 2.0},
        **{
            "space": {"min_layers": 1, "max_layers": 1, "max_samples": 1, "max_proposers": 2},
            "objectives": ["win_rate"],
            "evaluation": {"rungs": [2, 8], "holdout": 0, "concurrency": 4},
            "budget": {"n_trials": 5, "max_usd": 50.0},
            "n_startup_trials": 1,
            "sampler": "tpe",  # proposes slot by slot: invalid proposals and repeats happen
            "pruner": "median",
            "seed": 5,
            **overrides,
        },
    )


def _trial_lines(err: str) -> list[re.Match[str]]:
    return [m for line in err.splitlines() if (m := TRIAL_LINE.match(line))]


def test_search_lines_show_eta_spend_against_budget_and_reasons(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path, server)
    assert main(["search", str(spec)]) == 0
    out, err = capsys.readouterr()
    assert "\r" not in err and "\x1b[" not in err  # not a terminal: plain lines only
    lines = err.splitlines()
    trials = _trial_lines(err)
    assert trials, err
    numbers = [int(m.group(1)) for m in trials]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    for m in trials:
        assert m.group(9) == "50"  # the budget, beside the spend
        assert m.group(7) == "5"  # the trial target
    # the ETA: a duration once a trial was counted, and 0s when the target is reached
    assert all(re.fullmatch(r"\d+s|\d+m\d\ds|\d+h\d\dm|-", m.group(10)) for m in trials)
    assert trials[-1].group(6) == "5" and trials[-1].group(10) == "0s"
    assert {m.group(2) for m in trials} - {"complete"}  # some trial to give a reason for
    # every trial that is not complete says why, on the line after its own
    for i, line in enumerate(lines):
        m = TRIAL_LINE.match(line)
        if m and m.group(2) != "complete":
            assert lines[i + 1].startswith(f"    {m.group(2)}: "), (line, lines[i + 1])
            reason = lines[i + 1]
            if m.group(2) == "pruned":
                assert re.search(r"win rate [0-9.]+ after 2 prompts, below the median", reason)
            if m.group(2) == "repeat":
                assert re.search(r"repeats trial \d+ \(no call made; not counted\)", reason)
            if m.group(2) == "invalid":
                assert "slots" in reason and "not counted" in reason
    # progress inside a trial: a line per rung a trial completes, before its trial line
    first_complete = next(m for m in trials if m.group(2) == "complete")
    n = first_complete.group(1)
    assert f"  trial {n}: 2 prompts judged (rung 1 of 2)" in lines
    assert f"  trial {n}: 8 prompts judged (rung 2 of 2)" in lines
    assert lines.index(f"  trial {n}: 8 prompts judged (rung 2 of 2)") < lines.index(
        first_complete.group(0)
    )
    assert "search stopped: the trial budget is reached: 5 of 5 trials" in lines
    assert out.startswith("chosen: trial ")


def test_best_is_the_earliest_of_the_top_win_rate_so_far(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path, server, budget={"n_trials": 8, "max_usd": 50.0})
    assert main(["search", str(spec)]) == 0
    complete: dict[int, float] = {}
    for m in _trial_lines(capsys.readouterr().err):
        if m.group(2) == "complete":
            complete[int(m.group(1))] = float(m.group(3).split()[1])
        if not complete:
            assert m.group(4) is None
            continue
        top = max(complete.values())
        earliest = min(n for n, w in complete.items() if w == top)
        assert (int(m.group(4)), float(m.group(5))) == (earliest, top)
    ties = [w for w in complete.values() if list(complete.values()).count(w) > 1]
    assert ties  # the planted study has ties (8 prompts: win rates in steps of 1/8)


def test_best_so_far_keeps_the_earliest_on_ties() -> None:
    def record(number: int, win: float | None, state: str = "complete") -> TrialRecord:
        from moa_search.judges import WinRate
        from moa_search.search.objective import Evaluation

        metrics = (
            None
            if win is None
            else Evaluation(
                4, WinRate(win, win, win, 0.0, 4), 0.0, 0.0, 0.0, 0.0, 0, 0, 0, 0, 0.0, 0
            )
        )
        return TrialRecord(number, state, {}, (win,) if win is not None else None, metrics=metrics)  # type: ignore[arg-type]

    records = [record(0, 0.5), record(1, 0.75), record(2, 0.75), record(3, 0.9, "pruned")]
    best = best_so_far(records)
    assert best is not None and best.number == 1
    assert best_so_far([record(4, 0.75), *records]) is not None
    assert best_so_far([*records, record(5, 0.76)]).number == 5  # type: ignore[union-attr]
    assert best_so_far([record(0, None, "fail")]) is None


def test_a_complete_study_says_so_and_runs_nothing(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path, server, budget={"n_trials": 3, "max_usd": 50.0})
    assert main(["search", str(spec)]) == 0
    capsys.readouterr()
    requests = server.count()
    assert main(["search", str(spec)]) == 0
    out, err = capsys.readouterr()
    assert server.count() == requests  # nothing asked again
    assert (
        "study 'planted' is already complete (the trial budget is reached: 3 of 3 trials); "
        "no trial run." in err
    )
    assert not _trial_lines(err)
    assert out.startswith("chosen: trial ")


def test_search_json_is_one_object_on_stdout(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path, server, budget={"n_trials": 4, "max_usd": 50.0})
    assert main(["search", str(spec), "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)  # the whole of stdout is one JSON object
    assert set(data) >= {
        "study",
        "trials",
        "chosen",
        "verdict",
        "totals",
        "budget",
        "stopped_because",
        "already_complete",
    }
    assert data["study"]["name"] == "planted" and data["study"]["prompts"] == {
        "search": 8,
        "holdout": 0,
    }
    assert data["trials"]["counted"] == 4 and data["trials"]["target"] == 4
    assert sum(data["trials"]["states"].values()) == data["trials"]["started"]
    assert (
        data["trials"]["states"].get("complete", 0) + data["trials"]["states"].get("pruned", 0) == 4
    )
    chosen = data["chosen"]
    assert chosen["ci_low"] <= chosen["win_rate"] <= chosen["ci_high"]
    assert chosen["mixture"] and chosen["n_items"] == 8
    assert data["totals"]["model_calls"] == server.count() and data["budget"]["max_usd"] == 50.0
    assert data["stopped_because"] == "the trial budget is reached: 4 of 4 trials"
    assert data["already_complete"] is False and "error" not in data
    assert _trial_lines(err)  # progress went to stderr
    # run again: the same object says the study was already complete
    assert main(["search", str(spec), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["already_complete"] is True and again["chosen"] == chosen


def test_search_json_with_held_out_prompts_has_the_verdict(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(
        tmp_path,
        server,
        n_items=12,
        evaluation={"rungs": [2, 8], "holdout": 0.25, "concurrency": 4},
        budget={"n_trials": 3, "max_usd": 50.0},
    )
    assert main(["search", str(spec), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"]["split"] == {"search": 9, "holdout": 3}
    assert data["chosen"]["holdout"] is True and data["chosen"]["n_items"] == 3
    assert main(["best", str(spec), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == data["verdict"]


def test_on_a_terminal_a_bar_with_eta_and_spend(
    tmp_path: Path,
    server: FakeOpenAIServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import moa_search.cli._common as common

    monkeypatch.setattr(common, "color_enabled", lambda stream=None: True)  # a terminal
    spec = _spec(tmp_path, server, budget={"n_trials": 3, "max_usd": 50.0})
    assert main(["search", str(spec)]) == 0
    err = capsys.readouterr().err
    frames = re.split(r"[\r\n]", err)
    bars = [f for f in frames if f.startswith("trials:")]
    assert bars and any(re.search(r"\| 3/3 \[\d\d:\d\d<\d\d:\d\d", f) for f in bars)  # ETA
    assert any("best #" in f and "spent $" in f and "of $50" in f for f in bars)
    assert any(re.match(r"trial \d+: rung [12]/2: +\d+%", f) for f in frames)  # inside a trial
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", err).replace("\r", "\n")
    assert len(_trial_lines(plain)) >= 3  # the trial lines are still there, above the bars


def test_progress_helpers() -> None:
    assert spend_text(0.5, 1234, 2.0, None) == "$0.5000 of $2 (25%), 1,234 tok"
    assert spend_text(0.0, 10, None, 100) == "$0.0000, 10 tok of 100 (10%)"
    assert eta_seconds(elapsed_s=30, done_now=3, done_at_start=0, target=6) == 30
    assert eta_seconds(elapsed_s=30, done_now=3, done_at_start=3, target=6) is None
    assert eta_seconds(elapsed_s=30, done_now=4, done_at_start=2, target=6, timeout_s=40) == 10
    assert eta_seconds(elapsed_s=1, done_now=6, done_at_start=0, target=6) == 0
    totals = StudyTotals(2, 9, 1.5, 100, 5, 9, 5)
    assert stop_reason(totals, target=2) == "the trial budget is reached: 2 of 2 trials"
    assert stop_reason(totals, target=3, max_usd=1.0).startswith("the dollar budget is spent")
    assert stop_reason(totals, target=3, timed_out=True) == "the time limit is reached"


def test_one_win_rate_format_and_importance_named_against_the_roles() -> None:
    from moa_search.analysis.format import fmt_interval, fmt_win_rate, format_importances
    from moa_search.analysis.importance import Importances, importance_vs_roles
    from moa_search.analysis.roles import RoleEffect
    from moa_search.report.formatting import interval, points
    from moa_search.report.formatting import win_rate as report_win_rate

    assert fmt_win_rate(0.1224) == report_win_rate(0.1224) == "0.122"
    assert fmt_win_rate(-0.0001, signed=True) == points(-0.0001) == "+0.000"
    assert fmt_win_rate(0.035, signed=True) == points(0.035) == "+0.035"
    assert fmt_interval(0.1, 0.25) == "[0.100, 0.250]" and fmt_win_rate(None) == "-"
    assert interval(None) == "–"

    def role(model: str, kind: str, low: float, high: float) -> RoleEffect:
        return RoleEffect(model, kind, None, (low + high) / 2, low, high, 5, 5, 0.5, 0.5)  # type: ignore[arg-type]

    imp = Importances({"aggregator": 0.8, "proposer/1": 0.15, "proposers": 0.05}, "", 0, 20)
    roles = [role("mid", "aggregator", 0.1, 0.3), role("strong", "proposer", -0.05, 0.1)]
    why = importance_vs_roles(imp, roles)
    assert why is not None
    assert why.startswith(
        "fANOVA credits the proposer parameters (proposer/1 0.15) with 0.15 of the variance of "
        "win rate, but the role analysis finds no proposer whose effect's interval excludes 0. "
    )
    assert "aggregator" not in why.split(". ")[0]  # the aggregator agrees: not mentioned
    text = format_importances(imp, roles)
    assert text.startswith("parameter importances for win rate (fANOVA, seed 0, 20 complete")
    assert why in text
    agreeing = [role("mid", "aggregator", 0.1, 0.3), role("strong", "proposer", 0.05, 0.1)]
    assert importance_vs_roles(imp, agreeing) is None
