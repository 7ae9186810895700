"""What the commands share: the parser class and its help layout, flag value types, the
pre-flight check of a pool, opening a study (and refusing to create one for a command that only
reads it), colour, formatting, and the search's progress display (:class:`SearchDisplay`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from moa_search.errors import ConfigError

if TYPE_CHECKING:
    from moa_search.config import Pool
    from moa_search.search.objective import PromptProgress
    from moa_search.search.progress import TrialReport
    from moa_search.search.session import SearchSession

__all__ = [
    "EXIT_CODES",
    "Parser",
    "SearchDisplay",
    "add_study_arguments",
    "color_enabled",
    "default_cache_path",
    "examples",
    "fmt_duration",
    "json_safe",
    "missing_study",
    "open_session",
    "pool_source",
    "port_number",
    "positive_bytes",
    "positive_float",
    "positive_int",
    "preflight",
    "study_exists",
    "trial_line",
]


#: Columns of a command's description in its help.
_HELP_WIDTH = 92

#: What the exit codes mean, for every command's help (and the README's table).
EXIT_CODES = """exit codes:
  0    success
  1    a run or search failed on the model side, or there is nothing to report: best or
       analyze on a study with no complete trial, best, analyze or report on a spec never
       searched (with --json: an object with an "error" key), local status with no pool
  2    bad input: a file, flag or dataset, reported as one paragraph
  130  interrupted (Ctrl-C); serve stopped by Ctrl-C or SIGTERM exits 0"""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one paragraph and exit code 2, like every bad input; the
    description and epilog (examples, exit codes) keep their line breaks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        if kwargs.get("description"):  # raw layout: fill each paragraph here, once
            kwargs["description"] = "\n\n".join(
                textwrap.fill(" ".join(par.split()), _HELP_WIDTH)
                for par in kwargs["description"].split("\n\n")
            )
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help').\n")


if TYPE_CHECKING:
    #: What ``add_subparsers`` returns; each command group adds its parsers to it.
    Subparsers = argparse._SubParsersAction[Parser]


def examples(*commands: str) -> str:
    """A command's help epilog: its ``examples:`` (real command lines), then the exit codes."""
    lines = "\n".join(f"  {c}" for c in commands)
    return f"examples:\n{lines}\n\n{EXIT_CODES}"


def color_enabled(stream: IO[str] | None = None) -> bool:
    """Whether output to ``stream`` (default: stdout) may use colour: not when ``NO_COLOR`` is
    set to anything non-empty (https://no-color.org), ``TERM`` is ``dumb``, or the stream is not
    a terminal."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    out = sys.stdout if stream is None else stream
    try:
        return out.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def _checked(
    parse: Callable[[str], float],
    what: str,
    ok: Callable[[float], bool],
    range_text: str,
) -> Callable[[str], Any]:
    """An argparse type: ``parse`` the text (else "expected {what}"), then check it is ``ok``
    (else "expected {range_text}")."""

    def check(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {range_text}, got {value}")
        return value

    return check


port_number = _checked(int, "a port number", lambda v: 0 <= v <= 65535, "a port from 0 to 65535")
positive_bytes = _checked(int, "a number of bytes", lambda v: v >= 1, "a positive number of bytes")
positive_int = _checked(
    int, "a whole number", lambda v: 1 <= v <= 100_000, "a number from 1 to 100000"
)
positive_float = _checked(
    float, "a number of seconds", lambda v: 0 < v <= 30 * 86400, "seconds in (0, 2592000]"
)


def add_study_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments every command reading a stored study takes: the spec and its storage."""
    p.add_argument("spec", help="study spec file")
    p.add_argument("--storage", help="Optuna storage URL")


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
        if spec.replay or spec.base_url is None:
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


def open_session(
    args: argparse.Namespace, *, cache: str | None = None, read_only: bool = False
) -> SearchSession:
    """The study of ``args.spec`` in ``args.storage`` (default: beside its results);
    ``read_only`` (after :func:`study_exists`) creates no results folder, cache or embeddings
    file."""
    from moa_search.local import default_pool_path
    from moa_search.search.session import SearchSession

    return SearchSession(
        args.spec,
        storage=args.storage,
        cache=cache,
        default_pool_path=default_pool_path(),
        read_only=read_only,
    )


def missing_study(args: argparse.Namespace) -> str | None:
    """Why ``args.spec``'s study cannot be read because it was never run, else None.

    Checked without creating anything — the storage (``args.storage``, default the SQLite file
    beside the study's results) must exist and hold a study of the spec's name — so that a
    command that only reads a study (``best``, ``analyze``, ``report``) leaves no storage, cache
    or embeddings file behind on a spec that was never searched.

    Raises:
        ConfigError: the spec is invalid, or the storage cannot be opened (source "storage
            URL").
    """
    import optuna
    from sqlalchemy.engine import make_url

    from moa_search.config import load_study_spec
    from moa_search.search.storage import results_dir, storage_error

    spec = load_study_spec(args.spec)
    hint = f"no study yet: run 'moa-search search {args.spec}' first"
    url: str | None = args.storage
    database: str | None = None
    if url is None:
        database = str(results_dir(args.spec, spec) / "study.db")
        url = f"sqlite:///{database}"
    elif url.startswith("sqlite:"):
        try:
            database = make_url(url).database or ""
        except Exception:  # noqa: BLE001 - a malformed URL is the flag's fault
            database = None
        else:
            database = database if database != ":memory:" else ""
    if database is not None and not (database and Path(database).is_file()):
        return f"{hint} (no storage file at {database or url})"
    try:
        names = optuna.study.get_all_study_names(storage=url)
    except Exception as exc:  # noqa: BLE001 - any storage failure is the URL's fault
        raise storage_error(url, exc) from None
    if spec.name not in names:
        return f"{hint} (the storage holds no study named '{spec.name}')"
    return None


