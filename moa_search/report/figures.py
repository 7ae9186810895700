"""The report's plotly figures, drawn from a :class:`~moa_search.report.build.ReportView`.

The optimization history is Optuna's own (:mod:`optuna.visualization`), restyled, with the
report's hover texts and marks added; the parameter importances are drawn as Optuna draws them,
from the one computation the report shows (fANOVA, see
:mod:`moa_search.analysis.importance`); the
Pareto front (the chosen mixture starred), win rate against diversity and the role effects have
no Optuna equivalent and are drawn here. Plotly renders hover texts and labels as a small HTML
subset: every text taken from the study is escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
import plotly.graph_objects as go

from moa_search.analysis import AnalysisResult
from moa_search.analysis.importance import IMPORTANCE_EVALUATOR
from moa_search.config.study import StudySpec
from moa_search.report.build import ReportView, RolesView, build_view
from moa_search.report.formatting import description, interval, num
from moa_search.report.formatting import win_rate as fmt_wr
from moa_search.search.records import TrialRecord

__all__ = ["figure_html", "report_figures", "study_figures"]

#: Figures are this tall (px); their width follows the page.
FIG_HEIGHT = 440
_PLOT_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True}
_CHOSEN_COLOR = "#d62728"
_PRUNED_COLOR = "#9e9e9e"
_OUTLINE = {"width": 1.5, "color": "#1f2328"}
_WIN_RATE = "win rate"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _hover(r: TrialRecord) -> str:
    """A trial's hover text."""
    m = r.metrics
    wr = m.win_rate if m is not None else None
    lines = [
        f"<b>trial {r.number}</b> ({_e(r.state)})",
        _e(description(r)),
        f"win rate {fmt_wr(r.win_rate)} {_e(interval(wr))} on {r.n_items} prompts",
        f"diversity {num(m.diversity if m else None)}",
        f"tokens/prompt {num(m.tokens if m else None, '.0f')}, "
        f"${num(m.cost_usd if m else None, '.6f')}/prompt",
    ]
    return "<br>".join(lines)


def _layout(fig: go.Figure, *, title: str, x: str, y: str, **extra: Any) -> go.Figure:
    fig.update_layout(
        title={"text": _e(title), "x": 0.01, "xanchor": "left"},
        xaxis_title=_e(x),
        yaxis_title=_e(y),
        height=FIG_HEIGHT,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        template="plotly_white",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1},
        **extra,
    )
    return fig


def _chosen_trace(
    chosen: TrialRecord,
    x: float | None,
    size: int,
    *,
    outline: bool = False,
    error_y: Mapping[str, Any] | None = None,
) -> go.Scatter:
    """The chosen trial as its own starred trace."""
    marker: dict[str, Any] = {"symbol": "star", "size": size, "color": _CHOSEN_COLOR}
    if outline:
        marker["line"] = _OUTLINE
    return go.Scatter(
        x=[x],
        y=[chosen.win_rate],
        mode="markers",
        name=f"chosen: trial {chosen.number}",
        marker=marker,
        error_y=error_y,
        hovertext=[_hover(chosen)],
        hoverinfo="text",
    )


def figure_html(fig: go.Figure, div_id: str) -> str:
    """The figure as a ``<div>`` and its script; plotly.js itself is in the page head."""
    return str(
        fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            include_mathjax=False,
            div_id=div_id,
            config=_PLOT_CONFIG,
            default_width="100%",
            default_height=f"{FIG_HEIGHT}px",
        )
    )


