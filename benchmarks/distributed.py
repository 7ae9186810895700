"""Scale and reliability figures: study throughput with 1 vs 2 workers (PostgreSQL storage, Redis
cache), the cache hit rate over a 50-trial study, and executor latency under 20% faults.

Needs PostgreSQL (127.0.0.1:5432, database test) and Redis (127.0.0.1:6379). Run:

    .venv/bin/python benchmarks/distributed.py [--trials 16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import redis

from moa_search.config import AgentSpec, MixtureConfig, ModelSpec, Pool
from moa_search.runtime.executor import Executor
from moa_search.search.records import StudyTotals, TrialRecord
from moa_search.search.session import SearchSession
from moa_search.testing import FakeOpenAIServer, ModelBehavior
from moa_search.testing.worlds import PlantedWorld, write_planted_study

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_DB = "redis://127.0.0.1:6379/8"
WORLD = PlantedWorld(
    skill={"strong": 0.7, "mid": 0.35, "weak": 0.2},
    aggregation_skill={"strong": 0.0, "mid": 1.0, "weak": 0.0},
    latency_s=0.05,
)


def write_spec(folder: Path, base_url: str, name: str, n_trials: int, items: int) -> Path:
    return write_planted_study(
        folder,
        base_url,
        n_items=items,
        model_fields={"max_concurrency": 8},
        name=name,
        budget={"n_trials": n_trials},
        n_startup_trials=4,
        # every prompt in the search, as when the README's figures were measured
        evaluation={"rungs": [max(1, items // 3), items], "concurrency": 4, "holdout": 0},
    )


def workers(n: int, trials: int, base_url: str, folder: Path) -> tuple[float, int]:
    redis.Redis.from_url(REDIS_DB).flushdb()
    name = f"bench-{n}w-{uuid.uuid4().hex[:6]}"
    spec = write_spec(folder, base_url, name, trials, 12)
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "moa_search.cli.main",
                "search",
                str(spec),
                "--storage",
                PG_URL,
                "--cache",
                REDIS_DB,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    for p in procs:
        _, err = p.communicate(timeout=900)
        if p.returncode != 0:
            raise SystemExit(err)
    elapsed = time.perf_counter() - t0
    study = optuna.load_study(study_name=name, storage=PG_URL)
    # the trials the budget counts: not invalid mixtures, not repeated ones
    done = StudyTotals.of(TrialRecord.all(study)).trials
    optuna.delete_study(study_name=name, storage=PG_URL)
    return elapsed, done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=16)
    args = parser.parse_args()
    with FakeOpenAIServer(WORLD.behaviors()) as server, tempfile.TemporaryDirectory() as tmp:
        print(f"study throughput, fake server with 50 ms latency, {args.trials} trials:")
        base = None
        for n in (1, 2):
            folder = Path(tmp) / f"w{n}"
            folder.mkdir()
            elapsed, done = workers(n, args.trials, server.base_url, folder)
            rate = done / elapsed * 60
            base = base or rate
            print(
                f"  {n} worker(s): {done} counted trials in {elapsed:.1f} s wall time "
                f"(process start included) = {rate:.1f} trials/min ({rate / base:.2f}x)"
            )

        folder = Path(tmp) / "fifty"
        folder.mkdir()
        session = SearchSession(
            write_spec(folder, server.base_url, "fifty", 50, 12), cache="memory"
        )
        t0 = time.perf_counter()
        session.optimize()
        totals = session.totals()
        stats = session.cache.stats if session.cache else None
        session.close()
        assert stats is not None
        print(
            f"50-trial study: cache hit rate {stats.hit_rate:.1%} ({stats.hits} of "
            f"{stats.lookups} lookups); {totals.model_calls} model calls of "
            f"{totals.calls_total} a cache-less search would make "
            f"({1 - totals.model_calls / totals.calls_total:.1%} saved), "
            f"{time.perf_counter() - t0:.1f} s"
        )

    lat = {"p1": 0.2, "p2": 0.3, "p3": 0.25, "agg": 0.2}
    for rate in (0.0, 0.2):
        behaviors = {
            m: ModelBehavior(
                latency_s=v,
                fault_rate=rate,
                seed=i,
                retry_after_s=0.05,
                hang_s=5,
                fault_kinds=("429", "500", "reset", "malformed", "truncate", "hang"),
            )
            for i, (m, v) in enumerate(lat.items())
        }
        with FakeOpenAIServer(behaviors) as srv:
            pool = Pool(
                models=tuple(
                    ModelSpec(alias=m, base_url=srv.base_url, model=m, timeout_s=1.0, max_retries=4)
                    for m in lat
                )
            )
            layer = tuple(AgentSpec(model=m) for m in ("p1", "p2", "p3"))
            m = MixtureConfig(layers=(layer, layer), aggregator=AgentSpec(model="agg"))

            async def go(pool: Pool = pool, m: MixtureConfig = m) -> tuple[list[float], int]:
                ex = Executor(pool, seed=1)
                out, ok = [], 0
                for i in range(30):
                    t0 = time.perf_counter()
                    try:
                        await ex.arun(m, f"prompt {i}")
                        ok += 1
                    except Exception:  # noqa: BLE001 - counted as a failed run
                        pass
                    out.append(time.perf_counter() - t0)
                await ex.aclose()
                return out, ok

            times, ok = asyncio.run(go())
            print(
                f"executor, 2-layer mixture (critical path 800 ms), {rate:.0%} faults: "
                f"{ok}/30 answered, median {statistics.median(times) * 1000:.0f} ms, "
                f"p90 {statistics.quantiles(times, n=10)[-1] * 1000:.0f} ms, "
                f"{srv.count()} requests for {30 * 7} calls"
            )


if __name__ == "__main__":
    main()
