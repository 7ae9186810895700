"""Search efficiency at equal call budgets, on a world whose every mixture's true value is known.

The world is :mod:`moa_search.testing.rich_world`: six simulated models in three families with
shared blind spots and shared wrong answers, proposer skill unlike aggregator skill, prompts of
varying difficulty; 996 distinct mixtures (1-2 layers sharing one composition of 1-3 proposer
calls, 0-3 samples per model, any of 6 aggregators). A mixture's *true value* is its accuracy on
20,000 fresh items no study sees; *regret* is the true optimum's value minus the true value of
the mixture a strategy picked. Models answer in process (pool kind ``world``): no HTTP, but every
call goes through the real executor, cache, judge and Optuna study.

For each seed (its own 60 prompts and model sample seeds), each strategy searches:

- ``auto``: ``sampler: auto`` (when the installed config accepts it), rungs 15/30/60, paired
  racing (``pruner: auto``);
- ``tpe``: moa-search's search as before ``auto``: TPE, rungs 15/30/60, median pruning;
- ``random``: random search, every trial on every prompt, no pruning;
- ``layerwise``: the MoA paper's rule (``moa_search.search.baselines.layerwise_rule``): every
  model alone, then 2 layers of the models above the mean, aggregated by the best single model;
- ``archon``: Archon's ITAS (ScalingIntelligence/Archon, ``itas_algorithm.py``): rank every
  model alone on the prompts, then Bayesian optimisation (Optuna's GP sampler; Archon uses
  ``bayes_opt``) over the number of top-ranked models, samples per model and layers, under
  the space's cap of 3 calls per layer (a config over the cap scores -1 without a call), with
  the top-ranked model as the final fuser, as Archon does;
- ``exhaustive``: every mixture of the space on the same prompts, picking the best observed
  (the ceiling of any search on these prompts that picks on observed means; its calls are the
  distinct requests);
- ``exhaustive_shrunk``: the same observations, picking the highest empirical-Bayes win rate
  (``moa_search.search.auto_model.shrink``, as ``sampler: auto`` chooses): the ceiling of that
  rule on these prompts.

The Optuna strategies run trial by trial until their model calls reach ``--budget``; the chosen
mixture after each trial gives a regret-vs-calls curve. Run (one process: about 4 minutes of
CPU; 7 minutes of wall time on the 2-core machine shared with other jobs):

    .venv/bin/python benchmarks/search_efficiency.py --seeds 10 --budget 4000

``--items N`` changes the prompts per study (the rungs follow: N/4, N/2, N); scale ``--budget``
with it to compare at equal trials, or keep it to compare at equal calls.

It prints a table, writes ``benchmarks/results/search_efficiency.json`` and the plot
``benchmarks/results/search_efficiency.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, get_args

import numpy as np
import optuna

import moa_search.search.session as session_module
from moa_search.config import DEFAULT_AGGREGATION_PROMPT, MixtureConfig
from moa_search.config.study import StudySpec
from moa_search.search.auto_model import Observation, paired_noise, shrink
from moa_search.search.baselines import (
    aggregator_agent,
    best_single,
    layerwise_rule,
    proposer_agent,
)
from moa_search.search.choose import choose_trial
from moa_search.search.session import SearchSession
from moa_search.search.space import Composition, composition
from moa_search.search.storage import Direction
from moa_search.testing.rich_world import Mix, RichWorld, all_mixes

RESULTS = Path(__file__).resolve().parent / "results"


def _in_memory_study(
    url: str,
    name: str,
    directions: Sequence[Direction],
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> optuna.Study:
    """Optuna's in-memory storage instead of an SQLite file: the benchmark counts calls and
    regret, and re-reading every trial from SQLite at each step would dominate its run time."""
    return optuna.create_study(
        study_name=name, directions=list(directions), sampler=sampler, pruner=pruner
    )


session_module.open_study = _in_memory_study
ALL_STRATEGIES = (
    "auto",
    "tpe",
    "random",
    "layerwise",
    "archon",
    "exhaustive",
    "exhaustive_shrunk",
)
NEAR = 0.02  # "within 0.02 of the optimum"

Point = tuple[int, float, str]  # (model calls so far, true value of the current pick, pick)


def auto_accepted() -> bool:
    return "auto" in get_args(StudySpec.model_fields["sampler"].annotation)


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.world = RichWorld()
        self.mixes = all_mixes(self.world)
        started = time.perf_counter()
        self.truth = self.world.true_values(self.mixes, args.truth_items)
        self.truth_s = time.perf_counter() - started
        self.optimum = max(self.truth.values())
        self.best_mix = max(self.truth, key=lambda m: (self.truth[m], -m.calls_per_prompt))
        self._exhaustive: dict[int, tuple[np.ndarray, int]] = {}

    def value(self, mix: Mix) -> float:
        if mix not in self.truth:  # outside the space (the layer-wise rule's 6 proposers)
            self.truth.update(self.world.true_values([mix], self.args.truth_items))
        return self.truth[mix]

    def mix_of(self, c: Composition) -> Mix:
        return self.world.mix(c.layers, c.aggregator)

    def session(self, seed: int, name: str, **overrides: Any) -> SearchSession:
        spec = self.world.write_study(
            self.tmp / f"{name}-{seed}",
            n_items=self.args.items,
            first_item=1000 * seed,
            name=f"{name}-{seed}",
            seed=seed,
            **overrides,
        )
        s = SearchSession(spec, cache="memory")
        s.evaluator.embedder = None  # win rate only: no embedding model needed
        return s

    # ------------------------------------------------------------------ Optuna strategies

    def optuna_strategy(self, seed: int, name: str) -> list[Point]:
        n = self.args.items
        rungs = [r for r in (n // 4, n // 2, n) if r > 0]
        settings: dict[str, dict[str, Any]] = {
            "auto": {"sampler": "auto", "pruner": "auto", "rungs": rungs},
            "tpe": {"sampler": "tpe", "pruner": "median", "rungs": rungs},
            "random": {"sampler": "random", "pruner": "none", "rungs": [n]},
        }
        cfg = settings[name]
        s = self.session(
            seed,
            name,
            sampler=cfg["sampler"],
            pruner=cfg["pruner"],
            evaluation={"rungs": cfg["rungs"], "concurrency": 16, "holdout": 0},
            budget={"n_trials": 100_000},
            n_startup_trials=5,
        )
        points: list[Point] = []
        try:
            while True:
                before = s.totals()
                s.optimize(n_trials=before.trials + 1)
                after = s.totals()
                if after.trials == before.trials:
                    break  # the sampler only proposes mixtures it has seen
                chosen = choose_trial(s.study(), s.spec)
                if chosen is not None and chosen.composition is not None:
                    mix = self.mix_of(chosen.composition)
                    points.append((after.model_calls, self.value(mix), str(mix)))
                if after.model_calls >= self.args.budget:
                    break
        finally:
            s.close()
        return points

    # ------------------------------------------------------------------ one-shot strategies

    def _scorer(self, s: SearchSession) -> tuple[Callable[[MixtureConfig], float], list[int]]:
        calls = [0]

        def score(m: MixtureConfig) -> float:
            ev = s.evaluate(m, s.search_items)
            calls[0] += ev.model_calls
            return ev.win_rate.mean

        return score, calls

    def layerwise(self, seed: int) -> list[Point]:
        s = self.session(seed, "layerwise")
        try:
            score, calls = self._scorer(s)
            best, solo = best_single(s.spec, s.pool, score)
            mixture, _ = layerwise_rule(s.spec, s.pool, 2, best, solo, score)
        finally:
            s.close()
        mix = self.mix_of(composition(mixture))
        return [(calls[0], self.value(mix), str(mix))]

    def archon(self, seed: int) -> list[Point]:
        s = self.session(seed, "archon")
        spec = s.spec
        points: list[Point] = []
        try:
            score, calls = self._scorer(s)
            _, solo = best_single(spec, s.pool, score)
            ranking = sorted(solo, key=lambda m: -solo[m])  # stable: pool order on ties
            seen: dict[tuple[int, int, int], float] = {}
            best: tuple[float, Mix] | None = None

            def objective(trial: optuna.Trial) -> float:
                nonlocal best
                k = trial.suggest_int("model_top_k", 1, 3)
                samples = trial.suggest_int("samples", 1, 3)
                layers = trial.suggest_int("layers", 1, 2)
                if k * samples > spec.space.max_proposers:
                    return -1.0  # over the call cap: scored -1, as Archon does, no call
                if (k, samples, layers) in seen:
                    return seen[(k, samples, layers)]
                layer = tuple(proposer_agent(spec, m, samples) for m in ranking[:k])
                mixture = MixtureConfig(
                    layers=(layer,) * layers,
                    aggregator=aggregator_agent(spec, ranking[0]),
                    aggregation_prompt=spec.aggregation_prompt or DEFAULT_AGGREGATION_PROMPT,
                    seed=spec.seed,
                )
                wr = score(mixture)
                seen[(k, samples, layers)] = wr
                mix = self.mix_of(composition(mixture))
                if best is None or wr > best[0]:
                    best = (wr, mix)
                points.append((calls[0], self.value(best[1]), str(best[1])))
                if calls[0] >= self.args.budget or len(seen) == 10:
                    trial.study.stop()
                return wr

            # Archon ranks first: the pick before any config is the best single model
            top = self.world.mix([], ranking[0])
            points.append((calls[0], self.value(top), str(top)))
            study = optuna.create_study(
                direction="maximize",
                sampler=optuna.samplers.GPSampler(seed=seed, n_startup_trials=3),
            )
            study.optimize(objective, n_trials=40)
        finally:
            s.close()
        return points

    def _every_mixture(self, seed: int) -> tuple[np.ndarray, int]:
        """Every mixture's per-prompt correctness on the study's prompts (the world's rules,
        vectorised: the same answers the executor would get), and the distinct requests."""
        if seed not in self._exhaustive:
            items = np.arange(1000 * seed, 1000 * seed + self.args.items, dtype=np.int64)
            sim = self.world.simulation(items)
            wins = np.array([sim.final_codes(m, seed) == 0 for m in self.mixes], dtype=float)
            self._exhaustive = {seed: (wins, distinct_calls(self.world, self.mixes, items, seed))}
        return self._exhaustive[seed]

    def exhaustive(self, seed: int) -> list[Point]:
        """Every mixture on the study's prompts, the best observed picked."""
        wins, calls = self._every_mixture(seed)
        observed = dict(zip(self.mixes, wins.mean(axis=1).tolist(), strict=True))
        pick = max(self.mixes, key=lambda m: (observed[m], -m.calls_per_prompt))
        return [(calls, self.value(pick), str(pick))]

    def exhaustive_shrunk(self, seed: int) -> list[Point]:
        """Every mixture on the study's prompts, the highest empirical-Bayes win rate picked."""
        wins, calls = self._every_mixture(seed)
        obs = [
            Observation(
                Composition(tuple(dict(lay) for lay in m.layers), m.aggregator), float(w), len(row)
            )
            for m, row, w in zip(self.mixes, wins, wins.mean(axis=1), strict=True)
        ]
        names = [m.name for m in self.world.models]
        est = shrink(obs, list(range(len(obs))), paired_noise(wins), names, names)
        shrunk = dict(zip(self.mixes, est.tolist(), strict=True))
        pick = max(self.mixes, key=lambda m: (shrunk[m], -m.calls_per_prompt))
        return [(calls, self.value(pick), str(pick))]

    def run(self, name: str, seed: int) -> list[Point]:
        if name in ("auto", "tpe", "random"):
            return self.optuna_strategy(seed, name)
        one_shot = {
            "layerwise": self.layerwise,
            "archon": self.archon,
            "exhaustive": self.exhaustive,
            "exhaustive_shrunk": self.exhaustive_shrunk,
        }
        return one_shot[name](seed)


