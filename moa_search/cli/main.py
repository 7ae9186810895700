"""The ``moa-search`` command line.

Exit codes: 0 success; 1 a run failed on the model side (quorum lost, aggregator failed);
2 bad input — a file, flag or dataset — reported as one paragraph, never a traceback;
130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from moa_search.config import Pool
from moa_search.errors import ConfigError, MoaSearchError

__all__ = ["main"]

log = logging.getLogger("moa_search.cli.main")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one paragraph and exit code 2, like every bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help').\n")


def _add_run(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="run a mixture on one prompt, streaming the answer")
    p.add_argument("mixture", help="mixture file (YAML or JSON)")
    p.add_argument("prompt", help="the prompt; '-' reads it from standard input")
    p.add_argument(
        "--pool", help="pool file (default: the mixture's own pool, else the local pool)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object: answer and trace")
    p.add_argument(
        "--cache",
        default=None,
        help="response cache: a file path, 'memory' or 'none' (default: the state dir's cache)",
    )
    p.set_defaults(func=_cmd_run)


def _add_local(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("local", help="start, stop or inspect the offline local model pool")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--port", type=int, default=None, help="port for 'up' (default: a free one)")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=_cmd_local)


def _add_study_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("search", help="run (or resume) the study a spec describes")
    p.add_argument("spec", help="study spec file (YAML or JSON)")
    p.add_argument("--n-trials", type=_positive_int, help="total trials (overrides the budget)")
    p.add_argument("--storage", help="Optuna storage URL (default: SQLite beside the results)")
    p.add_argument("--timeout", type=_positive_float, help="stop starting trials after S seconds")
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


def _add_serve(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="serve mixtures as an OpenAI-compatible endpoint")
    p.add_argument(
        "mixtures",
        nargs="+",
        help="mixture files; each is served as the model named by its 'name' (else its file stem)",
    )
    p.add_argument(
        "--pool",
        help="pool file for every mixture (default: each mixture's own pool, else the local pool)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; 0.0.0.0 exposes the server)",
    )
    p.add_argument("--port", type=_port, default=8000, help="port to bind (default 8000)")
    p.add_argument(
        "--cache",
        default="none",
        help="response cache: a file path, 'memory' or 'none' (default: none)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=_positive_bytes,
        default=1_000_000,
        help="larger request bodies get a 413 (default 1000000)",
    )
    p.set_defaults(func=_cmd_serve)


def _add_archon(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("archon", help="convert between mixture files and Archon JSON configs")
    p.add_argument(
        "direction",
        choices=["import", "export"],
        help="import: Archon config -> mixture file; export: mixture -> Archon config",
    )
    p.add_argument("source", help="import: an Archon JSON config; export: a mixture file")
    p.add_argument(
        "--out",
        required=True,
        help="file to write: a mixture (YAML or JSON) or an Archon config (JSON)",
    )
    p.add_argument(
        "--pool",
        help="pool file that maps model names to aliases (default: the "
        "mixture's own pool, else the local pool)",
    )
    p.set_defaults(func=_cmd_archon)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {value}")
    return value


def _positive_bytes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of bytes, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of bytes, got {value}")
    return value


def _cmd_serve(args: argparse.Namespace) -> int:
    from moa_search.runtime.mixture import load_mixture_and_pool
    from moa_search.local import default_pool_path
    from moa_search.serve.app import serve

    for path in args.mixtures:  # bad files, unset key variables, dead endpoints: before binding
        mixture, pool = load_mixture_and_pool(path, args.pool)
        source, prefix = pool_source(mixture.pool, path, args.pool, default_pool_path())
        preflight(source, prefix, pool, mixture.models_used())
    print(
        f"serving {len(args.mixtures)} mixture(s) at http://{args.host}:{args.port}/v1 "
        "(Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    try:
        serve(
            args.mixtures,
            pool=args.pool,
            host=args.host,
            port=args.port,
            cache=args.cache,
            max_body_bytes=args.max_body_bytes,
            log_level="debug" if args.verbose else "info",
        )
    except KeyboardInterrupt:  # Ctrl-C is how a server stops; uvicorn has shut down cleanly
        return 0
    return 0


def _cmd_archon(args: argparse.Namespace) -> int:
    from moa_search.runtime.mixture import load_mixture_and_pool
    from moa_search.interop.archon import load_archon, save_archon
    from moa_search.config import load_pool, save_mixture
    from moa_search.local import default_pool_path

    if args.direction == "export":
        mixture, pool = load_mixture_and_pool(args.source, args.pool)
        save_archon(mixture, pool, args.out)
    else:
        pool_path = Path(args.pool) if args.pool else default_pool_path()
        if args.pool is None and not pool_path.exists():
            raise ConfigError(
                "--pool",
                "",
                "a pool file whose models the Archon config's model names map to (or the "
                f"local pool: start it with 'moa-search local up'; no pool file at {pool_path})",
            )
        mixture = load_archon(args.source, load_pool(pool_path))
        if args.pool is not None:  # so that 'moa-search run OUT' finds the pool again
            out_dir = Path(args.out).resolve().parent
            mixture = mixture.model_copy(
                update={"pool": os.path.relpath(pool_path.resolve(), out_dir)}
            )
        save_mixture(mixture, args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"expected a number from 1 to 100000, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value <= 30 * 86400:
        raise argparse.ArgumentTypeError(f"expected seconds in (0, 2592000], got {value}")
    return value


def _open_session(args: argparse.Namespace, *, cache: str | None = None):
    from moa_search.local import default_pool_path
    from moa_search.search.session import SearchSession

    return SearchSession(
        args.spec,
        storage=args.storage,
        cache=cache,
        default_pool_path=default_pool_path(),
    )


def _fmt_duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _cmd_search(args: argparse.Namespace) -> int:
    from moa_search.search.session import TrialReport

    session = _open_session(args, cache=args.cache)
    try:
        from moa_search.local import default_pool_path

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

        def progress(r: TrialReport) -> None:
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
                f"{_fmt_duration(r.elapsed_s)}",
                file=sys.stderr,
                flush=True,
            )

        session.optimize(n_trials=args.n_trials, timeout_s=args.timeout, on_trial=progress)
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

    session = _open_session(args)
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

    session = _open_session(args)
    try:
        study = session.study()
        front = pareto_front(study)
        chosen = choose_trial(study, session.spec)
        rows = []
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


def _add_analysis_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "winrate", help="AlpacaEval leaderboard metrics (and LC win rate) of recorded annotations"
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

    p = sub.add_parser("analyze", help="which models help in which role; does diversity matter")
    p.add_argument("spec", help="study spec file")
    p.add_argument("--storage", help="Optuna storage URL")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--n-boot", type=_positive_int, default=1000, help="bootstrap resamples (default 1000)"
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.set_defaults(func=_cmd_analyze)


def _json_safe(value: object) -> object:
    """NaN and infinities as null, so the output is strict JSON."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _cmd_winrate(args: argparse.Namespace) -> int:
    from moa_search.interop.alpaca import leaderboard

    rows = leaderboard(args.results, annotator=args.annotator, weights_path=args.weights)
    if args.json:
        print(json.dumps(_json_safe(rows), indent=2))
        return 0

    def key(item: tuple[str, dict]) -> float:  # type: ignore[type-arg]
        lc = item[1]["length_controlled_winrate"]
        return -(lc if lc is not None else item[1]["win_rate"])

    print(
        f"{'model':<32} {'LC win':>7} {'win':>6} {'± se':>5} {'discr.':>6} "
        f"{'wins':>5} {'losses':>6} {'draws':>5} {'n':>4}"
    )
    for model, r in sorted(rows.items(), key=key):
        lc = r["length_controlled_winrate"]
        print(
            f"{model:<32} {'-' if lc is None else f'{lc:.2f}':>7} {r['win_rate']:>6.2f} "
            f"{r['standard_error']:>5.2f} {r['discrete_win_rate']:>6.2f} {r['n_wins']:>5} "
            f"{r['n_wins_base']:>6} {r['n_draws']:>5} {r['n_total']:>4}"
        )
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from moa_search.analysis.roles import analyze, format_analysis

    session = _open_session(args)
    try:
        result = analyze(session.study(), n_boot=args.n_boot, seed=args.seed)
    finally:
        session.close()
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_analysis(result))
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("report", help="write a study's report: one self-contained HTML file")
    p.add_argument("spec", help="study spec file")
    p.add_argument("--storage", help="Optuna storage URL")
    p.add_argument("--out", required=True, help="HTML file to write")
    p.add_argument(
        "--n-boot",
        type=_positive_int,
        default=1000,
        help="bootstrap resamples of the role analysis (default 1000)",
    )
    p.add_argument("--seed", type=int, default=0, help="analysis and importance seed (default 0)")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from moa_search.report.build import write_report

    session = _open_session(args)
    try:
        path = write_report(session, args.out, n_boot=args.n_boot, seed=args.seed)
    finally:
        session.close()
    print(f"wrote {path}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="moa-search", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log more on stderr")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run(sub)
    _add_local(sub)
    _add_study_commands(sub)
    _add_serve(sub)
    _add_archon(sub)
    _add_analysis_commands(sub)
    _add_report(sub)
    return parser


