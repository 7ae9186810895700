"""Notebook helpers: figures that render everywhere, and clean-up of what a notebook starts.

A Plotly figure shown with ``fig.show()`` is stored in the notebook only as Plotly's JSON, which
nbconvert's HTML and code hosts cannot draw. :func:`show` displays one output carrying three
forms of the figure:

- ``application/vnd.plotly.v1+json``, which JupyterLab, Notebook 7 and VS Code draw
  interactively;
- ``image/png``, a static picture made with kaleido (when kaleido is installed and finds a
  Chrome or Chromium; otherwise it is left out);
- ``text/html``, which nbconvert's HTML shows: a ``<div>`` holding the static picture as an
  ``<img>`` and a script that replaces it with the interactive figure when scripts run. The first
  figure of a kernel carries plotly.js itself, inlined (no network); pages that run no script,
  as code hosts do, keep the picture. Without kaleido the ``<div>`` holds a line of text instead.

:func:`scratch_dir` and :func:`at_exit` tie a temporary folder or a clean-up function to the
kernel's exit, so that a notebook leaves nothing behind even when one of its cells fails (the
kernel still shuts down normally).
"""

from __future__ import annotations

import atexit
import base64
import html
import json
import logging
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from moa_search.search.records import HoldoutVerdict

__all__ = [
    "FIGURE_CLASS",
    "PLOTLY_MIME",
    "at_exit",
    "figure_bundle",
    "figure_png",
    "scratch_dir",
    "show",
    "verdict_figure",
]

log = logging.getLogger(__name__)

PLOTLY_MIME = "application/vnd.plotly.v1+json"
#: The CSS class of every figure's ``<div>`` in the ``text/html`` form.
FIGURE_CLASS = "moa-figure"
#: The static picture's size in CSS pixels when the figure sets none (drawn at 2x).
STATIC_WIDTH = 900
STATIC_HEIGHT = 440
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}

_lock = threading.Lock()
_state: dict[str, bool] = {"plotlyjs_sent": False, "kaleido_started": False, "kaleido_ok": True}


# ----------------------------------------------------------------------------- clean-up


def at_exit(func: Callable[[], object]) -> Callable[[], object]:
    """Call ``func`` when the interpreter (the notebook's kernel) exits; returns ``func``.

    A kernel that is shut down or restarted exits normally, also after a failed cell, so what a
    notebook registers here runs whichever cell stopped it. Exceptions are logged, not raised.
    """

    def run() -> None:
        try:
            func()
        except Exception:  # a clean-up that fails must not hide the others
            log.warning("clean-up %r failed", func, exc_info=True)

    atexit.register(run)
    return func


