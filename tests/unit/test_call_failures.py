"""Never silently wrong (issue 12, the runtime): every call's finish reason is in the trace; an
empty answer (``content: null`` with ``finish_reason: content_filter``, ``""``, only whitespace)
is a typed ``empty_response`` failure that counts against the quorum and is never cached;
error messages state the attempts really made; nothing that failed is ever cached; and a cache
location that cannot be used is one paragraph naming it and what to do.

Against the real executor, the official openai client and the project's fault-injecting server.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from moa_search.config import AgentSpec, MixtureConfig, ModelSpec, Pool
from moa_search.errors import CacheError, ConfigError, ModelCallError, QuorumError
from moa_search.runtime import retry
from moa_search.runtime.cache import Cache, CachedAnswer, MemoryCache, SQLiteCache, open_cache
from moa_search.runtime.executor import Executor, RunResult
from moa_search.testing import FakeOpenAIServer, ModelBehavior

RETRIES = 2  # every failing call below makes RETRIES + 1 attempts


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    async def no_wait(delay_s: float) -> None:  # retries go at once: back-off is not tested here
        pass

    monkeypatch.setattr(retry, "wait", no_wait)
    with FakeOpenAIServer() as srv:
        yield srv


def pool_for(srv: FakeOpenAIServer, *aliases: str) -> Pool:
    return Pool(
        models=tuple(
            ModelSpec(alias=a, base_url=srv.base_url, model=a, timeout_s=10, max_retries=RETRIES)
            for a in aliases
        )
    )


def mixture(*proposers: str, aggregator: str = "agg", quorum: int = 1) -> MixtureConfig:
    layer = tuple(AgentSpec(model=p) for p in proposers)
    return MixtureConfig(layers=(layer,), aggregator=AgentSpec(model=aggregator), quorum=quorum)


def run(pool: Pool, m: MixtureConfig, prompt: str, cache: Cache | None = None) -> RunResult:
    return Executor(pool, cache=cache).run(m, prompt)


# ------------------------------------------------------------------------ finish reasons


@pytest.mark.parametrize(
    ("fault", "expected"),
    [("ok", "stop"), ("length", "length")],
)
def test_every_call_records_its_finish_reason_plain_and_streamed(
    server: FakeOpenAIServer, fault: str, expected: str
) -> None:
    server.set_behavior("p", ModelBehavior(faults=(fault,)))
    server.set_behavior("agg", ModelBehavior(faults=(fault,)))
    result = run(pool_for(server, "p", "agg"), mixture("p"), "why did you stop?")
    proposer, aggregator = result.trace.calls
    assert [r.stream for r in server.requests] == [False, True]  # plain, then streamed
    assert proposer.finish_reason == expected and aggregator.finish_reason == expected
    assert result.trace.finish_reason == expected
    assert result.trace.to_dict()["calls"][1]["finish_reason"] == expected


def test_a_cache_hit_reports_the_finish_reason_the_provider_gave(
    server: FakeOpenAIServer,
) -> None:
    server.set_behavior("agg", ModelBehavior(faults=("length",)))
    pool, m, cache = pool_for(server, "p", "agg"), mixture("p"), MemoryCache()
    run(pool, m, "cut me", cache)
    again = run(pool, m, "cut me", cache)
    assert again.trace.cache_hits == 2 and server.count() == 2
    assert again.trace.finish_reason == "length"
    assert [c.finish_reason for c in again.trace.calls] == ["stop", "length"]


def test_a_trace_without_an_aggregator_call_has_no_finish_reason() -> None:
    from moa_search.runtime.trace import Trace

    assert Trace().finish_reason is None


# ----------------------------------------------------------------------- empty answers

EMPTY = [
    # (behavior of the failing model, its finish reason, words of the error's detail)
    pytest.param(
        ModelBehavior(faults=("content_filter",) * 9), "content_filter", "filter", id="null"
    ),
    pytest.param(ModelBehavior(faults=("empty",) * 9), "stop", "no text", id="empty"),
    pytest.param(ModelBehavior(answer=" \n\t "), "stop", "no text", id="whitespace"),
]


@pytest.mark.parametrize(("behavior", "finish", "words"), EMPTY)
@pytest.mark.parametrize("role", ["proposer", "aggregator"])
def test_an_empty_answer_is_a_typed_failure_retried_up_to_max_retries_and_never_cached(
    server: FakeOpenAIServer,
    tmp_path: Path,
    behavior: ModelBehavior,
    finish: str,
    words: str,
    role: str,
) -> None:
    bad = "p" if role == "proposer" else "agg"
    server.set_behavior(bad, behavior)
    pool = pool_for(server, "p", "agg")
    cache = SQLiteCache(tmp_path / "c.sqlite")
    deltas: list[str] = []
    for _ in range(3):
        with pytest.raises((QuorumError, ModelCallError)) as info:

            async def stream() -> None:
                ex = Executor(pool, cache=cache)
                try:
                    async for delta in ex.astream(mixture("p"), "say nothing"):
                        deltas.append(delta)
                finally:
                    await ex.aclose()

            asyncio.run(stream())
        exc = info.value
        error = exc.failures[0] if isinstance(exc, QuorumError) else exc
        assert isinstance(error, ModelCallError)
        assert (error.kind, error.finish_reason, error.attempts) == (
            "empty_response",
            finish,
            RETRIES + 1,
        )
        assert words in error.detail and f"after {RETRIES + 1} attempt(s)" in str(exc)
        assert isinstance(exc, QuorumError | ModelCallError) and exc.trace is not None
        record = exc.trace.failures[0]
        assert (record.error, record.finish_reason, record.role) == ("empty_response", finish, role)
        assert record.attempts == RETRIES + 1 and not record.ok
    # three runs, three times the attempts upstream: nothing empty was served from the cache
    assert server.count(bad) == 3 * (RETRIES + 1)
    assert deltas == []  # not even whitespace was streamed to the caller
    # a later good answer is cached, and served from the cache after that
    server.set_behavior(bad, ModelBehavior())
    first = run(pool, mixture("p"), "say nothing", cache)
    assert first.answer.startswith("agg answer")
    again = run(pool, mixture("p"), "say nothing", cache)
    assert again.trace.cache_hits == 2 and again.answer == first.answer
    assert server.count(bad) == 3 * (RETRIES + 1) + 1


@pytest.mark.parametrize(
    ("quorum", "answers"),
    [(2, None), (1, 1)],  # quorum 2 of 2 fails; quorum 1 drops the empty proposer
)
def test_an_empty_proposer_counts_against_the_quorum(
    server: FakeOpenAIServer, quorum: int, answers: int | None
) -> None:
    server.set_behavior("mute", ModelBehavior(faults=("content_filter",) * 9))
    pool = pool_for(server, "mute", "p", "agg")
    m = mixture("mute", "p", quorum=quorum)
    if answers is None:
        with pytest.raises(QuorumError) as info:
            run(pool, m, "speak")
        assert (info.value.answered, info.value.required) == (1, 2)
        assert "empty_response" in str(info.value) and "content_filter" in str(info.value)
        return
    result = run(pool, m, "speak")
    assert len(result.layer_outputs[0]) == answers
    dropped = result.trace.failures
    assert [(c.model, c.error, c.finish_reason) for c in dropped] == [
        ("mute", "empty_response", "content_filter")
    ]


def test_a_cached_empty_answer_from_an_older_version_is_a_miss(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    pool, m, path = pool_for(server, "p", "agg"), mixture("p"), tmp_path / "c.sqlite"
    run(pool, m, "poisoned", SQLiteCache(path))
    with sqlite3.connect(path) as db:  # what the buggy version stored: empty answers
        db.execute("UPDATE responses SET value = ?", (CachedAnswer("", 3, 0).to_json(),))
    cache = SQLiteCache(path)
    result = run(pool, m, "poisoned", cache)
    assert result.trace.cache_hits == 0 and server.count() == 4
    assert result.answer.startswith("agg answer")
    assert run(pool, m, "poisoned", cache).trace.cache_hits == 2  # the good answers replaced them


# ------------------------------------------------------------------- attempts in messages

ATTEMPTS = [
    # (faults of the failing model, kind, attempts made)
    pytest.param(("500",) * 9, "server_error", RETRIES + 1, id="retried-500"),
    pytest.param(("malformed",) * 9, "malformed_response", RETRIES + 1, id="retried-malformed"),
    pytest.param(("500", "500", "content_filter"), "empty_response", 3, id="mixed"),
]


@pytest.mark.parametrize(("faults", "kind", "attempts"), ATTEMPTS)
@pytest.mark.parametrize("role", ["proposer", "aggregator"])
def test_an_error_message_states_the_attempts_really_made(
    server: FakeOpenAIServer, faults: tuple[str, ...], kind: str, attempts: int, role: str
) -> None:
    bad = "p" if role == "proposer" else "agg"
    server.set_behavior(bad, ModelBehavior(faults=faults))
    with pytest.raises((QuorumError, ModelCallError)) as info:
        run(pool_for(server, "p", "agg"), mixture("p"), "count")
    exc = info.value
    error = exc.failures[0] if isinstance(exc, QuorumError) else exc
    assert isinstance(error, ModelCallError)
    assert (error.kind, error.attempts) == (kind, attempts)
    assert f"after {attempts} attempt(s)" in str(error)
    assert f"after {attempts} attempt(s)" in str(exc)  # a quorum error quotes the same
    assert "after 1 attempt(s)" not in str(exc)
    assert server.count(bad) == attempts


def test_with_attempts_keeps_every_field() -> None:
    cause = ValueError("boom")
    error = ModelCallError("m", "empty_response", "d", status=200, finish_reason="length")
    error.__cause__ = cause
    later = error.with_attempts(4)
    assert (later.model, later.kind, later.detail, later.status) == (
        "m",
        "empty_response",
        "d",
        200,
    )
    assert (later.finish_reason, later.attempts, later.__cause__) == ("length", 4, cause)
    assert "after 4 attempt(s)" in str(later) and "after 1 attempt(s)" in str(error)


# --------------------------------------------------------------- failures are never cached

NEVER_CACHED = [
    # (model, behavior, quorum): one call of the mixture fails for good
    pytest.param("agg", ModelBehavior(faults=("500",) * 9), 2, id="streamed-aggregator"),
    pytest.param("agg", ModelBehavior(faults=("truncate",) * 9), 2, id="partial-stream"),
    pytest.param("agg", ModelBehavior(faults=("reset",) * 9), 2, id="reset-aggregator"),
    pytest.param("q", ModelBehavior(faults=("500",) * 9), 1, id="quorum-dropped-proposer"),
    pytest.param("q", ModelBehavior(faults=("truncate",) * 9), 1, id="truncated-proposer"),
]


@pytest.mark.parametrize(("bad", "behavior", "quorum"), NEVER_CACHED)
def test_nothing_that_failed_is_ever_cached(
    server: FakeOpenAIServer,
    tmp_path: Path,
    bad: str,
    behavior: ModelBehavior,
    quorum: int,
) -> None:
    server.set_behavior(bad, behavior)
    pool = pool_for(server, "p", "q", "agg")
    m = mixture("p", "q", quorum=quorum)
    cache = SQLiteCache(tmp_path / "c.sqlite")
    for _ in range(2):
        try:
            trace = run(pool, m, "fail me", cache).trace
        except ModelCallError as exc:
            assert exc.trace is not None
            trace = exc.trace
        failed = [c for c in trace.failures if c.model == bad]
        assert len(failed) == 1 and failed[0].attempts == RETRIES + 1
        assert not failed[0].cache_hit
    assert server.count(bad) == 2 * (RETRIES + 1)  # the second run paid again: nothing cached
    # the cache holds the calls that answered, and only those
    ok_calls = {c.model for c in trace.calls if c.ok}
    assert len(cache) == len(ok_calls)


# ---------------------------------------------------------------- unusable cache locations


def _corrupt(tmp_path: Path) -> str:
    path = tmp_path / "cache.sqlite"
    path.write_bytes(os.urandom(4096))
    return str(path)


def _directory(tmp_path: Path) -> str:
    return str(tmp_path)


def _under_a_file(tmp_path: Path) -> str:
    (tmp_path / "plain").write_text("x")
    return str(tmp_path / "plain" / "cache.sqlite")


LOCATIONS = [
    # (make the location, words the paragraph must hold)
    pytest.param(
        _corrupt, ("cache.sqlite", "not a readable SQLite database", "move"), id="corrupt"
    ),
    pytest.param(_directory, ("which is a directory", "path of a file"), id="directory"),
    pytest.param(_under_a_file, ("'", "plain', which is a file"), id="parent-is-a-file"),
    pytest.param(lambda _: "redis://[bad", ("redis://[bad", "does not parse"), id="redis-url"),
    pytest.param(
        lambda _: "redis://:hunter2@[bad", ("redis://:***@[bad", "does not parse"), id="redis-pw"
    ),
]


@pytest.mark.parametrize(("make", "words"), LOCATIONS)
def test_an_unusable_cache_location_is_one_paragraph_naming_it(
    tmp_path: Path, make: object, words: tuple[str, ...]
) -> None:
    assert callable(make)
    location = make(tmp_path)
    with pytest.raises(ConfigError) as info:
        open_cache(location)
    text = str(info.value)
    assert info.value.source == "cache location" and text.startswith("cache location: ")
    assert "\n" not in text and "hunter2" not in text and "Traceback" not in text
    for word in words:
        assert word in text
    if not location.startswith("redis"):
        assert location in text
    relabelled = str(info.value.with_source("--cache"))
    assert relabelled.startswith("--cache: ") and all(w in relabelled for w in words)


def test_a_cache_file_that_breaks_during_a_run_is_a_typed_error(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    path = tmp_path / "c.sqlite"
    cache = SQLiteCache(path)  # opened fine
    with sqlite3.connect(path) as db:  # then broken under it (another process, a bad disk)
        db.execute("DROP TABLE responses")
    with pytest.raises(CacheError) as info:
        run(pool_for(server, "p", "agg"), mixture("p"), "still there?", cache)
    assert info.value.location == str(path) and str(path) in str(info.value)
    assert info.value.operation == "reading an answer" and "\n" not in str(info.value)
    assert server.count() == 0  # nothing was paid for an answer that could not be kept


@pytest.mark.parametrize("recorded", ["", "   \n"])
def test_an_empty_recording_fails_once_without_retries(recorded: str) -> None:
    from moa_search.runtime.backends import ReplayBackend

    spec = ModelSpec(alias="rec", model="r", replay="unused.json", max_retries=RETRIES)
    backend = ReplayBackend(spec, {"hi": recorded})
    executor = Executor(Pool(models=(spec,)), backends={"rec": backend})
    with pytest.raises(ModelCallError) as info:
        executor.run(MixtureConfig(aggregator=AgentSpec(model="rec")), "hi")
    assert (info.value.kind, info.value.attempts, info.value.finish_reason) == (
        "empty_response",
        1,
        "stop",
    )
    assert backend.calls == 1  # a recording answers the same way every time: no retry