def default_cache_path() -> Path:
    from moa_search.local import state_dir

    return state_dir() / "cache.sqlite"


def preflight(source: str, prefix: str, pool: Pool, aliases: Sequence[str]) -> None:
    """Fail early, as bad input, on what would fail every call: a model's API-key variable that
    is not set, or an endpoint that refuses connections (checked once per host and port)."""
    checked: set[tuple[str, int]] = set()
    for i, spec in enumerate(pool.models):
        if spec.alias not in aliases:
            continue
        if spec.api_key_env and not os.environ.get(spec.api_key_env):
            raise ConfigError(
                source,
                f"{prefix}models[{i}].api_key_env",
                f"the environment variable {spec.api_key_env} to hold the API key of model "
                f"'{spec.alias}', but it is not set",
            )
        if spec.replay:
            continue  # recorded answers: no endpoint to reach
        url = urlsplit(spec.base_url)
        host = url.hostname or ""
        port = url.port or (443 if url.scheme == "https" else 80)
        if (host, port) in checked:
            continue
        try:
            socket.create_connection((host, port), timeout=5).close()
        except OSError as exc:
            raise ConfigError(
                source,
                f"{prefix}models[{i}].base_url",
                f"an endpoint that accepts connections for model '{spec.alias}'",
                f"{spec.base_url} ({exc.strerror or type(exc).__name__})",
            ) from None
        checked.add((host, port))


