"""The study report built from stored studies: escaping, redaction, and studies too small to
analyse (the browser test of a real study is in tests/integration/test_report_browser.py)."""

from __future__ import annotations

from pathlib import Path

import optuna
from markupsafe import escape
from optuna.distributions import CategoricalDistribution, IntDistribution

from moa_search.cli.study import _verdict_lines
from moa_search.config.study import StudySpec
from moa_search.report import build_report, build_view
from moa_search.search.records import HoldoutVerdict
from moa_search.search.session import SearchSession
from moa_search.search.verdict import conclusion as verdict_conclusion
from moa_search.testing import FakeOpenAIServer
from moa_search.testing.worlds import PlantedWorld, write_planted_study


def _fake_study(descriptions: list[str], *, storage: str | None = None) -> optuna.Study:
    """A study with hand-made trials stored as moa_search.search.records writes them."""
    study = optuna.create_study(
        study_name="fake", directions=["maximize", "maximize", "minimize"], storage=storage
    )
    dists = {
        "n_layers": IntDistribution(1, 2),
        "samples/a": IntDistribution(0, 2),
        "aggregator": CategoricalDistribution(["a", "b"]),
    }
    for i, description in enumerate(descriptions):
        wr = 0.2 + 0.1 * i
        metrics = {
            "win_rate": {
                "mean": wr,
                "stderr": 0.05,
                "ci_low": wr - 0.1,
                "ci_high": wr + 0.1,
                "n": 8,
            },
            "diversity": 0.1 * i,
            "cost_usd": 0.0,
            "tokens": 100.0 + 10 * i,
            "latency_s": 1.0,
        }
        study.add_trial(
            optuna.trial.create_trial(
                params={"n_layers": 1 + i % 2, "samples/a": i % 3, "aggregator": "ab"[i % 2]},
                distributions=dists,
                values=[wr, 0.1 * i, 0.0],
                user_attrs={
                    "metrics": metrics,
                    "mixture": description,
                    "composition": {"layers": [{"a": i % 3 or 1}], "aggregator": "ab"[i % 2]},
                    "n_items": 8,
                    "model_calls": 5,
                    "calls_total": 20,
                },
            )
        )
    return study


def _spec() -> StudySpec:
    return StudySpec(
        name="fake",
        dataset="tasks.jsonl",
        baseline={"kind": "references"},
        judge={"kind": "exact_match"},
        objectives=("win_rate", "diversity", "cost_usd"),
    )


def test_report_escapes_text_and_redacts_the_storage_password() -> None:
    evil = "<img src=x onerror=alert(1)> [a] -> b"
    study = _fake_study([evil, "[a*2] -> a", "2x[a, b] -> b"])
    text = build_report(
        study,
        _spec(),
        chosen_mixture_yaml="layers: []\naggregator: {model: '</pre><script>x()</script>'}\n",
        storage_url="postgresql+psycopg://moa:hunter2@db.example:5432/studies",
    )
    assert "<img src=x" not in text and "</pre><script>x()" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "hunter2" not in text and "db.example" in text and "***" in text
    # with costs all 0 the Pareto plot's x axis is tokens
    assert "tokens per prompt" in text
    # three trials: too few for the role analysis (a note), enough for importances
    assert "No role analysis was run" in text
    assert 'id="fig-importance"' in text


def test_report_with_too_few_trials_says_so() -> None:
    study = _fake_study(["[a] -> a"])
    text = build_report(study, _spec(), analysis_note="No role analysis: too few trials.")
    assert "Parameter importances need at least 2 complete trials" in text
    assert "No role analysis: too few trials." in text
    assert 'id="fig-pareto"' in text and 'id="fig-importance"' not in text
    empty = optuna.create_study(directions=["maximize", "maximize", "minimize"])
    text = build_report(empty, _spec())
    assert "No trial has completed yet." in text and "Plotly.newPlot(" not in text


def test_report_shows_the_held_out_verdict(tmp_path: Path) -> None:
    world = PlantedWorld(
        skill={"strong": 0.9, "mid": 0.8, "weak": 0.1},
        aggregation_skill={"strong": 0.3, "mid": 1.0, "weak": 0.0},
    )
    with FakeOpenAIServer(world.behaviors()) as server:
        spec_path = write_planted_study(
            tmp_path,
            server.base_url,
            n_items=20,
            model_fields={"max_concurrency": 8, "input_price_per_mtok": 1.0},
            baseline={"kind": "model", "model": "weak", "max_tokens": 32},
            objectives=["win_rate"],
            space={"min_layers": 1, "max_layers": 1, "max_samples": 3, "max_proposers": 3},
            evaluation={"rungs": [7, 20], "concurrency": 4, "holdout": 0.3},
            budget={"n_trials": 3},
            seed=3,
        )
        session = SearchSession(spec_path)
        try:
            session.optimize()
            session.finalize()
            study, spec = session.study(), session.spec
        finally:
            session.close()
    verdict = HoldoutVerdict.load(study)
    assert verdict is not None
    text = build_report(study, spec)
    section = text[text.index('<section id="verdict">') :]
    section = section[: section.index("</section>")]
    assert f"{verdict.n_search} search / {verdict.n_holdout} held-out prompts" in section
    rows = build_view(study, spec).verdict
    assert rows is not None
    names = [r.name for r in rows.rows]
    assert names[:4] == ["chosen", "best_single", "self_moa", "layerwise_rule"]
    assert 'id="verdict-table"' in section
    for entry in (verdict.chosen, *verdict.baselines.values()):
        assert str(escape(entry.mixture)) in section
    # the conclusion is worded as `moa-search best` words it
    conclusion = verdict_conclusion(verdict)
    assert conclusion == _verdict_lines(verdict)[-1]
    assert str(escape(conclusion)) in section


def test_report_without_a_verdict_says_so() -> None:
    study = _fake_study(["[a] -> a", "[a*2] -> a"])
    assert build_view(study, _spec()).verdict is None
    text = build_report(study, _spec())
    section = text[text.index('<section id="verdict">') :]
    section = section[: section.index("</section>")]
    assert "This study has no held-out verdict" in section
    assert "<table" not in section
