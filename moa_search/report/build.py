"""A study's report: one self-contained HTML file with its figures, role table and choice.

:func:`build_report` turns a finished (or running) study into HTML text — a pure function of
the study, its spec and, optionally, a role analysis and the chosen mixture as YAML.
:func:`write_report` gathers those from a :class:`~moa_search.search.session.SearchSession` and writes
the file. The report holds:

- a summary (trials by state, objectives, sampler, dataset hash, storage without password);
- the Pareto front: win rate against cost per prompt (tokens when every cost is 0), colored
  by diversity, the study's non-dominated trials outlined and the chosen one starred, with a
  table of the front;
- win rate against diversity, with each trial's confidence interval;
- the role table of :func:`moa_search.analysis.roles.analyze` (and a forest plot of the effects),
  with the quality-vs-diversity summary — or a note when the study cannot be analysed;
- parameter importances (Optuna's fANOVA, seeded, on win rate) — or a note;
- the optimization history: win rate per trial, the best so far, pruned trials marked;
- the chosen mixture as YAML with its full-dataset metrics (study user attribute ``final``);
- the calls summary: model calls made against those a cache-less search would have made.

The page is offline: the plotly.js bundle is inlined once in the head (no CDN, no fetch), every
text taken from the study is escaped, and no secret is written — the storage URL loses its
password and pools only ever name their API-key variables.
"""

from __future__ import annotations

import datetime as _dt
import html
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import plotly.graph_objects as go
import yaml
from optuna.trial import FrozenTrial, TrialState

from moa_search.analysis.roles import AnalysisError, AnalysisResult, analyze
from moa_search.errors import MoaSearchError
from moa_search.config.study import OBJECTIVES, StudySpec
from moa_search.search.session import choose_trial, pareto_front, redact_url

if TYPE_CHECKING:
    from moa_search.search.session import SearchSession

__all__ = ["build_report", "role_table_html", "study_figures", "write_report"]

log = logging.getLogger(__name__)

#: Figures are this tall (px); their width follows the page.
_FIG_HEIGHT = 440
_PLOT_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True}
_CHOSEN_COLOR = "#d62728"
_PRUNED_COLOR = "#9e9e9e"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       background: #f6f7f9; color: #1f2328; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 1.6rem; margin: 0 0 4px; }
h2 { font-size: 1.2rem; margin: 0 0 10px; }
section { background: #fff; border: 1px solid #d8dee4; border-radius: 8px;
          padding: 16px 20px; margin: 18px 0; }
