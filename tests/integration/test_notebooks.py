"""The notebooks run top to bottom in a real Jupyter kernel (nbclient), from notebooks/ as their
working directory, as a reader would run them: the AlpacaEval one on the shared recorded data,
the quickstart one on the real local pool (its own short study). Each executed notebook is then
converted to HTML with nbconvert and opened in Debian's headless chromium: every figure must
draw, interactively with scripts on and as its static picture with scripts off (as a code host
shows it). Screenshots go to the test's tmp path; their paths are printed (``pytest -s``)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from moa_search import local
from moa_search.report.notebook import FIGURE_CLASS, PLOTLY_MIME

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
#: Seconds any one cell may take (a hang fails; slowness is the benchmarks' business).
CELL_TIMEOUT_S = 600
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
#: What a drawn plotly figure holds: traces of a scatter, bar or heatmap plot.
MARKS = ".scatterlayer .trace, .barlayer .trace, .heatmaplayer .hm"


@pytest.fixture(scope="module")
def kernel_name() -> str:
    """The venv's ``python3`` kernel; installed into the venv (``--sys-prefix``) if missing."""
    from filelock import FileLock
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    # one pytest-xdist worker installs it; another one waits, then finds it
    with FileLock(Path(sys.prefix) / ".moa-search-tests-kernel.lock"):
        try:
            KernelSpecManager().get_kernel_spec("python3")
        except NoSuchKernel:
            subprocess.run(
                [sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"],
                check=True,
                capture_output=True,
            )
    return "python3"


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


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A TMPDIR of the test's own, inherited by the kernel: what a notebook leaves in it is
    seen. Its path is short: chromium (kaleido's) cannot start with a long one. (``tmp_path``
    is made first, so that it is not inside.)"""
    folder = Path(tempfile.mkdtemp(prefix="nbt-", dir="/tmp"))
    monkeypatch.setenv("TMPDIR", str(folder))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def read(name: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    # saved without outputs, so the files stay small and diffable
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), name
    return nb


def execute(nb: nbformat.NotebookNode, kernel_name: str) -> nbformat.NotebookNode:
    """Run ``nb`` in a fresh kernel (which inherits ``os.environ``) from notebooks/; a failing
    cell raises :class:`CellExecutionError` with its traceback. The kernel is shut down
    normally afterwards either way."""
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    return nb


def print_timings(nb: nbformat.NotebookNode, name: str) -> None:
    """Each code cell's execution time, from the kernel's own timestamps (for the reader)."""
    from datetime import datetime

    spans = []
    for i, cell in enumerate(nb.cells):
        t = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in t and "shell.execute_reply" in t:
            start = datetime.fromisoformat(t["iopub.execute_input"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(t["shell.execute_reply"].replace("Z", "+00:00"))
            spans.append(f"cell {i}: {(end - start).total_seconds():.1f} s")
    print(f"{name}: " + ", ".join(spans))


def text_of(nb: nbformat.NotebookNode) -> str:
    """All stream, text and HTML outputs joined."""
    text: list[str] = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text.append(out.get("text", ""))
            data = out.get("data", {})
            if PLOTLY_MIME not in data:
                text.append(data.get("text/plain", ""))
                text.append(data.get("text/html", ""))
    return "\n".join(text)


def figures_of(nb: nbformat.NotebookNode) -> list[dict[str, Any]]:
    """The outputs that show a plotly figure; each must carry every form of it."""
    found = [
        out["data"]
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if PLOTLY_MIME in out.get("data", {})
    ]
    for data in found:
        assert data[PLOTLY_MIME]["data"], "a figure without traces"
        assert data.get("image/png"), f"no static picture stored for {data['text/plain']}"
        assert f'class="{FIGURE_CLASS}"' in data["text/html"]
        assert "<img" in data["text/html"]
    return found


def check_html(
    nb: nbformat.NotebookNode, n_figures: int, browser: Any, out: Path, name: str
) -> None:
    """Convert ``nb`` to HTML with nbconvert and open it in chromium, with scripts and without:
    each of the ``n_figures`` figures must draw. Screenshots are saved in ``out``."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    page_path = out / f"{name}.html"
    page_path.write_text(body, encoding="utf-8")
    keep(page_path)
    # plotly.js is carried by the first figure only
    assert body.count("window.define=undefined") == 1

    def block_outside(route: Any) -> None:
        # nbconvert's template names require.js and MathJax on a CDN: there is no network
        if route.request.url.startswith(("file://", "data:", "blob:")):
            route.continue_()
        else:
            route.abort()

    # scripts on, as in a browser: every figure is drawn by plotly.js in place of its picture
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page_errors: list[str] = []
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.route("**/*", block_outside)
    page.goto(page_path.as_uri(), wait_until="load")
    figures = page.locator(f".{FIGURE_CLASS}")
    assert figures.count() == n_figures
    for i in range(n_figures):
        fig = figures.nth(i)
        fig.locator(".main-svg").first.wait_for(timeout=20_000)
        title = fig.get_attribute("data-title")
        assert fig.locator(MARKS).count() >= 1, f"figure {i} ({title}) drew no trace"
        box = fig.bounding_box()
        assert box is not None and box["width"] > 400 and box["height"] > 200, (title, box)
        fig.screenshot(path=str(out / f"{name}-figure{i}-interactive.png"))
    shot = out / f"{name}-interactive.png"
    page.screenshot(path=str(shot), full_page=True)
    keep(shot)
    assert not page_errors, page_errors
    page.close()

    # scripts off, as a code host shows it: every figure is its static picture, decoded
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1200, "height": 900}
    )
    page = context.new_page()
    page.route("**/*", block_outside)
    page.goto(page_path.as_uri(), wait_until="load")
    images = page.locator(f".{FIGURE_CLASS} img")
    assert images.count() == n_figures
    for i in range(n_figures):
        img = images.nth(i)
        width = img.evaluate("el => el.complete ? el.naturalWidth : 0")
        assert width > 0, f"static picture {i} ({img.get_attribute('alt')}) did not load"
        assert img.bounding_box()["width"] > 400
        img.screenshot(path=str(out / f"{name}-figure{i}-static.png"))
    shot = out / f"{name}-static.png"
    page.screenshot(path=str(shot), full_page=True)
    keep(shot)
    context.close()


