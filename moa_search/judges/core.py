"""Judges: which of two answers to a task item is better, as a preference in [0, 1].

A :class:`Judge` compares a *candidate* answer with a *baseline* answer to the same
:class:`TaskItem` and returns a :class:`Verdict` whose ``preference`` is 1 when the candidate is
better, 0 when the baseline is, 0.5 for a tie (fractions when a judge averages several looks).
The mean preference over a task's items is the candidate's win rate
(:func:`moa_search.judges.stats.win_rate`).

Judges provided:

- :class:`PairwiseLLMJudge` — AlpacaEval-style: a pool model reads both answers (in an order
  fixed by the prompt's hash) and names the better one; calls go through the executor, so they
  are cached, retried and traced.
- :class:`ReferenceEmbeddingJudge` — the answer whose embedding is closer to the reference.
- :class:`ExactMatchJudge` — correctness against the reference, by containment or a regex.
- :class:`CallableJudge` / :func:`load_callable_judge` — your own function.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import logging
import math
import numbers
import re
import string
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from moa_search.config.dataset import TaskItem  # one TaskItem class, shared with the dataset loader
from moa_search.runtime.embeddings import TextEmbedder
from moa_search.errors import ConfigError
from moa_search.runtime.executor import Executor
from moa_search.runtime.prompting import ChatRequest, Message
from moa_search.runtime.trace import CallRecord

__all__ = [
    "DEFAULT_JUDGE_SYSTEM_PROMPT",
    "DEFAULT_TEMPLATE",
    "CallableJudge",
    "ExactMatchJudge",
    "Judge",
    "JudgeFunction",
    "PairwiseLLMJudge",
    "ReferenceEmbeddingJudge",
    "TaskItem",
    "Verdict",
    "candidate_first",
    "load_callable_judge",
    "normalize_answer",
    "order_seed",
    "parse_verdict",
]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Verdict:
    """A judge's decision on one item.

    ``preference`` is in [0, 1]: 1 = candidate better, 0.5 = tie, 0 = baseline better.
    ``detail`` explains it for humans; ``calls`` are the judge's own model calls (cache hits
    included), for cost accounting.
    """

    preference: float
    detail: str = ""
    calls: tuple[CallRecord, ...] = ()

    def __post_init__(self) -> None:
        p = self.preference
        if isinstance(p, bool) or not isinstance(p, numbers.Real):
            raise TypeError(f"Verdict.preference must be a number in [0, 1], got {p!r}")
        p = float(p)
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise ValueError(f"Verdict.preference must be in [0, 1], got {p!r}")
        object.__setattr__(self, "preference", p)
        object.__setattr__(self, "calls", tuple(self.calls))


class Judge(ABC):
    """Compares a candidate answer with a baseline answer to the same task item.

    Contract:

    - :meth:`apreference` returns a :class:`Verdict` whose ``preference`` is 1.0 when the
      candidate is better, 0.0 when the baseline is, 0.5 for a tie; values in between are
      allowed (e.g. an average over both answer orders).
    - It is deterministic for the same inputs as far as the judge allows (LLM judges use
      temperature 0, a fixed seed and the response cache).
    - It may be called concurrently for many items from one event loop.
    - Model calls it makes are returned in ``Verdict.calls``. A judge model call that fails
      for good raises :class:`~moa_search.errors.ModelCallError` (with ``.calls`` attached);
      a judge that needs ``item.reference`` raises :class:`ValueError` without one. What to do
      then is the caller's decision.

    ``name`` identifies the judge in reports.
    """

    name: str

    @abstractmethod
    async def apreference(self, item: TaskItem, candidate: str, baseline: str) -> Verdict:
        """The preference for ``candidate`` over ``baseline`` on ``item``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# ----------------------------------------------------------------------------- pairwise LLM

DEFAULT_JUDGE_SYSTEM_PROMPT = (
    "You are a careful, impartial judge of answers written by AI assistants. You compare two "
    "answers to the same instruction and say which one is better."
)

DEFAULT_TEMPLATE = """\
Which of the two outputs below follows the instruction better? Judge helpfulness, accuracy, \
relevance and clarity. Do not let the order of the outputs or their length sway you.

## Instruction

{instruction}

## Output (a)

{output_a}

## Output (b)

{output_b}

## Verdict

Which output is better? Answer with exactly 'Output (a)' or 'Output (b)' and nothing else."""