def pool_source(
    declared: object, owner: str | Path, flag: str | None, default: Path
) -> tuple[str, str]:
    """Which file a pool came from, and the field prefix of its models there."""
    if flag is not None:
        return flag, ""
    if isinstance(declared, str):
        return str(Path(owner).parent / declared), ""
    if declared is not None:
        return str(owner), "pool."
    return str(default), ""


def _cmd_run(args: argparse.Namespace) -> int:
    from moa_search.runtime.cache import open_cache
    from moa_search.config import load_mixture, resolve_pool
    from moa_search.runtime.executor import Executor, ProgressEvent
    from moa_search.local import default_pool_path

    mixture = load_mixture(args.mixture)
    pool = resolve_pool(mixture, args.mixture, args.pool, default_pool_path())
    source, prefix = pool_source(mixture.pool, args.mixture, args.pool, default_pool_path())
    preflight(source, prefix, pool, mixture.models_used())
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise ConfigError("prompt", "", "a non-empty prompt")
    cache = open_cache(args.cache if args.cache is not None else default_cache_path())
    executor = Executor(pool, cache=cache)

    def progress(ev: ProgressEvent) -> None:
        if ev.kind == "layer_done":
            print(
                f"[layer {ev.layer + 1}/{ev.n_layers - 1}] {ev.answered}/{ev.total} proposers "
                f"answered ({ev.elapsed_s:.1f}s)",
                file=sys.stderr,
                flush=True,
            )
        else:
            print(
                f"[aggregator] {mixture.aggregator.model} ({ev.elapsed_s:.1f}s)",
                file=sys.stderr,
                flush=True,
            )

    async def main() -> int:
        try:
            stream = executor.astream(mixture, prompt, on_progress=progress)
            try:
                async for delta in stream:
                    if not args.json:
                        sys.stdout.write(delta)
                        sys.stdout.flush()
            except MoaSearchError as exc:
                trace = getattr(exc, "trace", None)
                if args.json and trace is not None:
                    print(json.dumps({"error": str(exc), "trace": trace.to_dict()}, indent=2))
                raise
            result = stream.result
            if args.json:
                print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
            else:
                sys.stdout.write("\n")
            t = result.trace
            print(
                f"[done] {t.latency_s:.2f}s, {len(t.calls)} calls ({t.cache_hits} cached), "
                f"{t.tokens_in}+{t.tokens_out} tokens, ${t.cost_usd:.6f}",
                file=sys.stderr,
            )
            return 0
        finally:
            await executor.aclose()
            if cache is not None:
                cache.close()

    return asyncio.run(main())


def _cmd_local(args: argparse.Namespace) -> int:
    from moa_search import local

    if args.action == "up":
        print("starting the local pool (llama.cpp server)...", file=sys.stderr, flush=True)
        status = local.up(port=args.port)
    elif args.action == "down":
        status = local.down()
    else:
        status = local.status()
    if args.json:
        print(json.dumps(status.to_dict()))
    elif status.running:
        for server in status.servers:
            print(f"running: {server.alias} at {server.base_url} (pid {server.pid})")
        print(f"pool file: {status.pool_path}")
    else:
        print("stopped" if args.action == "down" else "not running")
    return 0 if status.running or args.action == "down" else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``moa-search`` console script."""
    # The embedding model's weight-loading progress bar is noise on a CLI's stderr.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already reported in one paragraph
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"moa-search: {exc}", file=sys.stderr)
        return 2
    except MoaSearchError as exc:
        print(f"moa-search: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("moa-search: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
