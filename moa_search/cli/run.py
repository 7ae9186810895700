"""``moa-search run`` (one prompt, streamed) and ``moa-search serve`` (an OpenAI-compatible
endpoint).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING

from moa_search.cli._common import (
    color_enabled,
    default_cache_path,
    examples,
    pool_source,
    port_number,
    positive_bytes,
    preflight,
)
from moa_search.errors import ConfigError, MoaSearchError

if TYPE_CHECKING:
    from moa_search.cli._common import Subparsers
    from moa_search.runtime.executor import ProgressEvent

__all__ = ["add_run", "add_serve"]


def add_run(sub: Subparsers) -> None:
    what = "run a mixture on one prompt, streaming the answer"
    p = sub.add_parser(
        "run",
        help=what,
        description=f"{what[0].upper()}{what[1:]} to stdout; progress per layer goes to stderr.",
        epilog=examples(
            'moa-search run studies/local/mixture.yaml "What is the capital of France?"',
            'moa-search run studies/local/mixture.yaml --json "What is the capital of France?"',
            'echo "How do I boil an egg?" | moa-search run quickstart-mixture.yaml -',
        ),
    )
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


def add_serve(sub: Subparsers) -> None:
    what = "serve mixtures as an OpenAI-compatible endpoint"
    p = sub.add_parser(
        "serve",
        help=what,
        description=f"{what[0].upper()}{what[1:]} (POST /v1/chat/completions, GET /v1/models, "
        "GET /health). With MOA_SEARCH_API_KEY set, requests need 'Authorization: Bearer KEY'. "
        "The log is coloured only on a terminal, and never when NO_COLOR is set.",
        epilog=examples(
            "MOA_SEARCH_API_KEY=choose-a-key moa-search serve quickstart-mixture.yaml --port 8000",
            "moa-search serve studies/local/mixture.yaml --cache memory",
        ),
    )
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
    p.add_argument("--port", type=port_number, default=8000, help="port to bind (default 8000)")
    p.add_argument(
        "--cache",
        default="none",
        help="response cache: a file path, 'memory' or 'none' (default: none)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=positive_bytes,
        default=1_000_000,
        help="larger request bodies get a 413 (default 1000000)",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="without a key, a Host header accepted besides the bound address (repeatable; "
        "e.g. the name clients use for a server bound to 0.0.0.0)",
    )
    p.set_defaults(func=_cmd_serve)


def _cmd_run(args: argparse.Namespace) -> int:
    from moa_search.config import load_mixture, resolve_pool
    from moa_search.local import default_pool_path
    from moa_search.runtime.cache import open_cache
    from moa_search.runtime.executor import Executor

    mixture = load_mixture(args.mixture)
    pool = resolve_pool(mixture, args.mixture, args.pool, default_pool_path())
    source, prefix = pool_source(mixture.pool, args.mixture, args.pool, default_pool_path())
    preflight(source, prefix, pool, mixture.models_used())
    prompt = _stdin_prompt() if args.prompt == "-" else args.prompt
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


def _stdin_prompt() -> str:
    """The prompt from standard input, which must be UTF-8 text."""
    raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "standard input",
            "",
            "a UTF-8 prompt (the prompt argument is '-')",
            f"a byte that is not UTF-8 at offset {exc.start}",
        ) from None


def _cmd_serve(args: argparse.Namespace) -> int:
    from moa_search.local import default_pool_path
    from moa_search.runtime.mixture import load_mixture_and_pool
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
            allowed_hosts=tuple(args.allow_host),
            log_level="debug" if args.verbose else "info",
            use_colors=color_enabled(),
        )
    except KeyboardInterrupt:  # Ctrl-C is how a server stops; uvicorn has shut down cleanly
        return 0
    return 0
