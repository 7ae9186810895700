"""Config files: reading YAML or JSON, validating it, writing it back, and error paragraphs.

Files are YAML (``.yaml``/``.yml``) or JSON. Every loading problem becomes a
:class:`~moa_search.errors.ConfigError` whose message is one paragraph naming the file, the field
path and what was expected.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from moa_search.errors import ConfigError

__all__ = ["format_validation_error", "load_mapping", "read_text_file"]

_UNION_BRANCHES = frozenset({"int", "float", "str", "Pool"})


def _loc_to_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_BRANCHES or "[" in part:
            continue  # pydantic's name for a union branch or a validator, not a field
        else:
            out += f".{part}" if out else str(part)
    return out


def _expected(error: Mapping[str, Any]) -> str:
    msg = str(error["msg"])
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    if error["type"] == "extra_forbidden":
        return "only documented fields, and this one is unknown (check its spelling)"
    if error["type"] == "missing":
        return "this required field to be present"
    if msg.startswith("Input should be "):
        rest = msg[len("Input should be ") :]
        return rest if rest.startswith(("a ", "an ", "'")) else f"a value {rest}"
    return msg[0].lower() + msg[1:] if msg else "a valid value"


def format_validation_error(exc: ValidationError, source: str) -> ConfigError:
    """Turn pydantic's error list into one :class:`ConfigError` paragraph."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    field = _loc_to_path(tuple(first["loc"]))
    got = None
    # Never echo what was put where a key's variable name belongs: it may be the key itself.
    secret = field.endswith("api_key_env")
    if first["type"] not in {"missing", "extra_forbidden"} and "input" in first and not secret:
        rendered = repr(first["input"])
        got = rendered if len(rendered) <= 60 else rendered[:57] + "..."
    # Other problems, minus the echoes of the first one (union branches, enclosing fields).
    others: list[str] = []
    for e in errors[1:]:
        path = _loc_to_path(tuple(e["loc"]))
        if field.startswith(path) or path in others:
            continue
        others.append(path or "(top level)")
    return ConfigError(source, field, _expected(first), got, also=others[:3])


def read_text_file(path: str | os.PathLike[str], what: str) -> str:
    """A UTF-8 text file's content; a missing, unreadable or non-UTF-8 file is a ConfigError
    naming the file and saying it should be ``what``."""
    p = Path(path)
    source = str(p)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, "", f"an existing {what}, but there is no such file") from None
    except IsADirectoryError:
        raise ConfigError(source, "", f"a {what}, but this is a directory") from None
    except OSError as exc:
        raise ConfigError(source, "", f"a readable {what}", exc.strerror) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            source, "", f"a UTF-8 text {what}", f"a byte that is not UTF-8 at offset {exc.start}"
        ) from None


def load_mapping(path: str | os.PathLike[str], what: str = "file") -> dict[str, Any]:
    """Read a YAML or JSON file that must hold a mapping; errors become ConfigError."""
    p = Path(path)
    source = str(p)
    text = read_text_file(p, what)
    if not text.strip():
        raise ConfigError(source, "", f"a {what} with content, but it is empty")
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            source, "", "valid JSON", f"a syntax error at line {exc.lineno}: {exc.msg}"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError(source, "", "valid YAML", f"a syntax error{where}: {problem}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(
            source,
            "",
            f"a mapping (key: value pairs) at the top of the {what}",
            f"a {type(data).__name__}",
        )
    return dict(data)


def _validate(model: type[BaseModel], data: Mapping[str, Any], source: str) -> Any:
    """``model`` validated from ``data``; a validation error becomes one ConfigError naming
    ``source``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(exc, source) from None


def _save(model: BaseModel, path: str | os.PathLike[str]) -> None:
    """Write ``model`` as YAML or JSON (by the suffix), atomically; ``None`` fields are left
    out, so that loading the file gives back an equal model."""
    data = model.model_dump(mode="json", exclude_none=True)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix.lower() == ".json":
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    else:
        text = yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True, width=100)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(p)
