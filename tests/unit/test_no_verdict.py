"""No verdict without data: a study whose baseline failed on every prompt, or whose every
mixture failed on every prompt, gives no win rate, chooses nothing and exports nothing — each
command says why in one paragraph and exits 1 — and a failed, zero-cost trial never enters the
Pareto front it would otherwise dominate. Likewise a search whose response cache breaks
mid-trial fails that trial with the cache's error, stops, and exits 1."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest

from moa_search.cli.main import main
from moa_search.config.study import ChooseSpec
from moa_search.judges.stats import WinRate
from moa_search.search.choose import choose_trial, has_verdict, pareto_front
from moa_search.search.objective import Evaluation
from moa_search.search.records import TrialRecord, TrialWriter
from moa_search.testing import FakeOpenAIServer, ModelBehavior
from moa_search.testing.fake_openai.faults import before_answer
from moa_search.testing.worlds import PlantedWorld, write_planted_study

WORLD = PlantedWorld(
    skill={"strong": 0.8, "weak": 0.3}, aggregation_skill={"strong": 0.5, "weak": 0.0}
)
#: Every request to this model gets a 500.
ALWAYS_500 = ModelBehavior(fault_rate=1.0, fault_kinds=("500",))


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer({**WORLD.behaviors(), "broken": ALWAYS_500}) as srv:
        yield srv


def _study(tmp_path: Path, server: FakeOpenAIServer, **overrides: Any) -> Path:
    return write_planted_study(
        tmp_path,
        server.base_url,
        n_items=6,
        models=("strong", "weak", "broken"),
        model_fields={"max_retries": 0, "max_concurrency": 8},
        **{
            "evaluation": {"rungs": [3], "holdout": 0.5, "concurrency": 4},
            "budget": {"n_trials": 3},
            "name": "noverdict",
            **overrides,
        },
    )


CASES = {
    # every mixture answers, but the baseline model never does: nothing can be judged
    "baseline fails on every prompt": (
        {
            "baseline": {"kind": "model", "model": "broken"},
            "space": {
                "max_layers": 1,
                "max_samples": 1,
                "max_proposers": 2,
                "proposers": ["strong", "weak"],
                "aggregators": ["strong"],
            },
        },
        "the baseline failed on all",
    ),
    # the baseline answers, but every mixture is built from the broken model
    "every mixture fails on every prompt": (
        {
            "baseline": {"kind": "model", "model": "weak"},
            "space": {
                "max_layers": 1,
                "max_samples": 1,
                "max_proposers": 1,
                "proposers": ["broken"],
                "aggregators": ["broken"],
            },
        },
        "failed on all",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_no_verdict_is_said_and_exits_1(
    name: str,
    tmp_path: Path,
    server: FakeOpenAIServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    overrides, why = CASES[name]
    spec = _study(tmp_path, server, **overrides)
    out = tmp_path / "mixture.yaml"

    assert main(["search", str(spec)]) == 1
    captured = capsys.readouterr()
    assert "win rate 0.000" not in captured.out + captured.err
    assert "no verdict for study 'noverdict'" in captured.err
    assert why in captured.err
    assert "Traceback" not in captured.err
    assert "export it with" not in captured.out

    assert main(["best", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "no verdict" in err and why in err
    for command in ("best", "search"):  # --json: one object with an "error" key
        assert main([command, str(spec), "--json"]) == 1
        error = json.loads(capsys.readouterr().out)["error"]
        assert "no verdict" in error and why in error

    assert main(["export", str(spec), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no verdict" in err and "nothing to export" in err
    assert not out.exists()
    # nor by number: a trial that measured nothing is not exported either
    assert main(["export", str(spec), "--trial", "0", "--out", str(out)]) == 1
    assert "trial 0" in capsys.readouterr().err
    assert not out.exists()


def _ev(n: int, judged: int, failures: int, cost: float, win: float) -> Evaluation:
    return Evaluation(
        n=n,
        win_rate=WinRate(win, 0.05, max(0.0, win - 0.1), min(1.0, win + 0.1), judged),
        diversity=0.1,
        cost_usd=cost,
        tokens=100.0 if cost else 0.0,
        latency_s=0.1,
        failures=failures,
        judge_failures=n - judged,
        model_calls=n,
        calls_total=n,
        spent_usd=cost * n,
        spent_tokens=100 * n,
    )


def test_a_failed_zero_cost_trial_never_enters_the_front() -> None:
    """Failed on every prompt, a mixture costs nothing: Optuna's own Pareto front keeps it
    (nothing is cheaper), and 'cheapest within' would choose it. Ours leaves it out, and the
    good trials it dominated on cost come back."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    evaluations = {
        "good": _ev(6, 6, 0, 0.02, 0.75),
        "cheaper, worse": _ev(6, 6, 0, 0.01, 0.70),
        "failed everywhere": _ev(6, 6, 6, 0.0, 0.0),  # a failed mixture "loses" every prompt
        "baseline failed everywhere": _ev(6, 0, 6, 0.005, 0.0),
    }
    for ev in evaluations.values():
        trial = study.ask()
        TrialWriter(trial).evaluation(ev)
        study.tell(trial, [ev.win_rate.mean, ev.cost_usd])
    optuna_front = {t.number for t in study.best_trials}
    assert 2 in optuna_front  # what Optuna alone would offer

    front = {r.number for r in pareto_front(study)}
    assert front == {0, 1}
    assert [has_verdict(ev) for ev in evaluations.values()] == [True, True, False, False]

    class Spec:  # the two fields choose_trial reads
        choose = ChooseSpec(rule="cheapest_within", tolerance=0.1)
        weights = None

    chosen = choose_trial(study, Spec())  # type: ignore[arg-type]
    assert chosen is not None and chosen.number == 1


