"""Where a study lives: its results folder, its Optuna storage and its sampler.

Storage defaults to an SQLite file in the study's results folder; any Optuna RDB URL works
(PostgreSQL for several workers). Errors here name the "storage URL"; the CLI maps that to its
``--storage`` flag.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import optuna

from moa_search.config.study import StudySpec
from moa_search.errors import ConfigError

Direction = Literal["minimize", "maximize"]

__all__ = [
    "GRACE_S",
    "HEARTBEAT_S",
    "make_sampler",
    "open_study",
    "redact_url",
    "results_dir",
    "storage_error",
]

#: A running trial's heartbeat (seconds); one silent for GRACE_S (a killed worker's) is failed
#: by the next worker or session, and its unfinished work is all that is lost.
HEARTBEAT_S = 10
GRACE_S = 30


def results_dir(spec_path: str | Path, spec: StudySpec) -> Path:
    """Where a study keeps its storage and caches: ``<spec dir>/results/<study name>/``."""
    return Path(spec_path).resolve().parent / "results" / spec.name


def redact_url(url: str) -> str:
    """A storage URL without its password, for logs and provenance."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not an SQLAlchemy URL; keep the scheme only
        return url.split("://", 1)[0] + "://…"


def make_sampler(s: StudySpec) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded."""
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=s.seed, population_size=8)
    if s.sampler == "gp":
        return optuna.samplers.GPSampler(seed=s.seed, n_startup_trials=s.n_startup_trials)
    return optuna.samplers.TPESampler(
        seed=s.seed,
        multivariate=True,
        group=True,
        n_startup_trials=s.n_startup_trials,
    )


def _create_study(
    url: str,
    name: str,
    directions: Sequence[Direction],
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> optuna.Study:
    """Create or load the study; workers starting together race to create the tables and
    the study, and the loser of that race simply tries again."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(5):
        try:
            storage = optuna.storages.RDBStorage(
                url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S
            )
            return optuna.create_study(
                storage=storage,
                study_name=name,
                directions=list(directions),
                sampler=sampler,
                pruner=pruner,
                load_if_exists=True,
            )
        except (IntegrityError, optuna.exceptions.DuplicatedStudyError) as exc:
            if attempt == 4:
                raise exc
            time.sleep(0.2 + 0.3 * random.random())
        except OperationalError:
            raise
    raise AssertionError("unreachable")


def open_study(
    url: str,
    name: str,
    directions: Sequence[Direction],
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> optuna.Study:
    """Create the study in storage, or load it to resume.

    Raises:
        ConfigError: the storage cannot be opened, or holds a study of that name with other
            objectives (source "storage URL").
    """
    try:
        return _create_study(url, name, directions, sampler, pruner)
    except ValueError as exc:
        raise ConfigError(
            "storage URL", "", "a study whose objectives match the spec", str(exc)
        ) from None
    except Exception as exc:  # noqa: BLE001 - any storage failure is the URL's fault
        raise storage_error(url, exc) from None


def storage_error(url: str, exc: BaseException) -> ConfigError:
    """The error for a storage that cannot be opened: the URL without its password."""
    return ConfigError(
        "storage URL",
        "",
        "an Optuna storage URL that can be opened (e.g. sqlite:///study.db or "
        "postgresql+psycopg://user@host/db)",
        f"{redact_url(url)} ({type(exc).__name__})",
    )
