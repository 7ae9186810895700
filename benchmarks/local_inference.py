"""Local inference speed: prompt and generation tokens/s of both local models as served, for
several llama.cpp server configurations, and the example mixture's ``run`` time.

Each configuration starts its own pair of servers (one per model, as ``moa-search local up``
does) from :func:`moa_search.local.servers.server_config` with some fields overridden, then, per
model, one request at a time:

- prompt processing: requests with ``max_tokens=1`` on distinct prompts of ~150 tokens (distinct
  from their first token, so no prefix is reused);
- generation: the same prompt with ``max_tokens=1`` and with ``max_tokens=33`` (temperature 0);
  the difference is 32 generated tokens;
- a shared prefix: aggregation-style requests whose long system message is the same and whose
  answers differ, alternating with an unrelated request (what a mixture's aggregator sees).

Figures are given two ways: tokens per wall-clock second, and tokens per second of the server
process's CPU time (user + system, read from ``/proc``). On a machine shared with other work the
wall-clock figure drops with the load; the CPU-time figure hardly moves, so compare
configurations on it. Run:

    .venv/bin/python benchmarks/local_inference.py [--repeats 3] [--skip-run]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from moa_search.local import models, servers
from moa_search.local.paths import HOST

ROOT = Path(__file__).resolve().parents[1]
FILLER = (
    "The committee reviewed the quarterly figures, compared them with last year's, noted the "
    "changes in each region, and asked the analysts to explain the largest differences. "
)
AGGREGATION = (
    "Several assistants have already answered the user's latest request; their answers are "
    "listed below. Some of them may be wrong, incomplete or biased. Weigh them critically, keep "
    "what is correct and useful, fix what is not, and write one answer of your own that is "
    "accurate, complete and well organised. Do not mention the other answers or this "
    "instruction; answer the user directly."
)

#: name -> {model alias or "*" -> overrides of that server's model entry in server_config()}.
#: The shipped SmolLM2 weights are Q4_1; the local pool now serves them re-encoded as Q8_0
#: (moa_search.local.reencode).
CONFIGS: dict[str, dict[str, dict[str, Any]]] = {
    "before: SmolLM2 Q4_1 as shipped": {"smollm2": {"model": "shipped"}},
    "SmolLM2 re-encoded Q8_0 (served now)": {},
    "Q8_0 + SmolLM2 RAM prompt cache": {"smollm2": {"cache": True, "cache_size": 64 << 20}},
    "Q8_0 + n_ctx 512": {"*": {"n_ctx": 512}},
    "Q8_0 + 2 prompt threads": {"*": {"n_threads_batch": 2}},
}


def _free_port() -> int:
    return servers._free_ports(1)[0]


@contextlib.contextmanager
def serving(
    overrides: dict[str, dict[str, Any]], folder: Path
) -> Iterator[dict[str, tuple[str, int]]]:
    """Start one server per local model with ``overrides``; yields alias -> (base URL, pid)."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    urls: dict[str, tuple[str, int]] = {}
    try:
        for model in models.local_models():
            port = _free_port()
            config = servers.server_config(model, port)
            entry = {**overrides.get("*", {}), **overrides.get(model.alias, {})}
            if entry.get("model") == "shipped":
                entry["model"] = str(models._smollm2_path())
            config["models"][0].update(entry)
            path = folder / f"{model.alias}.json"
            path.write_text(json.dumps(config))
            log = open(folder / f"{model.alias}.log", "wb")  # noqa: SIM115 - closed with proc
            procs[model.alias] = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--config_file", str(path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if k not in ("HOST", "PORT")},
            )
            urls[model.alias] = (f"http://{HOST}:{port}/v1", procs[model.alias].pid)
        deadline = time.monotonic() + 180
        for url, _ in urls.values():
            while True:
                try:
                    urllib.request.urlopen(f"{url}/models", timeout=2).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        yield urls
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=30)


def _model_id(alias: str) -> str:
    return next(m.model_id for m in models.local_models() if m.alias == alias)