def test_single_objective_best_skips_a_trial_without_verdict() -> None:
    study = optuna.create_study(direction="minimize")  # e.g. cost alone
    for ev in (_ev(4, 4, 0, 0.03, 0.6), _ev(4, 4, 4, 0.0, 0.0)):
        trial = study.ask()
        TrialWriter(trial).evaluation(ev)
        study.tell(trial, ev.cost_usd)
    assert study.best_trial.number == 1
    assert [r.number for r in pareto_front(study)] == [0]


def test_a_cache_that_breaks_mid_trial_fails_that_trial_and_stops_the_search(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The response cache breaks while a trial runs (its table dropped by "another process"
    when the strong model answers its 8th request): that trial fails with the cache's error as
    its stored reason — not as a mixture that lost every comparison — the search starts no
    further trial, and the command says so in one paragraph and exits 1."""
    cache_path = tmp_path / "cache.sqlite"

    def drop_the_table() -> None:
        with sqlite3.connect(cache_path) as db:
            db.execute("DROP TABLE responses")

    strong = before_answer(WORLD.behaviors()["strong"], 8, drop_the_table)
    behaviors = {**WORLD.behaviors(), "strong": strong}
    with FakeOpenAIServer(behaviors) as srv:
        spec = write_planted_study(
            tmp_path,
            srv.base_url,
            n_items=6,
            models=("strong", "weak"),
            evaluation={"rungs": [3, 6], "holdout": 0, "concurrency": 1},
            budget={"n_trials": 6},
            name="cachebreaks",
        )
        code = main(["search", str(spec), "--cache", str(cache_path)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"the response cache at {cache_path} failed" in err and "Traceback" not in err
    storage = f"sqlite:///{tmp_path / 'results' / 'cachebreaks' / 'study.db'}"
    records = TrialRecord.all(optuna.load_study(study_name="cachebreaks", storage=storage))
    failed = [r for r in records if r.state == "fail" and r.invalid is None and not r.is_repeat]
    assert len(failed) == 1, records
    assert failed[0].reason is not None and "response cache" in failed[0].reason
    # the first failure, storing the answer that broke it — not a later read that a trial
    # going on as if its mixture had failed would have stumbled on
    assert "while storing an answer" in failed[0].reason
    assert records[-1].number == failed[0].number  # no trial started after it
