"""``moa-search plan``: before any call, the model calls, tokens, dollars and time a study's
budget implies (:func:`moa_search.search.plan.project`), with its assumptions; and the check
``search`` makes before it starts (:func:`refuse_over_budget`).

Nothing here writes: the response cache is opened read-only (an SQLite file that does not exist
is an empty cache, not a new file), and the study's storage is read only when it exists.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from moa_search.cli._common import examples, fmt_duration, json_safe, missing_study, positive_int
from moa_search.errors import ConfigError

if TYPE_CHECKING:
    import optuna

    from moa_search.cli._common import Subparsers
    from moa_search.runtime.cache import CachedAnswer
    from moa_search.search.plan import Inputs, Projection
    from moa_search.search.session import SearchSession

__all__ = ["add_plan", "read_inputs", "refuse_over_budget"]

#: Cached answers read to measure answer lengths (the most recent ones).
_CALIBRATION_ROWS = 5000


def add_plan(sub: Subparsers) -> None:
    p = sub.add_parser(
        "plan",
        help="project a study's calls, tokens, dollars and time before any call",
        description="Project what the study a spec describes will cost before making any "
        "call: model calls (new ones, and those the response cache already answers), tokens, "
        "dollars at the pool's prices and wall time, for the trials left and for the final "
        "evaluation (the held-out verdict and its baselines), beside what the study already "
        "spent and the spec's budget. The assumptions are printed with it. Nothing is written: "
        "the cache and the study's storage are only read. 'search' runs the same projection "
        "and refuses to start when it exceeds budget.max_usd or budget.max_tokens, unless "
        "given --yes.",
        epilog=examples(
            "moa-search plan studies/quickstart.yaml",
            "moa-search plan studies/quickstart.yaml --json",
            "moa-search plan studies/quickstart.yaml --answer-tokens 120 --tokens-per-s 20",
        ),
    )
    p.add_argument("spec", help="study spec file")
    p.add_argument("--storage", help="Optuna storage URL (default: SQLite beside the results)")
    p.add_argument("--cache", help="response cache location (default: the study's results)")
    p.add_argument("--n-trials", type=positive_int, help="total trials (overrides the budget)")
    p.add_argument(
        "--answer-tokens",
        type=positive_int,
        help="assume every answer is N tokens (default: the mean of the cached answers, "
        "else each call's max_tokens)",
    )
    p.add_argument(
        "--chars-per-token", type=_positive, help="characters per token (default: measured)"
    )
    p.add_argument("--tokens-per-s", type=_positive, help="a model's output speed (default: 50)")
    p.add_argument(
        "--first-token-s", type=_positive, help="a call's time to first token (default: 0.5)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_plan)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 1e9:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _cmd_plan(args: argparse.Namespace) -> int:
    from moa_search.search.plan import Assumptions, project

    given = {
        "answer_tokens": args.answer_tokens,
        "chars_per_token": args.chars_per_token,
        "tokens_per_s": args.tokens_per_s,
        "first_token_s": args.first_token_s,
    }
    assumptions = Assumptions(**{k: v for k, v in given.items() if v is not None})
    session = open_plan_session(args)
    try:
        with _CacheReader.open(args.cache, args.spec) as reader:
            projection = project(read_inputs(args, reader, session), assumptions)
    finally:
        session.close()
    if args.json:
        print(json.dumps(json_safe(projection.to_dict()), indent=2))
    else:
        print("\n".join(plan_lines(projection)))
    return 0


def plan_lines(p: Projection) -> list[str]:
    """The projection as a table, the budget, and the assumptions."""
    lines = [
        f"plan for study '{p.study}': {p.trials_planned} trials to run "
        f"({p.trials_done} done); nothing has been called",
        f"  {'phase':<18} {'calls':>8} {'cached':>8} {'tokens in':>11} {'tokens out':>11} "
        f"{'dollars':>11} {'time':>8}",
    ]
    for ph in (*p.phases, p.total):
        lines.append(
            f"  {ph.name:<18} {ph.calls:>8,.0f} {ph.cached:>8,.0f} {ph.tokens_in:>11,.0f} "
            f"{ph.tokens_out:>11,.0f} {ph.usd:>11.4f} {fmt_duration(ph.wall_s):>8}"
        )
    lines.append(
        f"  spent already: ${p.prior.usd:.4f}, {p.prior.tokens:,} tokens, {p.prior.calls:,} calls"
    )
    limits = [
        f"max_usd ${p.max_usd:g}" if p.max_usd is not None else None,
        f"max_tokens {p.max_tokens:,}" if p.max_tokens is not None else None,
        f"timeout_s {p.timeout_s:g}" if p.timeout_s is not None else None,
    ]
    named = [x for x in limits if x]
    lines.append("  budget: " + (", ".join(named) if named else "no dollar, token or time limit"))
    reasons = p.over_budget()
    if reasons:
        lines.extend(f"  OVER BUDGET: {r}" for r in reasons)
        lines.append("  'moa-search search' refuses to start unless given --yes")
    elif named:
        lines.append("  within budget")
    if p.timeout_s is not None and p.total.wall_s > p.timeout_s:
        lines.append(
            f"  the time limit ({fmt_duration(p.timeout_s)}) ends the study before the "
            f"projected {fmt_duration(p.total.wall_s)}: no call starts after it"
        )
    lines.append("assumptions:")
    lines.extend(f"  - {a}" for a in p.assumptions)
    return lines


@dataclass
class _CacheReader:
    """The response cache, read-only: an SQLite file opened with ``mode=ro`` if it exists."""

    conn: sqlite3.Connection | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    @contextlib.contextmanager
    def open(cls, location: str | None, spec_path: str) -> Iterator[_CacheReader]:
        reader = cls()
        if location is None:
            from moa_search.config import load_study_spec
            from moa_search.search.storage import results_dir

            spec = load_study_spec(spec_path)
            location = str(results_dir(spec_path, spec) / "cache.sqlite")
        text = location[len("sqlite:///") :] if location.startswith("sqlite:///") else location
        if text.lower() in {"none", "off", "", "memory"}:
            reader.notes.append(f"the response cache '{location}' starts empty")
        elif text.startswith(("redis://", "rediss://", "unix://")):
            reader.notes.append("a Redis cache is not read: every call is counted as new")
        elif not Path(text).is_file():
            reader.notes.append(f"no response cache at {text} yet: every call is new")
        else:
            try:
                reader.conn = sqlite3.connect(f"{Path(text).resolve().as_uri()}?mode=ro", uri=True)
                reader.conn.execute("SELECT key, value FROM responses LIMIT 1").fetchall()
            except sqlite3.Error as exc:
                raise ConfigError(
                    "--cache", "", "an SQLite response cache file", f"{text!r} ({exc})"
                ) from None
        try:
            yield reader
        finally:
            if reader.conn is not None:
                reader.conn.close()

    def lookup(self, key: str) -> CachedAnswer | None:
        from moa_search.runtime.cache import CachedAnswer

        if self.conn is None:
            return None
        row = self.conn.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return CachedAnswer.from_json(row[0]) if row else None

    def answers(self) -> tuple[tuple[CachedAnswer, ...], int]:
        """The most recent cached answers (to measure lengths) and how many there are."""
        from moa_search.runtime.cache import CachedAnswer

        if self.conn is None:
            return (), 0
        rows = self.conn.execute(
            "SELECT value FROM responses ORDER BY created DESC LIMIT ?", (_CALIBRATION_ROWS,)
        ).fetchall()
        count = int(self.conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
        found = (CachedAnswer.from_json(r[0]) for r in rows)
        return tuple(a for a in found if a.usable), count


def open_plan_session(args: argparse.Namespace) -> SearchSession:
    """The spec's study opened read-only: no results folder, cache or storage is created."""
    from moa_search.local import default_pool_path
    from moa_search.search.session import SearchSession

    return SearchSession(
        args.spec,
        storage=args.storage,
        cache="none",
        default_pool_path=default_pool_path(),
        read_only=True,
    )


