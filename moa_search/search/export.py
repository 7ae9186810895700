"""Exporting a study's trial as a mixture file that ``moa-search run`` executes as is.

The file carries its pool inline (model aliases, endpoints, prices and the *names* of API-key
variables — never a key), except for studies on the local pool: its ports change at every start
and ``moa-search run`` finds it by default. A ``provenance`` block records the study, the trial,
its metrics with intervals, the judge, the baseline, the dataset's hash and the package version,
and — for the chosen trial of a study with held-out prompts — the held-out verdict against the
baselines, as ``moa-search best --json`` prints it.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from moa_search._version import package_version
from moa_search.config import MixtureConfig, save_mixture
from moa_search.config.study import describe
from moa_search.search.records import FinalEvaluation, HoldoutVerdict, TrialRecord
from moa_search.search.session import SearchSession
from moa_search.search.space import describe_mixture
from moa_search.search.storage import redact_url

__all__ = ["export_trial", "provenance"]


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
    """Write ``trial``'s mixture, with the pool inline and provenance, to ``out``."""
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