def scratch_dir(prefix: str = "moa-notebook-") -> Path:
    """A new temporary folder (under ``$TMPDIR``), removed with its contents when the
    interpreter exits."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    at_exit(lambda: shutil.rmtree(path, ignore_errors=True))
    return path


# ----------------------------------------------------------------------------- static picture


#: Seconds one static picture may take (the first starts the browser) before kaleido is given
#: up for the rest of the process: a browser that cannot start can leave kaleido waiting forever.
KALEIDO_TIMEOUT_S = 120.0


def _within(seconds: float, func: Callable[[], Any]) -> Any:
    """``func()`` on a daemon thread, waited for ``seconds`` at most (a stuck call is left
    behind and does not keep the interpreter from exiting)."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = func()
        except Exception as exc:  # noqa: BLE001 - raised again in the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="moa-kaleido", daemon=True).start()
    if not done.wait(seconds):
        raise TimeoutError(f"no answer from kaleido within {seconds:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _stop_kaleido() -> None:
    import kaleido

    if _state["kaleido_ok"]:  # a browser that never answered is not waited for
        _within(10.0, lambda: kaleido.stop_sync_server(silence_warnings=True))


def _size(fig: go.Figure) -> tuple[int, int]:
    layout = fig.layout
    width = int(layout.width) if layout.width else STATIC_WIDTH
    height = int(layout.height) if layout.height else STATIC_HEIGHT
    return width, height


def figure_png(fig: go.Figure, *, scale: float = 2.0) -> bytes | None:
    """The figure as a PNG, drawn by kaleido in a headless Chrome or Chromium, or ``None`` when
    kaleido is not installed or cannot draw here (no browser found, say); the reason is logged
    once. One browser serves every figure of the process and is stopped at exit."""
    if not _state["kaleido_ok"]:
        return None
    try:
        import kaleido
    except ImportError:
        _state["kaleido_ok"] = False
        log.info("kaleido is not installed: figures are stored without a static picture")
        return None
    width, height = _size(fig)
    try:
        with _lock:
            if not _state["kaleido_started"]:
                kaleido.start_sync_server(silence_warnings=True)
                _state["kaleido_started"] = True
                at_exit(_stop_kaleido)
        opts = {"format": "png", "width": width, "height": height, "scale": scale}
        data = _within(
            KALEIDO_TIMEOUT_S, lambda: kaleido.calc_fig_sync(fig.to_plotly_json(), opts=opts)
        )
    except Exception as exc:  # noqa: BLE001 - kaleido raises its own and the browser's errors
        _state["kaleido_ok"] = False
        log.warning(
            "kaleido could not draw a figure (%s: %s): figures are stored without a static picture",
            type(exc).__name__,
            exc,
        )
        return None
    return bytes(data)


# ----------------------------------------------------------------------------- the output


def _plotlyjs() -> str:
    """plotly.js, run with AMD's ``define`` hidden so that it sets ``window.Plotly`` even on a
    page that loads require.js (nbconvert's and the classic notebook's do)."""
    from plotly.offline import get_plotlyjs

    return (
        "(function(){var d=window.define;window.define=undefined;try{\n"
        + get_plotlyjs()
        + "\n}finally{window.define=d;}})();"
    )


def _script_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element."""
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _title(fig: go.Figure) -> str:
    title = fig.layout.title.text if fig.layout.title else None
    return str(title) if title else "figure"


def figure_bundle(
    fig: go.Figure,
    *,
    png: bytes | None,
    include_plotlyjs: bool,
    div_id: str | None = None,
) -> dict[str, Any]:
    """The output :func:`show` displays (MIME type -> data; see the module docstring)."""
    fig_json = json.loads(pio.to_json(fig, validate=False))
    spec = {
        "data": fig_json.get("data", []),
        "layout": fig_json.get("layout", {}),
        "config": _PLOT_CONFIG,
    }
    div_id = div_id or f"moa-fig-{uuid.uuid4().hex}"
    width, height = _size(fig)
    alt = html.escape(_title(fig), quote=True)
    if png is not None:
        src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        static = (
            f'<img class="{FIGURE_CLASS}-static" src="{src}" alt="{alt}" width="{width}" '
            f'style="max-width:100%;height:auto">'
        )
    else:
        static = f'<p class="{FIGURE_CLASS}-static">{alt} (interactive: needs JavaScript)</p>'
    script = (
        "(function(){var el=document.getElementById(" + _script_json(div_id) + ");"
        "if(!el||!window.Plotly){return;}var s=" + _script_json(spec) + ";"
        'el.innerHTML="";el.style.height="' + str(height) + 'px";'
        "window.Plotly.newPlot(el,s.data,s.layout,s.config);})();"
    )
    parts = [f'<div id="{div_id}" class="{FIGURE_CLASS}" data-title="{alt}">{static}</div>']
    if include_plotlyjs:
        parts.append(f'<script type="text/javascript">{_plotlyjs()}</script>')
    parts.append(f'<script type="text/javascript">{script}</script>')
    bundle: dict[str, Any] = {
        PLOTLY_MIME: spec,
        "text/html": "\n".join(parts),
        "text/plain": f"<figure: {_title(fig)}>",
    }
    if png is not None:
        bundle["image/png"] = base64.b64encode(png).decode("ascii")
    return bundle


def show(fig: go.Figure, *, static: bool = True) -> None:
    """Display ``fig`` in a notebook so that it renders everywhere (see the module docstring);
    ``static=False`` skips the PNG."""
    from IPython.display import display

    png = figure_png(fig) if static else None
    with _lock:
        first = not _state["plotlyjs_sent"]
        _state["plotlyjs_sent"] = True
    display(figure_bundle(fig, png=png, include_plotlyjs=first), raw=True)


# ----------------------------------------------------------------------------- the verdict


def verdict_figure(verdict: HoldoutVerdict, *, order: Sequence[str] = ()) -> go.Figure:
    """The held-out verdict as a figure: each entry's win rate with its 95% interval (the chosen
    mixture first, then the baselines), labelled with its mixture and calls per prompt."""
    entries: Mapping[str, Any] = {"chosen": verdict.chosen, **verdict.baselines}
    names = [n for n in order if n in entries] + [n for n in entries if n not in order]
    wr = [entries[n].win_rate for n in names]
    labels = [
        f"<b>{n}</b><br>{html.escape(entries[n].mixture)}<br>"
        f"{entries[n].calls_per_prompt} call{'' if entries[n].calls_per_prompt == 1 else 's'}"
        " per prompt"
        for n in names
    ]
    colors = ["#d62728" if n == "chosen" else "#1f77b4" for n in names]
    fig = go.Figure()
    fig.add_bar(
        x=[w.mean for w in wr],
        y=labels,
        orientation="h",
        marker={"color": colors, "opacity": 0.35},
        hoverinfo="skip",
        showlegend=False,
    )
    # the win rate as a mark with its interval: visible even at 0
    fig.add_scatter(
        x=[w.mean for w in wr],
        y=labels,
        mode="markers",
        marker={"color": colors, "size": 12, "symbol": "diamond", "line": {"width": 1}},
        error_x={
            "type": "data",
            "symmetric": False,
            "array": [w.ci_high - w.mean for w in wr],
            "arrayminus": [w.mean - w.ci_low for w in wr],
        },
        hovertemplate="%{y}<br>win rate %{x:.3f}<extra></extra>",
        showlegend=False,
    )
    fig.update_layout(
        title=f"Held-out verdict: {verdict.n_holdout} prompts the search never saw",
        xaxis={"title": "win rate against the study's baseline", "range": [-0.02, 1.02]},
        yaxis={"autorange": "reversed"},
        height=120 + 80 * len(names),
        margin={"l": 240, "r": 20, "t": 50, "b": 50},
        template="plotly_white",
    )
    return fig
