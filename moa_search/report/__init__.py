"""The HTML study report: :func:`write_report` writes a session's study as one offline page;
:func:`build_report` is the pure builder behind it, :func:`study_figures` its figures and
:func:`role_table_html` its role table, for notebooks.
"""

from __future__ import annotations

from moa_search.report.build import ReportView, build_view
from moa_search.report.figures import study_figures
from moa_search.report.render import build_report, render_report, role_table_html
from moa_search.report.write import write_report

__all__ = [
    "ReportView",
    "build_report",
    "build_view",
    "render_report",
    "role_table_html",
    "study_figures",
    "write_report",
]
