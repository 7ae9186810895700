"""Building requests, without I/O: messages with injected references, and cache keys.

Layer *i+1*'s proposers and the aggregator see layer *i*'s answers through the mixture's
aggregation prompt, put in a system message ahead of the user's conversation. A
:class:`ChatRequest` is everything that determines a model's answer; its :meth:`cache_key`
hashes exactly that — never a URL or an API key.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from moa_search.config import AgentSpec, ModelSpec

__all__ = [
    "RANKING_PROMPT",
    "ChatRequest",
    "Message",
    "normalize_messages",
    "parse_rank",
    "ranking_messages",
    "sample_seed",
    "with_references",
]

RANKING_PROMPT = (
    "Several candidate answers to the user's latest request are listed below, numbered. Decide "
    "which one answers it best: the most correct, complete and helpful. Reply with the number "
    "of that answer only."
)

Message = tuple[str, str]  # (role, content)

_ROLES = {"system", "user", "assistant"}
_CACHE_KEY_VERSION = 1


def normalize_messages(prompt: str | Sequence[Mapping[str, Any]]) -> tuple[Message, ...]:
    """A prompt string, or OpenAI-style ``[{"role", "content"}]`` messages, as a tuple."""
    if isinstance(prompt, str):
        return (("user", prompt),)
    out: list[Message] = []
    for i, m in enumerate(prompt):
        role = m.get("role")
        content = m.get("content")
        if role not in _ROLES:
            raise ValueError(f"messages[{i}].role must be system, user or assistant, not {role!r}")
        if isinstance(content, list):  # OpenAI content parts: keep the text parts
            content = "".join(
                p.get("text", "")
                for p in content
                if isinstance(p, Mapping) and p.get("type") == "text"
            )
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content must be a string")
        out.append((role, content))
    if not out:
        raise ValueError("messages must not be empty")
    return tuple(out)


def with_references(
    messages: Sequence[Message],
    references: Sequence[str],
    *,
    aggregation_prompt: str,
    system_prompt: str | None = None,
) -> tuple[Message, ...]:
    """The conversation an agent sees: its own system prompt, then the references, if any.

    With no references (layer 0) only the agent's system prompt is added. A system message the
    user sent stays first and the agent's instructions are appended to it.
    """
    parts: list[str] = []
    if system_prompt:
        parts.append(system_prompt)
    if references:
        numbered = "\n\n".join(f"[{i}] {ref.strip()}" for i, ref in enumerate(references, 1))
        parts.append(f"{aggregation_prompt}\n\nAnswers:\n\n{numbered}")
    if not parts:
        return tuple(messages)
    block = "\n\n".join(parts)
    if messages and messages[0][0] == "system":
        return (("system", f"{messages[0][1]}\n\n{block}"), *tuple(messages[1:]))
    return (("system", block), *tuple(messages))


def ranking_messages(
    messages: Sequence[Message], candidates: Sequence[str], *, system_prompt: str | None = None
) -> tuple[Message, ...]:
    """What the ranking aggregator sees: the conversation, then the numbered candidates and
    the request to name the best one."""
    numbered = "\n\n".join(f"[{i}] {c.strip()}" for i, c in enumerate(candidates, 1))
    parts = [p for p in (system_prompt, f"{RANKING_PROMPT}\n\nCandidates:\n\n{numbered}") if p]
    block = "\n\n".join(parts)
    if messages and messages[0][0] == "system":
        return (("system", f"{messages[0][1]}\n\n{block}"), *messages[1:])
    return (("system", block), *messages)


def parse_rank(text: str, n: int) -> int | None:
    """The 1-based candidate number a ranker named, or ``None`` if it named none in 1..n."""
    for match in re.finditer(r"\d+", text):
        value = int(match.group())
        if 1 <= value <= n:
            return value
    return None


def sample_seed(mixture_seed: int, sample: int) -> int:
    """The provider seed for sample ``sample``: distinct per sample, stable across runs."""
    digest = hashlib.sha256(f"{mixture_seed}:{sample}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class ChatRequest:
    """One call: which pool model, what it sees, how it samples, and which sample it is."""

    alias: str
    model: str
    messages: tuple[Message, ...]
    temperature: float
    max_tokens: int
    seed: int
    sample: int

    @classmethod
    def build(
        cls,
        spec: ModelSpec,
        agent: AgentSpec,
        messages: Sequence[Message],
        *,
        sample: int,
        mixture_seed: int,
    ) -> ChatRequest:
        return cls(
            alias=spec.alias,
            model=spec.model,
            messages=tuple(messages),
            temperature=agent.temperature,
            max_tokens=agent.max_tokens,
            seed=sample_seed(mixture_seed, sample),
            sample=sample,
        )

    def openai_messages(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]

    def canonical(self) -> dict[str, Any]:
        """What determines the answer; the basis of the cache key. No URL, no key."""
        return {
            "v": _CACHE_KEY_VERSION,
            "model": self.model,
            "messages": [list(m) for m in self.messages],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "sample": self.sample,
        }

    def cache_key(self) -> str:
        blob = json.dumps(
            self.canonical(), sort_keys=True, ensure_ascii=False, separators=(",", ":")
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()
