"""Recorded model outputs and judge verdicts, in AlpacaEval's file format.

AlpacaEval publishes, per model, ``model_outputs.json`` (records with ``instruction``,
``output``, ``generator``, ``dataset``) and ``<annotator>/annotations.json`` (records with
``instruction``, ``output_1``/``generator_1`` — the reference —, ``output_2``/``generator_2`` —
the model —, and ``preference``). These readers turn them into typed records; the replay
backend, the recorded judge, the dataset loader and :mod:`moa_search.interop.alpaca` share them.

Every malformed file raises :class:`~moa_search.errors.ConfigError` naming the file, the field
and what was expected.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moa_search.config.files import read_text_file, unreadable_value
from moa_search.errors import ConfigError

__all__ = [
    "REFERENCE_MODEL",
    "Annotation",
    "ModelOutput",
    "load_annotations",
    "load_model_outputs",
]

#: AlpacaEval 2.0's reference model (``generator_1`` in every annotation).
REFERENCE_MODEL = "gpt4_1106_preview"


@dataclass(frozen=True)
class Annotation:
    """One judge verdict: ``output_2`` (``generator_2``) against the reference ``output_1``.

    ``preference`` is AlpacaEval's: in [1, 2], 1 + P(output_2 is better); 1.5 (or the legacy
    0) is a draw; ``None`` when the judge failed.
    """

    instruction: str
    output_1: str
    output_2: str
    generator_1: str
    generator_2: str
    preference: float | None
    annotator: str | None = None
    dataset: str | None = None

    @property
    def p_output_2(self) -> float | None:
        """P(output_2 is better) in [0, 1], AlpacaEval's way: legacy 0 is a draw (0.5);
        ``None`` if the judge failed or the value is not a preference (outside [1, 2])."""
        p = self.preference
        if p is None or not math.isfinite(p):
            return None
        if p == 0.0:
            p = 1.5
        return p - 1.0 if 1.0 <= p <= 2.0 else None


@dataclass(frozen=True)
class ModelOutput:
    """One recorded answer of a model to an instruction."""

    instruction: str
    output: str
    generator: str | None = None
    dataset: str | None = None


def _read_json_list(path: str | os.PathLike[str], what: str) -> list[Any]:
    source = str(Path(path))
    text = read_text_file(path, what)
    try:
        data = json.loads(text)
    except RecursionError:
        raise ConfigError(source, "", f"a {what} in JSON that is not nested so deep") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            source, "", f"a {what} in JSON", f"a syntax error at line {exc.lineno}: {exc.msg}"
        ) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise ConfigError(source, "", f"a {what} in JSON", unreadable_value(exc)) from None
    if not isinstance(data, list):
        raise ConfigError(source, "", f"a JSON list of records ({what})", type(data).__name__)
    return data


def _field(
    record: Mapping[str, Any],
    key: str,
    source: str,
    index: int,
    *,
    required: bool = True,
) -> str | None:
    value = record.get(key)
    if value is None and not required:
        return None
    if key not in record:
        raise ConfigError(source, f"[{index}].{key}", "this required field to be present")
    if not isinstance(value, str):
        raise ConfigError(
            source, f"[{index}].{key}", "a string", f"a {type(value).__name__} ({value!r:.40})"
        )
    return value


def load_annotations(path: str | os.PathLike[str]) -> list[Annotation]:
    """Read an AlpacaEval ``annotations.json``.

    Every record needs ``instruction``, ``output_1``, ``output_2`` and ``generator_2`` (strings)
    and ``preference`` (a number or ``null``); ``generator_1``, ``annotator`` and ``dataset``
    are optional. Other fields (``raw_completion``, prices, times) are ignored.

    Raises:
        ConfigError: unreadable, not UTF-8, not JSON, not a list, or a record lacking a field
            or holding the wrong type — naming the file and the record's field.
    """
    source = str(path)
    records = _read_json_list(path, "AlpacaEval annotations file")
    out: list[Annotation] = []
    for i, r in enumerate(records):
        if not isinstance(r, Mapping):
            raise ConfigError(source, f"[{i}]", "an object per annotation", type(r).__name__)
        if "preference" not in r:
            raise ConfigError(
                source, f"[{i}].preference", "this required field to be present (null if unjudged)"
            )
        pref = r["preference"]
        if pref is not None and (isinstance(pref, bool) or not isinstance(pref, int | float)):
            raise ConfigError(
                source, f"[{i}].preference", "a number in [1, 2] or null", repr(pref)[:40]
            )
        if pref is not None and isinstance(pref, int) and abs(pref) > 10**6:  # 400 digits
            raise ConfigError(
                source, f"[{i}].preference", "a number in [1, 2] or null", f"{str(pref)[:20]}..."
            )
        value = None if pref is None or not math.isfinite(float(pref)) else float(pref)
        out.append(
            Annotation(
                instruction=str(_field(r, "instruction", source, i)),
                output_1=str(_field(r, "output_1", source, i)),
                output_2=str(_field(r, "output_2", source, i)),
                generator_1=_field(r, "generator_1", source, i, required=False) or REFERENCE_MODEL,
                generator_2=str(_field(r, "generator_2", source, i)),
                preference=value,
                annotator=_field(r, "annotator", source, i, required=False),
                dataset=_field(r, "dataset", source, i, required=False),
            )
        )
    return out


def load_model_outputs(path: str | os.PathLike[str]) -> list[ModelOutput]:
    """Read an AlpacaEval ``model_outputs.json``: records with ``instruction`` and ``output``
    (strings) and optional ``generator`` and ``dataset``.

    Raises:
        ConfigError: as :func:`load_annotations`.
    """
    source = str(path)
    records = _read_json_list(path, "AlpacaEval model outputs file")
    out: list[ModelOutput] = []
    for i, r in enumerate(records):
        if not isinstance(r, Mapping):
            raise ConfigError(source, f"[{i}]", "an object per output", type(r).__name__)
        out.append(
            ModelOutput(
                instruction=str(_field(r, "instruction", source, i)),
                output=str(_field(r, "output", source, i)),
                generator=_field(r, "generator", source, i, required=False),
                dataset=_field(r, "dataset", source, i, required=False),
            )
        )
    return out
