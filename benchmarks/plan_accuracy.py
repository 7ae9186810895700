"""How close ``moa-search plan`` comes to what a search then spends.

For each configuration and seed, on the planted world (``moa_search.testing.worlds``: three
fake models behind the project's OpenAI-compatible test server, which counts a token per word),
it runs ``moa-search plan SPEC --json`` on a fresh study (empty cache), then
``moa-search search SPEC``, and compares the projected model calls, tokens and dollars with the
spend stored in the study (trials, the final evaluation and the held-out verdict). The
projection is given the world's answer length and wording (``--answer-tokens 7
--chars-per-token 5.8``: its answers are 7 words, its requests — mostly the aggregation prompt —
have 5.8 characters per word); without them the plan assumes the worst case, every
answer as long as max_tokens. The planted world's right answers are the same text for every
model, so later calls share the cache more than a plan can foresee (it assumes different
requests get different answers): the projection runs high here. Run:

    .venv/bin/python benchmarks/plan_accuracy.py [--seeds 5] [--trials 12] [--items 45]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from moa_search.cli.main import main
from moa_search.search.plan import study_spend
from moa_search.search.session import SearchSession
from moa_search.testing import FakeOpenAIServer
from moa_search.testing.worlds import PlantedWorld, write_planted_study

WORLD = PlantedWorld(
    skill={"strong": 0.7, "mid": 0.5, "weak": 0.2},
    aggregation_skill={"strong": 0.2, "mid": 0.9, "weak": 0.0},
)

#: name -> spec overrides
CONFIGS: dict[str, dict[str, Any]] = {
    "random, 1 rung": {"sampler": "random", "pruner": "none"},
    "tpe, rungs + median pruning": {"sampler": "tpe", "pruner": "median", "rungs": "3"},
    "random, rungs + median pruning": {"sampler": "random", "pruner": "median", "rungs": "3"},
}


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(argv)
    return code, out.getvalue()


def one(
    server: FakeOpenAIServer, cfg: dict[str, Any], items: int, trials: int, seed: int
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        search_n = items - round(0.3 * items)
        rungs = [search_n] if cfg.get("rungs") is None else [search_n // 4, search_n // 2, search_n]
        spec = write_planted_study(
            Path(tmp),
            server.base_url,
            n_items=items,
            model_fields={
                "max_concurrency": 8,
                "input_price_per_mtok": 1.0,
                "output_price_per_mtok": 2.0,
            },
            baseline={"kind": "model", "model": "weak", "max_tokens": 32},
            objectives=["win_rate"],
            space={"min_layers": 1, "max_layers": 2, "max_samples": 2, "max_proposers": 3},
            evaluation={"rungs": rungs, "concurrency": 4, "holdout": 0.3},
            budget={"n_trials": trials},
            sampler=cfg["sampler"],
            pruner=cfg["pruner"],
            n_startup_trials=3,
            seed=seed,
        )
        code, out = _run(
            ["plan", str(spec), "--json", "--answer-tokens", "7", "--chars-per-token", "5.8"]
        )
        assert code == 0, out
        total = json.loads(out)["total"]
        before = server.count()
        code, _ = _run(["search", str(spec)])
        assert code == 0
        session = SearchSession(spec)
        try:
            s = study_spend(session.study())
        finally:
            session.close()
        assert s.calls == server.count() - before
        return {
            "calls": total["calls"] / s.calls,
            "tokens": (total["tokens_in"] + total["tokens_out"]) / s.tokens,
            "usd": total["usd"] / s.usd,
            "actual_calls": s.calls,
        }


def main_() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--items", type=int, default=45)
    args = ap.parse_args()
    print(
        f"planted world, {args.items} prompts (30% held out), {args.trials} trials, "
        f"{args.seeds} seeds; projected / actual (median, min-max)"
    )
    print("| configuration | calls | tokens | dollars | actual calls (median) |")
    print("| --- | --- | --- | --- | --- |")
    with FakeOpenAIServer(WORLD.behaviors()) as server:
        for name, cfg in CONFIGS.items():
            rows = [one(server, cfg, args.items, args.trials, seed) for seed in range(args.seeds)]

            def cell(key: str, rows: list[dict[str, float]] = rows) -> str:
                v = [r[key] for r in rows]
                return f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})"

            actual = statistics.median(r["actual_calls"] for r in rows)
            print(f"| {name} | {cell('calls')} | {cell('tokens')} | {cell('usd')} | {actual:.0f} |")


if __name__ == "__main__":
    main_()
