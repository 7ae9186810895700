"""A study's report as one self-contained HTML file: the view of :mod:`.build` and the figures of
:mod:`.figures`, written by the Jinja2 templates in ``templates/``.

The page is offline: the plotly.js bundle is inlined once in the head (no CDN, no fetch), every
text taken from the study is escaped (the templates autoescape), and no secret is written — the
storage URL loses its password and pools only ever name their API-key variables.
"""

from __future__ import annotations

import functools

import jinja2
import optuna
from markupsafe import Markup

from moa_search.analysis import AnalysisResult
from moa_search.analysis.attribution import AttributionResult
from moa_search.config.study import StudySpec
from moa_search.report.build import ReportView, RolesView, build_view
from moa_search.report.figures import figure_html, report_figures
from moa_search.report.formatting import description, interval, num, points

__all__ = ["build_report", "render_report", "role_table_html"]


def _thousands(value: float) -> str:
    return f"{int(value):,}"


def _percent(value: float) -> str:
    return f"{value:.0%}"


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("moa_search.report", "templates"),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        num=num,
        points=points,
        interval=interval,
        description=description,
        thousands=_thousands,
        percent=_percent,
    )
    return env


def render_report(study: optuna.Study, view: ReportView) -> str:
    """The report of ``view`` (built from ``study``) as HTML text, with its figures."""
    from plotly.offline import get_plotlyjs

    figures = {
        name: Markup(figure_html(fig, f"fig-{name}"))
        for name, fig in report_figures(study, view).items()
    }
    template = _environment().get_template("report.html.j2")
    return template.render(view=view, figures=figures, plotlyjs=Markup(get_plotlyjs()))


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
    attribution: AttributionResult | None = None,
) -> str:
    """The study's report as one self-contained HTML document.

    Pure: reads the study (through its typed records) and returns text; nothing is written or
    called. Works on a study with no complete trial (its sections then say so).

    Args:
        study: a study run by :class:`moa_search.search.session.SearchSession`.
        spec: its spec (objectives, choice rule, …); the chosen trial is
            :func:`moa_search.search.choose.choose_trial` of the two.
        analysis: a role analysis of the study; ``None`` shows ``analysis_note`` instead.
        chosen_mixture_yaml: the chosen mixture file's text (else the trial's params are shown).
        mixture_note: why there is no mixture file text.
        analysis_note: why there is no analysis.
        storage_url: shown with its password removed.
        importance_seed: seeds the fANOVA importance evaluator.
        attribution: which proposers the chosen mixture's aggregator uses, if computed.
    """
    view = build_view(
        study,
        spec,
        analysis=analysis,
        chosen_mixture_yaml=chosen_mixture_yaml,
        mixture_note=mixture_note,
        analysis_note=analysis_note,
        storage_url=storage_url,
        importance_seed=importance_seed,
        attribution=attribution,
    )
    return render_report(study, view)


def role_table_html(analysis: AnalysisResult) -> str:
    """The role table of ``analysis`` as an HTML ``<table id="role-table">`` (text escaped;
    effects and intervals on win rate as fractions, layers counted from 1)."""
    template = _environment().get_template("role_table.html.j2")
    return template.render(roles=RolesView.of(analysis))
