"""``moa-search archon import|export``: mixture files to and from Archon JSON configs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from moa_search.cli._common import examples
from moa_search.errors import ConfigError

if TYPE_CHECKING:
    from moa_search.cli._common import Subparsers

__all__ = ["add_archon"]


def add_archon(sub: Subparsers) -> None:
    what = "convert between mixture files and Archon JSON configs"
    p = sub.add_parser(
        "archon",
        help=what,
        description=f"{what[0].upper()}{what[1:]} (generators and fusers; a final top-1 ranker "
        "maps to 'aggregation: rank').",
        epilog=examples(
            "moa-search archon export quickstart-mixture.yaml --out archon.json",
            "moa-search archon import archon.json --pool pool.yaml --out mixture.yaml",
        ),
    )
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


def _cmd_archon(args: argparse.Namespace) -> int:
    from moa_search.config import load_pool, save_mixture
    from moa_search.interop.archon import load_archon, save_archon
    from moa_search.local import default_pool_path
    from moa_search.runtime.mixture import load_mixture_and_pool

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
