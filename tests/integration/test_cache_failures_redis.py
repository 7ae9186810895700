"""Failures and the shared Redis cache (issue 12): a worker whose call fails releases its claim
and caches nothing, so a waiting worker makes the call itself instead of waiting for an answer
that will never come; a Redis server that goes away in the middle of a run is a typed
:class:`~moa_search.errors.CacheError`, not a raw redis exception.

The claim test uses the real Redis server on 127.0.0.1:6379; the server that goes away is a
private ``redis-server`` this test starts and kills.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import redis

from moa_search.cli.main import main
from moa_search.config import AgentSpec, MixtureConfig, ModelSpec, Pool
from moa_search.errors import CacheError, MoaSearchError, QuorumError
from moa_search.runtime.cache import RedisCache
from moa_search.runtime.executor import Executor
from moa_search.search.records import TrialRecord
from moa_search.testing import FakeOpenAIServer, ModelBehavior
from moa_search.testing.fake_openai import RecordedRequest
from moa_search.testing.fake_openai.faults import before_answer
from moa_search.testing.worlds import PlantedWorld, write_planted_study

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"moa-search-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)


def pool_for(server: FakeOpenAIServer, timeout_s: float = 60.0) -> Pool:
    return Pool(
        models=tuple(
            ModelSpec(
                alias=m, base_url=server.base_url, model=m, timeout_s=timeout_s, max_retries=1
            )
            for m in ("p", "agg")
        )
    )


MIXTURE = MixtureConfig(layers=((AgentSpec(model="p"),),), aggregator=AgentSpec(model="agg"))


def test_a_failed_call_releases_its_claim_and_the_waiting_worker_makes_it(
    redis_prefix: str,
) -> None:
    # worker 1's two attempts fail; worker 2, waiting on worker 1's claim, gets the "ok"
    behavior = ModelBehavior(latency_s=0.3, faults=("500", "500", "ok"))
    server = FakeOpenAIServer({"p": behavior, "agg": ModelBehavior()}).start()
    try:
        # a 60 s timeout: a claim left behind would keep worker 2 waiting for about two minutes
        pool = pool_for(server)
        worker1 = Executor(pool, cache=RedisCache(REDIS_URL, prefix=redis_prefix))
        worker2 = Executor(pool, cache=RedisCache(REDIS_URL, prefix=redis_prefix))

        async def both() -> list[Any]:
            first = asyncio.create_task(worker1.arun(MIXTURE, "claimed"))
            while server.in_flight("p") < 1:  # worker 1 holds the claim, its call in flight
                await asyncio.sleep(0.01)
            second = asyncio.create_task(worker2.arun(MIXTURE, "claimed"))
            out = await asyncio.gather(first, second, return_exceptions=True)
            await worker1.aclose()
            await worker2.aclose()
            return list(out)

        r1, r2 = asyncio.run(both())
        assert isinstance(r1, QuorumError)
        assert r1.failures[0].attempts == 2 and "after 2 attempt(s)" in str(r1)
        # worker 2 waited for worker 1's claim (its request came after both of worker 1's
        # attempts), then made the call itself once the failed call released the claim
        assert [r.fault for r in server.requests if r.model == "p"] == ["500", "500", "ok"]
        p_call = next(c for c in r2.trace.calls if c.model == "p")
        assert p_call.ok and not p_call.cache_hit and p_call.attempts == 1
        client = redis.Redis.from_url(REDIS_URL)
        assert not list(client.scan_iter(match=redis_prefix + "claim:*"))  # no claim left
        # only worker 2's answers were stored: the failure never was
        assert len(RedisCache(REDIS_URL, prefix=redis_prefix)) == 2
    finally:
        server.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_redis(binary: str) -> tuple[str, subprocess.Popen[bytes]] | None:
    """A redis-server on a free port, once it answers; None when it exited (say, another
    process took the port between choosing it and binding it)."""
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        for _ in range(500):  # poll until it answers (readiness, not a timing assumption)
            try:
                client.ping()
                return url, proc
            except redis.ConnectionError:
                if proc.poll() is not None:
                    return None
                time.sleep(0.02)
    finally:
        client.close()
    proc.kill()
    proc.wait(timeout=30)
    return None


@pytest.fixture
def private_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of this test's own (never the shared one), on a free port."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    started = None
    for _ in range(5):  # a port taken by a test in another worker: another one
        started = _start_redis(binary)
        if started is not None:
            break
    if started is None:
        pytest.fail("redis-server did not start on any of 5 free ports")
    url, proc = started
    try:
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def test_redis_going_away_mid_run_is_a_typed_error(
    private_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, proc = private_redis

    def kill_redis_then_answer(request: RecordedRequest) -> str:
        # the proposer's call is in flight: its answer will find no cache to go to
        proc.kill()
        proc.wait(timeout=30)
        return "an answer that cannot be stored"

    server = FakeOpenAIServer(
        {"p": ModelBehavior(answer=kill_redis_then_answer), "agg": ModelBehavior()}
    ).start()
    try:
        cache = RedisCache(url)
        with pytest.raises(MoaSearchError) as info:
            Executor(pool_for(server, timeout_s=10), cache=cache).run(MIXTURE, "gone?")
        exc = info.value
        assert isinstance(exc, CacheError) and not isinstance(exc, redis.RedisError)
        assert exc.location == url and url in str(exc) and "\n" not in str(exc)
        assert exc.operation == "storing an answer"  # the first failure, not the release after
        assert "ConnectionError" in exc.detail
        assert server.count("p") == 1 and server.count("agg") == 0  # the run stopped there
    finally:
        server.stop()


def test_redis_going_away_mid_search_fails_the_trial_and_exits_1(
    tmp_path: Path,
    private_redis: tuple[str, subprocess.Popen[bytes]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A search whose shared Redis cache dies in the middle of a trial: that trial is failed
    with the cache's error as its reason, no further trial starts, and the command says so in
    one paragraph naming the cache URL and exits 1 — no traceback."""
    url, proc = private_redis
    world = PlantedWorld(
        skill={"strong": 0.9, "weak": 0.1}, aggregation_skill={"strong": 0.5, "weak": 0.0}
    )

    def kill_redis() -> None:
        proc.kill()
        proc.wait(timeout=30)

    # mid-trial: the 8th answer finds no cache to go to
    strong = before_answer(world.behaviors()["strong"], 8, kill_redis)
    behaviors = {**world.behaviors(), "strong": strong}
    with FakeOpenAIServer(behaviors) as srv:
        spec = write_planted_study(
            tmp_path,
            srv.base_url,
            n_items=6,
            models=("strong", "weak"),
            evaluation={"rungs": [3, 6], "holdout": 0, "concurrency": 1},
            budget={"n_trials": 6},
            name="redisgoes",
        )
        code = main(["search", str(spec), "--cache", url])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err and url in err and "response cache" in err
    storage = f"sqlite:///{tmp_path / 'results' / 'redisgoes' / 'study.db'}"
    records = TrialRecord.all(optuna.load_study(study_name="redisgoes", storage=storage))
    failed = [r for r in records if r.state == "fail" and r.invalid is None and not r.is_repeat]
    assert len(failed) == 1, records
    assert failed[0].reason is not None and url in failed[0].reason
    assert records[-1].number == failed[0].number  # no trial started after it