def _frontier(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The 2-D non-dominated points (x minimised, y maximised), by increasing x."""
    out: list[tuple[float, float]] = []
    best = -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            out.append((x, y))
            best = y
    return out


# ----------------------------------------------------------------------------- custom figures


def pareto_figure(view: ReportView) -> go.Figure:
    """Win rate against cost (or tokens) per prompt, colored by diversity: the study's Pareto
    front outlined, the 2-D frontier dotted, the chosen trial starred."""
    axis, chosen = view.cost_axis, view.chosen
    front_numbers = {r.number for r in view.front}
    fig = go.Figure()
    groups = (
        ("other trials", [r for r in view.complete if r.number not in front_numbers], 9, 0.55, 0),
        (
            "Pareto front (all objectives)",
            [r for r in view.complete if r.number in front_numbers],
            14,
            0.95,
            2,
        ),
    )
    for name, records, size, opacity, line in groups:
        if not records:
            continue
        fig.add_trace(
            go.Scatter(
                x=[axis.of(r) for r in records],
                y=[r.win_rate for r in records],
                mode="markers",
                name=name,
                marker={
                    "size": size,
                    "opacity": opacity,
                    "color": [r.metric("diversity") for r in records],
                    "coloraxis": "coloraxis",
                    "line": {"width": line, "color": "#1f2328"},
                },
                hovertext=[_hover(r) for r in records],
                hoverinfo="text",
            )
        )
    points = [
        (x, y)
        for r in view.complete
        if (x := axis.of(r)) is not None and (y := r.win_rate) is not None
    ]
    frontier = _frontier(points)
    if len(frontier) > 1:
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in frontier],
                y=[p[1] for p in frontier],
                mode="lines",
                line={"shape": "hv", "dash": "dot", "color": "#57606a", "width": 1.5},
                name="frontier: win rate vs " + ("cost" if axis.is_cost else "tokens"),
                hoverinfo="skip",
            )
        )
    if chosen is not None and chosen.win_rate is not None:
        fig.add_trace(_chosen_trace(chosen, axis.of(chosen), 22, outline=True))
    fig = _layout(
        fig,
        title="Win rate against cost",
        x=axis.title,
        y=_WIN_RATE,
        coloraxis={
            "colorscale": "Viridis",
            "colorbar": {"title": {"text": "diversity"}, "thickness": 14},
        },
    )
    if axis.is_cost:
        fig.update_xaxes(tickprefix="$")
    return fig


def _error_bars(records: Sequence[TrialRecord]) -> dict[str, Any]:
    """Each trial's win-rate interval as asymmetric error bars."""
    plus, minus = [], []
    for r in records:
        wr = r.metrics.win_rate if r.metrics is not None else None
        mean = wr.mean if wr is not None else 0.0
        plus.append(max(0.0, (wr.ci_high if wr is not None else mean) - mean))
        minus.append(max(0.0, mean - (wr.ci_low if wr is not None else mean)))
    return {
        "type": "data",
        "symmetric": False,
        "array": plus,
        "arrayminus": minus,
        "thickness": 1,
        "width": 3,
    }


def diversity_figure(view: ReportView) -> go.Figure:
    """Win rate against diversity with each trial's interval, the chosen trial starred and a
    least-squares line; the title gives the analysis's partial correlation beyond the roles."""
    chosen = view.chosen
    fig = go.Figure()
    others = [r for r in view.complete if chosen is None or r.number != chosen.number]
    if others:
        fig.add_trace(
            go.Scatter(
                x=[r.metric("diversity") for r in others],
                y=[r.win_rate for r in others],
                mode="markers",
                name="trials (95% CI)",
                marker={"size": 9, "color": "#0969da", "opacity": 0.8},
                error_y={**_error_bars(others), "color": "rgba(9,105,218,0.45)"},
                hovertext=[_hover(r) for r in others],
                hoverinfo="text",
            )
        )
    if chosen is not None and chosen.win_rate is not None:
        fig.add_trace(
            _chosen_trace(
                chosen,
                chosen.metric("diversity"),
                18,
                error_y={**_error_bars([chosen]), "color": _CHOSEN_COLOR},
            )
        )
    points = [(r.metric("diversity"), r.win_rate) for r in view.complete]
    pts = [(x, y) for x, y in points if y is not None]
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
    analysis = view.analysis
    if analysis is not None and analysis.diversity.partial_r is not None:
        d = analysis.diversity
        subtitle = (
            f" (partial r beyond roles {num(d.partial_r, '+.2f')}, p = {num(d.p_value, '.2g')})"
        )
    return _layout(fig, title=f"Win rate against diversity{subtitle}", x="diversity", y=_WIN_RATE)


def roles_figure(roles: RolesView) -> go.Figure | None:
    """A forest plot of the role effects (on win rate, as a fraction), or ``None`` when no
    role varied."""
    rows = [r for r in roles.rows if r.effect is not None]
    if not rows:
        return None
    labels = [_e(f"{r.model} ({r.where})") for r in rows]
    effects = [r.effect or 0.0 for r in rows]
    plus = [max(0.0, (r.ci_high or 0.0) - (r.effect or 0.0)) for r in rows]
    minus = [max(0.0, (r.effect or 0.0) - (r.ci_low or 0.0)) for r in rows]
    colors = [
        ("#1a7f37" if (r.effect or 0) > 0 else "#cf222e") if r.significant else "#57606a"
        for r in rows
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
            hovertemplate="%{y}: %{x:+.3f} win rate<extra></extra>",
            showlegend=False,
        )
    )
    fig.add_vline(x=0, line={"color": "#8c959f", "dash": "dot"})
    fig = _layout(
        fig,
        title=f"Role effects on win rate ({roles.percent}% bootstrap intervals)",
        x="effect on win rate",
        y="",
    )
    fig.update_layout(
        height=max(260, 90 + 40 * len(rows)), margin={"l": 20, "r": 20, "t": 50, "b": 50}
    )
    fig.update_yaxes(automargin=True)
    return fig


