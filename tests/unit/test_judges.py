"""Judges: answer-order randomisation, verdict parsing, the pairwise LLM judge against an
in-process scripted backend (no HTTP), the reference-embedding, exact-match and callable judges,
and building each kind from a study spec.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import get_args

import pytest

from moa_search.config import JudgeSpec, ModelSpec, Pool
from moa_search.errors import ConfigError, ModelCallError
from moa_search.judges import (
    DEFAULT_TEMPLATE,
    JUDGE_FACTORIES,
    CallableJudge,
    ExactMatchJudge,
    Judge,
    PairwiseLLMJudge,
    RecordedJudge,
    ReferenceEmbeddingJudge,
    TaskItem,
    Verdict,
    build_judge,
    candidate_first,
    load_callable_judge,
    normalize_answer,
    order_seed,
    parse_verdict,
)
from moa_search.runtime.backends import Backend, Completion
from moa_search.runtime.cache import MemoryCache
from moa_search.runtime.embeddings import Embedder
from moa_search.runtime.executor import Executor
from moa_search.runtime.prompting import ChatRequest

Behaviour = Callable[[ChatRequest, int], "str | ModelCallError"]


class Scripted(Backend):
    """Answers with ``behaviour(request, call_no)``: text, or an error to raise."""

    def __init__(self, spec: ModelSpec, behaviour: Behaviour) -> None:
        super().__init__(spec)
        self.behaviour = behaviour
        self.requests: list[ChatRequest] = []

    async def complete(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        out = self.behaviour(request, len(self.requests))
        if isinstance(out, ModelCallError):
            raise out
        return Completion(out, 50, 3, "stop")

    async def stream(self, request: ChatRequest) -> AsyncIterator[str | Completion]:
        completion = await self.complete(request)
        yield completion.text
        yield completion


def make_executor(
    behaviour: Behaviour, *, cache: MemoryCache | None = None, retries: int = 0
) -> tuple[Executor, Scripted]:
    pool = Pool(
        models=(
            ModelSpec(
                alias="judge",
                base_url="http://127.0.0.1:9/v1",
                model="id-judge",
                input_price_per_mtok=1.0,
                output_price_per_mtok=2.0,
                max_retries=retries,
            ),
        )
    )
    backend = Scripted(pool.get("judge"), behaviour)
    return Executor(pool, cache=cache, backends={"judge": backend}), backend


def slot_a(request: ChatRequest) -> str:
    user = request.messages[-1][1]
    return user.split("## Output (a)")[1].split("## Output (b)")[0]


def prefers(marker: str) -> Behaviour:
    """A judge that picks whichever output contains ``marker``."""
    return lambda req, n: "Output (a)" if marker in slot_a(req) else "Output (b)"


def judge(j: Judge, item: TaskItem, candidate: str, baseline: str) -> Verdict:
    return asyncio.run(j.apreference(item, candidate, baseline))


def prompt_with_order(first: bool) -> str:
    return next(p for p in (f"question {i}" for i in range(100)) if candidate_first(p) is first)


# ----------------------------------------------------------------------------- order


def test_order_seed_is_the_first_32_bits_of_sha256() -> None:
    prompt = "What is the capital of France?"
    digest = hashlib.sha256(prompt.encode()).hexdigest()
    assert order_seed(prompt) == int(digest[:8], 16)
    assert candidate_first(prompt) is (int(digest[:8], 16) % 2 == 0)


def test_order_is_deterministic_and_about_half_flip() -> None:
    prompts = [f"Write a haiku about topic number {i}." for i in range(200)]
    firsts = [candidate_first(p) for p in prompts]
    assert firsts == [candidate_first(p) for p in prompts]
    assert 80 <= sum(firsts) <= 120


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Output (a)", "a"),
        ("Output (b)", "b"),
        ("output (B)", "b"),
        ("(a)", "a"),
        ("[b]", "b"),
        ("a", "a"),
        ("A", "a"),
        ("b.", "b"),
        ("1", "a"),
        ("2", "b"),
        ("first", "a"),
        ("Second", "b"),
        ("The first one", "a"),
        ("Output A", "a"),
        ("output_b", "b"),
        ("**Output (b)**", "b"),
        ("'Output (a)'", "a"),
        ('"Output (b)"', "b"),
        ("Output (a)\n\nIt is more accurate.", "a"),
        ("I would say Output (b), since it is correct.", "b"),
        ("Answer: (b)", "b"),
        ("A is better", "a"),
        ("I think the second response is better.", "b"),
        ("Output (a) is better than Output (b).", "a"),
        ("Comparing Output (a) and Output (b), Output (b) is better.", "b"),
        ("Verdict: Output (b). Output (a) misses the point.", "b"),
        ("The better output is Output (b) because Output (a) is wrong", "b"),
        ("Output (a).\nOutput (b) contains an error.", "a"),
        ("Output (c)", None),
        ("", None),
        ("I cannot decide.", None),
        ("Both are good.", None),
        ("A good answer needs more detail.", None),
        ("Output (a) is worse than Output (b)", None),
    ],
)
def test_parse_verdict(reply: str, expected: str | None) -> None:
    assert parse_verdict(reply) == expected


# ----------------------------------------------------------------------------- pairwise


@pytest.mark.parametrize("first", [True, False])
def test_pairwise_maps_labels_back_in_both_orders(first: bool) -> None:
    ex, backend = make_executor(prefers("GOOD"))
    j = PairwiseLLMJudge(ex, "judge")
    item = TaskItem("q", prompt_with_order(first))
    win = judge(j, item, "a GOOD answer", "a weak answer")
    assert win.preference == 1.0
    shown_first = slot_a(backend.requests[0])
    assert ("GOOD" in shown_first) is first  # the candidate sat where the order said
    lose = judge(j, item, "a weak answer", "a GOOD answer")
    assert lose.preference == 0.0
    assert len(win.calls) == 1 and win.calls[0].role == "judge" and win.calls[0].ok
    label = "a" if first else "b"
    assert f"candidate was Output ({label})" in win.detail


def test_pairwise_request_is_the_cacheable_judge_call() -> None:
    ex, backend = make_executor(prefers("GOOD"))
    j = PairwiseLLMJudge(ex, "judge")
    item = TaskItem("q", "Name a prime number.", reference="7")
    judge(j, item, "GOOD: 7", "9")
    req = backend.requests[0]
    assert (req.alias, req.model, req.seed, req.sample) == ("judge", "id-judge", 0, 0)
    assert (req.temperature, req.max_tokens) == (0.0, 16)
    assert req.messages[0][0] == "system" and req.messages[-1][0] == "user"
    user = req.messages[-1][1]
    assert "Name a prime number." in user and "GOOD: 7" in user and "9" in user
    assert "Answer with exactly 'Output (a)' or 'Output (b)'" in user


def test_position_bias_cancels_with_both_orders() -> None:
    always_a: Behaviour = lambda req, n: "Output (a)"  # noqa: E731
    for first in (True, False):
        item = TaskItem("q", prompt_with_order(first))
        ex, _ = make_executor(always_a)
        single = judge(PairwiseLLMJudge(ex, "judge"), item, "cand", "base")
        assert single.preference == (1.0 if first else 0.0)
        ex, backend = make_executor(always_a)
        both = judge(PairwiseLLMJudge(ex, "judge", both_orders=True), item, "cand", "base")
        assert both.preference == 0.5
        assert len(backend.requests) == 2 and len(both.calls) == 2
        assert {"cand" in slot_a(r) for r in backend.requests} == {True, False}


def test_both_orders_average_a_consistent_judge() -> None:
    ex, _ = make_executor(prefers("GOOD"))
    j = PairwiseLLMJudge(ex, "judge", both_orders=True)
    item = TaskItem("q", "anything")
    assert judge(j, item, "GOOD", "meh").preference == 1.0
    assert judge(j, item, "meh", "GOOD").preference == 0.0

    # one order parses, the other does not: (1 + 0.5) / 2
    def half(req: ChatRequest, n: int) -> str:
        return "Output (a)" if "GOOD" in slot_a(req) else "no idea"

    ex, _ = make_executor(half)
    v = judge(PairwiseLLMJudge(ex, "judge", both_orders=True), item, "GOOD", "meh")
    assert v.preference == 0.75
    assert "unparseable verdict: 'no idea'" in v.detail


def test_same_comparison_twice_is_one_backend_call_with_a_cache() -> None:
    cache = MemoryCache()
    ex, backend = make_executor(prefers("GOOD"), cache=cache)
    j = PairwiseLLMJudge(ex, "judge")
    item = TaskItem("q", "Explain recursion.")
    first = judge(j, item, "GOOD answer", "other answer")
    second = judge(j, item, "GOOD answer", "other answer")
    assert len(backend.requests) == 1 and len(cache) == 1
    assert first.preference == second.preference == 1.0
    assert not first.calls[0].cache_hit and second.calls[0].cache_hit
    assert second.calls[0].cost_usd == pytest.approx(first.calls[0].cost_usd)


def test_unparseable_verdict_is_a_tie_not_a_crash() -> None:
    ex, _ = make_executor(lambda req, n: "Both outputs are fine, honestly.")
    v = judge(PairwiseLLMJudge(ex, "judge"), TaskItem("q", "hi"), "x", "y")
    assert v.preference == 0.5
    assert v.detail.startswith("unparseable verdict: 'Both outputs are fine")


def test_failed_judge_call_raises_with_its_records() -> None:
    def down(req: ChatRequest, n: int) -> ModelCallError:
        return ModelCallError("judge", "server_error", "boom", status=500)

    ex, backend = make_executor(down, retries=1)
    with pytest.raises(ModelCallError) as info:
        judge(PairwiseLLMJudge(ex, "judge"), TaskItem("q", "hi"), "x", "y")
    assert info.value.kind == "server_error" and info.value.attempts == 2
    calls = info.value.calls  # type: ignore[attr-defined]
    assert len(calls) == 1 and calls[0].error == "server_error" and calls[0].role == "judge"
    assert len(backend.requests) == 2


def test_pairwise_configuration_errors() -> None:
    ex, _ = make_executor(prefers("x"))
    with pytest.raises(ConfigError, match="a model alias from the pool"):
        PairwiseLLMJudge(ex, "nope")
    with pytest.raises(ConfigError, match="output_b"):
        PairwiseLLMJudge(ex, "judge", template="{instruction} {output_a}")
    with pytest.raises(ConfigError, match="unknown"):
        PairwiseLLMJudge(ex, "judge", template=DEFAULT_TEMPLATE + "{score}")
    with pytest.raises(ConfigError, match="braces"):
        PairwiseLLMJudge(ex, "judge", template="{instruction {output_a} {output_b}")
    custom = PairwiseLLMJudge(
        ex, "judge", template="Q: {instruction}\nRef: {reference}\n{output_a}\n{output_b}"
    )
    msgs = custom.messages(TaskItem("q", "2+2?", "4"), "A", "B")
    assert msgs[-1][1] == "Q: 2+2?\nRef: 4\nA\nB"
    assert custom.messages(TaskItem("q", "2+2?"), "A", "B")[-1][1].startswith(
        "Q: 2+2?\nRef: (none)"
    )
    assert custom.name == "pairwise:judge"


# ----------------------------------------------------------------------------- reference


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def test_reference_embedding_judge(embedder: Embedder) -> None:
    j = ReferenceEmbeddingJudge(embedder)
    item = TaskItem("q", "Where is the Eiffel Tower?", reference="The Eiffel Tower is in Paris.")
    close = "It stands in Paris, France."
    far = "Bananas are rich in potassium."
    win = judge(j, item, close, far)
    assert win.preference == 1.0
    assert "cos(candidate, reference)=" in win.detail and "cos(baseline, reference)=" in win.detail
    assert judge(j, item, far, close).preference == 0.0
    assert judge(j, item, close, close).preference == 0.5
    with pytest.raises(ValueError, match="reference"):
        judge(j, TaskItem("q", "no reference"), close, far)


# ----------------------------------------------------------------------------- exact match


@pytest.mark.parametrize(
    ("reference", "candidate", "baseline", "expected"),
    [
        ("Paris", "The capital is Paris.", "It is Lyon.", 1.0),
        ("Paris", "It is Lyon.", "PARIS!", 0.0),
        ("Paris", "paris", "Paris, of course", 0.5),
        ("Paris", "Lyon", "Marseille", 0.5),
        ("1,000", "about 1000 people", "100 people", 1.0),
        ("4", "the answer is 14", "the answer is 4", 0.0),  # whole numbers, not substrings
        ("New York", "I live in new   york city", "York", 1.0),
    ],
)
def test_exact_match(reference: str, candidate: str, baseline: str, expected: float) -> None:
    v = judge(ExactMatchJudge(), TaskItem("q", "?", reference), candidate, baseline)
    assert v.preference == expected


def test_exact_match_with_pattern_uses_the_last_match() -> None:
    j = ExactMatchJudge(pattern=r"####\s*([^\n]+)")
    item = TaskItem("q", "?", "42")
    good = "6 * 7 = 42\n#### 42"
    wrong = "#### 42 was my first guess\n#### 41"
    assert judge(j, item, good, wrong).preference == 1.0
    assert judge(j, item, "no marker, but 42", good).preference == 0.0  # no match: incorrect
    assert judge(j, item, "#### 42.", "####42").preference == 0.5
    assert j.name == "regex-match"


def test_exact_match_without_normalisation() -> None:
    j = ExactMatchJudge(normalize=False)
    item = TaskItem("q", "?", "Paris")
    assert judge(j, item, "Paris.", "paris").preference == 1.0
    assert ExactMatchJudge(pattern=r"is (\w+)", normalize=False).is_correct("it is Paris", "Paris")


def test_exact_match_errors() -> None:
    with pytest.raises(ConfigError, match="capturing group"):
        ExactMatchJudge(pattern=r"answer: \d+")
    with pytest.raises(ConfigError, match="pattern"):
        ExactMatchJudge(pattern=r"(unclosed")
    with pytest.raises(ValueError, match="reference"):
        judge(ExactMatchJudge(), TaskItem("q", "?"), "a", "b")
    with pytest.raises(ValueError, match="empty"):
        judge(ExactMatchJudge(), TaskItem("q", "?", "?!"), "a", "b")
    assert normalize_answer("  The answer:\t$1,000!  ") == "the answer 1000"


# ----------------------------------------------------------------------------- callable

USER_MODULE = """
import asyncio
from moa_search.judges import Verdict