_TEMPLATE_REQUIRED = frozenset({"instruction", "output_a", "output_b"})
_TEMPLATE_ALLOWED = _TEMPLATE_REQUIRED | {"reference"}


def order_seed(prompt: str) -> int:
    """The seed that fixes the answer order for ``prompt``: the first 32 bits of its SHA-256."""
    return int(hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8], 16)


def candidate_first(prompt: str) -> bool:
    """Whether the candidate is shown as "Output (a)" for ``prompt`` (its seed is even)."""
    return order_seed(prompt) % 2 == 0


def _check_template(template: str) -> None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ConfigError(
            "pairwise judge", "template", "a str.format template with balanced braces", str(exc)
        ) from None
    names = {f.split(".")[0].split("[")[0] for f in fields}
    unknown = names - _TEMPLATE_ALLOWED
    missing = _TEMPLATE_REQUIRED - names
    if unknown or missing:
        got = []
        if missing:
            got.append("missing " + ", ".join("{" + m + "}" for m in sorted(missing)))
        if unknown:
            got.append("unknown " + ", ".join("{" + (u or "") + "}" for u in sorted(unknown)))
        raise ConfigError(
            "pairwise judge",
            "template",
            "a template using {instruction}, {output_a} and {output_b} (and optionally "
            "{reference}); write literal braces as {{ and }}",
            "; ".join(got),
        )


# A mention of one of the two outputs: "output (a)", "output b", "answer 1", "(a)", "[b]",
# "first one", "second response". Group 1, 2 or 3 holds the label.
_MENTION = (
    r"(?:(?:output|answer|response|assistant|model)\s*[(\[]?\s*([ab12])\s*[)\]]?"
    r"|[(\[]([ab12])[)\]]"
    r"|(first|second)\s+(?:one|output|answer|response))(?!\w)"
)
_MENTION_RE = re.compile(_MENTION)
# Phrases that state which output wins when both are mentioned.
_PREFERRED_AFTER_RE = re.compile(
    _MENTION + r"\s*(?:is|was|seems|appears)?\s*(?:clearly|much|slightly|definitely|far|the)?\s*"
    r"(?:better|superior|preferred|stronger|more\s+\w+|wins|winner)"
)
_PREFERRED_BEFORE_RE = re.compile(
    r"(?:better|best|winner|preferred|prefer|choose|chose|pick|select|verdict)"
    r"\s*(?:one|output|response)?\s*(?:is|:|=|-)?\s*" + _MENTION
)
# The whole answer is just a label: "a", "(b)", "Output (a)", "1", "the first one".
_WHOLE_RE = re.compile(
    r"(?:the\s+)?(?:(?:output|answer|response)\s*)?[(\[]?\s*([ab12])\s*[)\]]?"
    r"|(?:the\s+)?(first|second)(?:\s+(?:one|output|answer|response))?"
)
# A bare leading label followed by a verb: "A is better", "(b) wins".
_LEADING_BARE_RE = re.compile(r"[(\[]?([ab12])[)\]]?\s+(?:is|was|wins)\b")
# A leading mention that stands alone as a sentence: "Output (a). Output (b) has an error".
_LEADING_ALONE_RE = re.compile(_MENTION + r"\s*(?:[.!\n]|$)")

_LABELS: dict[str, Literal["a", "b"]] = {
    "a": "a",
    "b": "b",
    "1": "a",
    "2": "b",
    "first": "a",
    "second": "b",
}


def _label(match: re.Match[str]) -> Literal["a", "b"]:
    raw = next(g for g in match.groups() if g is not None)
    return _LABELS[raw]


