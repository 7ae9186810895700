"""How close ``moa-search plan`` comes to what a search then spends.

For each case and seed it runs ``moa-search plan SPEC --json`` on a fresh study (empty cache),
then ``moa-search search SPEC``, and compares the projected model calls and tokens (and
dollars) with the spend stored in the study (trials, the final evaluation and the held-out
verdict). Every space has 1-2 layers. Worlds:

- ``planted`` (``moa_search.testing.worlds``): three fake models behind the project's
  OpenAI-compatible test server, which counts a token per word. The projection is given the
  world's answer length and wording (``--answer-tokens 7 --chars-per-token 5.8``: its answers
  are 7 words, its requests — mostly the aggregation prompt — have 5.8 characters per word).
  Its right answers are the same text for every model, so later calls share the cache more
  than a plan can foresee (it assumes different requests get different answers).
- ``rich`` (``moa_search.testing.rich_world``, in process): six models in three families;
  answers of about 6 tokens (``--answer-tokens 6 --chars-per-token 4``: its usage is
  estimated at four characters a token).
- ``quickstart``: ``studies/quickstart.yaml`` as shipped, on the local llama.cpp pool
  (``moa-search local up`` first), planned as a user would plan it (no hint: cached answers
  calibrate, else the worst case) and with its answers' typical length (``--answer-tokens``).

Run:

    .venv/bin/python benchmarks/plan_accuracy.py [--worlds planted,rich] [--seeds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from moa_search.cli.main import main
from moa_search.local import default_pool_path
from moa_search.search.session import SearchSession
from moa_search.search.spend import study_spend
from moa_search.testing import FakeOpenAIServer
from moa_search.testing.rich_world import RichWorld
from moa_search.testing.worlds import PlantedWorld, write_planted_study

ROOT = Path(__file__).resolve().parent.parent
WORLD = PlantedWorld(
    skill={"strong": 0.7, "mid": 0.5, "weak": 0.2},
    aggregation_skill={"strong": 0.2, "mid": 0.9, "weak": 0.0},
)

#: world -> case name -> spec overrides ("rungs": "3" grows the minibatch over three rungs)
CASES: dict[str, dict[str, dict[str, Any]]] = {
    "planted": {
        "random, 1 rung": {"sampler": "random", "pruner": "none"},
        "tpe, rungs + median pruning": {"sampler": "tpe", "pruner": "median", "rungs": "3"},
        "random, rungs + median pruning": {"sampler": "random", "pruner": "median", "rungs": "3"},
        "auto, rungs + racing": {"sampler": "auto", "pruner": "auto", "rungs": "3"},
    },
    "rich": {
        "random, 1 rung": {"sampler": "random", "pruner": "none"},
        "tpe, rungs + median pruning": {"sampler": "tpe", "pruner": "median", "rungs": "3"},
        "auto, rungs + racing": {"sampler": "auto", "pruner": "auto", "rungs": "3"},
    },
    "quickstart": {"as shipped (auto, racing)": {}},
}
HINTS = {
    "planted": ["--answer-tokens", "7", "--chars-per-token", "5.8"],
    "rich": ["--answer-tokens", "6", "--chars-per-token", "4"],
}


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(argv)
    return code, out.getvalue()


def _rungs(cfg: dict[str, Any], search_n: int) -> list[int]:
    return [search_n] if cfg.get("rungs") is None else [search_n // 4, search_n // 2, search_n]


def write_case(
    world: str, cfg: dict[str, Any], folder: Path, items: int, trials: int, seed: int
) -> Path:
    """The spec of one case (a fresh folder: a fresh study and cache)."""
    search_n = items - round(0.3 * items)
    common: dict[str, Any] = {
        "objectives": ["win_rate"],
        "budget": {"n_trials": trials},
        "sampler": cfg["sampler"],
        "pruner": cfg["pruner"],
        "n_startup_trials": 3,
        "seed": seed,
    }
    if world == "planted":
        return write_planted_study(
            folder,
            cfg["base_url"],
            n_items=items,
            model_fields={
                "max_concurrency": 8,
                "input_price_per_mtok": 1.0,
                "output_price_per_mtok": 2.0,
            },
            baseline={"kind": "model", "model": "weak", "max_tokens": 32},
            space={"min_layers": 1, "max_layers": 2, "max_samples": 2, "max_proposers": 3},
            evaluation={"rungs": _rungs(cfg, search_n), "concurrency": 4, "holdout": 0.3},
            **common,
        )
    return RichWorld().write_study(
        folder,
        n_items=items,
        first_item=1000 * seed,
        name=f"rich-{seed}",
        evaluation={"rungs": _rungs(cfg, search_n), "concurrency": 16, "holdout": 0.3},
        **common,
    )


def measure(spec: Path, hints: list[str]) -> dict[str, Any]:
    """Plan (with each list of hints in ``hints``), search, and read what was spent."""
    plans = []
    for h in hints:
        code, out = _run(["plan", str(spec), "--json", *h.split()])
        assert code == 0, out
        plans.append(json.loads(out)["total"])
    code, out = _run(["search", str(spec)])
    assert code == 0, out
    session = SearchSession(spec, default_pool_path=default_pool_path())  # the local pool
    try:
        s = study_spend(session.study())
        trials = session.totals().trials
    finally:
        session.close()
    return {
        "actual": {"calls": s.calls, "tokens": s.tokens, "usd": s.usd, "trials": trials},
        "plans": [
            {
                "hint": h,
                "calls": p["calls"],
                "tokens": p["tokens_in"] + p["tokens_out"],
                "usd": p["usd"],
            }
            for h, p in zip(hints, plans, strict=True)
        ],
    }


def run_world(world: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if world == "quickstart":
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(ROOT / "studies/quickstart.yaml", tmp)
            shutil.copytree(ROOT / "studies/quickstart", Path(tmp) / "quickstart")
            m = measure(Path(tmp) / "quickstart.yaml", ["", "--answer-tokens 8"])
        rows.append({"world": world, "case": "as shipped (auto, racing)", "seed": 0, **m})
        return rows
    hint = " ".join(HINTS[world])
    server = FakeOpenAIServer(WORLD.behaviors()) if world == "planted" else None
    with server if server is not None else contextlib.nullcontext():
        for name, cfg in CASES[world].items():
            if args.cases not in name:
                continue
            for seed in range(args.seeds):
                cfg2 = {**cfg, "base_url": server.base_url if server is not None else ""}
                with tempfile.TemporaryDirectory() as tmp:
                    spec = write_case(world, cfg2, Path(tmp), args.items, args.trials, seed)
                    m = measure(spec, [hint])
                rows.append({"world": world, "case": name, "seed": seed, **m})
                print(f"  {world} / {name} / seed {seed}: {_ratios(m)}", flush=True)
    return rows


def _ratios(m: dict[str, Any]) -> str:
    a = m["actual"]
    return "; ".join(
        f"[{p['hint'] or 'no hint'}] calls {p['calls']:.0f}/{a['calls']} "
        f"({p['calls'] / a['calls']:.2f}), tokens {p['tokens']:.0f}/{a['tokens']} "
        f"({p['tokens'] / a['tokens']:.2f})"
        for p in m["plans"]
    )


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| world | case | plan hint | calls projected / actual (ratio) "
        "| tokens projected / actual (ratio) | trials | seeds |",
        "| --- | --- | --- | --- | --- | ---: | ---: |",
    ]
    groups: dict[tuple[str, str, str], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for r in rows:
        for p in r["plans"]:
            groups.setdefault((r["world"], r["case"], p["hint"]), []).append((p, r["actual"]))

    def cell(pairs: list[tuple[dict[str, Any], dict[str, Any]]], key: str) -> str:
        proj = statistics.median(p[key] for p, _ in pairs)
        act = statistics.median(a[key] for _, a in pairs)
        ratios = [p[key] / a[key] for p, a in pairs]
        spread = f", {min(ratios):.2f}-{max(ratios):.2f}" if len(ratios) > 1 else ""
        return f"{proj:,.0f} / {act:,.0f} ({statistics.median(ratios):.2f}{spread})"

    for (world, case, hint), pairs in groups.items():
        trials = statistics.median(a["trials"] for _, a in pairs)
        lines.append(
            f"| {world} | {case} | {hint or 'none'} | {cell(pairs, 'calls')} "
            f"| {cell(pairs, 'tokens')} | {trials:.0f} | {len(pairs)} |"
        )
    return "\n".join(lines)


def main_() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", default="planted,rich", help="from planted, rich, quickstart")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--items", type=int, default=45)
    ap.add_argument("--cases", default="", help="only the cases whose name contains this")
    ap.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    for world in [w.strip() for w in args.worlds.split(",") if w.strip()]:
        if world not in CASES:
            raise SystemExit(f"plan_accuracy: unknown world {world!r}; choose from {list(CASES)}")
        rows += run_world(world, args)
    print(
        f"\n{args.items} prompts (30% held out) per planted/rich study, {args.trials} trials, "
        f"{args.seeds} seeds; medians (ratio: min-max over seeds)"
    )
    print(table(rows))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main_()
