"""``moa-search winrate`` (AlpacaEval leaderboard metrics), ``analyze`` (which models help in
which role) and ``report`` (a study's HTML report).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from moa_search.cli._common import (
    add_study_arguments,
    examples,
    json_safe,
    open_session,
    positive_int,
    study_exists,
)

if TYPE_CHECKING:
    from moa_search.cli._common import Subparsers

__all__ = ["add_analysis_commands", "add_attribution_command", "add_report"]


def add_analysis_commands(sub: Subparsers) -> None:
    what = "AlpacaEval leaderboard metrics (and LC win rate) of recorded annotations"
    p = sub.add_parser(
        "winrate",
        help=what,
        description=f"{what}, computed as the published leaderboard does.",
        epilog=examples(
            "moa-search winrate ../shared/data/alpaca_eval",
            "moa-search winrate ../shared/data/alpaca_eval --json",
        ),
    )
    p.add_argument(
        "results",
        help="AlpacaEval results: a folder holding results/<model>/<annotator>/annotations.json "
        "(or that results/ folder itself)",
    )
    p.add_argument(
        "--annotator",
        default="weighted_alpaca_eval_gpt4_turbo",
        help="annotator folder name (default: weighted_alpaca_eval_gpt4_turbo)",
    )
    p.add_argument(
        "--weights",
        help="length-control GLM weights CSV (default: "
        "length_controlled_v1_weights_baseline_gpt4_1106_preview.csv in RESULTS, if there)",
    )
    p.add_argument("--json", action="store_true", help="print JSON keyed by model")
    p.set_defaults(func=_cmd_winrate)

    p = sub.add_parser(
        "analyze",
        help="which models help in which role; does diversity matter",
        description="Which models help as proposers (per layer) and as the aggregator, with "
        "bootstrap intervals, and whether diversity explains win rate beyond the models used. "
        "Reads the study only: nothing is evaluated and no file is written.",
        epilog=examples(
            "moa-search analyze studies/quickstart.yaml",
            "moa-search analyze studies/alpacaeval_replay.yaml --json",
        ),
    )
    add_study_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--n-boot", type=positive_int, default=1000, help="bootstrap resamples (default 1000)"
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument(
        "--cache",
        help="the response cache the study was searched with, read-only, for which proposers "
        "the chosen mixture's aggregator uses (default: the study's cache file)",
    )
    p.set_defaults(func=_cmd_analyze)
    add_attribution_command(sub)


def add_attribution_command(sub: Subparsers) -> None:
    what = "which proposers a recorded mixture's aggregator draws on (AlpacaEval outputs)"
    p = sub.add_parser(
        "attribution",
        help=what,
        description=f"{what}: per proposer, the share of the mixture's final answers copied "
        "from its recorded answers, with an interval. No model is called.",
        epilog=examples(
            "moa-search attribution ../shared/data/alpaca_eval",
            "moa-search attribution ../shared/data/alpaca_eval --mixture Together-MoA-Lite "
            "--proposers Qwen1.5-72B-Chat,Meta-Llama-3-70B-Instruct --json",
        ),
    )
    p.add_argument("results", help="AlpacaEval results: a folder holding results/<model>/")
    p.add_argument(
        "--mixture",
        default="Together-MoA",
        help="the mixture's model folder (default: Together-MoA)",
    )
    p.add_argument(
        "--proposers",
        help="comma-separated proposer model folders (default: Together-MoA's five recorded "
        "proposers)",
    )
    p.add_argument(
        "--control",
        default="gpt4_1106_preview",
        help="a model folder the mixture never saw, attributed beside the proposers as the "
        "chance level (default: gpt4_1106_preview, AlpacaEval's reference; 'none' for none)",
    )
    p.add_argument("--limit", type=positive_int, help="only the first N instructions")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_attribution)


def _cmd_attribution(args: argparse.Namespace) -> int:
    from moa_search.analysis.attribution import format_attribution
    from moa_search.interop.alpaca.attribution import TOGETHER_MOA_PROPOSERS, recorded_attribution

    proposers = (
        [p.strip() for p in args.proposers.split(",") if p.strip()]
        if args.proposers is not None
        else list(TOGETHER_MOA_PROPOSERS)
    )
    control = None if args.control.lower() == "none" else args.control
    result = recorded_attribution(
        args.results, args.mixture, proposers, control=control, limit=args.limit
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_attribution(result))
    return 0


def add_report(sub: Subparsers) -> None:
    p = sub.add_parser(
        "report",
        help="write a study's report: one self-contained HTML file",
        description="Write a study's report: one self-contained HTML file. Reads the study "
        "only: nothing is evaluated, and no file but the report is written.",
        epilog=examples(
            "moa-search report studies/quickstart.yaml --out quickstart-report.html",
            "moa-search report studies/alpacaeval_replay.yaml --out replay.html --n-boot 200",
        ),
    )
    add_study_arguments(p)
    p.add_argument("--out", required=True, help="HTML file to write")
    p.add_argument(
        "--n-boot",
        type=positive_int,
        default=1000,
        help="bootstrap resamples of the role analysis (default 1000)",
    )
    p.add_argument("--seed", type=int, default=0, help="analysis and importance seed (default 0)")
    p.add_argument(
        "--cache",
        help="the response cache the study was searched with, read-only, for which proposers "
        "the chosen mixture's aggregator uses (default: the study's cache file)",
    )
    p.set_defaults(func=_cmd_report)


def _cmd_winrate(args: argparse.Namespace) -> int:
    from moa_search.interop.alpaca import leaderboard

    rows = leaderboard(args.results, annotator=args.annotator, weights_path=args.weights)
    if args.json:
        print(json.dumps(json_safe(rows), indent=2))
        return 0

    def key(item: tuple[str, dict[str, Any]]) -> float:
        lc = item[1]["length_controlled_winrate"]
        return -(lc if lc is not None else item[1]["win_rate"])

    from moa_search.analysis.format import fmt_win_rate

    def frac(v: float | None) -> str:  # the leaderboard's percent, printed as everywhere else
        return fmt_win_rate(None if v is None else v / 100)

    print("win rates as fractions (0 to 1), as everywhere in moa-search; --json keeps the")
    print("leaderboard's own numbers (percent)")
    print(
        f"{'model':<32} {'LC win':>7} {'win':>6} {'± se':>6} {'discr.':>6} "
        f"{'wins':>5} {'losses':>6} {'draws':>5} {'n':>4}"
    )
    for model, r in sorted(rows.items(), key=key):
        print(
            f"{model:<32} {frac(r['length_controlled_winrate']):>7} {frac(r['win_rate']):>6} "
            f"{frac(r['standard_error']):>6} {frac(r['discrete_win_rate']):>6} {r['n_wins']:>5} "
            f"{r['n_wins_base']:>6} {r['n_draws']:>5} {r['n_total']:>4}"
        )
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from moa_search.analysis import analyze, format_analysis
    from moa_search.errors import AnalysisError

    if not study_exists(args):  # a spec never searched: said so, and nothing created
        return 1
    from moa_search.analysis.attribution import format_attribution
    from moa_search.analysis.attribution_replay import study_attribution
    from moa_search.analysis.format import format_importances
    from moa_search.analysis.importance import importance_vs_roles, param_importances

    session = open_session(args, read_only=True)
    try:
        result = analyze(session.study(), n_boot=args.n_boot, seed=args.seed)
        attribution = study_attribution(session, cache=args.cache)
        importances = param_importances(session.study(), args.seed)  # fANOVA, as the report
    except AnalysisError as exc:  # too few trials: nothing to report, in JSON too
        if not args.json:
            raise
        print(json.dumps({"error": str(exc)}))
        return 1
    finally:
        session.close()
    if args.json:
        why = importance_vs_roles(importances, result.roles)
        imp = {**importances.to_dict(), "explanation": why}
        out = {**result.to_dict(), "attribution": attribution.to_dict(), "importance": imp}
        print(json.dumps(out, indent=2))
    else:
        print(format_analysis(result) + "\n\n" + format_attribution(attribution))
        print("\n" + format_importances(importances, result.roles))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from moa_search.report import write_report

    if not study_exists(args):  # a spec never searched: said so, and nothing created
        return 1
    session = open_session(args, read_only=True)
    try:
        path = write_report(session, args.out, n_boot=args.n_boot, seed=args.seed, cache=args.cache)
    finally:
        session.close()
    print(f"wrote {path}", file=sys.stderr)
    return 0
