"""Where a study lives: its results folder, its Optuna storage and its sampler.

Storage defaults to an SQLite file in the study's results folder; any Optuna RDB URL works
(PostgreSQL for several workers). Errors here name the "storage URL"; the CLI maps that to its
``--storage`` flag.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import optuna

from moa_search.config.pool import Pool
from moa_search.config.study import StudySpec
from moa_search.errors import ConfigError

Direction = Literal["minimize", "maximize"]

__all__ = [
    "GRACE_S",
    "HEARTBEAT_S",
    "fail_stale_trials",
    "make_pruner",
    "make_sampler",
    "open_study",
    "redact_url",
    "results_dir",
    "storage_error",
]

log = logging.getLogger(__name__)

#: A running trial's heartbeat (seconds); one silent for GRACE_S (a killed worker's) is failed
#: whenever the study is opened (by a worker, a resumed search, or a command reading it) and
#: before every trial, and its unfinished work is all that is lost.
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


def make_sampler(s: StudySpec, pool: Pool | None = None) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded (``auto`` needs the pool, unless the spec has it inline)."""
    if s.sampler == "auto":
        from moa_search.search.auto import AutoSampler

        pool = pool if pool is not None else s.pool if isinstance(s.pool, Pool) else None
        if pool is None:
            raise ConfigError("study spec", "pool", "a pool for sampler 'auto'")
        space = s.space
        return AutoSampler(
            space,
            space.proposers or pool.aliases,
            space.aggregators or pool.aliases,
            seed=s.seed,
        )
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


def make_pruner(s: StudySpec) -> optuna.pruners.BasePruner:
    """The spec's pruner: median pruning, or none (paired racing is applied by the study
    driver itself: :mod:`moa_search.search.racing`)."""
    if s.pruner == "median" or (s.pruner == "auto" and s.sampler != "auto"):
        return optuna.pruners.MedianPruner(n_startup_trials=s.n_startup_trials)
    return optuna.pruners.NopPruner()


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
    """Create the study in storage, or load it to resume; running trials whose worker died
    (their heartbeat silent for :data:`GRACE_S`) are failed first (:func:`fail_stale_trials`).

    Raises:
        ConfigError: the storage cannot be opened, or holds a study of that name with other
            objectives (source "storage URL").
    """
    try:
        study = _create_study(url, name, directions, sampler, pruner)
        fail_stale_trials(study)
        return study
    except ValueError as exc:
        raise ConfigError(
            "storage URL", "", "a study whose objectives match the spec", str(exc)
        ) from None
    except Exception as exc:  # noqa: BLE001 - any storage failure is the URL's fault
        raise storage_error(url, exc) from None


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Fail the study's running trials whose heartbeat has been silent for :data:`GRACE_S`
    (their worker was killed); a trial whose worker is alive keeps beating and is left alone.

    Optuna does this only when a worker starts a trial, so a trial killed shortly before the
    last worker met the budget would stay RUNNING for good; calling this whenever the study is
    opened ends it. Returns the numbers of the trials failed (by this call).
    """
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if not running:
        return []
    optuna.storages.fail_stale_trials(study)
    now_failed = {
        t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
    }
    failed = sorted(t.number for t in running if t.number in now_failed)
    if failed:
        log.warning(
            "failed %d trial(s) left running by a worker that stopped (no heartbeat for %d s): %s",
            len(failed),
            GRACE_S,
            ", ".join(map(str, failed)),
        )
    return failed


def storage_error(url: str, exc: BaseException) -> ConfigError:
    """The error for a storage that cannot be opened: the URL without its password."""
    return ConfigError(
        "storage URL",
        "",
        "an Optuna storage URL that can be opened (e.g. sqlite:///study.db or "
        "postgresql+psycopg://user@host/db)",
        f"{redact_url(url)} ({type(exc).__name__})",
    )