def parse_verdict(text: str) -> Literal["a", "b"] | None:
    """Which output a judge's reply names: ``"a"``, ``"b"`` or ``None`` if it is unclear.

    Accepts "Output (a)", "(a)", "a", "A", "1"/"2", "first"/"second", with markdown, quotes and
    surrounding text. When both outputs are mentioned, a phrase such as "Output (b) is better"
    or "Verdict: Output (b)" decides, else a leading label standing alone; otherwise ``None``.
    """
    t = text.lower().replace("_", " ")
    t = re.sub(r"[*`\"“”‘’']", "", t)
    t = re.sub(r"[ \t]+", " ", t).strip()
    core = t.strip(" .!:;,\n")
    whole = _WHOLE_RE.fullmatch(core)
    if whole:
        return _label(whole)
    labels = {_label(m) for m in _MENTION_RE.finditer(t)}
    if len(labels) == 1:
        return labels.pop()
    if len(labels) == 2:
        preferred = {_label(m) for m in _PREFERRED_AFTER_RE.finditer(t)}
        preferred |= {_label(m) for m in _PREFERRED_BEFORE_RE.finditer(t)}
        if len(preferred) == 1:
            return preferred.pop()
        alone = _LEADING_ALONE_RE.match(t)
        return _label(alone) if alone else None
    bare = _LEADING_BARE_RE.match(t)
    return _label(bare) if bare else None


def _short(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 3] + "...")


class PairwiseLLMJudge(Judge):
    """AlpacaEval-style pairwise judging by a pool model.

    The judge model sees the instruction and both answers as "Output (a)" and "Output (b)";
    the candidate is "Output (a)" when :func:`candidate_first` holds for the prompt, so the
    order is random across prompts but fixed for each one. Its reply is read by
    :func:`parse_verdict`; a reply naming neither output counts as a tie (0.5) with detail
    ``"unparseable verdict: ..."``. With ``both_orders`` the model is also asked with the
    answers swapped and the two preferences are averaged (cancelling position bias).

    Calls go through :meth:`Executor.acall` (role ``"judge"``, seed 0), so a repeated
    comparison is answered by the executor's response cache. A call that fails after its
    retries raises its :class:`ModelCallError`, carrying ``.calls`` (the judge's records).

    Args:
        executor: runs the calls; its pool must contain ``model``.
        model: the judge's pool alias.
        template: the user message, a ``str.format`` template with ``{instruction}``,
            ``{output_a}``, ``{output_b}`` and optionally ``{reference}`` ("(none)" if absent).
        both_orders: ask in both answer orders and average.
        temperature, max_tokens: the judge model's sampling.
        system_prompt: the system message; ``None`` for none.
        name: the judge's name in reports; default ``"pairwise:<model>"``.

    Raises:
        ConfigError: ``model`` is not in the pool or the template is malformed.
    """

    def __init__(
        self,
        executor: Executor,
        model: str,
        *,
        template: str = DEFAULT_TEMPLATE,
        both_orders: bool = False,
        temperature: float = 0.0,
        max_tokens: int = 16,
        system_prompt: str | None = DEFAULT_JUDGE_SYSTEM_PROMPT,
        name: str | None = None,
    ) -> None:
        if model not in executor.pool.aliases:
            raise ConfigError(
                "pairwise judge",
                "model",
                f"a model alias from the pool ({', '.join(executor.pool.aliases)})",
                repr(model),
            )
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens!r}")
        _check_template(template)
        self.executor = executor
        self.model = model
        self.spec = executor.pool.get(model)
        self.template = template
        self.both_orders = both_orders
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.system_prompt = system_prompt
        self.name = name or f"pairwise:{model}"

    def messages(self, item: TaskItem, output_a: str, output_b: str) -> tuple[Message, ...]:
        """The judge model's conversation for one order of the two answers."""
        user = self.template.format(
            instruction=item.prompt,
            output_a=output_a,
            output_b=output_b,
            reference=item.reference if item.reference is not None else "(none)",
        )
        if self.system_prompt:
            return (("system", self.system_prompt), ("user", user))
        return (("user", user),)

    def request(self, item: TaskItem, output_a: str, output_b: str) -> ChatRequest:
        """The cacheable request for one order of the two answers."""
        return ChatRequest(
            alias=self.spec.alias,
            model=self.spec.model,
            messages=self.messages(item, output_a, output_b),
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=0,
            sample=0,
        )

    async def apreference(self, item: TaskItem, candidate: str, baseline: str) -> Verdict:
        first = candidate_first(item.prompt)
        orders = [first, not first] if self.both_orders else [first]
        outcomes = await asyncio.gather(
            *(
                self.executor.acall(
                    self.request(
                        item, *((candidate, baseline) if c_first else (baseline, candidate))
                    ),
                    layer=0,
                    role="judge",
                )
                for c_first in orders
            )
        )
        records = tuple(record for record, _, _ in outcomes)
        for _, _, error in outcomes:
            if error is not None:
                error.calls = records  # type: ignore[attr-defined]
                raise error
        preferences: list[float] = []
        details: list[str] = []
        for c_first, (_, completion, _) in zip(orders, outcomes, strict=True):
            assert completion is not None
            candidate_label = "a" if c_first else "b"
            said = parse_verdict(completion.text)
            if said is None:
                preferences.append(0.5)
                details.append(f"unparseable verdict: {_short(completion.text)}")
                log.warning(
                    "judge %s: unparseable verdict for item %s: %s",
                    self.name,
                    item.id,
                    _short(completion.text),
                )
                continue
            pref = 1.0 if said == candidate_label else 0.0
            preferences.append(pref)
            details.append(
                f"candidate was Output ({candidate_label}); judge chose Output ({said}) -> {pref:g}"
            )
        return Verdict(sum(preferences) / len(preferences), "; ".join(details), records)


