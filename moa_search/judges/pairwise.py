"""AlpacaEval-style pairwise judging: a pool model reads two answers and names the better one.

The answer order is fixed per prompt by the prompt's hash (:func:`order_seed`,
:func:`candidate_first`), so it is random across prompts but the same every time; the judge
model's free-form reply is read by :func:`parse_verdict`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import string
from typing import Literal

from moa_search.config.dataset import TaskItem
from moa_search.errors import ConfigError
from moa_search.judges.base import Judge, Verdict
from moa_search.runtime.executor import Executor
from moa_search.runtime.prompting import ChatRequest, Message

__all__ = [
    "DEFAULT_JUDGE_SYSTEM_PROMPT",
    "DEFAULT_TEMPLATE",
    "PairwiseLLMJudge",
    "candidate_first",
    "order_seed",
    "parse_verdict",
]

log = logging.getLogger(__name__)

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
                error.calls = records
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
