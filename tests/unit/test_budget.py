"""The hard budget: once max_usd / max_tokens / the time limit is reached, no new model call
starts, whatever the phase (trials, final evaluation, held-out verdict, baselines). Calls in
flight finish and are counted; a cached answer is still served. Proven against the project's
fake OpenAI server by counting the requests it received."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moa_search.cli.main import main
from moa_search.config import AgentSpec, MixtureConfig, ModelSpec, Pool
from moa_search.errors import BudgetExhausted
from moa_search.runtime.budget import Spend, SpendMeter
from moa_search.runtime.cache import MemoryCache
from moa_search.runtime.executor import Executor
from moa_search.search.records import FinalEvaluation, HoldoutVerdict, TrialRecord
from moa_search.search.session import SearchSession
from moa_search.search.spend import study_spend
from moa_search.testing import FakeOpenAIServer
from moa_search.testing.worlds import PlantedWorld, write_planted_study

WORLD = PlantedWorld(
    skill={"strong": 0.9, "mid": 0.8, "weak": 0.1},
    aggregation_skill={"strong": 0.3, "mid": 1.0, "weak": 0.0},
)
#: $ per million tokens, in and out: with the fake server's word counts, every call of the
#: planted world reads at least the 9 words of its prompt, so it costs at least this much.
PRICE = 1000.0
MIN_CALL_USD = 9 * PRICE / 1e6


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(WORLD.behaviors()) as srv:
        yield srv


def write_spec(tmp_path: Path, server: FakeOpenAIServer, **overrides: Any) -> Path:
    return write_planted_study(
        tmp_path,
        server.base_url,
        n_items=overrides.pop("n_items", 20),
        model_fields={
            "max_concurrency": 8,
            "input_price_per_mtok": PRICE,
            "output_price_per_mtok": PRICE,
        },
        **{
            "baseline": {"kind": "model", "model": "weak", "max_tokens": 32},
            "objectives": ["win_rate"],
            "space": {"min_layers": 1, "max_layers": 1, "max_samples": 3, "max_proposers": 3},
            "seed": 5,
            "sampler": "random",
            **overrides,
        },
    )


def cap_calls(max_usd: float) -> int:
    """The most calls that can finish before ``max_usd`` is reached (each costs at least
    MIN_CALL_USD): the budget may be passed only by the calls in flight at that moment."""
    return math.ceil(max_usd / MIN_CALL_USD)


def test_meter_refuses_once_a_limit_is_reached() -> None:
    meter = SpendMeter(max_usd=1.0, max_tokens=100, phase="the search")
    meter.check()  # nothing spent yet
    meter.add(0.4, 10)
    meter.check()
    meter.start(Spend(0.5, 20, 3), restart_clock=False)  # prior spend replaces the count
    assert meter.spent == Spend(0.5, 20, 3)
    meter.add(0.5, 10)
    with pytest.raises(BudgetExhausted) as caught:
        meter.check()
    exc = caught.value
    assert (exc.limit, exc.cap, exc.spent, exc.phase) == ("max_usd", 1.0, 1.0, "the search")
    assert exc.calls_refused == 1 and "budget.max_usd" in str(exc) and "incomplete" in str(exc)
    tokens = SpendMeter(max_tokens=100)
    tokens.add(0.0, 100)
    with pytest.raises(BudgetExhausted, match="max_tokens") as caught:
        tokens.check()
    assert caught.value.limit == "max_tokens"
    clock = SpendMeter(timeout_s=0.0)  # any elapsed time reaches it
    with pytest.raises(BudgetExhausted) as caught:
        clock.check()
    assert caught.value.limit == "timeout_s" and "run the command again" in str(caught.value)
    assert SpendMeter().exhausted is False and not SpendMeter().limited


def _pool(server: FakeOpenAIServer) -> Pool:
    return Pool(
        models=tuple(
            ModelSpec(
                alias=m,
                base_url=server.base_url,
                model=m,
                input_price_per_mtok=PRICE,
                output_price_per_mtok=PRICE,
            )
            for m in ("strong", "mid", "weak")
        )
    )


def test_executor_lets_calls_in_flight_finish_then_starts_none(server: FakeOpenAIServer) -> None:
    mixture = MixtureConfig(
        layers=((AgentSpec(model="strong", samples=2), AgentSpec(model="weak")),),
        aggregator=AgentSpec(model="mid"),
    )
    meter = SpendMeter(max_usd=MIN_CALL_USD / 2)  # the first call spends it all
    cache = MemoryCache()
    executor = Executor(_pool(server), cache=cache, budget=meter)
    prompt = "This is question 1. What is the code word?"
    with pytest.raises(BudgetExhausted) as caught:
        executor.run(mixture, prompt)
    # the layer's three calls started before anything was spent; they finished, are in the
    # trace and were counted; the aggregator was refused
    assert server.count() == 3
    trace = caught.value.trace
    assert trace is not None and len(trace.calls) == 3
    assert all(c.role == "proposer" and not c.cache_hit for c in trace.calls)
    assert meter.spent.calls == 3
    assert meter.spent.usd == pytest.approx(sum(c.cost_usd for c in trace.calls))
    # again: the layer's answers come from the cache (no call), the aggregator is refused again
    with pytest.raises(BudgetExhausted) as again:
        executor.run(mixture, prompt)
    assert server.count() == 3 and again.value.calls_refused == 2
    assert again.value.trace is not None
    assert all(c.cache_hit for c in again.value.trace.calls)
    # a single call whose answer is not cached is refused before it reaches the server
    other = Executor(_pool(server), cache=cache, budget=meter)
    with pytest.raises(BudgetExhausted):
        other.run(MixtureConfig(layers=(), aggregator=AgentSpec(model="weak")), "Hi there")
    assert server.count() == 3


def test_tiny_max_usd_bounds_the_search_and_the_verdict(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    max_usd = 1.5  # a trial on 4 prompts costs about $0.4
    spec = write_spec(
        tmp_path,
        server,
        n_items=60,
        evaluation={"rungs": [4], "concurrency": 4, "holdout": 0.3},
        budget={"n_trials": 30, "max_usd": max_usd},
    )
    code = main(["search", str(spec), "--yes"])
    err = capsys.readouterr().err
    assert code == 1
    assert "the budget ran out during the held-out verdict" in err and "incomplete" in err
    # never past the cap by more than the calls that were in flight when it was reached
    assert server.count() <= cap_calls(max_usd) + server.max_in_flight
    session = SearchSession(spec)
    try:
        study = session.study()
        records = TrialRecord.all(study)
        assert any(r.state == "complete" for r in records)
        # the cap was reached between trials, or it stopped one trial (recorded as failed)
        stopped = [r for r in records if r.failed is not None]
        assert len(stopped) <= 1
        assert all(r.state == "fail" and "budget ran out" in (r.failed or "") for r in stopped)
        # what storage says was spent is every call the server answered
        assert study_spend(study).calls == server.count()
        assert HoldoutVerdict.load(study) is None and FinalEvaluation.load(study) is None
    finally:
        session.close()
    # a rerun with the same cap spends nothing more: the prior spend counts
    before = server.count()
    assert main(["search", str(spec), "--yes"]) == 1
    assert server.count() == before
    assert "the budget ran out" in capsys.readouterr().err


def test_a_trial_the_budget_stops_is_failed_with_the_reason_and_its_spend(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    max_usd = 0.05  # a trial costs about $0.4: the first one is stopped on its first prompts
    spec = write_spec(
        tmp_path,
        server,
        evaluation={"rungs": [4], "concurrency": 4, "holdout": 0.3},
        budget={"n_trials": 5, "max_usd": max_usd},
    )
    assert main(["search", str(spec), "--yes"]) == 1
    err = capsys.readouterr().err
    assert "no trial completed" in err and "chosen:" not in err
    assert server.count() <= cap_calls(max_usd) + server.max_in_flight
    session = SearchSession(spec)
    try:
        study = session.study()
        records = TrialRecord.all(study)
        assert [r.state for r in records] == ["fail"]
        assert "the budget ran out during the search" in (records[0].failed or "")
        # the calls it made before the cap are on record: storage accounts for every call
        assert records[0].model_calls == server.count() > 0
        assert records[0].spent_usd >= max_usd
        assert study_spend(study).calls == server.count()
    finally:
        session.close()


def test_final_evaluation_on_every_prompt_is_bounded(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12: trials stopped at the cap, then re-evaluating the chosen mixture on every
    prompt made 7,176 calls. Here the trials see 3 prompts each and the dataset has 400."""
    max_usd = 1.0
    spec = write_spec(
        tmp_path,
        server,
        n_items=400,
        evaluation={"rungs": [3], "concurrency": 4, "holdout": 0},
        budget={"n_trials": 50, "max_usd": max_usd},
    )
    session = SearchSession(spec)
    try:
        session.optimize()
        complete = [r for r in TrialRecord.all(session.study()) if r.state == "complete"]
        assert complete and all(r.n_items == 3 for r in complete)
        with pytest.raises(BudgetExhausted) as caught:
            session.finalize()
        assert caught.value.phase == "the final evaluation"
        assert FinalEvaluation.load(session.study()) is None
        assert study_spend(session.study()).calls == server.count()
    finally:
        session.close()
    assert server.count() <= cap_calls(max_usd) + server.max_in_flight
    assert server.count() < 400  # the unbounded re-evaluation alone would make 1,200 or more