def distinct_calls(world: RichWorld, mixes: Sequence[Mix], items: np.ndarray, seed: int) -> int:
    """How many distinct requests evaluating every mixture on ``items`` makes: a request is
    (role, model, sample, item, the references it sees) — an answer's text is its code's."""
    sim = world.simulation(items)
    ids = items.tolist()
    layer1: set[tuple[int, int]] = set()
    keys: set[tuple[Any, ...]] = set()
    for mix in mixes:
        layers = sim.layer_refs(mix, seed)
        for depth, layer in enumerate(mix.layers):
            calls = [(world.model_index(name), k) for name, n in layer for k in range(n)]
            if depth == 0:
                layer1.update(calls)
                continue
            rows = [tuple(r) for r in layers[depth - 1].tolist()]
            for m, k in calls:
                keys.update(("p", m, k, i, r) for i, r in zip(ids, rows, strict=True))
        a = world.model_index(mix.aggregator)
        rows = [tuple(r) for r in layers[-1].tolist()]
        keys.update(("a", a, i, r) for i, r in zip(ids, rows, strict=True))
    return len(layer1) * len(ids) + len(keys)


# ---------------------------------------------------------------------- summary and output


def at_budget(points: Sequence[Point], budget: float) -> float | None:
    """The true value of the pick made with at most ``budget`` calls (None: no pick yet)."""
    value = None
    for calls, v, _ in points:
        if calls <= budget:
            value = v
    return value


