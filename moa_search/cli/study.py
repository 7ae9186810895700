"""``moa-search search`` (run or resume a study), ``export`` (write a trial's mixture) and
``best`` (the Pareto front).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from moa_search.cli._common import (
    SearchDisplay,
    add_study_arguments,
    examples,
    json_safe,
    open_session,
    pool_source,
    positive_float,
    positive_int,
    preflight,
    study_exists,
)
from moa_search.cli.plan import refuse_over_budget

if TYPE_CHECKING:
    from moa_search.cli._common import Subparsers
    from moa_search.search.records import FinalEvaluation, HoldoutVerdict, StudyTotals
    from moa_search.search.session import SearchSession

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
            "moa-search search studies/quickstart.yaml --json",
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
    p.add_argument(
        "--yes",
        action="store_true",
        help="search even when the projected spend exceeds budget.max_usd or max_tokens",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object at the end (study, trials, chosen, verdict, totals, why it "
        "stopped) and nothing else on stdout; progress stays on stderr",
    )
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


def _cmd_search(args: argparse.Namespace) -> int:
    from moa_search.analysis.format import fmt_interval, fmt_win_rate
    from moa_search.local import default_pool_path
    from moa_search.search.choose import require_verdict
    from moa_search.search.progress import budget_reached, stop_reason

    session = open_session(args, cache=args.cache)
    try:
        source, prefix = pool_source(session.spec.pool, args.spec, None, default_pool_path())
        preflight(source, prefix, session.pool, session.pool.aliases)
        session.study()  # open the storage now: a bad --storage is bad input
        refuse_over_budget(session, args)  # the projection over budget: exit 2 unless --yes
        spec, b = session.spec, session.spec.budget
        target = args.n_trials if args.n_trials is not None else b.n_trials
        timeout = args.timeout if args.timeout is not None else b.timeout_s
        held = f" ({len(session.holdout_items)} held out)" if session.holdout_items else ""
        print(
            f"study '{spec.name}': {len(session.search_items)} prompts{held}, rungs "
            f"{list(session.rungs)}, judge {spec.judge.kind}, objectives "
            f"{', '.join(spec.objective_names)}",
            file=sys.stderr,
            flush=True,
        )
        before = session.totals()
        already = budget_reached(before, target=target, max_usd=b.max_usd, max_tokens=b.max_tokens)
        if already is not None:
            print(
                f"study '{spec.name}' is already complete ({already}); no trial run. Raise "
                "--n-trials (or the spec's budget) to search further.",
                file=sys.stderr,
                flush=True,
            )
        display = SearchDisplay(target, before.trials, timeout)
        session.evaluator.on_prompt = display.prompt
        try:
            session.optimize(n_trials=args.n_trials, timeout_s=args.timeout, on_trial=display.trial)
        finally:
            session.evaluator.on_prompt = None
            display.close()
        elapsed = time.perf_counter() - display.start
        totals = session.totals()
        stopped = already or stop_reason(
            totals,
            target=target,
            max_usd=b.max_usd,
            max_tokens=b.max_tokens,
            timed_out=timeout is not None and elapsed >= timeout,
        )
        meter = getattr(session, "budget", None)
        reached = meter.reached() if meter is not None and hasattr(meter, "reached") else None
        if reached is not None and already is None and totals.trials < target:
            stopped = f"the hard budget {reached[0]} is spent"
        if already is None:
            print(f"search stopped: {stopped}", file=sys.stderr, flush=True)
        final = session.finalize()
        require_verdict(session.study(), spec.name, final)  # no verdict without data: exit 1
        totals = session.totals()
        verdict = session.verdict() if final is not None else None
        if args.json:
            print(
                json.dumps(
                    json_safe(
                        _search_json(
                            session, totals, target, final, verdict, stopped, already is not None
                        )
                    ),
                    indent=2,
                )
            )
            return 0 if final is not None else 1
        if final is None:
            print("no trial completed; nothing to choose", file=sys.stderr)
            return 1
        m = final.metrics
        wr = m.win_rate
        where = f"the {final.n_items} held-out" if final.holdout else f"all {final.n_items}"
        print(
            f"chosen: trial {final.trial} — win rate {fmt_win_rate(wr.mean)} "
            f"{fmt_interval(wr.ci_low, wr.ci_high)} on {where} prompts, "
            f"diversity {m.diversity:.3f}, {m.tokens:.0f} tokens/prompt, "
            f"${m.cost_usd:.6f}/prompt",
        )
        if verdict is not None:
            print("\n".join(_verdict_lines(verdict)))
        print(
            f"model calls made: {totals.model_calls:,} of {totals.calls_total:,} that a "
            f"cache-less search would have made; spent ${totals.spent_usd:.4f}, "
            f"{totals.spent_tokens:,} tokens",
        )
        if verdict is not None and final is not None:
            print(verdict_spend_line(verdict, final.model_calls, totals.model_calls))
        print(f"export it with: moa-search export {args.spec} --out mixture.yaml")
        return 0
    finally:
        session.close()


def _search_json(
    session: SearchSession,
    totals: StudyTotals,
    target: int,
    final: FinalEvaluation | None,
    verdict: HoldoutVerdict | None,
    stopped: str,
    already: bool,
) -> dict[str, Any]:
    """What ``search --json`` prints: one object (see the README)."""
    from moa_search.search.progress import trial_state
    from moa_search.search.records import TrialRecord
    from moa_search.search.storage import redact_url

    spec, b = session.spec, session.spec.budget
    states: dict[str, int] = {}
    for r in TrialRecord.all(session.study()):
        states[trial_state(r)] = states.get(trial_state(r), 0) + 1
    chosen: dict[str, Any] | None = None
    if final is not None:
        record = session.trial(final.trial)
        m = final.metrics
        chosen = {
            "trial": final.trial,
            "mixture": record.mixture,
            "win_rate": m.win_rate.mean,
            "ci_low": m.win_rate.ci_low,
            "ci_high": m.win_rate.ci_high,
            "n_items": final.n_items,
            "holdout": final.holdout,
            "diversity": m.diversity,
            "tokens": m.tokens,
            "cost_usd": m.cost_usd,
        }
    out: dict[str, Any] = {
        "study": {
            "name": spec.name,
            "storage": redact_url(session.storage_url),
            "prompts": {"search": len(session.search_items), "holdout": len(session.holdout_items)},
            "rungs": list(session.rungs),
            "judge": spec.judge.kind,
            "objectives": list(spec.objective_names),
        },
        "trials": {
            "counted": totals.trials,
            "target": target,
            "started": totals.started,
            "states": dict(sorted(states.items())),
        },
        "chosen": chosen,
        "verdict": verdict.summary() if verdict is not None else None,
        "totals": totals.to_dict(),
        "budget": {
            "n_trials": target,
            "max_usd": b.max_usd,
            "max_tokens": b.max_tokens,
            "timeout_s": b.timeout_s,
        },
        "stopped_because": stopped,
        "already_complete": already,
    }
    if final is None:
        out["error"] = "no trial completed; nothing to choose"
    return out


def _cmd_export(args: argparse.Namespace) -> int:
    from moa_search.search.export import export_trial, exportable_trial

    session = open_session(args)
    try:
        trial = exportable_trial(session, args.trial)  # never one that measured nothing
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
    from moa_search.analysis.format import fmt_interval, fmt_win_rate
    from moa_search.search.choose import choose_trial, pareto_front, require_stored_verdict

    if not study_exists(args):  # a spec never searched: said so, and nothing created
        return 1
    session = open_session(args, read_only=True)
    try:
        study = session.study()
        require_stored_verdict(study, session.spec)  # no verdict without data: exit 1
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
                f"{'*' if r['chosen'] else ' '} {r['trial']:>5}  {fmt_win_rate(r['win_rate']):>8} "
                f"{fmt_interval(r['ci_low'], r['ci_high'])}  {r['diversity']:>7.3f} "
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
    """The held-out verdict as a table, and what it means in words."""
    from moa_search.analysis.format import fmt_interval, fmt_win_rate
    from moa_search.search.verdict import conclusion

    lines = [
        f"held-out verdict: {v.n_holdout} prompts the search never saw ({v.n_search} searched); "
        "diff = entry minus chosen, paired on the same prompts (normal 95% CI)",
        f"  {'':<15} {'win rate':>8} {'95% CI':^14}  {'diff':>7} {'95% CI':^16}  "
        f"{'calls':>5} {'$/prompt':>10}  mixture",
    ]
    for name, e in [("chosen", v.chosen), *v.baselines.items()]:
        wr, d = e.win_rate, e.diff_vs_chosen
        diff = f"{'-':>7} {'':16}"
        if d:
            diff = f"{fmt_win_rate(d.mean, signed=True):>7} "
            diff += fmt_interval(d.ci_low, d.ci_high, signed=True)
        interval = fmt_interval(wr.ci_low, wr.ci_high)
        lines.append(
            f"  {name:<15} {fmt_win_rate(wr.mean):>8} {interval}  {diff}  "
            f"{e.calls_per_prompt:>5} {e.cost_per_prompt:>10.6f}  {e.mixture}"
        )
    lines.append(conclusion(v))
    return lines


def verdict_spend_line(verdict: HoldoutVerdict, chosen_calls: int, search_calls: int) -> str:
    """What the held-out verdict cost, against the search: its model calls for the chosen
    mixture (with the judge's reference answers) and for the baselines."""
    baselines = max(0, verdict.model_calls - chosen_calls)

    def share(n: int) -> str:
        return f"{100 * n / search_calls:.0f}% of the search's" if search_calls else "no search"

    return (
        f"held-out verdict: {verdict.model_calls:,} more model calls ({share(verdict.model_calls)})"
        f": {chosen_calls:,} for the chosen mixture, {baselines:,} for the baselines "
        f"({share(baselines)})"
    )