# ----------------------------------------------------------------------------- reference


class ReferenceEmbeddingJudge(Judge):
    """The answer whose embedding is closer (by cosine) to the item's reference wins.

    Preference 1.0 if the candidate is closer, 0.0 if the baseline is, 0.5 when the two
    similarities are within ``tolerance``; ``detail`` gives both similarities. Embedding runs
    on a worker thread. Raises :class:`ValueError` for an item without a reference.
    """

    def __init__(
        self, embedder: TextEmbedder, *, tolerance: float = 1e-6, name: str | None = None
    ) -> None:
        self.embedder = embedder
        self.tolerance = float(tolerance)
        self.name = name or "reference-embedding"

    async def apreference(self, item: TaskItem, candidate: str, baseline: str) -> Verdict:
        if item.reference is None:
            raise ValueError(f"{self.name} needs a reference answer, but item {item.id!r} has none")
        vectors = await asyncio.to_thread(
            self.embedder.embed, [candidate, baseline, item.reference]
        )
        v = np.asarray(vectors, dtype=np.float64)
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        sim_c = float(v[0] @ v[2])
        sim_b = float(v[1] @ v[2])
        pref = 0.5
        if abs(sim_c - sim_b) > self.tolerance:
            pref = 1.0 if sim_c > sim_b else 0.0
        detail = f"cos(candidate, reference)={sim_c:.6f}; cos(baseline, reference)={sim_b:.6f}"
        return Verdict(pref, detail)


# ----------------------------------------------------------------------------- exact match


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and symbols (Unicode categories P* and S*), collapse
    whitespace. ``"The answer: $1,000!"`` becomes ``"the answer 1000"``."""
    kept = "".join(ch for ch in text.lower() if unicodedata.category(ch)[0] not in "PS")
    return " ".join(kept.split())


class ExactMatchJudge(Judge):
    """Correctness against the item's reference; the correct answer wins.

    Without ``pattern`` an answer is correct when it contains the reference as a whole word
    sequence (not inside a longer word or number: reference "4" is not found in "14"). With
    ``pattern``, a regular expression with a capturing group, the answer is the group's text in
    the pattern's *last* match in the raw answer, and it is correct when it equals the
    reference. With ``normalize`` both sides go through :func:`normalize_answer` first (after
    extraction); without it they are only stripped of surrounding whitespace.

    preference = 0.5 + (correct(candidate) - correct(baseline)) / 2, so 1, 0.5 or 0.
    Raises :class:`ValueError` for an item without a reference (or one that normalises to
    nothing) and :class:`ConfigError` for a bad ``pattern``.
    """

    def __init__(
        self, *, pattern: str | None = None, normalize: bool = True, name: str | None = None
    ) -> None:
        self.pattern = pattern
        self.normalize = normalize
        self._regex: re.Pattern[str] | None = None
        if pattern is not None:
            try:
                self._regex = re.compile(pattern)
            except re.error as exc:
                raise ConfigError(
                    "exact-match judge",
                    "pattern",
                    "a regular expression with a capturing group that extracts the answer",
                    f"{pattern!r} ({exc})",
                ) from None
            if self._regex.groups < 1:
                raise ConfigError(
                    "exact-match judge",
                    "pattern",
                    "a regular expression with a capturing group that extracts the answer",
                    f"{pattern!r}, which has no group",
                )
        self.name = name or ("exact-match" if pattern is None else "regex-match")

    def _norm(self, text: str) -> str:
        return normalize_answer(text) if self.normalize else text.strip()

    def is_correct(self, answer: str, reference: str) -> bool:
        """Whether ``answer`` matches ``reference`` under this judge's rule."""
        ref = self._norm(reference)
        if not ref:
            raise ValueError(f"the reference {reference!r} is empty after normalisation")
        if self._regex is not None:
            extracted = [m.group(1) for m in self._regex.finditer(answer) if m.group(1) is not None]
            return bool(extracted) and self._norm(extracted[-1]) == ref
        return re.search(r"(?<!\w)" + re.escape(ref) + r"(?!\w)", self._norm(answer)) is not None

    async def apreference(self, item: TaskItem, candidate: str, baseline: str) -> Verdict:
        if item.reference is None:
            raise ValueError(f"{self.name} needs a reference answer, but item {item.id!r} has none")
        c = self.is_correct(candidate, item.reference)
        b = self.is_correct(baseline, item.reference)
        return Verdict(0.5 + (int(c) - int(b)) / 2, f"candidate correct={c}; baseline correct={b}")


