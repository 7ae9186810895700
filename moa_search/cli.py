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
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from moa_search.errors import ConfigError, MoaSearchError

__all__ = ["main"]

log = logging.getLogger("moa_search.cli")


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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="moa-search", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log more on stderr")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run(sub)
    _add_local(sub)
    return parser


def default_cache_path() -> Path:
    from moa_search.local import state_dir

    return state_dir() / "cache.sqlite"


def check_api_keys(pool_source: str, pool: object, aliases: Sequence[str]) -> None:
    """Fail early, as bad input, when a model's API-key variable is not set."""
    from moa_search.config import Pool

    assert isinstance(pool, Pool)
    for i, spec in enumerate(pool.models):
        if spec.alias in aliases and spec.api_key_env and not os.environ.get(spec.api_key_env):
            raise ConfigError(
                pool_source,
                f"models[{i}].api_key_env",
                f"the environment variable {spec.api_key_env} to hold the API key of model "
                f"'{spec.alias}', but it is not set",
            )


def _cmd_run(args: argparse.Namespace) -> int:
    from moa_search.cache import open_cache
    from moa_search.config import load_mixture, resolve_pool
    from moa_search.executor import Executor, ProgressEvent
    from moa_search.local import default_pool_path

    mixture = load_mixture(args.mixture)
    pool = resolve_pool(mixture, args.mixture, args.pool, default_pool_path())
    check_api_keys(args.pool or args.mixture, pool, mixture.models_used())
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
        print(
            json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in vars(status).items()})
        )
    elif status.running:
        print(f"running: {status.base_url} (pid {status.pid}); pool file {status.pool_path}")
    else:
        print("not running")
    return 0 if status.running or args.action == "down" else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``moa-search`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
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
