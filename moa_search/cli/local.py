"""``moa-search local up|down|status``: the offline local model pool."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from moa_search.cli._common import examples

if TYPE_CHECKING:
    from moa_search.cli._common import Subparsers

__all__ = ["add_local"]


def add_local(sub: Subparsers) -> None:
    p = sub.add_parser(
        "local",
        help="start, stop or inspect the offline local model pool",
        description="Start, stop or inspect the offline local model pool: one llama.cpp server "
        "per model, and a pool file where 'run' and 'search' find it.",
        epilog=examples(
            "moa-search local up",
            "moa-search local status --json",
            "moa-search local down",
        ),
    )
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--port", type=int, default=None, help="port for 'up' (default: a free one)")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=_cmd_local)


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
