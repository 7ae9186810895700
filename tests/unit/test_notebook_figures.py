"""moa_search.report.notebook: the output a notebook figure is stored as, and the clean-up of
what a notebook starts. (The notebooks themselves, rendered in chromium, are in
tests/integration/test_notebooks.py.)"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import plotly.graph_objects as go
import pytest

from moa_search.judges import WinRate
from moa_search.report import notebook
from moa_search.report.notebook import FIGURE_CLASS, PLOTLY_MIME, figure_bundle, verdict_figure
from moa_search.search.records import HoldoutVerdict
from moa_search.search.space import Composition
from moa_search.search.stored import VerdictEntry

PNG = b"\x89PNG\r\n\x1a\n fake picture bytes"


def _figure(title: str = "win rate by trial") -> go.Figure:
    fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[0.2, 0.5, 0.4], name="trials"))
    fig.update_layout(title=title, height=300)
    return fig


def test_bundle_carries_the_interactive_figure_the_picture_and_html_holding_both() -> None:
    bundle = figure_bundle(_figure(), png=PNG, include_plotlyjs=False, div_id="fig-1")
    assert bundle[PLOTLY_MIME]["data"][0]["y"] == [0.2, 0.5, 0.4]
    assert bundle[PLOTLY_MIME]["layout"]["title"]["text"] == "win rate by trial"
    assert base64.b64decode(bundle["image/png"]) == PNG
    page = bundle["text/html"]
    # the picture sits in the figure's div; the script replaces it only where plotly.js runs
    div = re.search(r'<div id="fig-1" class="([^"]+)"[^>]*>(.*?)</div>', page, re.S)
    assert div is not None and div.group(1) == FIGURE_CLASS
    img = re.search(r'<img [^>]*src="data:image/png;base64,([^"]+)"', div.group(2))
    assert img is not None and base64.b64decode(img.group(1)) == PNG
    assert 'alt="win rate by trial"' in div.group(2)
    assert "if(!el||!window.Plotly){return;}" in page
    assert "window.define=undefined" not in page  # plotly.js is not carried by this one
    assert bundle["text/plain"] == "<figure: win rate by trial>"


def test_first_figure_carries_plotlyjs_hidden_from_amd_loaders() -> None:
    from plotly.offline import get_plotlyjs

    page = figure_bundle(_figure(), png=PNG, include_plotlyjs=True)["text/html"]
    assert get_plotlyjs()[:200] in page
    assert page.index("window.define=undefined") < page.index(get_plotlyjs()[:200])


def test_without_a_picture_the_html_says_so_and_no_png_is_stored() -> None:
    bundle = figure_bundle(_figure(), png=None, include_plotlyjs=False)
    assert "image/png" not in bundle
    assert "<img" not in bundle["text/html"]
    assert "interactive: needs JavaScript" in bundle["text/html"]


def test_texts_from_the_figure_cannot_end_the_script_or_break_the_markup() -> None:
    title = '</script><script>alert("x")</script> & "quotes"'
    bundle = figure_bundle(_figure(title), png=PNG, include_plotlyjs=False, div_id="fig-x")
    page = bundle["text/html"]
    # exactly the one script element the output brings: the title never closes it
    assert page.count("</script>") == 1 and page.count("<script") == 1
    assert 'alt="&lt;/script&gt;&lt;script&gt;alert(&quot;x&quot;)' in page
    # and the JSON in the script still reads back as the title
    spec_json = page.split("var s=", 1)[1].split(";el.innerHTML", 1)[0]
    assert json.loads(spec_json)["layout"]["title"]["text"] == title


def test_figure_png_is_none_when_kaleido_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kaleido", None)  # import kaleido raises ImportError
    monkeypatch.setitem(notebook._state, "kaleido_ok", True)
    assert notebook.figure_png(_figure()) is None
    assert notebook._state["kaleido_ok"] is False  # not tried again in this process


def test_scratch_dir_and_at_exit_clean_up_when_the_interpreter_exits(tmp_path: Path) -> None:
    marker = tmp_path / "cleaned"
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from moa_search.report.notebook import at_exit, scratch_dir\n"
        "folder = scratch_dir('moa-test-')\n"
        "(folder / 'file.txt').write_text('x')\n"
        f"at_exit(lambda: Path({str(marker)!r}).write_text('done'))\n"
        "def broken():\n"
        "    raise RuntimeError('a failing clean-up does not stop the others')\n"
        "at_exit(broken)\n"
        "print(folder)\n"
        "raise SystemExit('a failure ends the program')\n"
    )
    env_tmp = tmp_path / "tmp"
    env_tmp.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(env_tmp)},
        check=False,
    )
    assert done.returncode == 1, done.stderr
    folder = Path(done.stdout.strip())
    assert folder.parent == env_tmp and folder.name.startswith("moa-test-")
    assert not folder.exists()
    assert marker.read_text() == "done"
    assert "clean-up" in done.stderr and "failed" in done.stderr


def _entry(name: str, mixture: str, mean: float, calls: int) -> VerdictEntry:
    return VerdictEntry(
        name=name,
        mixture=mixture,
        composition=Composition(layers=({"a": calls - 1},), aggregator="a"),
        mixture_key=name,
        win_rate=WinRate(mean, 0.05, max(0.0, mean - 0.1), min(1.0, mean + 0.1), 20),
        diff_vs_chosen=None,
        calls_per_prompt=calls,
        cost_per_prompt=0.0,
    )


def test_verdict_figure_shows_chosen_first_with_its_interval_and_calls() -> None:
    verdict = HoldoutVerdict(
        trial=3,
        n_search=30,
        n_holdout=20,
        chosen=_entry("chosen", "2x[a*2, <b>] -> a", 0.7, 5),
        baselines={
            "best_single": _entry("best_single", "a alone", 0.55, 1),
            "self_moa": _entry("self_moa", "[a*4] -> a", 0.95, 5),
        },
        solo_win_rates={"a": 0.55},
        rule_win_rates=(),
    )
    bar, mark = verdict_figure(verdict).data
    assert list(bar.x) == list(mark.x) == [0.7, 0.55, 0.95]
    assert bar.y[0].startswith("<b>chosen</b><br>2x[a*2, &lt;b&gt;] -&gt; a<br>5 calls per prompt")
    assert bar.y[1].endswith("a alone<br>1 call per prompt")
    # asymmetric intervals, clipped at 1 for the 0.95 entry
    assert list(mark.error_x.array) == pytest.approx([0.1, 0.1, 0.05])
    assert list(mark.error_x.arrayminus) == pytest.approx([0.1, 0.1, 0.1])
    colors = tuple(bar.marker.color)
    assert colors[0] != colors[1] == colors[2]
