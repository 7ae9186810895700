"""A study's prompts: loading them, and splitting them once into a search and a held-out part;
and the user's incumbent mixture.

The split is a pure function of the items (their ids and groups), the held-out fraction and the
spec's seed, so every session of a study — every worker, every resume — draws the same one; the
study driver also stores the held-out ids with the study and refuses a spec whose split differs.
Items that share a ``group`` stay on the same side, so the held-out prompts are not paraphrases
of prompts the search chose on.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna

from moa_search.config import MixtureConfig, Pool, load_mixture
from moa_search.config.dataset import TaskItem, dataset_hash, load_dataset
from moa_search.config.study import StudySpec, spec_dataset_path, spec_incumbent_path
from moa_search.errors import ConfigError
from moa_search.search.records import record_split, study_holdout_ids

log = logging.getLogger(__name__)

__all__ = [
    "Split",
    "StudyPrompts",
    "keep_split",
    "load_incumbent",
    "load_items",
    "split_items",
    "study_prompts",
]


@dataclass(frozen=True)
class Split:
    """The search part and the held-out part of a study's prompts (each in study order)."""

    search: tuple[TaskItem, ...]
    holdout: tuple[TaskItem, ...]

    @property
    def holdout_ids(self) -> tuple[str, ...]:
        return tuple(i.id for i in self.holdout)


def split_items(
    items: tuple[TaskItem, ...], fraction: float, seed: int, *, source: str = "dataset"
) -> Split:
    """Hold out ``fraction`` of ``items``, whole groups at a time (an item without a group is
    its own group).

    The groups are shuffled with ``random.Random(f"holdout:{seed}")`` and taken in that order
    until the held-out part holds at least ``round(fraction * len(items))`` items (at least one,
    and never every group). ``fraction == 0`` holds nothing out, and so does a dataset of one
    group, which cannot be divided (with a warning naming ``source``). Both parts keep
    ``items``' order, so the search's rungs are prefixes of the search part.
    """
    if fraction <= 0:
        return Split(items, ())
    groups: dict[str, list[str]] = {}
    for item in items:
        key = f"g:{item.group}" if item.group is not None else f"i:{item.id}"
        groups.setdefault(key, []).append(item.id)
    if len(groups) < 2:
        log.warning(
            "%s: %d prompt(s) in one group cannot be split; nothing is held out", source, len(items)
        )
        return Split(items, ())
    order = sorted(groups)
    random.Random(f"holdout:{seed}").shuffle(order)
    target = max(1, round(fraction * len(items)))
    held: set[str] = set()
    for n_groups, key in enumerate(order):
        if len(held) >= target or n_groups == len(order) - 1:
            break
        held.update(groups[key])
    return Split(
        tuple(i for i in items if i.id not in held), tuple(i for i in items if i.id in held)
    )


def load_items(path: Path, limit: int | None) -> tuple[TaskItem, ...]:
    """A JSONL dataset, or an AlpacaEval ``model_outputs.json`` (instruction as the prompt,
    the recorded output as the reference), the first ``limit`` items."""
    if path.suffix.lower() == ".json":
        from moa_search.config.recorded import load_model_outputs

        outputs = load_model_outputs(path)
        items = tuple(TaskItem(str(i), o.instruction, o.output) for i, o in enumerate(outputs))
    else:
        items = load_dataset(path)
    return items[:limit] if limit is not None else items


@dataclass(frozen=True)
class StudyPrompts:
    """A study's prompts in study order, the dataset's hash, and the split."""

    items: tuple[TaskItem, ...]
    dataset_hash: str
    search: tuple[TaskItem, ...]
    holdout: tuple[TaskItem, ...]


def study_prompts(spec: StudySpec, spec_path: str | os.PathLike[str]) -> StudyPrompts:
    """Load the spec's dataset (checking the references its judge needs), shuffle it with the
    spec's seed when ``evaluation.shuffle``, and split it (:func:`split_items`)."""
    path = spec_dataset_path(spec, spec_path)
    items = load_items(path, spec.dataset_limit)
    if spec.judge.kind in ("reference_embedding", "exact_match") or (
        spec.baseline.kind == "references"
    ):
        missing = [i.id for i in items if i.reference is None]
        if missing:
            raise ConfigError(
                str(path),
                f"id {missing[0]}.reference",
                f"a reference answer on every line (the {spec.judge.kind} judge or "
                "the references baseline needs them)",
            )
    ordered = list(items)
    if spec.evaluation.shuffle:
        random.Random(spec.seed).shuffle(ordered)
    split = split_items(tuple(ordered), spec.evaluation.holdout, spec.seed, source=str(spec_path))
    return StudyPrompts(tuple(ordered), dataset_hash(items), split.search, split.holdout)


def keep_split(study: optuna.Study, holdout: Sequence[TaskItem], source: str) -> bool:
    """Store the held-out ids with a new study and return whether ``holdout`` applies to it.

    A study stored before held-out splits (it has trials but no stored split) saw every prompt,
    so nothing of it can be held out: its split is stored as empty and this returns ``False``,
    as it does for a study stored with nothing held out. A study stored with another non-empty
    split is refused.
    """
    held = tuple(i.id for i in holdout)
    stored = study_holdout_ids(study)
    if stored is None:
        if held and study.get_trials(deepcopy=False):
            log.warning("%s: the stored study's trials saw every prompt; none is held out", source)
            record_split(study, ())
            return False
        record_split(study, held)
        return True
    if held and not stored:
        log.warning("%s: the study was stored with no prompt held out; none is", source)
        return False
    if stored != held:
        raise ConfigError(
            source,
            "evaluation.holdout",
            "the held-out split the stored study was run with (the dataset, its limit, the "
            "holdout fraction or the seed changed); use a new study name",
        )
    return True


def load_incumbent(
    spec: StudySpec, spec_path: str | os.PathLike[str], pool: Pool
) -> MixtureConfig | None:
    """The spec's ``incumbent`` mixture, run on the study's pool (its own pool is ignored)."""
    path = spec_incumbent_path(spec, spec_path)
    if path is None:
        return None
    mixture = load_mixture(path).model_copy(update={"pool": None})
    mixture.check_pool(pool, str(path))
    return mixture
