"""Distributed search on the real PostgreSQL and Redis: two workers share one study and one
response cache; a worker killed with SIGKILL loses only its unfinished work."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest

from moa_search.search.records import TrialRecord
from moa_search.testing import FakeOpenAIServer, ModelBehavior, RecordedRequest
from moa_search.testing.worlds import PlantedWorld, write_planted_study

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

WORLD = PlantedWorld(
    skill={"strong": 0.7, "mid": 0.35, "weak": 0.2},
    aggregation_skill={"strong": 0.0, "mid": 1.0, "weak": 0.0},
    latency_s=0.05,
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The workers' environment: a MOA_SEARCH_HOME of the test's own."""
    home = tmp_path / "home"
    home.mkdir()
    return {**os.environ, "MOA_SEARCH_HOME": str(home)}


@pytest.fixture
def redis_db(flushable_redis_url: str) -> str:
    """A Redis database of the test's own, empty, for the workers' shared cache."""
    return flushable_redis_url


def write_spec(tmp_path: Path, base_url: str, name: str, n_trials: int) -> Path:
    return write_planted_study(
        tmp_path,
        base_url,
        model_fields={"max_concurrency": 4},
        name=name,
        space={"max_layers": 2, "max_samples": 2, "max_proposers": 3},
        evaluation={"rungs": [4, 12], "concurrency": 4},
        budget={"n_trials": n_trials},
    )


def worker(spec: Path, env: dict[str, str], redis_db: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "moa_search.cli.main",
            "search",
            str(spec),
            "--storage",
            PG_URL,
            "--cache",
            redis_db,
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


#: ``python -c`` code that runs the CLI as a user's terminal does: SIGINT at Python's default.
#: When this suite runs as a background job of a non-interactive shell (``cmd &`` in a script),
#: its processes start with SIGINT ignored, Python keeps an ignored SIGINT ignored, and a
#: search started from here would rightly ignore the test's Ctrl-C.
AS_IN_A_TERMINAL = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('moa_search.cli.main', run_name='__main__', alter_sys=True)"
)


def request_key(r: Any) -> str:
    return json.dumps([r.model, r.messages, r.seed, r.max_tokens, r.temperature])


def counted(study: optuna.Study) -> list[TrialRecord]:
    return [r for r in TrialRecord.all(study) if r.counts]


