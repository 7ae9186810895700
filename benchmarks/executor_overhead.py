"""Executor overhead over the critical path, and the cost of a cache hit.

The fake OpenAI-compatible server runs in its own process with fixed per-model latencies, so a
2-layer mixture's critical path is known exactly: per layer the slowest proposer, plus the
aggregator's latency and its streamed chunks. The executor's overhead is the median measured
latency minus that path. Run:

    .venv/bin/python benchmarks/executor_overhead.py [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from moa_search.config import AgentSpec, MixtureConfig, ModelSpec, Pool
from moa_search.runtime.cache import SQLiteCache
from moa_search.runtime.executor import Executor

LATENCY = {"p1": 0.20, "p2": 0.30, "p3": 0.25, "agg": 0.20}
CHUNK_DELAY = 0.0


def start_server(behaviors: dict[str, dict[str, float]]) -> tuple[subprocess.Popen[str], str]:
    path = Path(tempfile.mkdtemp()) / "behaviors.json"
    path.write_text(json.dumps(behaviors))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "moa_search.testing.fake_openai",
            "--port",
            "0",
            "--behaviors",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.strip().rsplit(" ", 1)[-1]


def pool(base_url: str) -> Pool:
    return Pool(
        models=tuple(
            ModelSpec(alias=m, base_url=base_url, model=m, max_concurrency=16, timeout_s=10)
            for m in LATENCY
        )
    )


def mixture(samples: int) -> MixtureConfig:
    layer = tuple(AgentSpec(model=m, samples=samples) for m in ("p1", "p2", "p3"))
    return MixtureConfig(layers=(layer, layer), aggregator=AgentSpec(model="agg"))


async def measure(ex: Executor, m: MixtureConfig, runs: int) -> list[float]:
    await ex.arun(m, "warm-up")
    out = []
    for i in range(runs):
        t0 = time.perf_counter()
        await ex.arun(m, f"prompt {i}")
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    proc, base_url = start_server({m: {"latency_s": lat} for m, lat in LATENCY.items()})
    try:
        critical = 2 * max(LATENCY[p] for p in ("p1", "p2", "p3")) + LATENCY["agg"]
        serial = 2 * sum(LATENCY[p] for p in ("p1", "p2", "p3")) + LATENCY["agg"]
        print(
            f"2-layer mixture, critical path {critical * 1000:.0f} ms "
            f"(calls one after another: {serial * 1000:.0f} ms)"
        )
        for samples in (1, 3):
            ex = Executor(pool(base_url))
            lat = asyncio.run(measure(ex, mixture(samples), args.runs))
            med = statistics.median(lat)
            calls = 2 * 3 * samples + 1
            print(
                f"  {calls:>2} calls/run: median {med * 1000:.1f} ms, overhead "
                f"{(med - critical) * 1000:.1f} ms = {(med / critical - 1) * 100:.1f}% "
                f"(min {min(lat) * 1000:.1f}, max {max(lat) * 1000:.1f}, n={len(lat)})"
            )
        with tempfile.TemporaryDirectory() as tmp:
            cache = SQLiteCache(Path(tmp) / "c.sqlite")
            ex = Executor(pool(base_url), cache=cache)
            m = mixture(1)

            async def cached() -> list[float]:
                await ex.arun(m, "cached prompt")
                out = []
                for _ in range(200):
                    t0 = time.perf_counter()
                    await ex.arun(m, "cached prompt")
                    out.append(time.perf_counter() - t0)
                return out

            runs = asyncio.run(cached())
            per_run = statistics.median(runs)
            keys = []
            t_get = []
            import sqlite3

            conn = sqlite3.connect(Path(tmp) / "c.sqlite")
            keys = [k for (k,) in conn.execute("SELECT key FROM responses")]
            for _ in range(50):
                for k in keys:
                    t0 = time.perf_counter()
                    cache.get(k)
                    t_get.append(time.perf_counter() - t0)
            print(
                f"cache hit: one lookup median {statistics.median(t_get) * 1e6:.0f} µs; "
                f"a whole 7-call run from the cache median {per_run * 1000:.2f} ms "
                f"(vs {critical * 1000:.0f} ms uncached)"
            )
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
