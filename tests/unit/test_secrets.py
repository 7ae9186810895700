"""A canary API key, used for real by every call of a whole search, export and run, appears
nowhere: not in the exported mixture, the cache, the Optuna storage (user attributes included),
the embeddings file, the logs, the traces or the command output."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
import yaml

from moa_search.cli.main import main
from moa_search.testing import FakeOpenAIServer
from moa_search.testing.worlds import PlantedWorld, planted_items, write_planted_study

CANARY = "sk-canary-" + uuid.uuid4().hex
ENV = "MOA_CANARY_KEY"


def test_canary_key_appears_nowhere(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(ENV, CANARY)
    monkeypatch.setenv("MOA_SEARCH_HOME", str(tmp_path / "home"))
    caplog.set_level(logging.DEBUG)
    world = PlantedWorld(
        skill={"strong": 0.7, "weak": 0.2}, aggregation_skill={"strong": 0.5, "weak": 0.0}
    )
    with FakeOpenAIServer(world.behaviors(), require_api_key=CANARY) as server:
        path = write_planted_study(
            tmp_path,
            server.base_url,
            n_items=6,
            models=("strong", "weak"),
            model_fields={"api_key_env": ENV},
            name="canary",
            evaluation={"rungs": [3, 6]},
            budget={"n_trials": 3},
        )
        items = planted_items(6)
        out = tmp_path / "exported.yaml"
        assert main(["-v", "search", str(path)]) == 0
        assert main(["best", str(path), "--json"]) == 0
        assert main(["export", str(path), "--out", str(out)]) == 0
        assert main(["run", str(out), "--json", items[0].prompt]) == 0
        assert server.count() > 0
        assert all(r.fault == "ok" for r in server.requests)  # every call carried the key
    captured = capsys.readouterr()
    texts = [captured.out, captured.err, caplog.text]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "study.db" for p in files) and out in files
    for p in files:
        data = p.read_bytes()
        assert CANARY.encode() not in data, p
    for text in texts:
        assert CANARY not in text
    exported = yaml.safe_load(out.read_text())
    assert exported["pool"]["models"][0]["api_key_env"] == ENV  # the name, never the key
