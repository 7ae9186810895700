"""Which proposers the aggregator uses: the lexical attribution measure on planted texts, a
study's chosen mixture replayed read-only from its response cache (no model call), its place in
``analyze`` and the report, and the recorded Together-MoA outputs."""

from __future__ import annotations

import itertools
import json
import re
import sqlite3
from pathlib import Path

import pytest

from moa_search.analysis.attribution import (
    PromptOutputs,
    attribute,
    format_attribution,
    outputs_of_run,
    summarize,
)
from moa_search.analysis.attribution_replay import study_attribution
from moa_search.runtime.executor import RunResult
from moa_search.runtime.trace import CallRecord, Trace
from moa_search.search.session import SearchSession
from moa_search.testing import FakeOpenAIServer
from moa_search.testing.fake_openai import ModelBehavior, RecordedRequest
from moa_search.testing.worlds import write_planted_study

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data" / "alpaca_eval"

A = (
    "Velvet harbours glow at dusk while copper lanterns sway above the quiet pier, "
    "and fishermen mend their nets before the tide returns."
)
B = (
    "Quantum processors entangle qubits so that algorithms like Shor factor large "
    "integers exponentially faster than classical machines."
)
C = (
    "Copper lanterns sway above the quiet pier; meanwhile bakers knead sourdough "
    "loaves at dawn for the morning market."
)


def _call(layer: int, model: str, *, error: str | None = None, cost: float = 0.0) -> CallRecord:
    return CallRecord(
        layer=layer,
        role="proposer",
        model=model,
        sample=0,
        tokens_in=1,
        tokens_out=1,
        latency_s=0.0,
        cost_usd=cost,
        cache_hit=False,
        attempts=1,
        error=error,
    )


# ---------------------------------------------------------------------- the measure


def test_a_verbatim_copy_of_one_proposer_is_credited_to_it_alone() -> None:
    a = attribute(A, [A, B])
    assert a is not None
    assert a.shares == (1.0, 0.0)
    assert a.coverage == (1.0, 0.0)
    assert a.novel == 0.0
    # the copy with words of the aggregator's own: A keeps exactly its words' part
    own = " Therefore the answer, all things considered, remains unchanged."
    b = attribute(A + own, [A, B])
    assert b is not None
    n_a, n_own = len(re.findall(r"\w+", A)), len(re.findall(r"\w+", own))
    assert b.shares[0] == pytest.approx(n_a / (n_a + n_own))
    assert b.shares[1] == 0.0
    assert b.novel == pytest.approx(n_own / (n_a + n_own))


def test_a_phrase_two_answers_share_is_split_between_them() -> None:
    a = attribute(A, [A, A, B])
    assert a is not None
    assert a.shares == pytest.approx((0.5, 0.5, 0.0))
    assert a.coverage == (1.0, 1.0, 0.0)
    # C repeats one phrase of A: it is credited half of that phrase's words, not of all of A
    c = attribute(A, [A, C])
    assert c is not None
    assert 0.0 < c.shares[1] < 0.25 < c.shares[0] < 1.0
    assert sum(c.shares) + c.novel == pytest.approx(1.0)


def test_attribution_does_not_depend_on_the_order_of_the_answers() -> None:
    final = A[:60] + " " + C[40:] + " " + B[:50]
    answers = [A, B, C, None]
    base = attribute(final, answers)
    assert base is not None and base.novel < 1.0
    for order in itertools.permutations(range(len(answers))):
        got = attribute(final, [answers[i] for i in order])
        assert got is not None
        assert got.shares == pytest.approx(tuple(base.shares[i] for i in order))
        assert got.coverage == pytest.approx(tuple(base.coverage[i] for i in order))
        assert got.novel == pytest.approx(base.novel)


def test_failed_or_empty_answers_get_nothing_and_an_empty_final_answer_is_skipped() -> None:
    a = attribute(A, [None, "", "   ", A])
    assert a is not None
    assert a.shares == (0.0, 0.0, 0.0, 1.0)
    assert attribute("", [A]) is None
    assert attribute(" ... !!! ", [A]) is None
    none = attribute(A, [])
    assert none is not None and none.shares == () and none.novel == 1.0
    # a one-word final answer is matched word for word
    short = attribute("Paris.", ["The capital is Paris", "It is Lyon"])
    assert short is not None and short.shares == (1.0, 0.0)
    with pytest.raises(ValueError, match="n must be"):
        attribute(A, [A], n=0)