def keep(shot: Path) -> None:
    """Print a screenshot's (or page's) path, and copy it into ``$MOA_NOTEBOOK_SHOTS`` when that
    is set (the tmp path does not outlive later pytest runs)."""
    print(f"saved: {shot}")
    if os.environ.get("MOA_NOTEBOOK_SHOTS"):
        folder = Path(os.environ["MOA_NOTEBOOK_SHOTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, folder / shot.name)


def left_behind(folder: Path) -> list[str]:
    """What a notebook left in ``folder`` (its own folders are named moa-*)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("moa-"))


def test_recorded_alpacaeval_notebook(
    kernel_name: str, browser: Any, private_tmp: Path, tmp_path: Path
) -> None:
    nb = execute(read("recorded_alpacaeval.ipynb"), kernel_name)
    print_timings(nb, "recorded_alpacaeval")
    text = text_of(nb)
    assert "largest difference from the CSV" in text
    assert "diversity of one layer of all five" in text
    figures = figures_of(nb)
    assert len(figures) == 2, text
    check_html(nb, len(figures), browser, tmp_path, "recorded_alpacaeval")
    assert left_behind(private_tmp) == []


def _run_short_study_in(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A MOA_SEARCH_HOME with no pool running: the notebook starts the pool itself."""
    monkeypatch.setenv(local.HOME_ENV, str(home))
    monkeypatch.setenv("MOA_NOTEBOOK_RUN_STUDY", "1")  # whatever is under studies/results
    assert not local.status().running


@pytest.mark.local
def test_quickstart_analysis_notebook(
    kernel_name: str,
    browser: Any,
    private_tmp: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _run_short_study_in(tmp_path / "home", monkeypatch)
    nb = execute(read("quickstart_analysis.ipynb"), kernel_name)
    print_timings(nb, "quickstart_analysis")
    text = text_of(nb)
    # the story: what was searched, the run, what won, the verdict, why
    assert "proposers:" in text and "aggregators:" in text and "judge:" in text
    assert "short run: " in text and "short study done" in text
    assert "chosen: trial" in text
    best_json = json.loads(text.split("moa-search best --json:", 1)[1].split("\n}\n", 1)[0] + "}")
    split = best_json["split"]  # the short study: 8 prompts, 3 or more held out
    assert split["search"] + split["holdout"] == 8 and split["holdout"] >= 3, split
    assert f"held-out verdict on {split['holdout']} prompts ({split['search']} searched)" in text
    assert {"best_single", "self_moa", "layerwise_rule"} <= set(best_json["baselines"])
    assert 'id="role-table"' in text and "quality vs diversity" in text
    if importlib.util.find_spec("moa_search.analysis.attribution") is not None:
        assert "which proposers the aggregator uses (trial " in text, text
    assert "wrote " in text and "self-contained" in text
    figures = figures_of(nb)
    titles = " | ".join(f["text/plain"] for f in figures)
    assert "Held-out verdict" in titles, titles
    assert len(figures) >= 5, titles
    # what it started is stopped, what it wrote is removed
    assert "stopped the local pool this notebook started" in text
    assert not local.status().running
    assert left_behind(private_tmp) == []
    check_html(nb, len(figures), browser, tmp_path, "quickstart_analysis")


@pytest.mark.local
def test_quickstart_notebook_cleans_up_after_a_failed_cell(
    kernel_name: str, private_tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run_short_study_in(tmp_path / "home", monkeypatch)
    nb = read("quickstart_analysis.ipynb")
    study_cell = next(
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and "study, verdict, attribution = run_short_study()" in c.source
    )
    # the search fails once the pool is up and the notebook's temporary folder exists
    nb.cells.insert(
        study_cell,
        nbformat.v4.new_code_cell(
            "from moa_search.search.session import SearchSession\n"
            "def failing_optimize(self, **kwargs):\n"
            "    raise RuntimeError('injected failure')\n"
            "SearchSession.optimize = failing_optimize\n"
            "print('scratch folder', WORK.name, WORK.is_dir())"
        ),
    )
    with pytest.raises(CellExecutionError, match="injected failure"):
        execute(nb, kernel_name)
    text = text_of(nb)
    assert "scratch folder moa-quickstart-" in text and "local pool: " in text
    assert "stopped the local pool this notebook started" in text
    assert not local.status().running
    assert left_behind(private_tmp) == []