def longer(item, candidate, baseline):
    return 1.0 if len(candidate) > len(baseline) else 0.0

async def async_longer(item, candidate, baseline):
    await asyncio.sleep(0)
    return 1.0 if len(candidate) > len(baseline) else 0.0

def with_verdict(item, candidate, baseline):
    return Verdict(0.25, detail=f"judged {item.id}")

def out_of_range(item, candidate, baseline):
    return 1.5

def not_a_number(item, candidate, baseline):
    return "better"

class Judges:
    @staticmethod
    def tie(item, candidate, baseline):
        return 0.5

NOT_CALLABLE = 3
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = "moa_test_user_judges"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_MODULE), encoding="utf-8")
    (tmp_path / "moa_test_broken.py").write_text("raise RuntimeError('nope')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)
    sys.modules.pop("moa_test_broken", None)


def test_callable_judges_by_import_path(user_module: str) -> None:
    item = TaskItem("item-7", "?")
    sync = load_callable_judge(f"{user_module}:longer")
    assert sync.name == f"callable:{user_module}:longer"
    assert judge(sync, item, "long answer", "short").preference == 1.0
    assert judge(sync, item, "short", "long answer").preference == 0.0
    assert (
        judge(load_callable_judge(f"{user_module}:async_longer"), item, "xx", "x").preference == 1
    )
    v = judge(load_callable_judge(f"{user_module}:with_verdict"), item, "a", "b")
    assert v == Verdict(0.25, "judged item-7")
    assert judge(load_callable_judge(f"{user_module}:Judges.tie"), item, "a", "b").preference == 0.5
    with pytest.raises(ValueError, match="out_of_range"):
        judge(load_callable_judge(f"{user_module}:out_of_range"), item, "a", "b")
    with pytest.raises(TypeError, match="expected a float"):
        judge(load_callable_judge(f"{user_module}:not_a_number"), item, "a", "b")


def test_callable_judge_wraps_plain_functions() -> None:
    j = CallableJudge(lambda item, c, b: 0.75, name="mine")
    assert j.name == "mine" and judge(j, TaskItem("q", "?"), "a", "b").preference == 0.75
    with pytest.raises(TypeError):
        CallableJudge(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "got"),
    [
        ("no_colon_here", "malformed"),
        ("pkg.mod:", "malformed"),
        (":func", "malformed"),
        ("pkg mod:func", "malformed"),
        ("moa_no_such_module_xyz:func", "no module named 'moa_no_such_module_xyz'"),
        ("moa_test_broken:func", "failed to import: RuntimeError: nope"),
        ("{mod}:missing", "no attribute 'missing'"),
        ("{mod}:NOT_CALLABLE", "not callable"),
    ],
)
def test_bad_import_paths_raise_config_error(user_module: str, path: str, got: str) -> None:
    path = path.format(mod=user_module)
    with pytest.raises(ConfigError) as info:
        load_callable_judge(path)
    message = str(info.value)
    assert path in message and '"package.module:function"' in message and got in message