def test_summary_per_slot_counts_failures_sums_samples_and_names_the_idle_slot() -> None:
    outputs = [
        PromptOutputs(
            f"p{i}",
            A,
            ((("a", A), ("b", B if i % 2 else None), ("c", "")),),
            {(0, "a"): 0.001, (0, "b"): 0.002},
        )
        for i in range(6)
    ]
    outputs.append(PromptOutputs("empty", "", ((("a", A), ("b", B)),)))
    result = summarize(outputs, source="planted", mixture="[a, b, c] -> x")
    assert result.n_prompts == 6 and result.n_skipped == 1
    slots = {s.model: s for s in result.slots}
    assert set(slots) == {"a", "b", "c"}
    assert slots["a"].share == pytest.approx(1.0) and slots["a"].ci_low == pytest.approx(1.0)
    assert slots["b"].share == 0.0 and slots["b"].failed == 3 and slots["c"].failed == 0
    assert slots["b"].cost_per_prompt == pytest.approx(0.002)
    assert [s.model for s in result.idle()] == ["b", "c"]
    text = format_attribution(result)
    assert "contributes almost nothing" in text and "layer 1 b" in text
    d = result.to_dict()
    assert d["idle"] == ["layer 1: b", "layer 1: c"]
    json.dumps(d)
    # two samples of one model in a layer are one slot: their shares add up
    two = summarize([PromptOutputs("p", A, ((("a", A), ("a", A), ("b", B)),))])
    (a,) = [s for s in two.slots if s.model == "a"]
    assert a.calls == 2 and a.share == pytest.approx(1.0)
    assert summarize([]).note == "no recorded outputs to attribute"


def test_a_proposer_no_better_than_a_never_seen_control_is_idle() -> None:
    # b's phrases are in the final answer, but so are they in the control, an answer to the
    # same prompt the aggregator never saw: b's excess over chance is 0
    outputs = [
        PromptOutputs(f"p{i}", f"{A} {B}", ((("a", A), ("b", B)),), control=B) for i in range(4)
    ]
    plain = summarize([PromptOutputs(o.item_id, o.final, o.layers) for o in outputs])
    assert {s.model: s.share for s in plain.slots}["b"] > 0.4 and not plain.idle()
    result = summarize(outputs, control="the baseline's answer")
    slots = {s.model: s for s in result.slots}
    assert slots["b"].excess == pytest.approx(0.0) and slots["b"].excess_ci_high == 0.0
    assert result.chance[0][0] == pytest.approx(slots["b"].share)
    assert slots["a"].excess == pytest.approx(slots["a"].share - slots["b"].share)
    assert slots["a"].excess_ci_low is not None and slots["a"].excess_ci_low > 0.25
    assert result.idle() == [slots["b"]]
    assert "excess" in format_attribution(result) and result.control in format_attribution(result)
    # a prompt without its control is attributed, without an excess
    lone = summarize([PromptOutputs("p", A, ((("a", A),),))], control="the baseline's answer")
    assert lone.slots[0].excess is None and lone.control is None


def test_a_runs_outputs_keep_each_answer_with_the_model_that_gave_it() -> None:
    calls = (
        _call(0, "a", cost=0.5),
        _call(0, "b", error="timeout"),
        _call(0, "c", cost=0.25),
        _call(1, "a", cost=1.0),
    )
    result = RunResult(A, Trace.of(calls, 1.0), ((A, C), (A,)), (("a", "c"), ("a",)))
    out = outputs_of_run("q", result)
    assert out.layers == ((("a", A), ("b", None), ("c", C)), (("a", A),))
    assert out.cost_usd == {(0, "a"): 0.5, (0, "b"): 0.0, (0, "c"): 0.25, (1, "a"): 1.0}


# ---------------------------------------------------------------------- a study, replayed

_WORDS = {
    "alpha": "velvet harbours glow while copper lanterns sway above the quiet pier",
    "bravo": "quantum processors entangle qubits so algorithms factor integers quickly",
    "charlie": "bakers knead sourdough loaves at dawn for the bustling morning market",
}


def _answer(model: str, request: RecordedRequest) -> str:
    """Each proposer answers in its own words (alpha gives the right code word); the
    aggregator copies alpha's answer verbatim when it is among the answers it sees."""
    user = str(request.messages[-1]["content"])
    i = int(re.search(r"question (\d+)", user).group(1))  # type: ignore[union-attr]
    if model == "agg":
        system = next((str(m["content"]) for m in request.messages if m["role"] == "system"), "")
        found = re.search(r"\[\d+\] (Alpha says .*?)(?:\n\n\[|\Z)", system, re.S)
        if found:
            return found.group(1).strip()
        return f"Nothing decisive here, so the code word is unknown{i}."
    if model == "alpha":
        return f"Alpha says {_WORDS[model]}; for item {i} the code word is alpha{i * 7919 % 10007}."
    if model == "bravo":
        return f"Bravo claims {_WORDS[model]} while guessing wrong{i}."
    return f"Charlie thinks {_WORDS[model]} and offers wrong{i}."


def _copying_study(folder: Path, base_url: str) -> Path:
    return write_planted_study(
        folder,
        base_url,
        n_items=10,
        models=("alpha", "bravo", "charlie", "agg"),
        model_fields={"input_price_per_mtok": 1.0, "output_price_per_mtok": 2.0},
        baseline={"kind": "model", "model": "charlie", "max_tokens": 64},
        objectives=["win_rate"],
        space={
            "min_layers": 1,
            "max_layers": 1,
            "proposers": ["alpha", "bravo", "charlie"],
            "aggregators": ["agg"],
            "min_proposers": 2,
            "max_proposers": 3,
            "max_samples": 1,
        },
        evaluation={"rungs": [7], "concurrency": 4, "holdout": 0.3},
        budget={"n_trials": 4},
        sampler="random",
        pruner="none",
        seed=1,
    )


