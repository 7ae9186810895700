"""The search against random search at an equal trial budget, on a world with a known optimum.

The planted world (``moa_search.testing.worlds``) has three fake models of known skill behind
the project's OpenAI-compatible test server: 'strong' proposes well but aggregates badly, 'mid'
is the only good aggregator, 'weak' is the baseline. Every mixture in the space (one layer, 0..3
samples per model, 1..3 calls, any aggregator: 57 mixtures) is first scored on the whole dataset
to know the true optimum. Then, for several seeds, it runs

- ``auto`` (the default): solo trials first, role priors, paired racing on growing minibatches,
- ``tpe``: TPE with the same minibatches and median pruning (the default before ``auto``), and
- ``random``: the random sampler, every trial evaluated on every prompt,

and reports how many trials and model calls each needed before its chosen mixture was a true
optimum, and how often it got there within the budget. Run:

    .venv/bin/python benchmarks/search_vs_random.py [--seeds 5] [--trials 20] [--items 60] \
        [--sampler auto,tpe,random]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from moa_search.config import AgentSpec, MixtureConfig
from moa_search.search.choose import choose_trial
from moa_search.search.records import TrialRecord
from moa_search.search.session import SearchSession
from moa_search.search.space import describe_mixture, mixture_key
from moa_search.testing import FakeOpenAIServer
from moa_search.testing.worlds import PlantedWorld, write_planted_study

WORLD = PlantedWorld(
    skill={"strong": 0.7, "mid": 0.35, "weak": 0.2},
    aggregation_skill={"strong": 0.0, "mid": 1.0, "weak": 0.0},
)
MODELS = ("strong", "mid", "weak")


def write_spec(
    folder: Path,
    base_url: str,
    items: int,
    sampler: str,
    rungs: list[int],
    trials: int,
    seed: int,
    pruner: str = "auto",
) -> Path:
    return write_planted_study(
        folder,
        base_url,
        n_items=items,
        model_fields={"max_concurrency": 16},
        name=f"bench-{sampler}-{seed}",
        space={"min_layers": 1, "max_layers": 1, "max_samples": 3, "max_proposers": 3},
        objectives=["win_rate"],
        evaluation={"rungs": rungs, "concurrency": 8, "shuffle": True, "holdout": 0},
        budget={"n_trials": trials},
        sampler=sampler,
        pruner=pruner,
        n_startup_trials=5,
        seed=seed,
    )


def all_mixtures(seed: int = 0) -> list[MixtureConfig]:
    out = []
    for counts in itertools.product(range(4), repeat=3):
        if not 1 <= sum(counts) <= 3:
            continue
        for agg in MODELS:
            layer = tuple(
                AgentSpec(model=m, samples=k, temperature=0.7, max_tokens=256)
                for m, k in zip(MODELS, counts, strict=True)
                if k
            )
            out.append(
                MixtureConfig(
                    layers=(layer,),
                    aggregator=AgentSpec(model=agg, temperature=0.3, max_tokens=512),
                    seed=seed,
                )
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument(
        "--sampler", default="auto,tpe,random", help="comma-separated: auto, tpe, random"
    )
    args = parser.parse_args()
    with FakeOpenAIServer(WORLD.behaviors()) as server, tempfile.TemporaryDirectory() as tmp:

        def truth_for(seed: int) -> dict[str, float]:
            """Every mixture on every prompt, through a session's own evaluator, with the
            seed's sample seeds (a study's answers depend on its seed)."""
            truth_dir = Path(tmp) / f"truth-{seed}"
            truth_dir.mkdir()
            session = SearchSession(
                write_spec(
                    truth_dir, server.base_url, args.items, "random", [args.items], 1, seed, "none"
                )
            )
            truth: dict[str, float] = {}  # mixture key -> true win rate
            names: dict[str, str] = {}
            for m in all_mixtures(seed):
                truth[mixture_key(m)] = session.evaluate(m, session.items).win_rate.mean
                names[mixture_key(m)] = describe_mixture(m)
            session.close()
            top = max(truth.values())
            optima = [names[k] for k, v in truth.items() if v >= top - 1e-9]
            print(f"seed {seed}: {len(truth)} mixtures; true optimum {top:.3f}: {optima}")
            return truth

        rungs = [max(4, args.items // 4), args.items // 2, args.items]
        arms = {
            "auto": ("auto", rungs, "auto"),
            "tpe": ("tpe", rungs, "median"),
            "random": ("random", [args.items], "none"),
        }
        chosen_arms = [a.strip() for a in args.sampler.split(",") if a.strip()]
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen_arms}
        for seed in range(args.seeds):
            truth = truth_for(seed)
            best_value = max(truth.values())
            for name in chosen_arms:
                sampler, arm_rungs, pruner = arms[name]
                folder = Path(tmp) / f"{name}-{seed}"
                folder.mkdir()
                calls_before = server.count()
                s = SearchSession(
                    write_spec(
                        folder,
                        server.base_url,
                        args.items,
                        sampler,
                        arm_rungs,
                        args.trials,
                        seed,
                        pruner,
                    ),
                    cache="memory",
                )
                study = s.optimize()
                found_at = None
                calls_at = None
                trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
                # replay the study's history: the chosen trial after each trial
                import optuna

                for t in trials:
                    partial = optuna.create_study(directions=study.directions)
                    partial.add_trials([x for x in trials if x.number <= t.number])
                    chosen = choose_trial(partial, s.spec)
                    if chosen is not None and truth[chosen.mixture_key or ""] >= best_value - 1e-9:
                        found_at = t.number + 1
                        calls_at = sum(
                            TrialRecord.of(x).model_calls for x in trials if x.number <= t.number
                        )
                        break
                total_calls = server.count() - calls_before
                chosen = choose_trial(study, s.spec)
                results[name].append(
                    {
                        "seed": seed,
                        "found_at_trial": found_at,
                        "calls_to_find": calls_at,
                        "calls_total": total_calls,
                        "final_true_win_rate": truth[chosen.mixture_key or ""] if chosen else None,
                    }
                )
                s.close()
        for name, rows in results.items():
            found = [r for r in rows if r["found_at_trial"] is not None]
            med_t = statistics.median(r["found_at_trial"] for r in found) if found else None
            med_c = statistics.median(r["calls_to_find"] for r in found) if found else None
            print(
                f"{name:>10}: found the optimum in {len(found)}/{len(rows)} runs; median "
                f"{med_t} trials and {med_c} model calls to find it; median calls for "
                f"{args.trials} trials {statistics.median(r['calls_total'] for r in rows)}; "
                f"median true win rate of the final choice "
                f"{statistics.median(r['final_true_win_rate'] for r in rows):.3f}"
            )
        print(json.dumps(results))


if __name__ == "__main__":
    main()