def test_two_workers_share_one_postgres_study_and_one_redis_cache(
    tmp_path: Path, env: dict[str, str], redis_db: str
) -> None:
    name = f"dist-{uuid.uuid4().hex[:8]}"
    with FakeOpenAIServer(WORLD.behaviors()) as server:
        spec = write_spec(tmp_path, server.base_url, name, n_trials=8)
        procs = [worker(spec, env, redis_db), worker(spec, env, redis_db)]
        outs = [p.communicate(timeout=240) for p in procs]
        for p, (_, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, err
        study = optuna.load_study(study_name=name, storage=PG_URL)
        try:
            done = counted(study)
            # each worker checks the total before its next trial
            assert 8 <= len(done) <= 9, done
            assert len({t.worker for t in done}) == 2, outs
            assert len({t.number for t in study.get_trials()}) == len(study.get_trials())
            # running side by side, the two workers never paid twice for one call: a call one
            # had in flight, the other waited for (the claim in the shared cache)
            keys = [request_key(r) for r in server.requests]
            assert len(keys) == len(set(keys))
            # a third worker, started after both finished, pays for nothing they paid for
            before = {request_key(r) for r in server.requests}
            n_before = server.count()
            third = worker(spec, env, redis_db, "--n-trials", "12")
            _, err = third.communicate(timeout=240)
            assert third.returncode == 0, err
            new = [request_key(r) for r in server.requests[n_before:]]
            assert not set(new) & before
            assert len(counted(optuna.load_study(study_name=name, storage=PG_URL))) >= 12
        finally:
            optuna.delete_study(study_name=name, storage=PG_URL)


def test_sigkilled_worker_resumes_without_losing_completed_calls(
    tmp_path: Path, env: dict[str, str], redis_db: str
) -> None:
    name = f"kill-{uuid.uuid4().hex[:8]}"
    with FakeOpenAIServer(WORLD.behaviors()) as server:
        spec = write_spec(tmp_path, server.base_url, name, n_trials=6)
        first = worker(spec, env, redis_db)
        deadline = time.monotonic() + 120
        study = None
        while time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                study = optuna.load_study(study_name=name, storage=PG_URL)
            except KeyError:
                continue
            states = [t.state for t in study.get_trials()]
            if (
                len(counted(study)) >= 2
                and optuna.trial.TrialState.RUNNING in states
                and server.count() > 0
            ):
                break
        assert study is not None
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        killed_at = time.monotonic()
        n_before = server.count()
        completed_before = {t.number: (t.params, t.values) for t in counted(study)}
        try:
            second = worker(spec, env, redis_db)
            _, err = second.communicate(timeout=240)
            assert second.returncode == 0, err
            after = optuna.load_study(study_name=name, storage=PG_URL)
            done = counted(after)
            assert len(done) >= 6
            # trials completed before the kill are untouched and not counted twice
            for number, (params, values) in completed_before.items():
                t = TrialRecord.of(after.trials[number])
                assert (t.params, t.values) == (params, values)
            assert len({t.number for t in done}) == len(done)
            # every call that had completed before the kill came from the cache afterwards:
            # only requests still in flight at the kill may have been made again
            counts = Counter(request_key(r) for r in server.requests)
            repeated = {k for k, c in counts.items() if c > 1}
            in_flight = {
                request_key(r) for r in server.requests[:n_before] if r.arrived_at > killed_at - 5.0
            }
            assert repeated <= in_flight
        finally:
            optuna.delete_study(study_name=name, storage=PG_URL)


def test_sigint_stops_cleanly_after_marking_the_running_trial(
    tmp_path: Path, env: dict[str, str]
) -> None:
    world = PlantedWorld(
        skill={"strong": 0.7, "mid": 0.35, "weak": 0.2},
        aggregation_skill={"strong": 0.0, "mid": 1.0, "weak": 0.0},
        latency_s=0.3,
    )
    # the fake server holds its 4th answer (and so every later one: its loop waits) until the
    # signal was sent, so the signal always finds the search in the middle of a trial, however
    # slowly this process is scheduled beside the worker
    held, release = threading.Event(), threading.Event()
    answers = itertools.count(1)

    def gated(behavior: ModelBehavior) -> ModelBehavior:
        answer = behavior.answer
        assert callable(answer)

        def hold_then_answer(request: RecordedRequest) -> str:
            if next(answers) == 4:
                held.set()
                release.wait(timeout=120)
            return str(answer(request))

        return dataclasses.replace(behavior, answer=hold_then_answer)

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    behaviors = {m: gated(b) for m, b in world.behaviors().items()}
    with FakeOpenAIServer(behaviors) as server:
        spec = write_spec(tmp_path, server.base_url, "sigint", n_trials=4)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                AS_IN_A_TERMINAL,
                "search",
                str(spec),
                "--storage",
                storage,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert held.wait(timeout=120), "the search made no 4th call"
            assert proc.poll() is None  # still searching: its 4th call is unanswered
            proc.send_signal(signal.SIGINT)
        finally:
            release.set()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "interrupted" in err and "Traceback" not in err
        study = optuna.load_study(study_name="sigint", storage=storage)
        states = [t.state for t in study.get_trials()]
        assert optuna.trial.TrialState.RUNNING not in states
        assert states[-1] == optuna.trial.TrialState.FAIL
        again = subprocess.run(
            [
                sys.executable,
                "-m",
                "moa_search.cli.main",
                "search",
                str(spec),
                "--storage",
                storage,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert again.returncode == 0, again.stderr
        assert len(counted(optuna.load_study(study_name="sigint", storage=storage))) == 4
