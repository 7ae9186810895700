"""A planted world for testing and benchmarking the search: fake models of known skill.

Every prompt asks for a code word; the reference answer is that word. A proposer model answers
correctly with probability ``skill[m]``; a model that sees other answers (a later-layer proposer
or the aggregator) repeats their majority answer with probability ``aggregation_skill[m]`` and
otherwise answers on its own. Each draw is a deterministic hash of (model, prompt, seed), so
runs are reproducible and distinct samples differ. With the exact-match judge the best mixture
can be worked out by hand, which is what the search benchmark measures against.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from moa_search.config.dataset import TaskItem
from moa_search.testing.fake_openai import ModelBehavior, RecordedRequest

__all__ = ["PlantedWorld", "planted_items", "write_planted_study"]

_CODE = re.compile(r"code word is (\w+)")
_QUESTION = re.compile(r"question (\d+)")


def planted_items(n: int) -> tuple[TaskItem, ...]:
    """``n`` prompts whose reference answers are code words."""
    return tuple(
        TaskItem(
            f"q{i}", f"This is question {i}. What is the code word?", f"alpha{i * 7919 % 10007}"
        )
        for i in range(n)
    )


def _draw(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class PlantedWorld:
    """Model skills; see the module docstring."""

    skill: Mapping[str, float]
    aggregation_skill: Mapping[str, float]
    latency_s: float = 0.0

    def _answer(self, model: str, request: RecordedRequest) -> str:
        user = next(
            (m["content"] for m in reversed(request.messages) if m.get("role") == "user"), ""
        )
        match = _QUESTION.search(str(user))
        i = int(match.group(1)) if match else 0
        correct = f"alpha{i * 7919 % 10007}"
        system = next((m["content"] for m in request.messages if m.get("role") == "system"), "")
        seen = _CODE.findall(str(system)) if "Answers:" in str(system) else []
        if seen and _draw("agg", model, i, request.seed) < self.aggregation_skill.get(model, 0.0):
            word = Counter(seen).most_common(1)[0][0]
            return f"Having weighed the answers, the code word is {word}."
        if _draw("own", model, i, request.seed) < self.skill.get(model, 0.0):
            return f"I believe the code word is {correct}."
        wrong = int(_draw("wrong", model, i, request.seed) * 1e6)
        return f"I believe the code word is wrong{wrong}."

    def behaviors(self) -> dict[str, ModelBehavior]:
        """One :class:`ModelBehavior` per model, for :class:`FakeOpenAIServer`."""
        models = set(self.skill) | set(self.aggregation_skill)
        return {
            m: ModelBehavior(latency_s=self.latency_s, answer=self._answerer(m))
            for m in sorted(models)
        }

    def _answerer(self, model: str) -> Callable[[RecordedRequest], str]:
        def answer(request: RecordedRequest) -> str:
            return self._answer(model, request)

        return answer


def write_planted_study(
    folder: Path,
    base_url: str,
    *,
    n_items: int = 12,
    models: Sequence[str] = ("strong", "mid", "weak"),
    model_fields: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Path:
    """Write ``tasks.jsonl`` (``n_items`` planted prompts) and ``study.yaml`` into ``folder``.

    The spec searches ``models`` served at ``base_url`` against 'weak' with the exact-match
    judge; ``model_fields`` are added to every pool entry and ``overrides`` replace top-level
    spec keys. Returns the spec's path.
    """
    items = planted_items(n_items)
    (folder / "tasks.jsonl").write_text(
        "".join(
            json.dumps({"id": i.id, "prompt": i.prompt, "reference": i.reference}) + "\n"
            for i in items
        )
    )
    spec: dict[str, Any] = {
        "name": "planted",
        "pool": {
            "models": [
                {"alias": m, "base_url": base_url, "model": m, **(model_fields or {})}
                for m in models
            ]
        },
        "dataset": "tasks.jsonl",
        "baseline": {"kind": "model", "model": models[-1]},
        "judge": {"kind": "exact_match"},
        "space": {"max_layers": 2, "max_samples": 3, "max_proposers": 3},
        "objectives": ["win_rate", "cost_usd"],
        "evaluation": {"rungs": [max(1, n_items // 3), n_items], "concurrency": 4},
        "budget": {"n_trials": 6},
        "n_startup_trials": 2,
        **overrides,
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path
