"""The notebooks run top to bottom in a real Jupyter kernel (nbclient), from notebooks/ as
their working directory, as a reader would run them: the AlpacaEval one on the shared recorded
data, the quickstart one on the real local pool (a short run of the quickstart study)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from moa_search import local

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
#: Seconds any one cell may take.
CELL_TIMEOUT_S = 300
PLOTLY_MIME = "application/vnd.plotly.v1+json"


@pytest.fixture(scope="module")
def kernel_name() -> str:
    """The venv's ``python3`` kernel; installed into the venv (``--sys-prefix``) if missing."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        subprocess.run(
            [sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"],
            check=True,
            capture_output=True,
        )
    return "python3"


def execute(name: str, kernel_name: str) -> nbformat.NotebookNode:
    """Run notebooks/<name> in a fresh kernel (which inherits ``os.environ``); a failing cell
    raises :class:`nbclient.exceptions.CellExecutionError` with its traceback."""
    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    # saved without outputs, so the files stay small and diffable
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), name
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # every cell has CELL_TIMEOUT_S: a hang fails, slowness is benchmarks' job
    return nb


def outputs(nb: nbformat.NotebookNode) -> tuple[str, int]:
    """All stream and text outputs joined, and the number of plotly figures shown."""
    text: list[str] = []
    figures = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text.append(out.get("text", ""))
            data = out.get("data", {})
            figures += PLOTLY_MIME in data
            text.append(data.get("text/plain", ""))
            text.append(data.get("text/html", ""))
    return "\n".join(text), figures


def test_recorded_alpacaeval_notebook(kernel_name: str) -> None:
    nb = execute("recorded_alpacaeval.ipynb", kernel_name)
    text, figures = outputs(nb)
    assert "largest difference from the CSV" in text
    assert "diversity of one layer of all five" in text
    assert figures == 2, text


@pytest.mark.local
def test_quickstart_analysis_notebook(
    local_pool: local.LocalStatus, kernel_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever is stored under studies/results, run the short study (as on a fresh clone); the
    # kernel inherits MOA_SEARCH_HOME from the local_pool fixture and finds its pool.
    monkeypatch.setenv("MOA_NOTEBOOK_RUN_STUDY", "1")
    nb = execute("quickstart_analysis.ipynb", kernel_name)
    text, figures = outputs(nb)
    assert "short run: " in text and "short study done" in text
    assert 'id="role-table"' in text and "quality vs diversity" in text
    assert "wrote " in text and "self-contained" in text
    assert figures >= 4, text
