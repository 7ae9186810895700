"""A cold ``moa-search run``: layer-1 overhead over the slowest proposer, a new process per run.

The fake OpenAI-compatible server runs in its own process with injected per-model latencies
(proposers 400/800/200 ms, aggregator 200 ms). Every run is a fresh ``moa-search run --json
--cache none`` process, so each pays what a user's first call pays: creating the HTTP clients,
opening connections, and whatever is imported lazily on the way. From the run's trace:

- layer-1 overhead = the end of layer 1's last call (``started_s + latency_s``, from the run's
  start) minus the slowest proposer's injected latency (800 ms);
- layer-2 overhead likewise (its calls start when layer 1 ends);
- end-to-end overhead = the run's latency minus the critical path (800 + 800 + 200 ms).

Run:

    .venv/bin/python benchmarks/cold_run.py [--runs 10] [--via cli|api]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LATENCY = {"p1": 0.40, "p2": 0.80, "p3": 0.20, "agg": 0.20}
PROPOSERS = ("p1", "p2", "p3")


def start_server(folder: Path) -> tuple[subprocess.Popen[str], str]:
    path = folder / "behaviors.json"
    path.write_text(json.dumps({m: {"latency_s": lat} for m, lat in LATENCY.items()}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "moa_search.testing.fake_openai", "--behaviors", str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.strip().rsplit(" ", 1)[-1]


def write_files(folder: Path, base_url: str) -> Path:
    """A pool naming each model at the fake server, and a 2-layer mixture using it."""
    models = [
        {"alias": m, "base_url": base_url, "model": m, "max_concurrency": 4, "timeout_s": 10}
        for m in LATENCY
    ]
    (folder / "pool.json").write_text(json.dumps({"version": 1, "models": models}))
    layer = [{"model": m, "max_tokens": 16} for m in PROPOSERS]
    mixture = {
        "version": 1,
        "pool": "pool.json",
        "layers": [layer, layer],
        "aggregator": {"model": "agg", "max_tokens": 16},
    }
    path = folder / "mixture.json"
    path.write_text(json.dumps(mixture))
    return path


# The Python API in a new process (``--via api``): the same executor path as the CLI.
API_CHILD = """
import json, sys
from moa_search import Mixture
result = Mixture.load(sys.argv[1]).complete(sys.argv[2])
print(json.dumps(result.to_dict()))
"""


def one_run(mixture: Path, prompt: str, via: str) -> dict[str, float]:
    if via == "cli":
        cmd = [sys.executable, "-m", "moa_search.cli.main", "run", str(mixture)]
        cmd += ["--json", "--cache", "none", prompt]
    else:
        cmd = [sys.executable, "-c", API_CHILD, str(mixture), prompt]
    start = time.perf_counter()
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}):\n{proc.stderr}")
    trace = json.loads(proc.stdout)["trace"]
    calls = trace["calls"]

    def layer_end(layer: int) -> float:
        return max(c["started_s"] + c["latency_s"] for c in calls if c["layer"] == layer)

    slowest = max(LATENCY[m] for m in PROPOSERS)
    end1, end2 = layer_end(0), layer_end(1)
    critical = 2 * slowest + LATENCY["agg"]
    return {
        "layer1_overhead_ms": (end1 - slowest) * 1000,
        "layer2_overhead_ms": (end2 - end1 - slowest) * 1000,
        "total_overhead_ms": (trace["latency_s"] - critical) * 1000,
        "process_wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--via", choices=("cli", "api"), default="cli", help="moa-search run, or Mixture.complete"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server, base_url = start_server(folder)
        try:
            mixture = write_files(folder, base_url)
            rows = [one_run(mixture, f"cold prompt {i}", args.via) for i in range(args.runs)]
        finally:
            server.terminate()
            server.wait()
    print(f"{args.runs} cold runs via {args.via} (a new process each); latencies {LATENCY}")
    print(f"{'figure':<34}{'median':>10}{'max':>10}")
    for key in ("layer1_overhead_ms", "layer2_overhead_ms", "total_overhead_ms"):
        values = [r[key] for r in rows]
        print(f"{key:<34}{statistics.median(values):>10.1f}{max(values):>10.1f}")
    walls = [r["process_wall_s"] for r in rows]
    print(f"{'process wall time (s)':<34}{statistics.median(walls):>10.2f}{max(walls):>10.2f}")
    print("goal: layer-1 overhead <= 50 ms")


if __name__ == "__main__":
    main()
