"""A study on the shared recorded AlpacaEval data runs with no model calls at all, and its
analysis credits what is planted in recordings: the aggregator decides the win rate (a replayed
aggregator answers with its recording), the proposers and their diversity do not."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from moa_search.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "studies" / "alpacaeval_replay.yaml"
SHARED = ROOT.parent / "shared" / "data" / "alpaca_eval"


def test_recorded_study_search_analyze_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert SHARED.is_dir(), f"the shared AlpacaEval data is missing at {SHARED}"

    def no_client(*args: object, **kwargs: object) -> None:
        raise AssertionError("a replay study must not create an API client")

    monkeypatch.setattr(openai, "AsyncOpenAI", no_client)
    monkeypatch.setattr(openai, "OpenAI", no_client)
    storage = ["--storage", f"sqlite:///{tmp_path / 'study.db'}"]
    assert main(["search", str(SPEC), *storage, "--cache", "memory", "--n-trials", "10"]) == 0
    assert "chosen: trial" in capsys.readouterr().out
    assert main(["analyze", str(SPEC), *storage, "--json", "--n-boot", "200"]) == 0
    result = json.loads(capsys.readouterr().out)
    roles = {(r["role"], r["model"]): r for r in result["roles"]}
    aggregators = {m: r for (role, m), r in roles.items() if role == "aggregator"}
    tried = {m: r for m, r in aggregators.items() if r["effect"] is not None}
    # claude-2.1 has by far the highest recorded win rate of the six: if it was tried, it leads
    if "claude-2.1" in tried and len(tried) > 1:
        assert max(tried, key=lambda m: tried[m]["effect"]) == "claude-2.1"
    for (role, _), r in roles.items():
        if role == "proposer" and r["effect"] is not None:
            assert abs(r["effect"]) < 0.02  # the replayed aggregator ignores the proposers
    assert not result["quality_vs_diversity"]["significant"]
    out = tmp_path / "report.html"
    assert main(["report", str(SPEC), *storage, "--out", str(out), "--n-boot", "200"]) == 0
    html = out.read_text()
    assert "alpacaeval-replay" in html and "claude-2.1" in html
