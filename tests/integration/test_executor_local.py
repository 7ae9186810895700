"""The real executor against the real local llama.cpp servers through the real openai client,
and the example mixture through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from moa_search import local
from moa_search.config import load_mixture, load_pool, resolve_pool
from moa_search.runtime.cache import MemoryCache
from moa_search.runtime.executor import Executor
from moa_search.testing.traces import all_overlap

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "studies" / "local" / "mixture.yaml"


def test_example_mixture_on_the_local_pool(local_pool: local.LocalStatus) -> None:
    mixture = load_mixture(EXAMPLE)
    pool = resolve_pool(mixture, EXAMPLE, None, local_pool.pool_path)
    assert pool == load_pool(local_pool.pool_path)
    cache = MemoryCache()
    result = Executor(pool, cache=cache).run(mixture, "Name a fruit that is yellow.")
    calls = result.trace.calls
    assert result.answer.strip()
    assert [(c.layer, c.role) for c in calls] == [
        (0, "proposer"),
        (0, "proposer"),
        (0, "proposer"),
        (1, "proposer"),
        (2, "aggregator"),
    ]
    assert all(c.ok and not c.cache_hit for c in calls)
    # the server reports usage for plain calls; a streamed answer's tokens are estimated
    assert all(c.tokens_out > 0 and not c.usage_estimated for c in calls[:4])
    assert calls[-1].usage_estimated and calls[-1].tokens_out > 0
    # the two samples of smollm2 are distinct calls and both are cached
    assert len(cache) == 5
    # layer 0's gemma call ran alongside smollm2's (separate servers), from the trace's per-call
    # start and end times: some instant lies inside gemma's call and a smollm2 call
    layer0 = [c for c in calls if c.layer == 0]
    gemma = [c for c in layer0 if c.model == "gemma3"]
    assert gemma and any(all_overlap([gemma[0], c]) for c in layer0 if c.model == "smollm2")
    assert result.trace.first_token_s is not None
    again = Executor(pool, cache=cache).run(mixture, "Name a fruit that is yellow.")
    assert again.answer == result.answer and again.trace.cache_hits == 5


def test_cli_run_streams_the_example_offline(local_pool: local.LocalStatus) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "moa_search.cli.main",
            "run",
            str(EXAMPLE),
            "--cache",
            "none",
            "What colour is the sky on a clear day?",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    assert "[layer 1/2]" in proc.stderr and "[aggregator]" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "moa_search.cli.main", "run", str(EXAMPLE), "--json", "Say hello."],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["answer"].strip() and len(data["trace"]["calls"]) == 5
