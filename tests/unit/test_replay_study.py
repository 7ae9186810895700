"""A study on the shared recorded AlpacaEval data runs with no model calls at all, and its
analysis credits what is planted in recordings: the aggregator decides the win rate (a replayed
aggregator answers with its recording), the proposers and their diversity do not.

The study is the shipped spec, studies/alpacaeval_replay.yaml, on its first 60 prompts instead
of 120 (rungs of 20 and 60): embedding the recorded answers for diversity is nearly all of the
test's time, and at 60 prompts the analysis tells the same story (claude-2.1 the one aggregator
with a positive, significant effect; every proposer effect under 0.005; diversity not
significant). The copy lives in the test's tmp path, so its results folder (embeddings file
included) is the test's own, not one beside the shipped spec."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
import yaml

from moa_search.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "studies" / "alpacaeval_replay.yaml"
SHARED = ROOT.parent / "shared" / "data" / "alpaca_eval"
#: Prompts the study reads (the shipped spec's dataset_limit is 120) and its rungs.
N_PROMPTS = 60
RUNGS = [20, N_PROMPTS]


def _shortened_spec(folder: Path) -> Path:
    """The shipped spec with its paths made absolute, on the first ``N_PROMPTS`` prompts."""
    raw = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    here = SPEC.parent
    raw["pool"] = str((here / raw["pool"]).resolve())
    raw["dataset"] = str((here / raw["dataset"]).resolve())
    raw["judge"]["annotations"] = [str((here / a).resolve()) for a in raw["judge"]["annotations"]]
    assert raw["dataset_limit"] > N_PROMPTS
    raw["dataset_limit"] = N_PROMPTS
    raw["evaluation"]["rungs"] = RUNGS
    path = folder / SPEC.name
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_recorded_study_search_analyze_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert SHARED.is_dir(), f"the shared AlpacaEval data is missing at {SHARED}"

    def no_client(*args: object, **kwargs: object) -> None:
        raise AssertionError("a replay study must not create an API client")

    monkeypatch.setattr(openai, "AsyncOpenAI", no_client)
    monkeypatch.setattr(openai, "OpenAI", no_client)
    spec = _shortened_spec(tmp_path)
    storage = ["--storage", f"sqlite:///{tmp_path / 'study.db'}"]
    assert main(["search", str(spec), *storage, "--cache", "memory", "--n-trials", "10"]) == 0
    assert "chosen: trial" in capsys.readouterr().out
    assert main(["analyze", str(spec), *storage, "--json", "--n-boot", "200"]) == 0
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
    assert main(["report", str(spec), *storage, "--out", str(out), "--n-boot", "200"]) == 0
    html = out.read_text()
    assert "alpacaeval-replay" in html and "claude-2.1" in html
