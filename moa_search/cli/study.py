"""``moa-search search`` (run or resume a study), ``export`` (write a trial's mixture) and
``best`` (the Pareto front).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from moa_search.cli._common import (
    add_study_arguments,
    examples,
    fmt_duration,
    open_session,
    pool_source,
    positive_float,
    positive_int,
    preflight,
    study_exists,
)

if TYPE_CHECKING:
    from moa_search.cli._common import Subparsers
    from moa_search.search.records import HoldoutVerdict
    from moa_search.search.session import TrialReport

__all__ = ["add_study_commands"]


def add_study_commands(sub: Subparsers) -> None:
    p = sub.add_parser(
        "search",
        help="run (or resume) the study a spec describes",
        description="Run the study a spec describes, or resume it: one line per trial on "
        "stderr, the chosen mixture on stdout. Several processes with the same --storage and "
        "--cache share one study and one response cache.",
        epilog=examples(
            "moa-search search studies/quickstart.yaml",
            "moa-search search studies/quickstart.yaml --n-trials 10 --timeout 600",
            "moa-search search studies/quickstart.yaml \\\n"
            "      --storage postgresql+psycopg://postgres@127.0.0.1:5432/test \\\n"
            "      --cache redis://127.0.0.1:6379/0",
        ),
    )
    p.add_argument("spec", help="study spec file (YAML or JSON)")
    p.add_argument("--n-trials", type=positive_int, help="total trials (overrides the budget)")
    p.add_argument("--storage", help="Optuna storage URL (default: SQLite beside the results)")
    p.add_argument("--timeout", type=positive_float, help="stop starting trials after S seconds")
    p.add_argument("--cache", help="response cache location (default: the study's results)")
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser(
        "export",
        help="write a trial's mixture, ready for 'moa-search run'",
        description="Write a trial's mixture with its pool inline and a provenance block "
        "(study, trial, metrics, judge, dataset hash), ready for 'moa-search run' or 'serve'.",
        epilog=examples(
            "moa-search export studies/quickstart.yaml --out quickstart-mixture.yaml",
            "moa-search export studies/quickstart.yaml --trial 7 --out trial-7.yaml",
        ),
    )
    add_study_arguments(p)
    p.add_argument("--trial", default="best", help="'best' (the spec's choice) or a trial number")
    p.add_argument("--out", required=True, help="mixture file to write (YAML or JSON)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "best",
        help="print the study's Pareto front and its held-out verdict",
        description="Print the study's Pareto front, one trial a line; * marks the spec's "
        "choice; then the held-out verdict: the chosen mixture against the best single model, "
        "Self-MoA and the layer-wise rule on prompts the search never saw (--json prints the "
        "verdict alone when the study holds prompts out). Nothing is evaluated and no file is "
        "written.\n\n"
        "mixture notation: [a, b*2] is a layer of proposers (b sampled twice); 2x[...] repeats "
        "a layer;\n[...] -> [...] chains different layers; '-> m' names the aggregator "
        "('-> rank by m': it ranks\nthe proposals instead of synthesizing); 'm alone' is one "
        "model with no proposers.",
        epilog=examples(
            "moa-search best studies/quickstart.yaml",
            "moa-search best studies/quickstart.yaml --json",
        ),
    )
    add_study_arguments(p)
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
        held = f" ({len(session.holdout_items)} held out)" if session.holdout_items else ""
        print(
            f"study '{spec.name}': {len(session.search_items)} prompts{held}, rungs "
            f"{list(session.rungs)}, judge {spec.judge.kind}, objectives "
            f"{', '.join(spec.objective_names)}",
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
        where = f"the {final.n_items} held-out" if final.holdout else f"all {final.n_items}"
        print(
            f"chosen: trial {final.trial} — win rate {wr.mean:.3f} "
            f"[{wr.ci_low:.3f}, {wr.ci_high:.3f}] on {where} prompts, "
            f"diversity {m.diversity:.3f}, {m.tokens:.0f} tokens/prompt, "
            f"${m.cost_usd:.6f}/prompt",
        )
        verdict = session.verdict()
        if verdict is not None:
            print("\n".join(_verdict_lines(verdict)))
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

    if not study_exists(args):  # a spec never searched: said so, and nothing created
        return 1
    session = open_session(args, read_only=True)
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
        verdict = session.verdict() if session.holdout_items else None
        missing = (
            f"no held-out verdict yet: run 'moa-search search {args.spec}' (it resumes the study "
            "and judges the chosen mixture and the baselines on the held-out prompts)"
        )
        if args.json:
            if not rows:  # nothing to report is exit 1 with or without --json
                print(json.dumps({"error": "no complete trials yet"}))
                return 1
            if not session.holdout_items:  # nothing held out: the Pareto front, as always
                print(json.dumps(rows, indent=2))
                return 0
            if verdict is None:
                print(missing, file=sys.stderr)
                return 1
            print(json.dumps(verdict.summary(), indent=2))
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
        if verdict is not None:
            print()
            print("\n".join(_verdict_lines(verdict)))
        elif session.holdout_items:
            print(missing)
        return 0
    finally:
        session.close()


def _verdict_lines(v: HoldoutVerdict) -> list[str]:
    from moa_search.search.verdict import conclusion

    """The held-out verdict as a table, and what it means in words."""
    lines = [
        f"held-out verdict: {v.n_holdout} prompts the search never saw ({v.n_search} searched); "
        "diff = entry minus chosen, paired on the same prompts (normal 95% CI)",
        f"  {'':<15} {'win rate':>8} {'95% CI':^14}  {'diff':>7} {'95% CI':^16}  "
        f"{'calls':>5} {'$/prompt':>10}  mixture",
    ]
    for name, e in [("chosen", v.chosen), *v.baselines.items()]:
        wr, d = e.win_rate, e.diff_vs_chosen
        diff = f"{d.mean:>+7.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]" if d else f"{'-':>7} {'':16}"
        lines.append(
            f"  {name:<15} {wr.mean:>8.3f} [{wr.ci_low:.3f}, {wr.ci_high:.3f}]  {diff}  "
            f"{e.calls_per_prompt:>5} {e.cost_per_prompt:>10.6f}  {e.mixture}"
        )
    lines.append(conclusion(v))
    return lines