def summarize(runs: dict[str, list[list[Point]]], meta: dict[str, Any]) -> dict[str, Any]:
    budget, optimum = meta["budget"], meta["optimum"]
    out: dict[str, dict[str, Any]] = {}
    for name, per_seed in runs.items():
        final = [optimum - p[-1][1] for p in per_seed]
        at_b = [at_budget(p, budget) for p in per_seed]
        regret_b = [optimum - v if v is not None else math.nan for v in at_b]
        out[name] = {
            "median_regret_at_budget": statistics.median(regret_b),
            "within_at_budget": sum(1 for r in regret_b if r <= NEAR),
            "median_regret_final": statistics.median(final),
            "within_final": sum(1 for r in final if r <= NEAR),
            "median_calls": statistics.median(p[-1][0] for p in per_seed),
            "picks": [p[-1][2] for p in per_seed],
        }
    return out


def _num(x: float) -> str:
    return "over budget" if math.isnan(x) else f"{x:.3f}"


def table(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    b, seeds = meta["budget"], meta["seeds"]
    lines = [
        f"| strategy | median regret at {b} calls | seeds within {NEAR} at {b} calls "
        "| median regret at the end | median model calls used |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in summary.items():
        lines.append(
            f"| {name} | {_num(r['median_regret_at_budget'])} | {r['within_at_budget']}/{seeds} "
            f"| {r['median_regret_final']:.3f} | {r['median_calls']:.0f} |"
        )
    return "\n".join(lines)


def plot(runs: dict[str, list[list[Point]]], meta: dict[str, Any], path: Path) -> str:
    """Median regret against model calls, with plotly: a PNG through kaleido, or an HTML file
    beside ``path`` when no PNG exporter works. Returns the file written."""
    import plotly.graph_objects as go

    optimum, top = meta["optimum"], meta["budget"] * 1.25
    grid = np.linspace(0, top, 250)
    fig = go.Figure()
    for name, per_seed in runs.items():
        if len(per_seed[0]) > 1 or name in ("auto", "tpe", "random"):  # an anytime strategy
            xs, ys = [], []
            for g in grid:
                vals = [at_budget(p, g) for p in per_seed]
                if all(v is not None for v in vals):
                    xs.append(float(g))
                    ys.append(statistics.median(optimum - v for v in vals if v is not None))
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, line_shape="hv"))
        else:
            x = statistics.median(p[-1][0] for p in per_seed)
            y = statistics.median(optimum - p[-1][1] for p in per_seed)
            label = f"{name} ({x:.0f} calls)" if x > top else name
            fig.add_trace(
                go.Scatter(
                    x=[min(x, top)],
                    y=[y],
                    mode="markers+text",
                    name=label,
                    text=[label],
                    textposition="top left" if x > top * 0.8 else "top right",
                    marker_size=11,
                )
            )
    fig.update_layout(
        title=(
            f"Regret vs model calls: median of {meta['seeds']} seeds "
            f"({meta['mixtures']} mixtures, {meta['items']} prompts per study)"
        ),
        xaxis_title="model calls made by the strategy",
        yaxis_title="regret (true accuracy of the optimum − of the pick)",
        width=950,
        height=540,
        template="plotly_white",
    )
    try:
        fig.write_image(str(path))
        return str(path)
    except Exception as exc:  # noqa: BLE001 - no kaleido or no browser for it: HTML instead
        html = path.with_suffix(".html")
        fig.write_html(str(html))
        return f"{html} (no PNG: {type(exc).__name__})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--items", type=int, default=60, help="prompts per study")
    parser.add_argument("--budget", type=int, default=4000, help="model calls per strategy")
    parser.add_argument("--truth-items", type=int, default=20_000)
    parser.add_argument(
        "--strategies",
        default=",".join(s for s in ALL_STRATEGIES if s != "auto" or auto_accepted()),
        help=f"comma-separated, from {', '.join(ALL_STRATEGIES)}",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "search_efficiency.json")
    parser.add_argument("--plot", type=Path, default=RESULTS / "search_efficiency.png")
    parser.add_argument(
        "--replot", type=Path, help="only redraw the table and plot from this results JSON"
    )
    args = parser.parse_args()
    if args.replot is not None:
        data = json.loads(args.replot.read_text())
        c = data["conditions"]
        meta = data.get("meta") or {  # files written before "meta" was stored
            "optimum": data["optimum"]["true_value"],
            "budget": c["budget_calls"],
            "seeds": c["seeds"],
            "items": c["items_per_study"],
            "mixtures": c["mixtures"],
        }
        stored = {
            n: [[(int(c), float(v), str(m)) for c, v, m in p] for p in r]
            for n, r in data["runs"].items()
        }
        print(table(summarize(stored, meta), meta))
        print(f"plot: {plot(stored, meta, args.plot)}")
        return 0
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    bad = [s for s in names if s not in ALL_STRATEGIES]
    if bad or ("auto" in names and not auto_accepted()):
        why = f"unknown {bad}" if bad else "this moa-search does not accept 'sampler: auto' yet"
        print(
            f"search_efficiency: --strategies: {why}; choose from {ALL_STRATEGIES}", file=sys.stderr
        )
        return 2
    logging.basicConfig(level=logging.ERROR)
    started = time.perf_counter()
    # studies in shared memory where there is one: on disk every trial's writes wait on fsync
    fast = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=fast) as tmp:
        bench = Bench(args, Path(tmp))
        print(
            f"{len(bench.mixes)} mixtures; true values on {args.truth_items} fresh items in "
            f"{bench.truth_s:.1f} s; optimum {bench.best_mix} = {bench.optimum:.4f}",
            flush=True,
        )
        runs: dict[str, list[list[Point]]] = {n: [] for n in names}
        timings: dict[str, float] = dict.fromkeys(names, 0.0)
        for seed in range(args.seeds):
            for name in names:
                t0 = time.perf_counter()
                runs[name].append(bench.run(name, seed))
                timings[name] += time.perf_counter() - t0
                last = runs[name][-1][-1]
                print(
                    f"seed {seed} {name:>10}: {last[0]:>6} calls, regret "
                    f"{bench.optimum - last[1]:.3f}, pick {last[2]}",
                    flush=True,
                )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "optimum": bench.optimum,
            "budget": args.budget,
            "seeds": args.seeds,
            "items": args.items,
            "mixtures": len(bench.mixes),
        }
        summary = summarize(runs, meta)
        drawn = plot(runs, meta, args.plot)
        wall = time.perf_counter() - started
        print()
        print(table(summary, meta))
        print(f"\nplot: {drawn}; wall time {wall:.0f} s")
        args.out.write_text(
            json.dumps(
                {
                    "command": " ".join(["benchmarks/search_efficiency.py", *sys.argv[1:]]),
                    "conditions": {
                        "seeds": args.seeds,
                        "items_per_study": args.items,
                        "budget_calls": args.budget,
                        "truth_items": args.truth_items,
                        "mixtures": len(bench.mixes),
                        "world": "moa_search.testing.rich_world.RichWorld()",
                        "wall_time_s": round(wall, 1),
                        "seconds_per_strategy": {k: round(v, 1) for k, v in timings.items()},
                    },
                    "meta": meta,
                    "optimum": {"mixture": str(bench.best_mix), "true_value": bench.optimum},
                    "summary": summary,
                    "runs": {
                        n: [[list(p) for p in points] for points in per_seed]
                        for n, per_seed in runs.items()
                    },
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