p.sub { color: #59636e; margin: 0 0 12px; }
p.note { color: #59636e; font-style: italic; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 8px 0; }
th, td { border-bottom: 1px solid #e5e8eb; padding: 4px 10px; text-align: left;
         vertical-align: top; }
th { background: #f0f2f4; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.chosen td { background: #fff4e5; }
td.pos { color: #1a7f37; font-weight: 600; }
td.neg { color: #cf222e; font-weight: 600; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dl.kv dt { color: #59636e; }
dl.kv dd { margin: 0; overflow-wrap: anywhere; }
pre { background: #f6f8fa; border: 1px solid #d8dee4; border-radius: 6px; padding: 10px 12px;
      overflow-x: auto; font-size: 0.85rem; }
.plot { width: 100%; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 20px; }
@media (max-width: 900px) { .two { grid-template-columns: 1fr; } }
"""


# ----------------------------------------------------------------------------- helpers


def _e(value: object) -> str:
    """HTML-escaped text of any value."""
    return html.escape(str(value), quote=True)


def _metrics(t: FrozenTrial) -> Mapping[str, Any]:
    m = t.user_attrs.get("metrics")
    return m if isinstance(m, Mapping) else {}


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(float(value)) else None


def _wr(t: FrozenTrial) -> Mapping[str, Any]:
    wr = _metrics(t).get("win_rate")
    return wr if isinstance(wr, Mapping) else {}


def _wr_mean(t: FrozenTrial) -> float | None:
    return _num(_wr(t).get("mean"))


def _metric(t: FrozenTrial, name: str) -> float | None:
    return _num(_metrics(t).get(name))


def _fmt(value: object, spec: str = ".3f", missing: str = "–") -> str:
    v = _num(value)
    return missing if v is None else format(v, spec)


def _points(value: float | None) -> str:
    """A win-rate difference in signed points (no "-0.0")."""
    return "–" if value is None else f"{round(value * 100, 1) + 0.0:+.1f}"


def _fmt_ci(wr: Mapping[str, Any]) -> str:
    low, high = _num(wr.get("ci_low")), _num(wr.get("ci_high"))
    if low is None or high is None:
        return "–"
    return f"[{low:.3f}, {high:.3f}]"


def _description(t: FrozenTrial) -> str:
    d = t.user_attrs.get("mixture")
    return str(d) if d else "(no description)"


def _hover(t: FrozenTrial, x_name: str | None = None) -> str:
    """Plotly hover text (plotly renders a small HTML subset: everything is escaped)."""
    wr = _wr(t)
    lines = [
        f"<b>trial {t.number}</b> ({_e(t.state.name.lower())})",
        _e(_description(t)),
        f"win rate {_fmt(wr.get('mean'))} {_e(_fmt_ci(wr))} "
        f"on {_e(t.user_attrs.get('n_items', '?'))} prompts",
        f"diversity {_fmt(_metric(t, 'diversity'))}",
        f"tokens/prompt {_fmt(_metric(t, 'tokens'), '.0f')}, "
        f"${_fmt(_metric(t, 'cost_usd'), '.6f')}/prompt",
    ]
    if x_name == "latency_s":
        lines.append(f"latency {_fmt(_metric(t, 'latency_s'), '.2f')} s")
    return "<br>".join(lines)


def _layout(fig: go.Figure, *, title: str, x: str, y: str, **extra: Any) -> go.Figure:
    fig.update_layout(
        title={"text": _e(title), "x": 0.01, "xanchor": "left"},
        xaxis_title=_e(x),
        yaxis_title=_e(y),
        height=_FIG_HEIGHT,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        template="plotly_white",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1},
        **extra,
    )
    return fig


def _fig_html(fig: go.Figure, div_id: str) -> str:
    """The figure as a ``<div>`` and its script; plotly.js itself is in the page head."""
    return str(
        fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            include_mathjax=False,
            div_id=div_id,
            config=_PLOT_CONFIG,
            default_width="100%",
            default_height=f"{_FIG_HEIGHT}px",
        )
    )


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _table(
    headers: Sequence[tuple[str, bool]],
    rows: Sequence[Sequence[str]],
    *,
    row_classes: Sequence[str] | None = None,
    cell_classes: Sequence[Sequence[str]] | None = None,
    table_id: str | None = None,
) -> str:
    """An HTML table; ``headers`` are (text, numeric) and cells are already-escaped HTML."""
    head = "".join(
        f'<th class="num">{_e(h)}</th>' if numeric else f"<th>{_e(h)}</th>"
        for h, numeric in headers
    )
    body = []
    for i, row in enumerate(rows):
        cls = row_classes[i] if row_classes else ""
        cells = []
        for j, cell in enumerate(row):
            classes = ["num"] if headers[j][1] else []
            if cell_classes and cell_classes[i][j]:
                classes.append(cell_classes[i][j])
            attr = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{attr}>{cell}</td>")
        row_attr = f' class="{cls}"' if cls else ""
        body.append(f"<tr{row_attr}>{''.join(cells)}</tr>")
    id_attr = f' id="{_e(table_id)}"' if table_id else ""
    return f"<table{id_attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if _wr_mean(t) is not None
    ]


def _cost_axis(trials: Sequence[FrozenTrial]) -> tuple[str, str]:
    """The Pareto plot's x: cost per prompt, or tokens per prompt when every cost is 0."""
    if any((_metric(t, "cost_usd") or 0.0) > 0 for t in trials):
        return "cost_usd", "cost per 1,000 prompts (USD)"
    return "tokens", "tokens per prompt"


def _x_value(t: FrozenTrial, key: str) -> float | None:
    """The Pareto plot's x of a trial: dollars per 1,000 prompts (per-prompt costs are
    fractions of a cent), or tokens per prompt."""
    v = _metric(t, key)
    return v * 1000.0 if v is not None and key == "cost_usd" else v


def _frontier(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The 2-D non-dominated points (x minimised, y maximised), by increasing x."""
    out: list[tuple[float, float]] = []
    best = -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            out.append((x, y))
            best = y
    return out


# ----------------------------------------------------------------------------- figures


def _pareto_figure(
    complete: Sequence[FrozenTrial], front: Sequence[FrozenTrial], chosen: FrozenTrial | None
) -> go.Figure:
    x_key, x_title = _cost_axis(complete)
    front_numbers = {t.number for t in front}
    fig = go.Figure()
    groups = (
        ("other trials", [t for t in complete if t.number not in front_numbers], 9, 0.55, 0),
        (
            "Pareto front (all objectives)",
            [t for t in complete if t.number in front_numbers],
            14,
            0.95,
            2,
        ),
    )
    for name, trials, size, opacity, line in groups:
        if not trials:
            continue
        fig.add_trace(
            go.Scatter(
                x=[_x_value(t, x_key) for t in trials],
                y=[_wr_mean(t) for t in trials],
                mode="markers",
                name=name,
                marker={
                    "size": size,
                    "opacity": opacity,
                    "color": [_metric(t, "diversity") or 0.0 for t in trials],
                    "coloraxis": "coloraxis",
                    "line": {"width": line, "color": "#1f2328"},
                },
                hovertext=[_hover(t) for t in trials],
                hoverinfo="text",
            )
        )
    pts = [
        (x, y)
        for t in complete
        if (x := _x_value(t, x_key)) is not None and (y := _wr_mean(t)) is not None
    ]
    frontier = _frontier(pts)
    if len(frontier) > 1:
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in frontier],
                y=[p[1] for p in frontier],
                mode="lines",
                line={"shape": "hv", "dash": "dot", "color": "#57606a", "width": 1.5},
                name="frontier: win rate vs " + ("cost" if x_key == "cost_usd" else "tokens"),
                hoverinfo="skip",
            )
        )
    if chosen is not None and _wr_mean(chosen) is not None:
        fig.add_trace(
            go.Scatter(
                x=[_x_value(chosen, x_key)],
                y=[_wr_mean(chosen)],
                mode="markers",
                name=f"chosen: trial {chosen.number}",
                marker={
                    "symbol": "star",
                    "size": 22,
                    "color": _CHOSEN_COLOR,
                    "line": {"width": 1.5, "color": "#1f2328"},
                },
                hovertext=[_hover(chosen)],
                hoverinfo="text",
            )
        )
    fig = _layout(
        fig,
        title="Win rate against cost",
        x=x_title,
        y="win rate",
        coloraxis={
            "colorscale": "Viridis",
            "colorbar": {"title": {"text": "diversity"}, "thickness": 14},
        },
    )
    if x_key == "cost_usd":
        fig.update_xaxes(tickprefix="$")
    return fig


def _diversity_figure(
    complete: Sequence[FrozenTrial], chosen: FrozenTrial | None, analysis: AnalysisResult | None
) -> go.Figure:
    def errors(trials: Sequence[FrozenTrial]) -> dict[str, Any]:
        plus, minus = [], []
        for t in trials:
            wr = _wr(t)
            mean = _num(wr.get("mean")) or 0.0
            plus.append(max(0.0, (_num(wr.get("ci_high")) or mean) - mean))
            minus.append(max(0.0, mean - (_num(wr.get("ci_low")) or mean)))
        return {
            "type": "data",
            "symmetric": False,
            "array": plus,
            "arrayminus": minus,
            "thickness": 1,
            "width": 3,
        }

    fig = go.Figure()
    others = [t for t in complete if chosen is None or t.number != chosen.number]
    if others:
        fig.add_trace(
            go.Scatter(
                x=[_metric(t, "diversity") for t in others],
                y=[_wr_mean(t) for t in others],
                mode="markers",
                name="trials (95% CI)",
                marker={"size": 9, "color": "#0969da", "opacity": 0.8},
                error_y={**errors(others), "color": "rgba(9,105,218,0.45)"},
                hovertext=[_hover(t) for t in others],
                hoverinfo="text",
            )
        )
    if chosen is not None and _wr_mean(chosen) is not None:
        fig.add_trace(
            go.Scatter(
                x=[_metric(chosen, "diversity")],
                y=[_wr_mean(chosen)],
                mode="markers",
                name=f"chosen: trial {chosen.number}",
                marker={"symbol": "star", "size": 18, "color": _CHOSEN_COLOR},
                error_y={**errors([chosen]), "color": _CHOSEN_COLOR},
                hovertext=[_hover(chosen)],
                hoverinfo="text",
            )
        )
    pts = [
        (x, y)
        for t in complete
        if (x := _metric(t, "diversity")) is not None and (y := _wr_mean(t)) is not None
    ]
    xs = [p[0] for p in pts]
    if len(pts) >= 3 and max(xs) - min(xs) > 1e-12:
        mx = sum(xs) / len(xs)
        my = sum(p[1] for p in pts) / len(pts)
        slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x in xs)
        lo, hi = min(xs), max(xs)
        fig.add_trace(
            go.Scatter(
                x=[lo, hi],
                y=[my + slope * (lo - mx), my + slope * (hi - mx)],
                mode="lines",
                name="least-squares line",
                line={"dash": "dash", "color": "#8c959f", "width": 1.5},
                hoverinfo="skip",
            )
        )
    subtitle = ""
    if analysis is not None and analysis.diversity.partial_r is not None:
        d = analysis.diversity
        subtitle = (
            f" (partial r beyond roles {_fmt(d.partial_r, '+.2f')}, p = {_fmt(d.p_value, '.2g')})"
        )
    return _layout(fig, title=f"Win rate against diversity{subtitle}", x="diversity", y="win rate")


def _history_figure(study: optuna.Study, chosen: FrozenTrial | None) -> go.Figure:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and _wr_mean(t) is not None]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and _wr_mean(t) is not None]
    fig = go.Figure()
    if complete:
        fig.add_trace(
            go.Scatter(
                x=[t.number for t in complete],
                y=[_wr_mean(t) for t in complete],
                mode="markers",
                name="complete",
                marker={"size": 9, "color": "#0969da"},
                hovertext=[_hover(t) for t in complete],
                hoverinfo="text",
            )
        )
        best_x, best_y, best = [], [], -math.inf
        for t in sorted(complete, key=lambda t: t.number):
            best = max(best, _wr_mean(t) or -math.inf)
            best_x.append(t.number)
            best_y.append(best)
        last = max(t.number for t in trials)
        if best_x[-1] < last:
            best_x.append(last)
            best_y.append(best_y[-1])
        fig.add_trace(
            go.Scatter(
                x=best_x,
                y=best_y,
                mode="lines",
                name="best win rate so far",
                line={"shape": "hv", "color": "#1a7f37", "width": 2},
                hoverinfo="skip",
            )
        )
    if pruned:
        fig.add_trace(
            go.Scatter(
                x=[t.number for t in pruned],
                y=[_wr_mean(t) for t in pruned],
                mode="markers",
                name="pruned (win rate when stopped)",
                marker={"symbol": "x", "size": 10, "color": _PRUNED_COLOR},
                hovertext=[_hover(t) for t in pruned],
                hoverinfo="text",
            )
        )
    if chosen is not None and _wr_mean(chosen) is not None:
        fig.add_trace(
            go.Scatter(
                x=[chosen.number],
                y=[_wr_mean(chosen)],
                mode="markers",
                name=f"chosen: trial {chosen.number}",
                marker={"symbol": "star", "size": 18, "color": _CHOSEN_COLOR},
                hovertext=[_hover(chosen)],
                hoverinfo="text",
            )
        )
    fig = _layout(fig, title="Optimization history", x="trial number", y="win rate")
    fig.update_xaxes(dtick=1 if len(trials) <= 30 else None)
    return fig


def _importance_figure(importances: Mapping[str, float]) -> go.Figure:
    names = list(importances)[::-1]  # most important on top
    values = [importances[n] for n in names]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=[_e(n) for n in names],
            orientation="h",
            marker={"color": "#0969da"},
            text=[f"{v:.2f}" for v in values],
            textposition="auto",
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    fig = _layout(fig, title="Parameter importances for win rate (fANOVA)", x="importance", y="")
    fig.update_layout(
        showlegend=False,
        height=max(260, 70 + 34 * len(names)),
        margin={"l": 20, "r": 20, "t": 50, "b": 50},
    )
    fig.update_yaxes(automargin=True)
    return fig


def _roles_figure(analysis: AnalysisResult) -> go.Figure | None:
    roles = [r for r in analysis.roles if r.effect is not None]
    if not roles:
        return None
    labels = []
    for r in roles:
        where = (
            "aggregator"
            if r.role == "aggregator"
            else ("proposer, any layer" if r.layer is None else f"proposer, layer {r.layer + 1}")
        )
        labels.append(_e(f"{r.model} ({where})"))
    effects = [(r.effect or 0.0) * 100 for r in roles]
    plus = [max(0.0, ((r.ci_high or 0.0) - (r.effect or 0.0)) * 100) for r in roles]
    minus = [max(0.0, ((r.effect or 0.0) - (r.ci_low or 0.0)) * 100) for r in roles]
    colors = [
        ("#1a7f37" if (r.effect or 0) > 0 else "#cf222e") if r.significant else "#57606a"
        for r in roles
    ]
    fig = go.Figure(
        go.Scatter(
            x=effects[::-1],
            y=labels[::-1],
            mode="markers",
            marker={"size": 11, "color": colors[::-1]},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": plus[::-1],
                "arrayminus": minus[::-1],
                "thickness": 1.5,
                "width": 4,
            },
            hovertemplate="%{y}: %{x:+.1f} points<extra></extra>",
            showlegend=False,
        )
    )
    fig.add_vline(x=0, line={"color": "#8c959f", "dash": "dot"})
    pct = round(analysis.confidence * 100)
    fig = _layout(
        fig,
        title=f"Role effects on win rate ({pct}% bootstrap intervals)",
        x="effect (win-rate points)",
        y="",
    )
    fig.update_layout(
        height=max(260, 90 + 40 * len(roles)), margin={"l": 20, "r": 20, "t": 50, "b": 50}
    )
    fig.update_yaxes(automargin=True)
    return fig


# ----------------------------------------------------------------------------- sections


def _param_importances(study: optuna.Study, seed: int) -> tuple[dict[str, float] | None, str]:
    """fANOVA importances of the params for win rate, or ``None`` and why not."""
    complete = _complete(study)
    if len(complete) < 2:
        return None, (
            f"Parameter importances need at least 2 complete trials; the study has {len(complete)}."
        )
    try:
        importances = optuna.importance.get_param_importances(
            study,
            evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed),
            target=lambda t: float(_wr_mean(t) or 0.0),
        )
    except Exception as exc:  # noqa: BLE001 - importances are optional; the report goes on
        log.info("no parameter importances: %s", exc)
        return None, f"Parameter importances could not be computed: {exc}"
    if not importances:
        return None, "Parameter importances: no parameter was varied in every complete trial."
    return {str(k): float(v) for k, v in importances.items()}, ""


def role_table_html(analysis: AnalysisResult) -> str:
    """The role table of ``analysis`` as an HTML ``<table id="role-table">`` (text escaped;
    effects and intervals in win-rate points, layers counted from 1)."""
    pct = round(analysis.confidence * 100)
    rows, cell_classes = [], []
    for r in analysis.roles:
        layer = (
            "any"
            if r.layer is None and r.role == "proposer"
            else ("–" if r.layer is None else str(r.layer + 1))
        )
        effect = _points(r.effect)
        ci = (
            "–"
            if r.ci_low is None or r.ci_high is None
            else f"[{_points(r.ci_low)}, {_points(r.ci_high)}]"
        )
        mark = "pos" if r.significant and (r.effect or 0) > 0 else ""
        mark = "neg" if r.significant and (r.effect or 0) < 0 else mark
        rows.append(
            [
                _e(r.role),
                _e(layer),
                _e(r.model),
                _e(effect),
                _e(ci),
                "yes" if r.significant else "",
                _e(f"{_fmt(r.mean_with)} ({r.n_with})"),
                _e(f"{_fmt(r.mean_without)} ({r.n_without})"),
            ]
        )
        cell_classes.append(["", "", "", mark, "", "", "", ""])
    return _table(
        [
            ("role", False),
            ("layer", True),
            ("model", False),
            ("effect (points)", True),
            (f"{pct}% CI", True),
            ("interval excludes 0", False),
            ("win rate with (trials)", True),
            ("without (trials)", True),
        ],
        rows,
        cell_classes=cell_classes,
        table_id="role-table",
    )


def _role_section(analysis: AnalysisResult | None, analysis_note: str | None) -> tuple[str, str]:
    """The role section's HTML, and the roles figure's (may be empty)."""
    if analysis is None:
        return _note(analysis_note or "No role analysis was run for this report."), ""
    pct = round(analysis.confidence * 100)
    table = role_table_html(analysis)
    intro = (
        f'<p class="sub">{analysis.n_trials} complete trials; ridge regression of win rate on '
        f"role indicators (alpha {analysis.alpha:g}), {analysis.n_boot} bootstrap resamples. "
        "An effect of +10 means ten points more win rate with the role.</p>"
    )
    d = analysis.diversity
    if not d.diversity_varies:
        div = _note("Diversity was constant across trials: nothing to estimate.")
    else:
        verdict = (
            "Diversity explains win rate beyond which models played which role."
            if d.significant
            else "No evidence that diversity explains win rate beyond the roles."
        )
        div = (
            "<h3>Quality vs diversity</h3>"
            + '<dl class="kv">'
            + f"<dt>cross-validated R², roles</dt><dd>{_fmt(d.r2_roles)}</dd>"
            + f"<dt>… roles + diversity</dt><dd>{_fmt(d.r2_roles_diversity)}</dd>"
            + f"<dt>adjusted R²</dt><dd>{_fmt(d.adj_r2_roles)} → "
            + f"{_fmt(d.adj_r2_roles_diversity)}</dd>"
            + f"<dt>diversity coefficient</dt><dd>{_fmt(d.coefficient_per_sd, '+.4f')} win rate "
            + f"per SD ({_fmt(d.coefficient, '+.3f')} per unit, {pct}% CI "
            + f"[{_fmt(d.ci_low, '+.3f')}, {_fmt(d.ci_high, '+.3f')}])</dd>"
            + f"<dt>partial correlation</dt><dd>{_fmt(d.partial_r, '+.3f')} "
            + f"(p = {_fmt(d.p_value, '.3g')})</dd>"
            + "</dl>"
            + f"<p><b>{_e(verdict)}</b></p>"
        )
    fig = _roles_figure(analysis)
    return intro + table + div, _fig_html(fig, "fig-roles") if fig is not None else ""


def _front_table(front: Sequence[FrozenTrial], chosen: FrozenTrial | None) -> str:
    rows, classes = [], []
    for t in front:
        wr = _wr(t)
        rows.append(
            [
                _e(t.number),
                _e(_description(t)),
                _fmt(wr.get("mean")),
                _e(_fmt_ci(wr)),
                _fmt(_metric(t, "diversity")),
                _fmt(_metric(t, "tokens"), ".0f"),
                _fmt(_metric(t, "cost_usd"), ".6f"),
                _e(t.user_attrs.get("n_items", "–")),
            ]
        )
        classes.append("chosen" if chosen is not None and t.number == chosen.number else "")
    return _table(
        [
            ("trial", True),
            ("mixture", False),
            ("win rate", True),
            ("95% CI", True),
            ("diversity", True),
            ("tokens/prompt", True),
            ("$/prompt", True),
            ("prompts", True),
        ],
        rows,
        row_classes=classes,
        table_id="front-table",
    )


def _metrics_list(metrics: Mapping[str, Any], n_items: object) -> str:
    wr = metrics.get("win_rate") if isinstance(metrics.get("win_rate"), Mapping) else {}
    assert isinstance(wr, Mapping)
    items = [
        ("win rate", f"{_fmt(wr.get('mean'))} {_fmt_ci(wr)} (±{_fmt(wr.get('stderr'))} s.e.)"),
        ("prompts", str(n_items)),
        ("diversity", _fmt(metrics.get("diversity"))),
        ("tokens per prompt", _fmt(metrics.get("tokens"), ".0f")),
        ("cost per prompt", f"${_fmt(metrics.get('cost_usd'), '.6f')}"),
        ("latency per prompt", f"{_fmt(metrics.get('latency_s'), '.2f')} s"),
        (
            "failed / judge failures",
            f"{metrics.get('failures', 0)} / {metrics.get('judge_failures', 0)}",
        ),
    ]
    return (
        '<dl class="kv">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items) + "</dl>"
    )


def _chosen_section(
    study: optuna.Study,
    chosen: FrozenTrial | None,
    mixture_yaml: str | None,
    mixture_note: str | None = None,
) -> str:
    if chosen is None:
        return _note("No trial has completed: nothing to choose yet.")
    parts = [
        f'<p class="sub">Trial {chosen.number}: <b>{_e(_description(chosen))}</b></p>',
    ]
    final = study.user_attrs.get("final")
    if isinstance(final, Mapping) and final.get("trial") == chosen.number:
        parts.append(f"<h3>On the full dataset ({_e(final.get('n_items', '?'))} prompts)</h3>")
        metrics = final.get("metrics")
        parts.append(
            _metrics_list(metrics if isinstance(metrics, Mapping) else {}, final.get("n_items"))
        )
    else:
        parts.append(
            _note(
                "The chosen trial has not been re-evaluated on the full dataset yet "
                "('moa-search search' or 'moa-search export' does it); its search metrics follow."
            )
        )
    parts.append(
        f"<h3>During the search ({_e(chosen.user_attrs.get('n_items', '?'))} prompts)</h3>"
    )
    parts.append(_metrics_list(_metrics(chosen), chosen.user_attrs.get("n_items", "?")))
    if mixture_yaml:
        parts.append("<h3>Mixture file</h3>")
        parts.append(f'<pre id="chosen-mixture">{_e(mixture_yaml)}</pre>')
    else:
        parts.append("<h3>Trial params</h3>")
        if mixture_note:
            parts.append(_note(mixture_note))
        parts.append(f'<pre id="chosen-mixture">{_e(_params_yaml(chosen))}</pre>')
    return "".join(parts)


def _params_yaml(t: FrozenTrial) -> str:
    return yaml.safe_dump({"trial": t.number, "params": dict(t.params)}, sort_keys=False)


def _calls_section(study: optuna.Study) -> str:
    trials = study.get_trials(deepcopy=False)

    def total(key: str) -> float:
        return sum(_num(t.user_attrs.get(key)) or 0.0 for t in trials)

    made, cacheless = int(total("model_calls")), int(total("calls_total"))
    saved = 1.0 - made / cacheless if cacheless else 0.0
    items = [
        ("model calls made", f"{made:,}"),
        ("calls a cache-less search would have made", f"{cacheless:,}"),
        ("saved by the cache", f"{saved:.0%}"),
        ("attempts (with retries)", f"{int(total('attempts')):,}"),
        ("spent", f"${total('spent_usd'):.4f}, {int(total('spent_tokens')):,} tokens"),
    ]
    final = study.user_attrs.get("final")
    if isinstance(final, Mapping):
        items.append(
            (
                "full-dataset re-evaluation",
                f"{int(_num(final.get('model_calls')) or 0):,} calls made of "
                f"{int(_num(final.get('calls_total')) or 0):,}, "
                f"${_num(final.get('spent_usd')) or 0.0:.4f}",
            )
        )
    return (
        '<dl class="kv" id="calls-summary">'
        + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
        + "</dl>"
    )


def _summary_section(study: optuna.Study, spec: StudySpec, storage_url: str | None) -> str:
    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for t in trials:
        key = "invalid" if "invalid" in t.user_attrs else t.state.name.lower()
        states[key] = states.get(key, 0) + 1
    if spec.weights is not None:
        goal = "maximize " + " + ".join(f"{w:g}×{n}" for n, w in spec.weights.items())
    else:
        goal = ", ".join(f"{n} ({OBJECTIVES.get(n, '?')})" for n in spec.objective_names)
    items = [
        ("trials", ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none"),
        ("objectives", goal),
        ("choice rule", spec.choose.rule),
        (
            "judge / baseline",
            f"{spec.judge.kind} / {spec.baseline.kind}"
            + (f" {spec.baseline.model}" if spec.baseline.model else ""),
        ),
        ("sampler / pruner / seed", f"{spec.sampler} / {spec.pruner} / {spec.seed}"),
        ("dataset", f"{spec.dataset} (sha256 {study.user_attrs.get('dataset_hash', '?')})"),
    ]
    if storage_url:
        items.append(("storage", redact_url(storage_url)))
    return (
        '<dl class="kv">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items) + "</dl>"
    )


# ----------------------------------------------------------------------------- report


def study_figures(
    study: optuna.Study,
    spec: StudySpec,
    *,
    analysis: AnalysisResult | None = None,
    importance_seed: int = 0,
) -> dict[str, go.Figure]:
    """The report's plotly figures, for notebooks: ``pareto`` and ``diversity`` (with a
    complete trial), ``roles`` (with an analysis that estimated an effect), ``importance``
    (when the importances could be computed) and ``history`` (with a trial that has metrics),
    in that order; the chosen trial (:func:`~moa_search.search.session.choose_trial`) is starred."""
    complete = _complete(study)
    front = [t for t in pareto_front(study) if _wr_mean(t) is not None]
    chosen = choose_trial(study, spec) if complete else None
    out: dict[str, go.Figure] = {}
    if complete:
        out["pareto"] = _pareto_figure(complete, front, chosen)
        out["diversity"] = _diversity_figure(complete, chosen, analysis)
    roles = _roles_figure(analysis) if analysis is not None else None
    if roles is not None:
        out["roles"] = roles
    importances, _ = _param_importances(study, importance_seed)
    if importances:
        out["importance"] = _importance_figure(importances)
    if any(_wr_mean(t) is not None for t in study.get_trials(deepcopy=False)):
        out["history"] = _history_figure(study, chosen)
    return out


def build_report(
    study: optuna.Study,
    spec: StudySpec,
    *,
    analysis: AnalysisResult | None = None,
    chosen_mixture_yaml: str | None = None,
    mixture_note: str | None = None,
    analysis_note: str | None = None,
    storage_url: str | None = None,
    importance_seed: int = 0,
) -> str:
    """The study's report as one self-contained HTML document (see the module docstring).

    Pure: reads the study (trials and user attributes) and returns text; nothing is written or
    called. Works on a study with no complete trial (its sections then say so).

    Args:
        study: a study following :mod:`moa_search.search.session`'s conventions.
        spec: its spec (objectives, choice rule, …); the chosen trial is
            :func:`moa_search.search.session.choose_trial` of the two.
        analysis: a role analysis of the study; ``None`` shows ``analysis_note`` instead.
        chosen_mixture_yaml: the chosen mixture file's text (else the trial's params are shown).
        mixture_note: why there is no mixture file text.
        analysis_note: why there is no analysis.
        storage_url: shown with its password removed.
        importance_seed: seeds the fANOVA importance evaluator.
    """
    from plotly.offline import get_plotlyjs

    from moa_search import __version__

    complete = _complete(study)
    front = [t for t in pareto_front(study) if _wr_mean(t) is not None]
    chosen = choose_trial(study, spec) if complete else None
    title = f"moa-search report: {study.study_name}"
    generated = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")

    sections: list[str] = [
        f"<section id='summary'><h2>Study</h2>{_summary_section(study, spec, storage_url)}"
        "</section>"
    ]
    if complete:
        sections.append(
            "<section id='pareto'><h2>Pareto front</h2>"
            '<p class="sub">Every complete trial, colored by diversity; outlined: the study\'s '
            "non-dominated trials over all its objectives; star: the chosen mixture.</p>"
            + _fig_html(_pareto_figure(complete, front, chosen), "fig-pareto")
            + _front_table(front, chosen)
            + "</section>"
        )
        sections.append(
            "<section id='diversity'><h2>Quality and diversity</h2>"
            + _fig_html(_diversity_figure(complete, chosen, analysis), "fig-diversity")
            + "</section>"
        )
    else:
        sections.append(
            "<section id='pareto'><h2>Pareto front</h2>"
            + _note("No trial has completed yet.")
            + "</section>"
        )
    role_html, role_fig = _role_section(analysis, analysis_note)
    sections.append(f"<section id='roles'><h2>Roles</h2>{role_html}{role_fig}</section>")
    importances, why_not = _param_importances(study, importance_seed)
    sections.append(
        "<section id='importance'><h2>Parameter importances</h2>"
        + (
            _fig_html(_importance_figure(importances), "fig-importance")
            if importances
            else _note(why_not)
        )
        + "</section>"
    )
    if any(_wr_mean(t) is not None for t in study.get_trials(deepcopy=False)):
        sections.append(
            "<section id='history'><h2>Optimization history</h2>"
            + _fig_html(_history_figure(study, chosen), "fig-history")
            + "</section>"
        )
    sections.append(
        "<section id='chosen'><h2>Chosen mixture</h2>"
        + _chosen_section(study, chosen, chosen_mixture_yaml, mixture_note)
        + "</section>"
    )
    sections.append(
        "<section id='calls'><h2>Model calls</h2>" + _calls_section(study) + "</section>"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script>'
        "</head><body><main>"
        f"<h1>{_e(title)}</h1>"
        f'<p class="sub">generated {_e(generated)} by moa-search {_e(__version__)}</p>'
        + "\n".join(sections)
        + "</main></body></html>\n"
    )


def write_report(
    session: SearchSession,
    out_path: str | os.PathLike[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> Path:
    """Write ``session``'s study report to ``out_path`` (atomically) and return the path.

    Read-only on the study: nothing is evaluated, so nothing is spent — the chosen trial's
    full-dataset metrics appear when a search or an export has stored them. The role analysis
    (``n_boot`` resamples, ``seed``) is replaced by a note when the study has too few trials.
    """
    from moa_search.config import MixtureConfig

    study = session.study()
    analysis: AnalysisResult | None = None
    note: str | None = None
    try:
        analysis = analyze(study, n_boot=n_boot, seed=seed)
    except AnalysisError as exc:
        note = f"No role analysis: {exc}."
    chosen_yaml: str | None = None
    chosen = choose_trial(study, session.spec) if _complete(study) else None
    mixture_note: str | None = None
    if chosen is not None:
        try:
            mixture: MixtureConfig = session.mixture_for(chosen.params)
        except (ValueError, MoaSearchError) as exc:
            # a study stored by an older search space: its params no longer rebuild a mixture
            log.warning("trial %d's mixture cannot be rebuilt: %s", chosen.number, exc)
            mixture_note = (
                f"Trial {chosen.number}'s params do not rebuild a mixture with this spec's search "
                f"space ({exc}); its params are shown instead."
            )
        else:
            chosen_yaml = yaml.safe_dump(
                mixture.model_dump(mode="json", exclude_none=True),
                sort_keys=False,
                allow_unicode=True,
                width=100,
            )
    text = build_report(
        study,
        session.spec,
        analysis=analysis,
        chosen_mixture_yaml=chosen_yaml,
        mixture_note=mixture_note,
        analysis_note=note,
        storage_url=session.storage_url,
        importance_seed=seed,
    )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    log.info("wrote the report of study %s to %s", study.study_name, out)
    return out
