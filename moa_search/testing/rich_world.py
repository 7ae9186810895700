"""A rich simulated world for benchmarking the search: six models, three families, in process.

Every prompt is "Question i: ... what is the code word?" and its reference is the code word
``k{i}``; every answer is "The code word is WORD." and the exact-match judge scores it. The
world is built so that picking a mixture is genuinely hard:

- **Six models in three families** (``atlas``, ``boreal``, ``cirrus``; a large and a small
  member each). Each family has a **blind spot**: one of six topics on which its members
  almost never know the answer.
- **Correlated errors.** A model wrong on an item gives its family's *trap* answer for that
  item (``k{i}t{family}``) with probability ``trap_rate`` — always on its blind spot — and
  otherwise one of two answers of its own. Family members therefore share wrong answers, and a
  mixture of one family votes for the same trap.
- **Knowing is per item, not per sample.** Whether model m knows item i is one draw
  (probability ``proposer_skill`` scaled by the item's difficulty, ``blind_skill`` on the blind
  spot); a sample is then right with probability 0.9 if it knows and 0.1 if it does not. So
  sampling one model k times (Self-MoA) repeats its mistakes, and mixing families helps.
- **Prompts of varying difficulty**: difficulty d_i is uniform in [0, 1] and scales the
  chance to know an item by ``1.35 - 0.7 d_i``.
- **Proposer skill unlike aggregator skill.** A model that sees other answers (a second-layer
  proposer or the aggregator) *chooses*: when the right answer is among the references it picks
  it with probability ``(1 - herding) * aggregator_skill + herding * share`` (``share``: the
  fraction of references that are right), else the most common wrong answer (first seen on
  ties); when no reference is right it answers right only if it knows the item itself and a
  draw below ``own_solve`` says it dares to contradict them. ``atlas-l`` is the best proposer;
  ``boreal-l`` is the best aggregator.

Every draw is a deterministic hash (splitmix64) of (purpose, model, item, sample seed), as in
:class:`~moa_search.testing.worlds.PlantedWorld`: the same request always gets the same answer,
distinct samples differ. The rules exist twice, checked answer for answer by the unit tests:
per request (:meth:`RichWorld.answer`, served by the in-process backend) and vectorised
(:class:`Simulation`), which gives every mixture's **true value**: its accuracy on fresh items
no study sees (:meth:`RichWorld.true_values`). The space (:data:`SPACE`): 1–2 layers sharing
one composition of 1–3 proposer calls (0–3 samples per model), any of the six aggregators:
996 distinct mixtures.

No HTTP: importing this module registers the backend of pool kind ``world``; a pool model
``{alias: atlas-l, kind: world, model: rich/atlas-l}`` is answered by the world named ``rich``.
:meth:`RichWorld.write_study` writes a ready study spec and dataset.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from moa_search.config import ModelSpec, Pool
from moa_search.config.dataset import TaskItem
from moa_search.errors import ConfigError, ModelCallError
from moa_search.runtime.backends.base import Backend, Completion, estimate_tokens
from moa_search.runtime.backends.registry import register_backend
from moa_search.runtime.prompting import ChatRequest, sample_seed

__all__ = [
    "DEFAULT_MODELS",
    "SPACE",
    "Mix",
    "RichWorld",
    "Simulation",
    "WorldBackend",
    "WorldModel",
    "all_mixes",
    "world_backend",
]

_MASK = (1 << 64) - 1
_QUESTION = re.compile(r"Question (\d+):")
_WORD = re.compile(r"code word is (\w+)")
_CODE = re.compile(r"k(\d+)(?:t(\d+)|m(\d+)v(\d+))?")
# purposes of the draws
_DIFFICULTY, _TOPIC, _KNOW, _SAMPLE, _TRAP, _WHICH, _AGG, _SOLO = range(1, 9)
#: Where the fresh items of true values start: far from any study's items.
TRUTH_OFFSET = 10_000_000

#: The benchmark's search space (a ``space:`` block of a study spec).
SPACE: dict[str, Any] = dict(
    min_layers=1, max_layers=2, min_proposers=1, max_proposers=3, max_samples=3
)  # shared_proposers: one composition for every layer (the default)


def _mix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _mix_np(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _draw(purpose: int, model: int, item: int, seed: int) -> float:
    """A uniform number in [0, 1) from (purpose, model, item, seed)."""
    h = _mix(_mix(_mix(_mix(purpose) ^ model) ^ item) ^ seed)
    return (h >> 11) / float(1 << 53)


def _draw_np(purpose: int, model: int, items: np.ndarray, seed: int) -> np.ndarray:
    """:func:`_draw` for many items at once (bit for bit the same numbers)."""
    with np.errstate(over="ignore"):
        head = np.full(items.shape, _mix(_mix(purpose) ^ model), dtype=np.uint64)
        h = _mix_np(_mix_np(head ^ items.astype(np.uint64)) ^ np.uint64(seed))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass(frozen=True)
class WorldModel:
    """One simulated model (see the module docstring for what the numbers mean)."""

    name: str
    family: int
    proposer_skill: float
    aggregator_skill: float
    herding: float


DEFAULT_MODELS: tuple[WorldModel, ...] = (
    WorldModel("atlas-l", 0, 0.74, 0.45, 0.5),
    WorldModel("atlas-s", 0, 0.58, 0.40, 0.6),
    WorldModel("boreal-l", 1, 0.62, 0.92, 0.2),
    WorldModel("boreal-s", 1, 0.48, 0.70, 0.3),
    WorldModel("cirrus-l", 2, 0.68, 0.62, 0.4),
    WorldModel("cirrus-s", 2, 0.46, 0.30, 0.7),
)

_CORRECT = 0  # the answer code of the right answer (see RichWorld.word)


@dataclass(frozen=True)
class Mix:
    """A mixture as the world sees it: samples per model in each proposer layer (model names
    in the world's model order), and the aggregator."""

    layers: tuple[tuple[tuple[str, int], ...], ...]
    aggregator: str

    @property
    def calls_per_prompt(self) -> int:
        return sum(n for layer in self.layers for _, n in layer) + 1

    def __str__(self) -> str:
        def layer(lay: tuple[tuple[str, int], ...]) -> str:
            return "[" + ", ".join(m + (f"*{n}" if n > 1 else "") for m, n in lay) + "]"

        if not self.layers:
            return f"{self.aggregator} alone"
        if all(lay == self.layers[0] for lay in self.layers):
            body = (f"{len(self.layers)}x" if len(self.layers) > 1 else "") + layer(self.layers[0])
        else:
            body = " -> ".join(layer(lay) for lay in self.layers)
        return f"{body} -> {self.aggregator}"


@dataclass(frozen=True)
class RichWorld:
    """The world's parameters; see the module docstring."""

    models: tuple[WorldModel, ...] = DEFAULT_MODELS
    name: str = "rich"
    n_topics: int = 6
    blind_skill: float = 0.08
    trap_rate: float = 0.6
    own_solve: float = 0.5
    _index: dict[str, int] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._index.update({m.name: i for i, m in enumerate(self.models)})

    @staticmethod
    def prompt(i: int) -> str:
        return f"Question {i}: a secret code word was chosen for this question. What is it?"

    def items(self, start: int, n: int) -> tuple[TaskItem, ...]:
        """Items ``start`` .. ``start + n - 1``: id ``q{i}``, reference ``k{i}``."""
        return tuple(TaskItem(f"q{i}", self.prompt(i), f"k{i}") for i in range(start, start + n))

    def model_index(self, name: str) -> int:
        return self._index[name]

    def mix(self, layers: Sequence[Mapping[str, int]], aggregator: str) -> Mix:
        """A :class:`Mix` with each layer's models in this world's order (the order a run
        makes their calls in, as a pool listing the models in that order does)."""
        return Mix(
            tuple(
                tuple((m.name, layer[m.name]) for m in self.models if layer.get(m.name))
                for layer in layers
            ),
            aggregator,
        )

    def simulation(self, items: np.ndarray) -> Simulation:
        """The world's rules over ``items`` at once (draws cached: reuse it for many mixtures)."""
        return Simulation(self, np.asarray(items, dtype=np.int64))

    def correct(self, mix: Mix, items: np.ndarray, mixture_seed: int = 0) -> np.ndarray:
        """Whether ``mix`` answers each item right (run with mixture seed ``mixture_seed``)."""
        return self.simulation(items).final_codes(mix, mixture_seed) == _CORRECT

    def true_values(
        self, mixes: Sequence[Mix], n_items: int = 20_000, mixture_seed: int = 0
    ) -> dict[Mix, float]:
        """Each mixture's accuracy on ``n_items`` fresh items (never in a study's dataset)."""
        sim = self.simulation(np.arange(TRUTH_OFFSET, TRUTH_OFFSET + n_items, dtype=np.int64))
        groups: dict[tuple[Any, ...], list[Mix]] = {}
        for mix in mixes:  # mixtures differing only in the aggregator share their layers
            groups.setdefault(mix.layers, []).append(mix)
        values: dict[Mix, float] = {}
        for group in groups.values():
            layers = sim.layer_refs(group[0], mixture_seed)
            for mix in group:
                codes = sim.aggregate(mix.aggregator, layers, mixture_seed)
                values[mix] = float((codes == _CORRECT).mean())
        return {mix: values[mix] for mix in mixes}

    def word(self, i: int, code: int) -> str:
        """The code word of answer code ``code`` (0 right, 1 + f family f's trap, 100 + 4 m + v
        model m's own answer v) to item ``i``."""
        if code == _CORRECT or code < 100:
            return f"k{i}" if code == _CORRECT else f"k{i}t{code - 1}"
        return f"k{i}m{(code - 100) // 4}v{(code - 100) % 4}"

    def code(self, i: int, word: str) -> int:
        match = _CODE.fullmatch(word)
        if match is None or int(match.group(1)) != i:
            return 999  # a word this world never says (wrong, like any other)
        trap, model, variant = match.group(2, 3, 4)
        if trap is not None:
            return 1 + int(trap)
        if model is not None:
            return 100 + 4 * int(model) + int(variant)
        return _CORRECT

    def _knows(self, m: int, i: int) -> bool:
        model = self.models[m]
        if int(_draw(_TOPIC, 0, i, 0) * self.n_topics) == model.family:
            p = self.blind_skill
        else:
            p = model.proposer_skill * (1.35 - 0.7 * _draw(_DIFFICULTY, 0, i, 0))
            p = min(max(p, 0.02), 0.98)
        return _draw(_KNOW, m, i, 0) < p

    def _propose(self, m: int, i: int, seed: int) -> int:
        if _draw(_SAMPLE, m, i, seed) < (0.9 if self._knows(m, i) else 0.1):
            return _CORRECT
        family = self.models[m].family
        blind = int(_draw(_TOPIC, 0, i, 0) * self.n_topics) == family
        if blind or _draw(_TRAP, m, i, seed) < self.trap_rate:
            return 1 + family
        return 100 + 4 * m + int(_draw(_WHICH, m, i, seed) < 0.5)

    def _choose(self, m: int, i: int, seed: int, refs: Sequence[int]) -> int:
        model = self.models[m]
        n_right = sum(1 for r in refs if r == _CORRECT)
        if n_right == len(refs):
            return _CORRECT
        counts = [refs.count(r) if r != _CORRECT else -1 for r in refs]
        plural = refs[counts.index(max(counts))]
        if n_right > 0:
            share = n_right / len(refs)
            p = (1 - model.herding) * model.aggregator_skill + model.herding * share
            return _CORRECT if _draw(_AGG, m, i, seed) < p else plural
        dares = self._knows(m, i) and _draw(_SOLO, m, i, seed) < self.own_solve
        return _CORRECT if dares else plural

    def answer(self, model: str, messages: Sequence[tuple[str, str]], seed: int) -> str:
        """What ``model`` says to one request: the item from the last user message, the
        references from the ``Answers:`` block of the system message, if any. (The same rules
        as :class:`Simulation`, one item at a time in plain Python.)"""
        user = next((c for r, c in reversed(messages) if r == "user"), "")
        match = _QUESTION.search(user)
        if match is None:
            return "I can only tell code words."
        i = int(match.group(1))
        system = next((c for r, c in messages if r == "system"), "")
        refs = _WORD.findall(system.split("Answers:", 1)[1]) if "Answers:" in system else []
        m = self.model_index(model)
        if refs:
            code = self._choose(m, i, seed, [self.code(i, w) for w in refs])
        else:
            code = self._propose(m, i, seed)
        return f"The code word is {self.word(i, code)}."

    def pool(self, *, max_concurrency: int = 64) -> Pool:
        """The pool of kind ``world`` answering from this world (registered under its name)."""
        self.register()
        return Pool(
            models=tuple(
                ModelSpec(
                    alias=m.name,
                    kind="world",
                    model=f"{self.name}/{m.name}",
                    input_price_per_mtok=0.5 + m.proposer_skill,
                    output_price_per_mtok=1.0 + 2 * m.proposer_skill,
                    max_concurrency=max_concurrency,
                )
                for m in self.models
            )
        )

    def write_study(
        self, folder: Path, *, n_items: int = 60, first_item: int = 0, **overrides: Any
    ) -> Path:
        """Write ``tasks.jsonl`` (items ``first_item`` ..) and ``study.yaml`` (this world's
        pool inline, the exact-match judge against the references, :data:`SPACE`, win rate
        only, nothing held out) into ``folder``; ``overrides`` replace top-level spec keys.
        Returns the spec's path."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tasks.jsonl").write_text(
            "".join(
                json.dumps({"id": t.id, "prompt": t.prompt, "reference": t.reference}) + "\n"
                for t in self.items(first_item, n_items)
            )
        )
        spec: dict[str, Any] = {
            "name": f"{self.name}-world",
            "pool": self.pool().model_dump(mode="json", exclude_none=True),
            "dataset": "tasks.jsonl",
            "baseline": {"kind": "references"},
            "judge": {"kind": "exact_match"},
            "space": dict(SPACE),
            "objectives": ["win_rate"],
            "evaluation": {"rungs": [15, 30, n_items], "concurrency": 16, "holdout": 0},
            "budget": {"n_trials": 30},
            "n_startup_trials": 5,
            **overrides,
        }
        path = folder / "study.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    def register(self) -> None:
        """Make pool models ``{kind: world, model: "<name>/<model>"}`` answer from this world."""
        _WORLDS[self.name] = self
        register_backend("world", world_backend)


class Simulation:
    """The rules of a :class:`RichWorld` vectorised over items (see the module docstring);
    every draw is computed once per (model, seed) and reused across mixtures."""

    def __init__(self, world: RichWorld, items: np.ndarray) -> None:
        self.world = world
        self.items = items
        self.topic = np.floor(_draw_np(_TOPIC, 0, items, 0) * world.n_topics).astype(np.int64)
        self.difficulty = _draw_np(_DIFFICULTY, 0, items, 0)
        self._cache: dict[tuple[Any, ...], np.ndarray] = {}

    def _draw(self, purpose: int, m: int, seed: int) -> np.ndarray:
        key = (purpose, m, seed)
        if key not in self._cache:
            self._cache[key] = _draw_np(purpose, m, self.items, seed)
        return self._cache[key]

    def blind(self, m: int) -> np.ndarray:
        """Whether each item is on model ``m``'s family's blind spot."""
        return self.topic == self.world.models[m].family

    def knows(self, m: int) -> np.ndarray:
        """Whether model ``m`` knows each item (one draw per model and item)."""
        key = ("knows", m)
        if key not in self._cache:
            skill = self.world.models[m].proposer_skill
            p = np.clip(skill * (1.35 - 0.7 * self.difficulty), 0.02, 0.98)
            p = np.where(self.blind(m), self.world.blind_skill, p)
            self._cache[key] = self._draw(_KNOW, m, 0) < p
        return self._cache[key]

    def propose(self, m: int, seed: int) -> np.ndarray:
        """Answer codes of model ``m`` answering alone (sample seed ``seed``)."""
        key = ("propose", m, seed)
        if key not in self._cache:
            w = self.world
            right = self._draw(_SAMPLE, m, seed) < np.where(self.knows(m), 0.9, 0.1)
            trap = self.blind(m) | (self._draw(_TRAP, m, seed) < w.trap_rate)
            own = 100 + 4 * m + (self._draw(_WHICH, m, seed) < 0.5).astype(np.int64)
            self._cache[key] = np.where(
                right, _CORRECT, np.where(trap, 1 + w.models[m].family, own)
            )
        return self._cache[key]

    def choose(self, m: int, seed: int, refs: np.ndarray) -> np.ndarray:
        """Answer codes of model ``m`` seeing ``refs`` (one row of reference codes per item)."""
        model = self.world.models[m]
        is_right = refs == _CORRECT
        n_right = is_right.sum(axis=1)
        counts = (refs[:, :, None] == refs[:, None, :]).sum(axis=2)
        counts = np.where(is_right, -1, counts)
        plural = refs[np.arange(len(refs)), counts.argmax(axis=1)]
        has_wrong = n_right < refs.shape[1]
        share = n_right / refs.shape[1]
        p = (1 - model.herding) * model.aggregator_skill + model.herding * share
        picks = self._draw(_AGG, m, seed) < p
        dares = self.knows(m) & (self._draw(_SOLO, m, seed) < self.world.own_solve)
        right = np.where(n_right > 0, picks | ~has_wrong, dares)
        return np.where(right, _CORRECT, plural)

    def layer_refs(self, mix: Mix, mixture_seed: int = 0) -> list[np.ndarray]:
        """The answer codes each proposer layer of ``mix`` produces (items x calls)."""
        out: list[np.ndarray] = []
        for layer in mix.layers:
            columns = []
            for name, n in layer:
                m = self.world.model_index(name)
                for k in range(n):
                    seed = sample_seed(mixture_seed, k)
                    columns.append(
                        self.propose(m, seed) if not out else self.choose(m, seed, out[-1])
                    )
            out.append(np.stack(columns, axis=1))
        return out

    def aggregate(self, aggregator: str, layers: list[np.ndarray], mixture_seed: int) -> np.ndarray:
        """The aggregator's answer codes, given the proposer layers' codes."""
        a = self.world.model_index(aggregator)
        seed0 = sample_seed(mixture_seed, 0)
        return self.choose(a, seed0, layers[-1]) if layers else self.propose(a, seed0)

    def final_codes(self, mix: Mix, mixture_seed: int = 0) -> np.ndarray:
        """The final answer codes of ``mix``, exactly as a run would make them."""
        return self.aggregate(mix.aggregator, self.layer_refs(mix, mixture_seed), mixture_seed)


def all_mixes(world: RichWorld | None = None) -> list[Mix]:
    """Every distinct mixture of :data:`SPACE` (one composition shared by all layers)."""
    w = world or RichWorld()
    names = [m.name for m in w.models]
    layers = [
        dict(zip(names, counts, strict=True))
        for counts in itertools.product(range(SPACE["max_samples"] + 1), repeat=len(names))
        if SPACE["min_proposers"] <= sum(counts) <= SPACE["max_proposers"]
    ]
    layer_counts = range(SPACE["min_layers"], SPACE["max_layers"] + 1)
    return [w.mix([layer] * n, agg) for n in layer_counts for layer in layers for agg in names]


_WORLDS: dict[str, RichWorld] = {}


class WorldBackend(Backend):
    """A pool model of kind ``world``, answered in process by a :class:`RichWorld`: one
    attempt per call, failures as :class:`ModelCallError`, usage estimated from the texts
    (``usage_estimated``), ``max_tokens`` cuts the answer (``finish_reason`` ``"length"``, else
    ``"stop"``), :attr:`deterministic`; cache and trace see it like any model. ``calls`` counts
    the attempts it answered."""

    deterministic = True

    def __init__(self, spec: ModelSpec, world: RichWorld, model: str) -> None:
        super().__init__(spec)
        self.world = world
        self.model_name = model
        self.calls = 0

    async def complete(self, request: ChatRequest) -> Completion:
        self.calls += 1
        if not any(role == "user" for role, _ in request.messages):
            raise ModelCallError(self.spec.alias, "bad_request", "the request has no user message")
        text = self.world.answer(self.model_name, request.messages, request.seed)
        finish = "stop"
        if estimate_tokens(text) > request.max_tokens:
            text, finish = text[: 4 * request.max_tokens], "length"
        prompt_text = "".join(c for _, c in request.messages)
        return Completion(
            text, estimate_tokens(prompt_text), estimate_tokens(text), finish, usage_estimated=True
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[str | Completion]:
        completion = await self.complete(request)
        if completion.text:
            yield completion.text
        yield completion


def world_backend(spec: ModelSpec) -> Backend:
    """The factory of kind ``world``: ``spec.model`` is ``"<world name>/<model name>"``."""
    name, _, model = spec.model.partition("/")
    world = _WORLDS.get(name)
    if world is None or model not in world._index:
        raise ConfigError(
            f"pool model '{spec.alias}'",
            "model",
            "'<world>/<model>' naming a registered world and one of its models "
            f"(worlds: {', '.join(sorted(_WORLDS)) or 'none'})",
            repr(spec.model),
        )
    return WorldBackend(spec, world, model)


RichWorld().register()
