"""Stale RUNNING trials: a trial whose worker was killed is failed whenever its study is opened
(by open_study, a resumed search, or a command that only reads the study) once its heartbeat
has been silent for the grace period — even when the killed worker was resumed within the grace
and the budget was met before anyone looked again — while a trial whose worker is alive is left
running. Real SQLite and PostgreSQL storages; real worker processes killed with SIGKILL."""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import create_engine, text

from moa_search.cli.main import main
from moa_search.search.storage import GRACE_S, open_study
from moa_search.testing import FakeOpenAIServer
from moa_search.testing.worlds import PlantedWorld, write_planted_study

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DIRECTIONS = ["maximize", "minimize"]

#: A worker that starts one trial in the study, says its number, and blocks until told to
#: finish (a line on stdin) — or is killed.
WORKER = textwrap.dedent(
    """
    import sys
    import optuna
    from moa_search.search.storage import open_study

    url, name = sys.argv[1], sys.argv[2]
    study = open_study(
        url, name, ["maximize", "minimize"], optuna.samplers.RandomSampler(0),
        optuna.pruners.NopPruner(),
    )

    def objective(trial):
        trial.suggest_int("x", 0, 3)
        print(trial.number, flush=True)
        sys.stdin.readline()
        return [0.5, 0.1]

    study.optimize(objective, n_trials=1)
    print("done", flush=True)
    """
)


def _start_worker(url: str, name: str) -> tuple[subprocess.Popen[str], int]:
    """A worker with a trial RUNNING (its heartbeat beating), and that trial's number."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, url, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the trial runs
    assert line.strip().isdigit(), proc.stderr.read() if proc.stderr else line
    number = int(line)
    # the heartbeat thread starts with the trial but may not have written yet (on a loaded
    # machine): wait until the trial has a heartbeat, as a trial whose worker ran for a while has
    study = optuna.load_study(study_name=name, storage=url)
    trial_id = study.trials[number]._trial_id
    engine = create_engine(url)
    try:
        deadline = time.monotonic() + 60  # a bound on the polling, not a timing assertion
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                beats = conn.execute(
                    text("SELECT COUNT(*) FROM trial_heartbeats WHERE trial_id = :id"),
                    {"id": trial_id},
                ).scalar_one()
            if beats:
                break
            time.sleep(0.05)
    finally:
        engine.dispose()
    return proc, number


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _silence(url: str, study: optuna.Study, number: int) -> None:
    """Make the trial's last heartbeat older than the grace period, as it is once the grace has
    passed since its worker died."""
    trial_id = study.trials[number]._trial_id
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            updated = conn.execute(
                text("UPDATE trial_heartbeats SET heartbeat = :t WHERE trial_id = :id"),
                {"t": dt.datetime(2000, 1, 1), "id": trial_id},
            )
            assert updated.rowcount == 1  # the worker had recorded a heartbeat
    finally:
        engine.dispose()


def _open(url: str, name: str) -> optuna.Study:
    return open_study(
        url, name, DIRECTIONS, optuna.samplers.RandomSampler(0), optuna.pruners.NopPruner()
    )


def _state(url: str, name: str, number: int) -> TrialState:
    return optuna.load_study(study_name=name, storage=url).trials[number].state


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'study.db'}"
        return
    yield PG_URL


@pytest.fixture
def name(storage_url: str) -> Iterator[str]:
    study_name = f"stale-{uuid.uuid4().hex[:8]}"
    yield study_name
    with contextlib.suppress(KeyError):
        optuna.delete_study(study_name=study_name, storage=storage_url)


def test_a_killed_workers_trial_is_failed_when_the_study_is_opened_after_the_grace(
    storage_url: str, name: str
) -> None:
    proc, number = _start_worker(storage_url, name)
    _kill(proc)
    # opened again within the grace (a resumed worker): the trial could still be alive
    _open(storage_url, name)
    assert _state(storage_url, name, number) == TrialState.RUNNING
    # once the grace has passed, opening the study ends it
    _silence(storage_url, optuna.load_study(study_name=name, storage=storage_url), number)
    _open(storage_url, name)
    assert _state(storage_url, name, number) == TrialState.FAIL


def test_a_live_workers_trial_is_not_failed(storage_url: str, name: str) -> None:
    proc, number = _start_worker(storage_url, name)
    try:
        _open(storage_url, name)
        _open(storage_url, name)
        assert _state(storage_url, name, number) == TrialState.RUNNING
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("\n")  # let it finish: it completes its trial as if nothing happened
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "done"
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            _kill(proc)
    assert _state(storage_url, name, number) == TrialState.COMPLETE


def test_a_trial_killed_before_a_resumed_search_met_its_budget_is_failed_by_best(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's case: a worker is killed mid-trial, the search is resumed at once (within
    the grace) and meets its budget, so no later trial start fails the dead one; the next time
    anything opens the study — here 'best' — it is failed."""
    world = PlantedWorld(
        skill={"strong": 0.8, "weak": 0.3}, aggregation_skill={"strong": 0.5, "weak": 0.0}
    )
    with FakeOpenAIServer(world.behaviors()) as server:
        spec = write_planted_study(
            tmp_path,
            server.base_url,
            n_items=4,
            models=("strong", "weak"),
            name="resumed",
            evaluation={"rungs": [2], "holdout": 0, "concurrency": 2},
            space={"max_layers": 1, "max_samples": 1, "max_proposers": 2},
            budget={"n_trials": 2},
        )
        url = f"sqlite:///{tmp_path / 'results' / 'resumed' / 'study.db'}"
        (tmp_path / "results" / "resumed").mkdir(parents=True)
        proc, number = _start_worker(url, "resumed")  # the worker that will be killed
        _kill(proc)
        assert main(["search", str(spec)]) == 0  # resumed within the grace: budget met
        assert _state(url, "resumed", number) == TrialState.RUNNING
        _silence(url, optuna.load_study(study_name="resumed", storage=url), number)
        assert main(["best", str(spec)]) == 0
    assert _state(url, "resumed", number) == TrialState.FAIL
    assert f"no heartbeat for {GRACE_S} s" in caplog.text