def test_verdict_validates_preference() -> None:
    assert Verdict(1).preference == 1.0 and isinstance(Verdict(1).preference, float)
    for bad in (-0.1, 1.01, float("nan")):
        with pytest.raises(ValueError):
            Verdict(bad)
    with pytest.raises(TypeError):
        Verdict("1")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- registry


def test_the_registry_builds_every_kind_a_spec_allows(tmp_path: Path, user_module: str) -> None:
    kinds = set(get_args(JudgeSpec.model_fields["kind"].annotation))
    assert set(JUDGE_FACTORIES) == kinds
    ex, _ = make_executor(prefers("x"))
    embedder = Embedder()  # loads lazily: building the judge embeds nothing
    (tmp_path / "annotations.json").write_text(
        json.dumps(
            [
                {
                    "instruction": "2+2?",
                    "output_1": "4",
                    "output_2": "four",
                    "generator_1": "ref",
                    "generator_2": "model",
                    "preference": 2.0,
                    "annotator": "gpt",
                }
            ]
        ),
        encoding="utf-8",
    )
    specs = {
        "reference_embedding": JudgeSpec(kind="reference_embedding"),
        "pairwise_llm": JudgeSpec(kind="pairwise_llm", model="judge", both_orders=True),
        "exact_match": JudgeSpec(kind="exact_match", pattern=r"is (\w+)"),
        "recorded": JudgeSpec(kind="recorded", annotations=("annotations.json",)),
        "callable": JudgeSpec(kind="callable", function=f"{user_module}:longer"),
    }
    built = {
        kind: build_judge(spec, executor=ex, embedder=embedder, folder=tmp_path)
        for kind, spec in specs.items()
    }
    ref = built["reference_embedding"]
    assert isinstance(ref, ReferenceEmbeddingJudge) and ref.embedder is embedder
    pairwise = built["pairwise_llm"]
    assert isinstance(pairwise, PairwiseLLMJudge)
    assert pairwise.executor is ex and pairwise.model == "judge" and pairwise.both_orders
    exact = built["exact_match"]
    assert isinstance(exact, ExactMatchJudge) and exact.pattern == r"is (\w+)"
    recorded = built["recorded"]
    assert isinstance(recorded, RecordedJudge) and recorded.name == "recorded:gpt"
    assert judge(recorded, TaskItem("q", "2+2?"), "four", "4").preference == 1.0
    assert built["callable"].name == f"callable:{user_module}:longer"
    with pytest.raises(ConfigError, match="a model alias from the pool"):
        build_judge(
            JudgeSpec(kind="pairwise_llm", model="nope"),
            executor=ex,
            embedder=embedder,
            folder=tmp_path,
        )
    with pytest.raises(ConfigError, match=r"missing\.json"):
        build_judge(
            JudgeSpec(kind="recorded", annotations=("missing.json",)),
            executor=ex,
            embedder=embedder,
            folder=tmp_path,
        )
