"""Writing a session's study report to a file."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from moa_search.analysis import AnalysisError, AnalysisResult, analyze
from moa_search.analysis.attribution_replay import study_attribution
from moa_search.errors import MoaSearchError
from moa_search.report.render import build_report
from moa_search.search.choose import choose_trial, complete_trials

if TYPE_CHECKING:
    from moa_search.search.session import SearchSession

__all__ = ["write_report"]

log = logging.getLogger(__name__)


def write_report(
    session: SearchSession,
    out_path: str | os.PathLike[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    cache: str | None = None,
) -> Path:
    """Write ``session``'s study report to ``out_path`` (atomically) and return the path.

    Read-only on the study: nothing is evaluated, so nothing is spent — the chosen trial's
    full-dataset metrics appear when a search or an export has stored them. The role analysis
    (``n_boot`` resamples, ``seed``) is replaced by a note when the study has too few trials.
    Which proposers the chosen mixture's aggregator uses is replayed read-only from the response
    cache at ``cache`` (default: the study's own cache file), with no model call.
    """
    study = session.study()
    analysis: AnalysisResult | None = None
    note: str | None = None
    try:
        analysis = analyze(study, n_boot=n_boot, seed=seed)
    except AnalysisError as exc:
        note = f"No role analysis: {exc}."
    has_complete = any(r.win_rate is not None for r in complete_trials(study).values())
    chosen = choose_trial(study, session.spec) if has_complete else None
    chosen_yaml: str | None = None
    mixture_note: str | None = None
    if chosen is not None:
        try:
            mixture = session.mixture_for(dict(chosen.params))
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
    attribution = study_attribution(session, cache=cache) if chosen_yaml is not None else None
    text = build_report(
        study,
        session.spec,
        analysis=analysis,
        chosen_mixture_yaml=chosen_yaml,
        mixture_note=mixture_note,
        analysis_note=note,
        storage_url=session.storage_url,
        importance_seed=seed,
        attribution=attribution,
    )
    from moa_search.config.files import write_text_atomically

    out = Path(out_path)
    write_text_atomically(out, text, "report")  # a bad --out is one paragraph, no stray .tmp
    log.info("wrote the report of study %s to %s", study.study_name, out)
    return out