def _rows(cache: Path) -> int:
    with sqlite3.connect(cache) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])


def test_a_studys_chosen_mixture_is_attributed_from_its_cache_without_any_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    behaviors = {
        m: ModelBehavior(answer=lambda r, m=m: _answer(m, r))
        for m in ("alpha", "bravo", "charlie", "agg")
    }
    with FakeOpenAIServer(behaviors) as server:
        spec_path = _copying_study(tmp_path, server.base_url)
        session = SearchSession(spec_path)
        try:
            session.optimize()
            session.finalize()
        finally:
            session.close()
        cache = session.results / "cache.sqlite"
        calls, rows = server.count(), _rows(cache)

        reader = SearchSession(spec_path, read_only=True)
        try:
            result = study_attribution(reader)
            missing = study_attribution(reader, cache=str(tmp_path / "nowhere.sqlite"))
        finally:
            reader.close()
        assert server.count() == calls  # not one model call
        assert _rows(cache) == rows  # and nothing written to the cache

        assert result.note is None and result.n_skipped == 0
        assert result.n_prompts == len(reader.holdout_items) == 3
        assert "held-out prompts" in result.source
        slots = {s.model: s for s in result.slots}
        assert "alpha" in slots and len(slots) >= 2  # the choice copies alpha: it wins
        assert slots["alpha"].share > 0.95 and slots["alpha"].ci_low > 0.9
        assert "charlie" in (result.control or "")  # the baseline's answer is the control
        assert slots["alpha"].excess is not None and slots["alpha"].excess > 0.9
        for model, s in slots.items():
            if model != "alpha":
                assert s.share < 0.05 and s in result.idle()
                assert s.excess is not None and abs(s.excess) < 0.05
                assert s.cost_per_prompt > 0  # it costs money and contributes nothing
        assert not missing.slots and "no response cache" in (missing.note or "")

        # analyze shows it, as text and as JSON
        from moa_search.cli.main import main

        assert main(["analyze", str(spec_path), "--n-boot", "50"]) == 0
        text = capsys.readouterr().out
        assert "which proposers the aggregator uses" in text
        assert re.search(r"\n\s+1\s+alpha\s+1\s+(9\d|100)\.\d", text)
        assert main(["analyze", str(spec_path), "--n-boot", "50", "--json"]) == 0
        data = json.loads(capsys.readouterr().out)["attribution"]
        assert data["n_prompts"] == 3 and data["slots"][0]["model"] == "alpha"
        assert data["idle"] and all("alpha" not in i for i in data["idle"])

        # and so does the report
        out = tmp_path / "report.html"
        assert main(["report", str(spec_path), "--out", str(out), "--n-boot", "50"]) == 0
        html = out.read_text()
        section = html[html.index('<section id="attribution">') :]
        section = section[: section.index("</section>")]
        assert 'id="attribution-table"' in section and "<td>alpha</td>" in section
        assert "contributes almost nothing" in section
        assert server.count() == calls


# ---------------------------------------------------------------------- recorded data


@pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"the shared AlpacaEval data is not at {SHARED} (../shared)"
)
def test_together_moa_draws_on_its_recorded_proposers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from moa_search.cli.main import main
    from moa_search.interop.alpaca.attribution import (
        TOGETHER_MOA_PROPOSERS,
        recorded_attribution,
    )

    result = recorded_attribution(SHARED)
    assert result.n_prompts + result.n_skipped == 805
    assert {s.model for s in result.slots} == set(TOGETHER_MOA_PROPOSERS)
    assert all(0.0 <= s.ci_low <= s.share <= s.ci_high <= 1.0 for s in result.slots)
    assert result.control is not None and "gpt4_1106_preview" in result.control
    # Together-MoA's aggregator is Qwen1.5-110B-Chat, Together-MoA-Lite's Qwen1.5-72B-Chat:
    # each draws most on its own model's wording, above the chance level of the reference
    for mixture, aggregator in (("Together-MoA", "Qwen1.5-110B-Chat"),
                                ("Together-MoA-Lite", "Qwen1.5-72B-Chat")):  # fmt: skip
        r = recorded_attribution(SHARED, mixture)
        top = r.slots[0]
        assert top.model == aggregator
        assert top.excess_ci_low is not None and top.excess_ci_low > 0
    # an aggregator that never saw the proposers (claude-2.1 answering alone) uses none of them
    ignored = recorded_attribution(SHARED, "claude-2.1", limit=200)
    assert {s.model for s in ignored.idle()} == set(TOGETHER_MOA_PROPOSERS)
    assert main(["attribution", str(SHARED), "--limit", "20", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_prompts"] <= 20
    assert main(["attribution", str(SHARED), "--proposers", "no-such-model"]) == 2