# ----------------------------------------------------------------------------- callable

#: A user judge: ``(item, candidate, baseline) -> float in [0, 1] | Verdict``, sync or async.
JudgeFunction = Callable[[TaskItem, str, str], "float | Verdict | Awaitable[float | Verdict]"]

_IMPORT_PATH_RE = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_IMPORT_EXPECTED = (
    'an import path of the form "package.module:function" naming a function '
    "(item, candidate, baseline) -> float in [0, 1] or Verdict"
)


class CallableJudge(Judge):
    """A judge from a function ``(item, candidate, baseline)`` returning a float in [0, 1] or a
    :class:`Verdict`; plain and ``async`` functions both work.

    A plain function runs on the event loop's thread, so keep it quick (pure computation); do
    I/O in an ``async def``. A result that is not a number in [0, 1] or a Verdict raises
    :class:`ValueError`/:class:`TypeError` naming the judge.
    """

    def __init__(self, func: JudgeFunction, *, name: str | None = None) -> None:
        if not callable(func):
            raise TypeError(f"CallableJudge needs a callable, got {func!r}")
        self.func = func
        module = getattr(func, "__module__", None) or "?"
        qualname = getattr(func, "__qualname__", None) or type(func).__name__
        self.name = name or f"callable:{module}:{qualname}"

    async def apreference(self, item: TaskItem, candidate: str, baseline: str) -> Verdict:
        result = self.func(item, candidate, baseline)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, Verdict):
            return result
        if isinstance(result, bool) or not isinstance(result, numbers.Real):
            raise TypeError(
                f"judge {self.name} returned {result!r}; expected a float in [0, 1] or a Verdict"
            )
        value = float(result)
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(
                f"judge {self.name} returned {value!r}; expected a float in [0, 1] or a Verdict"
            )
        return Verdict(value)


def load_callable_judge(import_path: str, *, name: str | None = None) -> CallableJudge:
    """A :class:`CallableJudge` from ``"package.module:function"`` (the attribute may be
    dotted, e.g. ``"pkg.mod:Class.method"``).

    Raises:
        ConfigError: the path is malformed, the module cannot be imported, or the attribute is
            missing or not callable; the message names the path and the expected form.
    """
    source = f"judge '{import_path}'"
    if not isinstance(import_path, str) or not _IMPORT_PATH_RE.fullmatch(import_path.strip()):
        raise ConfigError(source, "", _IMPORT_EXPECTED, "a malformed path")
    module_name, _, attr_path = import_path.strip().partition(":")
    try:
        obj: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        raise ConfigError(source, "", _IMPORT_EXPECTED, f"no module named '{missing}'") from exc
    except Exception as exc:
        raise ConfigError(
            source,
            "",
            _IMPORT_EXPECTED,
            f"module '{module_name}' failed to import: {type(exc).__name__}: {exc}",
        ) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(
                source, "", _IMPORT_EXPECTED, f"no attribute '{attr_path}' in '{module_name}'"
            ) from None
    if not callable(obj):
        raise ConfigError(
            source, "", _IMPORT_EXPECTED, f"'{attr_path}' is a {type(obj).__name__}, not callable"
        )
    return CallableJudge(obj, name=name or f"callable:{import_path.strip()}")