def read_inputs(
    args: argparse.Namespace,
    reader: _CacheReader,
    session: SearchSession,
    study: optuna.Study | None = None,
) -> Inputs:
    """What the projection needs, read without writing: the session's spec, pool, prompts and
    rungs, the cache (through ``reader``), and the study (``study``, else the stored one when
    it exists)."""
    import optuna

    from moa_search.runtime.budget import Spend
    from moa_search.search.plan import Inputs
    from moa_search.search.records import (
        FinalEvaluation,
        HoldoutVerdict,
        StudyTotals,
        TrialRecord,
    )
    from moa_search.search.spend import study_spend

    if study is None and missing_study(args) is None:
        study = optuna.load_study(study_name=session.spec.name, storage=session.storage_url)
    done, prior, final_done = 0, Spend(), False
    records: tuple[TrialRecord, ...] = ()
    if study is not None:
        records = tuple(TrialRecord.all(study))
        done = StudyTotals.of(records).trials
        prior = study_spend(study)
        final_done = (
            HoldoutVerdict.load(study) is not None or FinalEvaluation.load(study) is not None
        )
    answers, entries = reader.answers()
    return Inputs(
        spec=session.spec,
        pool=session.pool,
        search=session.search_items,
        holdout=session.holdout_items,
        rungs=session.rungs,
        lookup=reader.lookup,
        cached_answers=answers,
        cache_entries=entries,
        trials_done=done,
        prior=prior,
        final_done=final_done,
        incumbent=session.incumbent,
        n_trials=getattr(args, "n_trials", None),
        notes=tuple(reader.notes),
        records=records,
    )


def refuse_over_budget(session: SearchSession, args: argparse.Namespace) -> None:
    """Before ``search`` spends: when the spec sets budget.max_usd or budget.max_tokens and the
    projection exceeds it, refuse (bad input, one paragraph) unless ``args.yes``."""
    from moa_search.search.plan import project

    b = session.spec.budget
    if getattr(args, "yes", False) or (b.max_usd is None and b.max_tokens is None):
        return
    location = str(getattr(session.cache, "path", "none"))
    with _CacheReader.open(location, args.spec) as reader:
        projection = project(read_inputs(args, reader, session, session.study()))
    reasons = projection.over_budget()
    if not reasons:
        return
    over_usd = b.max_usd is not None and "max_usd" in reasons[0]
    raise ConfigError(
        args.spec,
        "budget.max_usd" if over_usd else "budget.max_tokens",
        "a budget that covers the study's projected spend",
        f"{'; '.join(reasons)} (see 'moa-search plan {args.spec}' for the projection and its "
        "assumptions); raise the budget, lower budget.n_trials or the rungs, or pass --yes to "
        "search anyway: the budget still stops every model call once it is spent",
    )
