"""``moa-search plan``: the projection of a study's calls, tokens, dollars and time, checked
against what a search over the project's fake OpenAI server then really spends; it writes
nothing; ``search`` refuses a spec whose projection exceeds its budget unless ``--yes``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moa_search.cli.main import main
from moa_search.search.session import SearchSession
from moa_search.search.spend import study_spend
from moa_search.testing import FakeOpenAIServer
from moa_search.testing.fake_openai import ModelBehavior, RecordedRequest
from moa_search.testing.worlds import write_planted_study


def _unique_answer(request: RecordedRequest) -> str:
    """A 7-word answer of its own for every request, as a sampling model gives (the planted
    world's identical right answers would let later calls share the cache, which a plan
    cannot foresee and which makes a search cheaper than planned)."""
    blob = json.dumps([request.model, request.seed, request.messages], sort_keys=True)
    return f"answer {hashlib.sha256(blob.encode()).hexdigest()[:10]} to the question asked here."


BEHAVIORS = {m: ModelBehavior(answer=_unique_answer) for m in ("strong", "mid", "weak")}
PRICE = 2.0  # $ per million tokens, in and out
#: The fake server counts a token per word. The answers here are 7 words, and the requests,
#: mostly the aggregation prompt, have about 5.8 characters per word.
KNOWN = ["--answer-tokens", "7", "--chars-per-token", "5.8"]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(BEHAVIORS) as srv:
        yield srv


def write_spec(tmp_path: Path, server: FakeOpenAIServer, **overrides: Any) -> Path:
    return write_planted_study(
        tmp_path,
        server.base_url,
        n_items=overrides.pop("n_items", 30),
        model_fields={
            "max_concurrency": 8,
            "input_price_per_mtok": PRICE,
            "output_price_per_mtok": PRICE,
        },
        **{
            "baseline": {"kind": "model", "model": "weak", "max_tokens": 32},
            "objectives": ["win_rate"],
            # one layer: a trial's calls vary little with the mixture drawn, so one study's
            # spend can be held to the plan's mean (benchmarks/plan_accuracy.py: more spaces)
            "space": {"min_layers": 1, "max_layers": 1, "max_samples": 2, "max_proposers": 3},
            "evaluation": {"rungs": [21], "concurrency": 4, "holdout": 0.3},
            "budget": {"n_trials": 12},
            "sampler": "random",
            "seed": 11,
            **overrides,
        },
    )


def plan_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    capsys.readouterr()  # what earlier commands printed
    assert main(["plan", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def spent(spec: Path) -> tuple[int, int, float]:
    session = SearchSession(spec)
    try:
        s = study_spend(session.study())
    finally:
        session.close()
    return s.calls, s.tokens, s.usd


def within(projected: float, actual: float, tolerance: float = 0.2) -> bool:
    return abs(projected - actual) <= tolerance * actual


@pytest.mark.parametrize(
    "overrides",
    [
        # two rungs, then the held-out verdict and its baselines
        {"evaluation": {"rungs": [5, 21], "concurrency": 4, "holdout": 0.3}, "pruner": "none"},
        {"evaluation": {"rungs": [30], "concurrency": 4, "holdout": 0}},  # no held-out split
    ],
    ids=["verdict", "no-holdout"],
)
def test_projection_is_within_20_percent_of_the_spend(
    tmp_path: Path,
    server: FakeOpenAIServer,
    capsys: pytest.CaptureFixture[str],
    overrides: dict[str, Any],
) -> None:
    spec = write_spec(tmp_path, server, **overrides)
    plan = plan_json(capsys, str(spec), *KNOWN)
    assert server.count() == 0  # planning makes no call
    assert not (tmp_path / "results").exists()  # and writes nothing
    total = plan["total"]
    assert main(["search", str(spec)]) == 0
    calls, tokens, usd = spent(spec)
    assert calls == server.count()
    assert within(total["calls"], calls), (total["calls"], calls)
    assert within(total["tokens_in"] + total["tokens_out"], tokens), (total, tokens)
    assert within(total["usd"], usd), (total["usd"], usd)
    # both phases are projected: the trials, then the verdict (or the final evaluation)
    names = [p["name"] for p in plan["phases"]]
    assert names in (["search", "held-out verdict"], ["search", "final evaluation"])
    assert plan["phases"][0]["calls"] > 0


def test_plan_reads_the_cache_and_the_study_it_resumes(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, server)
    first = plan_json(capsys, str(spec))
    # an empty cache: nothing to measure answers on, so every answer runs to max_tokens
    assert any("worst case" in a for a in first["assumptions"])
    assert first["cache_entries"] == 0
    assert main(["search", str(spec)]) == 0
    calls, tokens, usd = spent(spec)
    # the study is done: nothing left to run, the verdict is stored, and its spend is read
    done = plan_json(capsys, str(spec))
    assert done["trials"] == {"done": 12, "planned": 0}
    assert done["total"]["calls"] == 0
    assert done["spent_already"]["calls"] == calls
    assert done["spent_already"]["usd"] == pytest.approx(usd)
    # more trials of the same study: answers are measured on the cache, and the calls the
    # cache holds (the baseline's, the layer-1 answers) are counted as cached, not as new
    more = plan_json(capsys, str(spec), "--n-trials", "16")
    assert more["trials"] == {"done": 12, "planned": 4}
    assert any("measured on the cached answers" in a for a in more["assumptions"])
    assert more["cache_entries"] == calls  # every call made is cached
    cold = plan_json(capsys, str(spec), "--n-trials", "16", "--cache", "none", *KNOWN)
    warm = plan_json(capsys, str(spec), "--n-trials", "16", *KNOWN)
    assert warm["total"]["calls"] < cold["total"]["calls"]
    assert warm["total"]["cached"] > cold["total"]["cached"]
    assert main(["search", str(spec), "--n-trials", "16"]) == 0
    calls2, tokens2, _ = spent(spec)
    assert calls2 > calls and tokens2 > tokens


def test_plan_table_names_its_assumptions_and_budget(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, server, budget={"n_trials": 16, "max_usd": 1e-6})
    assert main(["plan", str(spec), *KNOWN]) == 0
    out = capsys.readouterr().out
    for text in ("search", "held-out verdict", "total", "max_usd $1e-06", "OVER BUDGET"):
        assert text in out, text
    assert "assumptions:" in out and "7 tokens long (as given)" in out
    assert server.count() == 0 and not (tmp_path / "results").exists()


def test_search_refuses_a_spec_over_budget_unless_yes(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, server, budget={"n_trials": 16, "max_usd": 1e-4})
    assert main(["search", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert server.count() == 0
    assert "\n" not in err and "Traceback" not in err
    assert f"{spec}: field 'budget.max_usd'" in err and "--yes" in err
    assert "exceeds budget.max_usd" in err and "moa-search plan" in err
    # with --yes it starts, and the hard budget stops it
    assert main(["search", str(spec), "--yes"]) == 1
    assert "the budget ran out" in capsys.readouterr().err
    assert server.count() > 0
    # within budget it starts without --yes
    (tmp_path / "roomy").mkdir()
    roomy = write_spec(tmp_path / "roomy", server, budget={"n_trials": 2, "max_usd": 100.0})
    assert main(["search", str(roomy)]) == 0


def test_plan_on_bad_input_is_one_paragraph(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, server)
    (tmp_path / "bad.sqlite").write_text("not a database")
    assert main(["plan", str(spec), "--cache", str(tmp_path / "bad.sqlite")]) == 2
    err = capsys.readouterr().err
    assert "--cache" in err and "Traceback" not in err
    assert main(["plan", str(spec), "--tokens-per-s", "-3"]) == 2
    assert "expected a positive number" in capsys.readouterr().err


def test_plan_of_sampler_auto_opens_as_the_sampler_does(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """``sampler: auto`` runs each model alone and the role probes first, which share their
    layer-1 answers, then favours candidates whose answers are cached: its projection (the
    sampler's own plan with every mixture tied) is cheaper than random search's and says why."""
    plans = {}
    for sampler in ("auto", "random"):
        (tmp_path / sampler).mkdir()
        spec = write_spec(tmp_path / sampler, server, sampler=sampler, budget={"n_trials": 6})
        plans[sampler] = plan_json(capsys, str(spec), *KNOWN)
    assert server.count() == 0
    search = {s: p["phases"][0]["calls"] for s, p in plans.items()}
    assert search["auto"] < search["random"]
    assert any("as sampler auto plans them" in a for a in plans["auto"]["assumptions"])
    assert not any("role probes" in a for a in plans["random"]["assumptions"])
