"""The command line of the fake server, for benchmarks and tests in other processes::

    python -m moa_search.testing.fake_openai --port 8011 --behaviors behaviors.json

where the JSON object maps a model name to :class:`ModelBehavior` fields (``answer`` as a
string only); the key ``"*"`` sets the behavior of models not named. It prints
``listening on http://HOST:PORT/v1`` once listening and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import signal
import sys
from collections.abc import Sequence

from moa_search.testing.fake_openai.faults import ModelBehavior
from moa_search.testing.fake_openai.server import FakeOpenAIServer

__all__ = ["main"]


def _load_behaviors(path: str) -> tuple[dict[str, ModelBehavior], ModelBehavior]:
    """Parse a behaviors JSON file: ``{model: {field: value}}``; key ``"*"`` is the default."""
    with open(path, encoding="utf-8") as handle:
        raw = json.load(handle)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object mapping model names to behaviors")
    known = {f.name for f in dataclasses.fields(ModelBehavior)}
    behaviors: dict[str, ModelBehavior] = {}
    default = ModelBehavior()
    for name, fields in raw.items():
        if not isinstance(fields, dict):
            raise ValueError(f"{path}: behavior of {name!r} must be a JSON object")
        unknown = set(fields) - known
        if unknown:
            raise ValueError(f"{path}: unknown fields for {name!r}: {sorted(unknown)}")
        if "answer" in fields and not isinstance(fields["answer"], str | None):
            raise ValueError(f"{path}: 'answer' of {name!r} must be a string")
        behavior = ModelBehavior(**fields)
        if name == "*":
            default = behavior
        else:
            behaviors[name] = behavior
    return behaviors, default


async def _serve(server: FakeOpenAIServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.astart()
    print(f"listening on {server.base_url}", flush=True)  # noqa: T201 - the CLI contract
    try:
        await stop.wait()
    finally:
        await server.astop()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: serve until SIGTERM or SIGINT; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m moa_search.testing.fake_openai",
        description="Fake OpenAI-compatible server with latency and fault injection.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: any free port)")
    parser.add_argument(
        "--behaviors",
        metavar="FILE.json",
        help='JSON object: model name -> ModelBehavior fields; key "*" for other models',
    )
    parser.add_argument("--require-api-key", default=None, help="reject other bearer tokens")
    parser.add_argument("--log-level", default="WARNING", help="logging level (to stderr)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    behaviors: dict[str, ModelBehavior] = {}
    default = ModelBehavior()
    if args.behaviors:
        try:
            behaviors, default = _load_behaviors(args.behaviors)
        except (OSError, ValueError, TypeError) as exc:
            parser.error(str(exc))
    server = FakeOpenAIServer(
        behaviors,
        default=default,
        host=args.host,
        port=args.port,
        require_api_key=args.require_api_key,
    )
    asyncio.run(_serve(server))
    return 0
