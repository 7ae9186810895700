"""The ``moa-search`` command line.

Exit codes (also in every command's ``--help`` and the README): 0 success; 1 a run or search
failed on the model side (quorum lost, aggregator failed) or there is nothing to report (an
empty or never-run study); 2 bad input — a file, flag or dataset — reported as one paragraph,
never a traceback; 130 interrupted. Global options (``-v``) go before or after the command.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from moa_search._version import package_version
from moa_search.cli._common import EXIT_CODES, Parser
from moa_search.cli.archon import add_archon
from moa_search.cli.insight import add_analysis_commands, add_report
from moa_search.cli.local import add_local
from moa_search.cli.plan import add_plan
from moa_search.cli.run import add_run, add_serve
from moa_search.cli.study import add_study_commands
from moa_search.errors import ConfigError, MoaSearchError, NoVerdictError

__all__ = ["build_parser", "main"]

log = logging.getLogger("moa_search.cli.main")

#: The library names a value by what it is ("storage URL"); the CLI names it by the flag it came
#: from: source -> the flag's destination in the parsed arguments.
_FLAG_OF_SOURCE: dict[str, str] = {
    "storage URL": "storage",
    "trial": "trial",
    "cache location": "cache",
}


_DESCRIPTION = """\
Find the best Mixture-of-Agents (LLM proposers in layers, then an aggregator) for your task
with an Optuna study; then run it, serve it as an OpenAI-compatible API, or see why it wins."""

_EXAMPLES = """\
examples:
  moa-search local up                          # start the offline pool of two small models
  moa-search search studies/quickstart.yaml    # run (or resume) the study a spec describes
  moa-search best studies/quickstart.yaml      # its Pareto front; * marks the chosen mixture
  moa-search export studies/quickstart.yaml --out mixture.yaml && \\
    moa-search run mixture.yaml "How do I boil an egg?"

'moa-search COMMAND --help' shows a command's options and examples."""

_VERBOSE_HELP = "log more on stderr (before or after the command)"


class _Version(argparse.Action):
    """``--version``: the package metadata is read only when asked (it costs about 0.1 s)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(f"moa-search {package_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="moa-search", description=_DESCRIPTION, epilog=f"{_EXAMPLES}\n\n{EXIT_CODES}"
    )
    parser.add_argument(
        "-V",
        "--version",
        action=_Version,
        nargs=0,
        help="print 'moa-search VERSION' and exit",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help=_VERBOSE_HELP)
    sub = parser.add_subparsers(
        title="commands", dest="command", required=True, parser_class=Parser, metavar="COMMAND"
    )
    add_run(sub)
    add_local(sub)
    add_study_commands(sub)
    add_plan(sub)
    add_serve(sub)
    add_archon(sub)
    add_analysis_commands(sub)
    add_report(sub)
    for command in sub.choices.values():  # global options, accepted after the command too
        command.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE_HELP
        )
    return parser


def _as_typed(exc: ConfigError, args: argparse.Namespace) -> ConfigError:
    """The error naming the flag the user typed (``--storage``) where the library named the
    value (``storage URL``); unchanged when the command has no such flag."""
    dest = _FLAG_OF_SOURCE.get(exc.source)
    if dest is None or not hasattr(args, dest):
        return exc
    return exc.with_source(f"--{dest}")


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
        print(f"moa-search: {_as_typed(exc, args)}", file=sys.stderr)
        return 2
    except MoaSearchError as exc:
        if isinstance(exc, NoVerdictError) and getattr(args, "json", False):
            print(json.dumps({"error": str(exc)}))  # nothing to report: with --json, an object
        print(f"moa-search: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("moa-search: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