# ----------------------------------------------------------------------------- Optuna's figures


def _win_rate(trial: optuna.trial.FrozenTrial) -> float:
    """Win rate as an Optuna target (NaN without metrics: not plotted)."""
    wr = TrialRecord.of(trial).win_rate
    return math.nan if wr is None else wr


def importance_figure(importances: Mapping[str, float]) -> go.Figure:
    """The parameter importances for win rate the report computed (fANOVA, seeded: the same
    numbers as its text and ``moa-search analyze``), as Optuna's importance plot draws them:
    horizontal bars, most important on top, the parameter names escaped."""
    names = list(importances)[::-1]
    values = [importances[n] for n in names]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=[_e(n) for n in names],
            orientation="h",
            text=[f"{v:.2f}" if v >= 0.01 else "<0.01" for v in values],
            textposition="auto",
            marker={"color": "#0969da"},
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    fig = _layout(
        fig,
        title=f"Parameter importances for win rate ({IMPORTANCE_EVALUATOR})",
        x="importance",
        y="",
    )
    fig.update_layout(
        showlegend=False,
        height=max(260, 70 + 34 * len(importances)),
        margin={"l": 20, "r": 20, "t": 50, "b": 50},
    )
    fig.update_yaxes(automargin=True)
    return fig


def history_figure(study: optuna.Study, view: ReportView) -> go.Figure:
    """Optuna's optimization history of win rate, with the best so far, the pruned trials
    (their win rate when stopped) and the chosen trial marked."""
    chosen = view.chosen
    by_number = {r.number: r for r in view.history}
    complete = sorted((r for r in view.history if r.state == "complete"), key=lambda r: r.number)
    pruned = [r for r in view.history if r.state == "pruned"]
    fig = optuna.visualization.plot_optimization_history(
        study, target=_win_rate, target_name=_WIN_RATE
    )
    for trace in fig.select_traces(selector={"name": _WIN_RATE}):
        trace.update(
            name="complete",
            marker={"size": 9, "color": "#0969da"},
            hovertext=[_hover(by_number[n]) if n in by_number else "" for n in trace.x or ()],
            hoverinfo="text",
        )
    if complete:
        best_x, best_y, best = [], [], -math.inf
        for r in complete:
            best = max(best, r.win_rate if r.win_rate is not None else -math.inf)
            best_x.append(r.number)
            best_y.append(best)
        last = view.n_trials - 1  # Optuna numbers a study's trials 0, 1, …
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
                x=[r.number for r in pruned],
                y=[r.win_rate for r in pruned],
                mode="markers",
                name="pruned (win rate when stopped)",
                marker={"symbol": "x", "size": 10, "color": _PRUNED_COLOR},
                hovertext=[_hover(r) for r in pruned],
                hoverinfo="text",
            )
        )
    if chosen is not None and chosen.win_rate is not None:
        fig.add_trace(_chosen_trace(chosen, chosen.number, 18))
    fig = _layout(fig, title="Optimization history", x="trial number", y=_WIN_RATE)
    fig.update_xaxes(dtick=1 if view.n_trials <= 30 else None)
    return fig


# ----------------------------------------------------------------------------- all of them


def report_figures(study: optuna.Study, view: ReportView) -> dict[str, go.Figure]:
    """The figures a report of ``view`` draws: ``pareto`` and ``diversity`` (with a complete
    trial), ``roles`` (with an analysis that estimated an effect), ``importance`` (when the
    importances could be computed) and ``history`` (with a trial that has metrics), in that
    order."""
    out: dict[str, go.Figure] = {}
    if view.complete:
        out["pareto"] = pareto_figure(view)
        out["diversity"] = diversity_figure(view)
    roles = roles_figure(view.roles) if view.roles is not None else None
    if roles is not None:
        out["roles"] = roles
    if view.importance.values:
        out["importance"] = importance_figure(view.importance.values)
    if view.has_history:
        out["history"] = history_figure(study, view)
    return out


def study_figures(
    study: optuna.Study,
    spec: StudySpec,
    *,
    analysis: AnalysisResult | None = None,
    importance_seed: int = 0,
) -> dict[str, go.Figure]:
    """The report's plotly figures, for notebooks (see :func:`report_figures`); the chosen
    trial (:func:`~moa_search.search.choose.choose_trial`) is starred."""
    view = build_view(study, spec, analysis=analysis, importance_seed=importance_seed)
    return report_figures(study, view)