def study_exists(args: argparse.Namespace) -> bool:
    """Whether ``args.spec``'s study was ever run; if not, say so (on stderr, or as a JSON
    object with an "error" key under ``--json``), having created nothing."""
    missing = missing_study(args)
    if missing is None:
        return True
    if getattr(args, "json", False):
        print(json.dumps({"error": missing}))
    else:
        print(f"moa-search: {missing}", file=sys.stderr)
    return False


def fmt_duration(seconds: float) -> str:
    """``42s``, ``3m05s`` (see :func:`moa_search.search.progress.fmt_duration`, which this
    leaves out of the command line's start-up imports)."""
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def json_safe(value: object) -> object:
    """NaN and infinities as null, so the output is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def trial_line(r: TrialReport, eta_s: float | None) -> str:
    """One line per finished trial: its state and win rate (or why it has none), the best so
    far, the trials counted against the target, the spend against the budget, the calls the
    cache saved, the time so far and the time left."""
    from moa_search.analysis.format import fmt_win_rate
    from moa_search.search.progress import fmt_duration, spend_text

    if r.state in ("complete", "pruned") and r.win_rate is not None:
        what = f"win {fmt_win_rate(r.win_rate)} on {r.n_items}"
    else:
        what = "-"
    best = (
        f"best #{r.best_number} {fmt_win_rate(r.best_win_rate)}"
        if r.best_number is not None and r.best_win_rate is not None
        else "best -"
    )
    saved = 1 - r.model_calls / r.calls_total if r.calls_total else 0.0
    eta = "ETA -" if eta_s is None else f"ETA {fmt_duration(eta_s)}"
    line = (
        f"[trial {r.number:>3} {r.state:<8}] {what:<16} | {best} | "
        f"{r.done}/{r.target} trials | spent "
        f"{spend_text(r.spent_usd, r.spent_tokens, r.max_usd, r.max_tokens)} | "
        f"calls {r.model_calls:,} of {r.calls_total:,} ({saved:.0%} cached) | "
        f"{fmt_duration(r.elapsed_s)}, {eta}"
    )
    if r.reason:
        line += f"\n    {r.state}: {r.reason}"
    return line


class SearchDisplay:
    """Search progress on stderr. On a terminal (with colour allowed): a tqdm bar of the counted
    trials with its ETA, the best so far and the spend against the budget, and a second bar for
    the running trial (prompts done / its rung); each finished trial is a line above them.
    Elsewhere (pipes, CI, ``NO_COLOR``, ``TERM=dumb``): plain lines only — one per finished
    trial (with its ETA and spend) and one per rung a trial completes."""

    def __init__(self, target: int, done: int, timeout_s: float | None) -> None:
        self.target, self.start_done, self.timeout_s = target, done, timeout_s
        self.start = time.perf_counter()
        self.fancy = color_enabled(sys.stderr)
        self.bar: Any = None
        self.inner: Any = None
        self.at: tuple[int, int] | None = None
        if self.fancy:
            from tqdm import tqdm

            self.bar = tqdm(
                total=target,
                initial=min(done, target),
                desc="trials",
                unit="trial",
                file=sys.stderr,
                dynamic_ncols=True,
                leave=True,
            )
            self.inner = tqdm(
                total=1,
                desc="waiting for a trial",
                unit="prompt",
                position=1,
                file=sys.stderr,
                dynamic_ncols=True,
                leave=False,
            )

    def _say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def prompt(self, p: PromptProgress) -> None:
        """After each prompt of a trial: the inner bar, or a line when a rung is done."""
        if self.inner is not None:
            if (p.trial, p.rung) != self.at:  # a new rung: the bar counts to its prompts
                self.at = (p.trial, p.rung)
                desc = f"trial {p.trial}: rung {p.rung}/{p.rungs}"
                self.inner.set_description_str(desc, refresh=False)
                self.inner.reset(total=p.target)
            self.inner.update(p.done - self.inner.n)
        elif p.done == p.target:
            self._say(f"  trial {p.trial}: {p.done} prompts judged (rung {p.rung} of {p.rungs})")

    def trial(self, r: TrialReport) -> None:
        """After each trial: its line, and the bar moved to the counted trials."""
        from moa_search.analysis.format import fmt_win_rate
        from moa_search.search.progress import eta_seconds, spend_text

        elapsed = time.perf_counter() - self.start
        eta = eta_seconds(
            elapsed_s=elapsed,
            done_now=r.done,
            done_at_start=self.start_done,
            target=r.target,
            timeout_s=self.timeout_s,
        )
        self._say(trial_line(r, eta))
        if self.bar is not None:
            self.bar.update(max(0, min(r.done, r.target) - self.bar.n))
            best = (
                f"#{r.best_number} {fmt_win_rate(r.best_win_rate)}"
                if r.best_number is not None
                else "-"
            )
            spend = spend_text(r.spent_usd, r.spent_tokens, r.max_usd, r.max_tokens)
            self.bar.set_postfix_str(f"best {best} | spent {spend}")

    def close(self) -> None:
        for bar in (self.inner, self.bar):
            if bar is not None:
                bar.close()
