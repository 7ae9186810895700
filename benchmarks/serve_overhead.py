"""Throughput and latency of ``moa-search serve``, and its overhead over the upstream calls.

Three processes: the fake OpenAI-compatible upstream with zero latency
(``python -m moa_search.testing.fake_openai``), the server (:func:`moa_search.serve.app.serve`
under uvicorn) serving a one-proposer + aggregator mixture on it, and this driver, which sends
N chat requests at a fixed concurrency with ``httpx2``. Each served request costs two upstream
calls one after the other (the proposer's, then the aggregator's stream); the driver also makes
exactly those two calls directly against the upstream, at the same concurrency, so that

    overhead = served latency - direct latency of the same two calls

is what the server, the executor and the extra hop add. Everything shares the machine's cores,
so the figures are an upper bound on the overhead of a lone server. Run:

    .venv/bin/python benchmarks/serve_overhead.py [--requests 500] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx2

from moa_search.config import AgentSpec, MixtureConfig, ModelSpec, Pool, save_mixture

MODEL = "bench"
ANSWER = "A short answer of about a dozen words, streamed word by word to the client."


def start_upstream(tmp: Path) -> tuple[subprocess.Popen[str], str]:
    behaviors = tmp / "behaviors.json"
    behaviors.write_text(json.dumps({"*": {"latency_s": 0.0, "answer": ANSWER}}))
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "moa_search.testing.fake_openai"),
            *("--port", "0", "--behaviors", str(behaviors)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"the fake upstream did not start: {line!r}")
    return proc, line.strip().rsplit(" ", 1)[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(mixture_path: Path, port: int) -> subprocess.Popen[str]:
    code = (
        "from moa_search.serve.app import serve; "
        f"serve([{str(mixture_path)!r}], port={port}, log_level='warning')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx2.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("the server exited during start-up")
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not answer /health within 30 s")


def write_mixture(tmp: Path, upstream: str, concurrency: int) -> Path:
    pool = Pool(
        models=tuple(
            ModelSpec(
                alias=a, base_url=upstream, model=a, max_concurrency=concurrency * 2, timeout_s=30
            )
            for a in ("p", "agg")
        )
    )
    mixture = MixtureConfig(
        name=MODEL,
        layers=((AgentSpec(model="p", max_tokens=64),),),
        aggregator=AgentSpec(model="agg", max_tokens=64),
        pool=pool,
    )
    path = tmp / "mixture.yaml"
    save_mixture(mixture, path)
    return path


async def drive(
    n: int, concurrency: int, one: Callable[[int], Awaitable[None]]
) -> tuple[list[float], float]:
    """Latencies of ``n`` calls of ``one(i)``, ``concurrency`` at a time, and the wall time."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    latencies: list[float] = []

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            t0 = time.perf_counter()
            await one(i)
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - t0


def messages(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Benchmark question number {i}: what is MoA?"}]


async def read_sse(client: httpx2.AsyncClient, url: str, body: dict[str, object]) -> str:
    text = []
    async with client.stream("POST", url, json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choices = json.loads(line[6:]).get("choices") or [{}]
                text.append(choices[0].get("delta", {}).get("content") or "")
    return "".join(text)


async def run_all(
    upstream: str, served: str, n: int, concurrency: int
) -> dict[str, tuple[list[float], float]]:
    """Each mode (direct, plain, stream) at ``concurrency``, after a warm-up."""
    limits = httpx2.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency)
    async with httpx2.AsyncClient(timeout=60, limits=limits) as client:

        async def direct(i: int) -> None:  # the same two calls the mixture makes
            r = await client.post(
                f"{upstream}/chat/completions",
                json={"model": "p", "messages": messages(i), "max_tokens": 64, "seed": 1},
            )
            r.raise_for_status()
            ref = r.json()["choices"][0]["message"]["content"]
            system = {"role": "system", "content": f"Synthesize.\n\nAnswers:\n\n[1] {ref}"}
            await read_sse(
                client,
                f"{upstream}/chat/completions",
                {
                    "model": "agg",
                    "messages": [system, *messages(i)],
                    "max_tokens": 64,
                    "seed": 1,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
            )

        async def plain(i: int) -> None:
            r = await client.post(
                f"{served}/chat/completions", json={"model": MODEL, "messages": messages(i)}
            )
            r.raise_for_status()
            assert r.json()["choices"][0]["message"]["content"] == ANSWER

        async def streamed(i: int) -> None:
            body = {"model": MODEL, "messages": messages(i), "stream": True}
            assert await read_sse(client, f"{served}/chat/completions", body) == ANSWER

        out: dict[str, tuple[list[float], float]] = {}
        for name, fn in (("direct", direct), ("plain", plain), ("stream", streamed)):
            await drive(min(50, n), concurrency, fn)  # warm-up: connections, caches, JIT paths
            out[name] = await drive(n, concurrency, fn)
        return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        upstream_proc, upstream = start_upstream(tmp)
        server_proc = None
        try:
            port = free_port()
            server_proc = start_server(write_mixture(tmp, upstream, args.concurrency), port)
            served = f"http://127.0.0.1:{port}/v1"
            results = asyncio.run(run_all(upstream, served, args.requests, args.concurrency))
            alone = asyncio.run(run_all(upstream, served, args.requests // 5, 1))
        finally:
            for proc in (server_proc, upstream_proc):
                if proc is not None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
    print(
        f"## moa-search serve overhead ({args.requests} requests, concurrency "
        f"{args.concurrency}, {os.cpu_count()} cores, one proposer + aggregator, "
        "zero-latency upstream)\n"
    )
    print("| mode | req/s | p50 ms | p90 ms | p99 ms | overhead p50 ms | overhead p90 ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    report(results, f"c={args.concurrency}")
    report(alone, "c=1")
    print(
        "\noverhead = the served percentile minus the same percentile of the two direct "
        "upstream calls at the same concurrency (c); at c=1 it is the per-request cost of the "
        "server, executor and extra hop, at higher c it includes queueing for the CPU."
    )


def report(results: dict[str, tuple[list[float], float]], tag: str) -> None:
    direct = results["direct"][0]
    for name, label in (
        ("direct", "direct upstream (the 2 calls)"),
        ("plain", "served, stream=false"),
        ("stream", "served, stream=true"),
    ):
        lat, wall = results[name]
        if name == "direct":
            o50 = o90 = "—"
        else:
            o50 = f"{(pct(lat, 0.5) - pct(direct, 0.5)) * 1000:.1f}"
            o90 = f"{(pct(lat, 0.9) - pct(direct, 0.9)) * 1000:.1f}"
        print(
            f"| {label}, {tag} | {len(lat) / wall:.0f} | {pct(lat, 0.5) * 1000:.1f} | "
            f"{pct(lat, 0.9) * 1000:.1f} | {pct(lat, 0.99) * 1000:.1f} | {o50} | {o90} |"
        )


if __name__ == "__main__":
    main()
