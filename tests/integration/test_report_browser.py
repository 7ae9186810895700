"""The HTML report of a real study, opened in Debian's chromium driven by Playwright."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from moa_search.report import write_report
from moa_search.search.session import SearchSession
from moa_search.testing import FakeOpenAIServer
from moa_search.testing.worlds import PlantedWorld, write_planted_study

CHROMIUM = os.environ.get("MOA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WORLD = PlantedWorld(
    skill={"strong": 0.7, "mid": 0.35, "weak": 0.2},
    aggregation_skill={"strong": 0.0, "mid": 1.0, "weak": 0.0},
)
#: The plotly figures a full report draws (div id -> the trace layer that must hold traces).
FIGURES = {
    "fig-pareto": ".scatterlayer .trace",
    "fig-diversity": ".scatterlayer .trace",
    "fig-roles": ".scatterlayer .trace",
    "fig-importance": ".barlayer .trace",
    "fig-history": ".scatterlayer .trace",
}


def _write_spec(tmp_path: Path, server: FakeOpenAIServer) -> Path:
    return write_planted_study(
        tmp_path,
        server.base_url,
        model_fields={
            "max_concurrency": 8,
            "input_price_per_mtok": 1.0,
            "output_price_per_mtok": 2.0,
        },
        name="planted-report",
        baseline={"kind": "model", "model": "weak", "max_tokens": 32},
        objectives=["win_rate", "diversity", "cost_usd"],
        evaluation={"rungs": [4, 12], "concurrency": 4, "holdout": 0},
        budget={"n_trials": 8},
        seed=3,
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An 8-trial study on the planted world, finalized, and its report."""
    tmp_path = tmp_path_factory.mktemp("report")
    with FakeOpenAIServer(WORLD.behaviors()) as server:
        session = SearchSession(
            _write_spec(tmp_path, server),
            storage="sqlite:///" + str(tmp_path / "study.db"),
            cache=str(tmp_path / "cache.sqlite"),
        )
        try:
            session.optimize()
            session.finalize()
            path = write_report(session, tmp_path / "report.html", n_boot=200)
        finally:
            session.close()
    yield path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright (no downloaded browser)."""
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM) or Path(CHROMIUM).is_file(), (
        f"no chromium at {CHROMIUM}: install Debian's (apt-get install -y chromium) or set "
        "MOA_CHROMIUM"
    )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def test_report_renders_offline_in_headless_chromium(
    report: Path, browser: Any, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    console_errors: list[str] = []
    page_errors: list[str] = []
    outside: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page_errors.append(str(e)))

    def route(r: Any) -> None:
        # the report must need nothing but itself: any other request is recorded and refused
        if r.request.url.startswith(("file://", "data:", "blob:")):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(report.as_uri(), wait_until="load")
    for div_id, traces in FIGURES.items():
        page.wait_for_selector(f"#{div_id} .main-svg", timeout=20_000)
        assert page.locator(f"#{div_id} .main-svg").count() >= 1, div_id
        assert page.locator(f"#{div_id} {traces}").count() >= 1, f"{div_id}: no trace drawn"
        box = page.locator(f"#{div_id}").bounding_box()
        assert box is not None and box["width"] > 400 and box["height"] > 200, (div_id, box)
    # the Pareto plot: the chosen trial is its own trace, and markers were drawn
    assert page.locator("#fig-pareto .scatterlayer .trace .point").count() >= 2
    assert "chosen: trial" in page.locator("#fig-pareto").inner_text()
    # the role table: a row per (role, model), strong/mid/weak among them
    rows = page.locator("#role-table tbody tr")
    assert rows.count() >= 3
    table = page.locator("#role-table").inner_text()
    assert "aggregator" in table and "proposer" in table
    assert all(m in table for m in ("strong", "mid", "weak"))
    # the chosen mixture, as the YAML a mixture file holds, and its full-dataset metrics
    mixture = yaml.safe_load(page.locator("#chosen-mixture").inner_text())
    assert "aggregator" in mixture and "layers" in mixture
    chosen = page.locator("#chosen").inner_text()
    assert "On the full dataset (12 prompts)" in chosen
    calls = page.locator("#calls-summary").inner_text()
    assert "model calls made" in calls and "cache-less" in calls
    assert re.search(r"saved by the cache\s+\d+%", calls)
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    # keep a copy where a person can look at it after the run
    shutil.copy(tmp_path / "report.png", report.with_suffix(".png"))
    assert not console_errors, console_errors
    assert not page_errors, page_errors
    assert not outside, f"the report fetched {outside}"
    page.close()


def test_report_is_one_self_contained_file(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    # plotly.js is inlined exactly once, in the head, and nothing is loaded from elsewhere
    from plotly.offline import get_plotlyjs

    head, body = text.split("</head>", 1)
    assert head.count(get_plotlyjs()[:200]) == 1 and get_plotlyjs()[:200] not in body
    assert not re.search(r"<script[^>]*\bsrc=", text) and "<link" not in text
    assert "cdn.plot.ly" not in body and "https://" not in body
    assert text.count("Plotly.newPlot(") == len(FIGURES)
    assert 3_000_000 < len(text) < 8_000_000