def chat(url: str, alias: str, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    body = {
        "model": _model_id(alias),
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "seed": 1,
    }
    req = urllib.request.Request(
        f"{url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=600) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


def _cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def timed(url: str, pid: int, alias: str, messages: list[dict[str, str]], n: int) -> tuple:
    cpu0, wall0 = _cpu(pid), time.perf_counter()
    data = chat(url, alias, messages, n)
    wall, cpu = time.perf_counter() - wall0, _cpu(pid) - cpu0
    usage = data["usage"]
    return wall, cpu, int(usage["prompt_tokens"]), int(usage["completion_tokens"])


def measure(url: str, pid: int, alias: str, repeats: int) -> dict[str, float]:
    prompt_rates: list[tuple[float, float]] = []
    gen_rates: list[tuple[float, float]] = []
    prefix: list[tuple[float, float]] = []
    for r in range(repeats):
        text = f"Report {r} {time.time_ns()}. " + FILLER * 5 + "Summarise it in one sentence."
        msgs = [{"role": "user", "content": text}]
        w1, c1, p1, _ = timed(url, pid, alias, msgs, 1)
        prompt_rates.append((p1 / w1, p1 / c1))
        w2, c2, _, n2 = timed(url, pid, alias, msgs, 33)
        # the second request reuses the cached prompt of the first (same text): its extra time
        # over a 1-token answer is generation
        w1b, c1b, _, _ = timed(url, pid, alias, msgs, 1)
        gen = max(n2 - 1, 1)
        gen_rates.append((gen / max(w2 - w1b, 1e-3), gen / max(c2 - c1b, 1e-3)))
        other = [{"role": "user", "content": f"Unrelated question {r}: name a colour."}]
        chat(url, alias, other, 1)
        answers = "\n\n".join(f"{i + 1}. Answer {i} of run {r}: Paris." for i in range(3))
        agg = [
            {"role": "system", "content": f"{AGGREGATION}\n\nAnswers:\n\n{answers}"},
            {"role": "user", "content": "What is the capital of France?"},
        ]
        w3, c3, _, _ = timed(url, pid, alias, agg, 1)
        prefix.append((w3, c3))
    return {
        "prompt_tok_s_wall": statistics.median(p for p, _ in prompt_rates),
        "prompt_tok_s_cpu": statistics.median(c for _, c in prompt_rates),
        "gen_tok_s_wall": statistics.median(g for g, _ in gen_rates),
        "gen_tok_s_cpu": statistics.median(c for _, c in gen_rates),
        "agg_prompt_ms_wall": 1000 * statistics.median(w for w, _ in prefix),
        "agg_prompt_ms_cpu": 1000 * statistics.median(c for _, c in prefix),
    }


def example_run(urls: dict[str, tuple[str, int]], folder: Path) -> float:
    """Wall seconds of ``moa-search run studies/local/mixture.yaml`` (no cache) on these
    servers, the command's own process start excluded (its trace's latency)."""
    pool = {
        "version": 1,
        "models": [
            {"alias": a, "base_url": u, "model": _model_id(a), "max_concurrency": 1}
            for a, (u, _) in urls.items()
        ],
    }
    (folder / "pool.json").write_text(json.dumps(pool))
    example = str(ROOT / "studies" / "local" / "mixture.yaml")
    cmd = [sys.executable, "-m", "moa_search.cli.main", "run", example]
    cmd += ["--pool", str(folder / "pool.json"), "--cache", "none", "--json"]
    proc = subprocess.run(
        [*cmd, "What is the capital of France?"],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(proc.stdout)["trace"]["latency_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-run", action="store_true", help="no example mixture run")
    parser.add_argument("--runs", type=int, default=3, help="example runs (the median is shown)")
    parser.add_argument("--only", help="run only the configurations whose name contains this")
    args = parser.parse_args()
    load0 = os.getloadavg()[0]
    head = f"{'configuration':<44}{'model':<9}{'prompt tok/s':>16}{'gen tok/s':>14}"
    print(head + f"{'agg prompt ms':>17}{'run s':>8}")
    print(f"{'':<53}{'wall / cpu':>16}{'wall / cpu':>14}{'wall / cpu':>17}")
    for name, overrides in CONFIGS.items():
        if args.only and args.only not in name:
            continue
        with tempfile.TemporaryDirectory() as tmp, serving(overrides, Path(tmp)) as urls:
            rows = {a: measure(u, pid, a, args.repeats) for a, (u, pid) in urls.items()}
            run_s = (
                float("nan")
                if args.skip_run
                else statistics.median(example_run(urls, Path(tmp)) for _ in range(args.runs))
            )
        for alias, m in rows.items():
            print(
                f"{name:<44}{alias:<9}"
                f"{m['prompt_tok_s_wall']:>8.0f} /{m['prompt_tok_s_cpu']:>6.0f}"
                f"{m['gen_tok_s_wall']:>7.1f} /{m['gen_tok_s_cpu']:>5.1f}"
                f"{m['agg_prompt_ms_wall']:>9.0f} /{m['agg_prompt_ms_cpu']:>6.0f}"
                f"{run_s if alias == 'smollm2' else float('nan'):>8.2f}",
                flush=True,
            )
    print(f"load average (1 min) at start {load0:.1f}, at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
