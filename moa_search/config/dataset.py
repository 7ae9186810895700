"""Task datasets: JSONL files of prompts, with optional reference answers and ids.

Each line is a JSON object with ``prompt`` (a non-empty string), optional ``reference`` (a
string), optional ``id`` (a string or number; defaults to the line number) and optional
``group`` (a string or number: items of one group — paraphrases of one question, turns of one
conversation — stay on the same side of a study's held-out split). Any problem
becomes a one-paragraph :class:`~moa_search.errors.ConfigError` naming the file and the line.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from moa_search.config.files import read_file_bytes
from moa_search.errors import ConfigError

__all__ = ["TaskItem", "dataset_hash", "load_dataset"]


@dataclass(frozen=True)
class TaskItem:
    """One prompt of a task, with its reference answer and its group when the dataset has them."""

    id: str
    prompt: str
    reference: str | None = None
    group: str | None = None


def load_dataset(path: str | os.PathLike[str]) -> tuple[TaskItem, ...]:
    """Read and validate a JSONL dataset."""
    p = Path(path)
    source = str(p)
    raw = read_file_bytes(p, "JSONL dataset")  # a FIFO or a folder is refused, not read
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            source,
            f"line {bad_line}",
            "UTF-8 text",
            f"a byte that is not UTF-8 at offset {exc.start}",
        ) from None
    items: list[TaskItem] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(source, where, "one JSON object per line", exc.msg) from None
        except RecursionError:
            raise ConfigError(source, where, "a JSON object that is not nested so deep") from None
        if not isinstance(record, dict):
            raise ConfigError(source, where, "a JSON object", f"a {type(record).__name__}")
        prompt = record.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ConfigError(source, f"{where}.prompt", "a non-empty string with the prompt")
        reference = record.get("reference")
        if reference is not None and not isinstance(reference, str):
            raise ConfigError(source, f"{where}.reference", "a string (the reference answer)")
        raw_id = record.get("id", number)
        if not isinstance(raw_id, str | int) or isinstance(raw_id, bool):
            raise ConfigError(source, f"{where}.id", "a string or an integer")
        item_id = str(raw_id)
        if item_id in seen:
            raise ConfigError(source, f"{where}.id", "ids unique within the dataset", repr(item_id))
        seen.add(item_id)
        raw_group = record.get("group")
        if raw_group is not None and (
            not isinstance(raw_group, str | int) or isinstance(raw_group, bool)
        ):
            raise ConfigError(source, f"{where}.group", "a string or an integer (the item's group)")
        group = str(raw_group) if raw_group is not None else None
        items.append(TaskItem(item_id, prompt, reference, group))
    if not items:
        raise ConfigError(source, "", "at least one JSONL line with a prompt, but it has none")
    return tuple(items)


def dataset_hash(items: Sequence[TaskItem]) -> str:
    """A stable sha256 of a dataset's content (ids, prompts, references, and groups where
    given — a dataset without groups hashes as it always did), for provenance."""
    h = hashlib.sha256()
    for item in items:
        row: list[str | None] = [item.id, item.prompt, item.reference]
        if item.group is not None:
            row.append(item.group)
        h.update(json.dumps(row, ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()
