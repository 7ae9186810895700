"""Exporting a study's trial as a mixture file that ``moa-search run`` executes as is.

The file carries its pool inline (model aliases, endpoints, prices and the *names* of API-key
variables — never a key), except for studies on the local pool: its ports change at every start
and ``moa-search run`` finds it by default. A ``provenance`` block records the study, the trial,
its metrics with intervals, the judge, the baseline, the dataset's hash and the package version.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

from moa_search.config import MixtureConfig, save_mixture
from moa_search.spec import describe
from moa_search.study import SearchSession, describe_mixture, redact_url

__all__ = ["export_trial", "provenance"]


def provenance(session: SearchSession, trial: FrozenTrial) -> dict[str, Any]:
    """Where a mixture came from, with no secrets (the storage URL loses its password)."""
    from moa_search import __version__

    final = session.study().user_attrs.get("final")
    out: dict[str, Any] = {
        **describe(session.spec),
        "trial": trial.number,
        "storage": redact_url(session.storage_url),
        "metrics": trial.user_attrs.get("metrics"),
        "n_items_evaluated": trial.user_attrs.get("n_items"),
        "dataset": {
            "path": str(session.spec.dataset),
            "sha256": session.dataset_hash,
            "n_items": len(session.items),
        },
        "package_version": __version__,
        "exported_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if final and final.get("trial") == trial.number:
        out["full_dataset_metrics"] = final.get("metrics")
    return out


def export_trial(session: SearchSession, trial: FrozenTrial, out: str | Path) -> MixtureConfig:
    """Write ``trial``'s mixture, with the pool inline and provenance, to ``out``."""
    mixture = session.mixture_for(trial.params)
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
