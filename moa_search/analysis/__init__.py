"""Analysis of a finished study: which models help as proposers and as aggregators, and whether
proposer diversity explains win rate beyond them.

Reads a study only through its trial records (:class:`moa_search.search.records.TrialRecord`):

- :mod:`~moa_search.analysis.rows` — trial records to regression rows and the role design;
- :mod:`~moa_search.analysis.roles` — :func:`role_table`, ridge role effects with bootstrap
  intervals (:class:`RoleEffect`);
- :mod:`~moa_search.analysis.diversity` — :func:`quality_vs_diversity`
  (:class:`DiversityEffect`);
- :mod:`~moa_search.analysis.result` — :func:`analyze`, both in one pass
  (:class:`AnalysisResult`); :mod:`~moa_search.analysis.format` — :func:`format_analysis`.
"""

from __future__ import annotations

from moa_search.analysis.diversity import DiversityEffect, quality_vs_diversity
from moa_search.analysis.format import format_analysis
from moa_search.analysis.result import AnalysisResult, analyze
from moa_search.analysis.roles import RoleEffect, role_table
from moa_search.analysis.rows import MIN_TRIALS, AnalysisError, ProposerFeature

__all__ = [
    "MIN_TRIALS",
    "AnalysisError",
    "AnalysisResult",
    "DiversityEffect",
    "ProposerFeature",
    "RoleEffect",
    "analyze",
    "format_analysis",
    "quality_vs_diversity",
    "role_table",
]
