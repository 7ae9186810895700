"""``moa-search search`` (run or resume a study), ``export`` (write a trial's mixture) and
``best`` (the Pareto front).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from moa_search.cli._common import (
    fmt_duration,
    open_session,
    pool_source,
    positive_float,
    positive_int,
    preflight,
)

if TYPE_CHECKING:
    from moa_search.cli._common import Subparsers
    from moa_search.search.session import TrialReport

__all__ = ["add_study_commands"]


def add_study_commands(sub: Subparsers) -> None:
    p = sub.add_parser("search", help="run (or resume) the study a spec describes")
    p.add_argument("spec", help="study spec file (YAML or JSON)")
    p.add_argument("--n-trials", type=positive_int, help="total trials (overrides the budget)")
    p.add_argument("--storage", help="Optuna storage URL (default: SQLite beside the results)")
    p.add_argument("--timeout", type=positive_float, help="stop starting trials after S seconds")
    p.add_argument("--cache", help="response cache location (default: the study's results)")
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("export", help="write a trial's mixture, ready for 'moa-search run'")
    p.add_argument("spec", help="study spec file")
    p.add_argument("--storage", help="Optuna storage URL")
    p.add_argument("--trial", default="best", help="'best' (the spec's choice) or a trial number")
    p.add_argument("--out", required=True, help="mixture file to write (YAML or JSON)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("best", help="print the study's Pareto front")
    p.add_argument("spec", help="study spec file")
    p.add_argument("--storage", help="Optuna storage URL")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_best)


def _progress(r: TrialReport) -> None:
    """One line on stderr per finished trial."""
    what = f"win {r.win_rate:.3f} on {r.n_items}" if r.win_rate is not None else "-"
    best = (
        f"best #{r.best_number} {r.best_win_rate:.3f}"
        if r.best_number is not None and r.best_win_rate is not None
        else "best -"
    )
    saved = 1 - r.model_calls / r.calls_total if r.calls_total else 0.0
    print(
        f"[trial {r.number:>3} {r.state:<8}] {what:<16} | {best} | "
        f"{r.done}/{r.target} trials | spent ${r.spent_usd:.4f}, {r.spent_tokens:,} tok | "
        f"calls {r.model_calls:,} of {r.calls_total:,} ({saved:.0%} cached) | "
        f"{fmt_duration(r.elapsed_s)}",
        file=sys.stderr,
        flush=True,
    )


def _cmd_search(args: argparse.Namespace) -> int:
    from moa_search.local import default_pool_path

    session = open_session(args, cache=args.cache)
    try:
        source, prefix = pool_source(session.spec.pool, args.spec, None, default_pool_path())
        preflight(source, prefix, session.pool, session.pool.aliases)
        session.study()  # open the storage now: a bad --storage is bad input
        spec = session.spec
        print(
            f"study '{spec.name}': {len(session.items)} prompts, rungs {list(session.rungs)}, "
            f"judge {spec.judge.kind}, objectives {', '.join(spec.objective_names)}",
            file=sys.stderr,
            flush=True,
        )
        session.optimize(n_trials=args.n_trials, timeout_s=args.timeout, on_trial=_progress)
        final = session.finalize()
        totals = session.totals()
        if final is None:
            print("no trial completed; nothing to choose", file=sys.stderr)
            return 1
        m = final.metrics
        wr = m.win_rate
        print(
            f"chosen: trial {final.trial} — win rate {wr.mean:.3f} "
            f"[{wr.ci_low:.3f}, {wr.ci_high:.3f}] on all {final.n_items} prompts, "
            f"diversity {m.diversity:.3f}, {m.tokens:.0f} tokens/prompt, "
            f"${m.cost_usd:.6f}/prompt",
        )
        print(
            f"model calls made: {totals.model_calls:,} of {totals.calls_total:,} that a "
            f"cache-less search would have made; spent ${totals.spent_usd:.4f}, "
            f"{totals.spent_tokens:,} tokens",
        )
        print(f"export it with: moa-search export {args.spec} --out mixture.yaml")
        return 0
    finally:
        session.close()


def _cmd_export(args: argparse.Namespace) -> int:
    from moa_search.search.export import export_trial

    session = open_session(args)
    try:
        trial = session.trial(args.trial)
        if args.trial == "best":
            session.finalize()
        mixture = export_trial(session, trial, args.out)
        print(
            f"wrote {args.out}: trial {trial.number}, "
            f"{mixture.provenance['mixture'] if mixture.provenance else ''}",
            file=sys.stderr,
        )
        return 0
    finally:
        session.close()


def _cmd_best(args: argparse.Namespace) -> int:
    from moa_search.search.choose import choose_trial, pareto_front

    session = open_session(args)
    try:
        study = session.study()
        front = pareto_front(study)
        chosen = choose_trial(study, session.spec)
        rows: list[dict[str, Any]] = []
        for t in front:
            m = t.metrics
            rows.append(
                {
                    "trial": t.number,
                    "chosen": chosen is not None and t.number == chosen.number,
                    "mixture": t.mixture or "",
                    "win_rate": m.win_rate.mean if m else None,
                    "ci_low": m.win_rate.ci_low if m else None,
                    "ci_high": m.win_rate.ci_high if m else None,
                    "diversity": m.diversity if m else None,
                    "tokens": m.tokens if m else None,
                    "cost_usd": m.cost_usd if m else None,
                    "n_items": t.n_items,
                }
            )
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        if not rows:
            print("no complete trials yet")
            return 1
        header = f"{'':1} {'trial':>5}  {'win rate':>8} {'95% CI':>15}  {'divers.':>7} "
        header += f"{'tokens':>7} {'$/prompt':>10} {'n':>4}  mixture"
        print(header)
        for r in rows:
            print(
                f"{'*' if r['chosen'] else ' '} {r['trial']:>5}  {r['win_rate']:>8.3f} "
                f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]  {r['diversity']:>7.3f} "
                f"{r['tokens']:>7.0f} {r['cost_usd']:>10.6f} {r['n_items']:>4}  {r['mixture']}"
            )
        print("* the spec's choice")
        return 0
    finally:
        session.close()
