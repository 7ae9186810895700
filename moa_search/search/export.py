"""Exporting a study's trial as a mixture file that ``moa-search run`` executes as is.

The file carries its pool inline (model aliases, endpoints, prices and the *names* of API-key
variables — never a key), except for studies on the local pool: its ports change at every start
and ``moa-search run`` finds it by default. A ``provenance`` block records the study, the trial,
its metrics with intervals, the judge, the baseline, the dataset's hash and the package version,
and — for the chosen trial of a study with held-out prompts — the held-out verdict against the
baselines, as ``moa-search best --json`` prints it.

A trial that was never measured — its mixture (or the baseline) failed on every prompt it saw,
or nothing was judged — is not exported (:class:`~moa_search.errors.NoVerdictError`).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from moa_search._version import package_version
from moa_search.config import MixtureConfig, save_mixture
from moa_search.config.study import describe
from moa_search.errors import NoVerdictError
from moa_search.search.choose import choose_trial, no_verdict_reason, verdict_problem
from moa_search.search.records import FinalEvaluation, HoldoutVerdict, TrialRecord
from moa_search.search.session import SearchSession
from moa_search.search.space import describe_mixture
from moa_search.search.storage import redact_url

__all__ = ["export_trial", "exportable_trial", "provenance"]


def exportable_trial(session: SearchSession, which: str | int) -> TrialRecord:
    """``best`` (the spec's choice) or a trial number, as :meth:`SearchSession.trial` — but a
    study whose complete trials were all unmeasured, or a trial that was, is
    :class:`NoVerdictError` (nothing to export) rather than bad input.

    Raises:
        NoVerdictError: see above.
        ConfigError: ``which`` is neither ``best`` nor the number of a complete trial, or the
            study has no complete trial.
    """
    study = session.study()
    if str(which) == "best" and choose_trial(study, session.spec) is None:
        reason = no_verdict_reason(study)
        if reason is not None:
            raise NoVerdictError(f"study '{session.spec.name}'", f"nothing to export: {reason}")
    trial = session.trial(which)
    problem = verdict_problem(trial.metrics)
    if problem is not None:
        raise NoVerdictError(
            f"trial {trial.number}",
            f"it is not exported because {problem}; export a trial that was measured",
        )
    return trial


def provenance(session: SearchSession, trial: TrialRecord) -> dict[str, Any]:
    """Where a mixture came from, with no secrets (the storage URL loses its password)."""
    final = FinalEvaluation.load(session.study())
    out: dict[str, Any] = {
        **describe(session.spec),
        "trial": trial.number,
        "storage": redact_url(session.storage_url),
        "metrics": trial.metrics.to_dict() if trial.metrics is not None else None,
        "n_items_evaluated": trial.n_items,
        "dataset": {
            "path": str(session.spec.dataset),
            "sha256": session.dataset_hash,
            "n_items": len(session.items),
        },
        "package_version": package_version(),
        "exported_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if final is not None and final.trial == trial.number:
        key = "holdout_metrics" if final.holdout else "full_dataset_metrics"
        out[key] = final.metrics.to_dict()
    verdict = HoldoutVerdict.load(session.study())
    if verdict is not None and verdict.trial == trial.number:
        out["holdout_verdict"] = verdict.summary()
    return out


def export_trial(session: SearchSession, trial: TrialRecord, out: str | Path) -> MixtureConfig:
    """Write ``trial``'s mixture, with the pool inline and provenance, to ``out``.

    Raises:
        NoVerdictError: the trial, or its final evaluation (on the held-out prompts, or on all
            of them), measured nothing (see :func:`~moa_search.search.choose.verdict_problem`).
    """
    problem = verdict_problem(trial.metrics)
    final = FinalEvaluation.load(session.study())
    if problem is None and final is not None and final.trial == trial.number:
        problem = verdict_problem(final.metrics)
        if problem is not None:
            where = "held-out prompts" if final.holdout else "prompts of its final evaluation"
            problem = f"on the {where}, {problem}"
    if problem is not None:
        raise NoVerdictError(f"trial {trial.number}", f"it is not exported because {problem}")
    mixture = session.mixture_for(dict(trial.params))
    # A study on the local pool leaves the pool out: the local servers' ports change at every
    # 'moa-search local up', and 'moa-search run' finds the current local pool by default.
    local = session.spec.pool is None
    exported = mixture.model_copy(
        update={
            "name": f"{session.spec.name}-trial-{trial.number}",
            "pool": None if local else session.pool,
            "provenance": {
                **provenance(session, trial),
                "mixture": describe_mixture(mixture),
                "pool": "the local pool (moa-search local up)" if local else "inline",
            },
        }
    )
    save_mixture(exported, out)
    return exported
