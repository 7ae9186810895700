"""Config files: reading YAML or JSON, validating it, writing it back, and error paragraphs.

Files are YAML (``.yaml``/``.yml``) or JSON. Every loading problem becomes a
:class:`~moa_search.errors.ConfigError` whose message is one paragraph naming the file, the field
path and what was expected.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from moa_search.errors import ConfigError

__all__ = [
    "MAX_DEPTH",
    "MAX_VALUES",
    "format_validation_error",
    "load_mapping",
    "looks_like_secret",
    "read_file_bytes",
    "read_text_file",
    "unreadable_value",
    "write_text_atomically",
]

#: How deep a config file's mappings and lists may nest, and how many values it may hold once
#: its YAML aliases are expanded (a "billion laughs" file holds a few lines but 10^9 values).
MAX_DEPTH = 64
MAX_VALUES = 100_000

#: The prefixes of providers' API keys (a regex group), shared with the server's masking
#: (:mod:`moa_search.serve.masking`): a value that looks like a key is never echoed back.
KEY_PREFIXES = (
    r"(sk-(?:proj-|ant-|or-v1-|svcacct-)?|gsk_|xai-|hf_|pk-|rk-|ghp_|gho_|github_pat_|glpat-"
    r"|xox[abprs]-|AIza)"
)
_KEY_PREFIX = re.compile(r"^" + KEY_PREFIXES + r"[A-Za-z0-9_\-]{8,}")
_LONG_TOKEN = re.compile(r"^[A-Za-z0-9+/_\-]{32,}={0,2}$")

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


def looks_like_secret(value: str) -> bool:
    """Whether ``value`` looks like an API key rather than a name: a known key prefix
    (``sk-``, ``gsk_``, ``hf_``…), or a long token mixing upper case, lower case and digits."""
    if _KEY_PREFIX.match(value):
        return True
    return bool(_LONG_TOKEN.match(value)) and mixes_case_and_digits(value)


def mixes_case_and_digits(token: str) -> bool:
    """Whether ``token`` has upper case, lower case and digits: what tells a random key from a
    long word or a hex digest."""
    return (
        any(c.isdigit() for c in token)
        and any(c.isupper() for c in token)
        and any(c.islower() for c in token)
    )


_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def read_file_bytes(path: str | os.PathLike[str], what: str) -> bytes:
    """A regular file's bytes; a missing or unreadable file, a directory, or anything but a
    regular file (a FIFO would block the read forever) is a ConfigError naming the file and
    saying it should be ``what``."""
    p = Path(path)
    source = str(p)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(source, "", f"an existing {what}, but there is no such file") from None
    except OSError as exc:
        raise ConfigError(source, "", f"a readable {what}", exc.strerror) from None
    if stat.S_ISDIR(mode):
        raise ConfigError(source, "", f"a {what}, but this is a directory")
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
        raise ConfigError(source, "", f"a {what} that is a regular file", kind)
    try:
        return p.read_bytes()
    except OSError as exc:
        raise ConfigError(source, "", f"a readable {what}", exc.strerror) from None


def read_text_file(path: str | os.PathLike[str], what: str) -> str:
    """A UTF-8 text file's content; a missing, unreadable, non-regular or non-UTF-8 file is a
    ConfigError naming the file and saying it should be ``what``."""
    source = str(Path(path))
    raw = read_file_bytes(path, what)
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
    except RecursionError:
        raise _too_deep(source, what) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            source, "", "valid JSON", f"a syntax error at line {exc.lineno}: {exc.msg}"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError(source, "", "valid YAML", f"a syntax error{where}: {problem}") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        kind = "JSON" if p.suffix.lower() == ".json" else "YAML"
        raise ConfigError(source, "", f"valid {kind}", unreadable_value(exc)) from None
    if not isinstance(data, Mapping):
        raise ConfigError(
            source,
            "",
            f"a mapping (key: value pairs) at the top of the {what}",
            f"a {type(data).__name__}",
        )
    _check_shape(data, source, what)
    return dict(data)


def unreadable_value(exc: ValueError) -> str:
    """What a parser's ValueError (not a syntax error) says, in words."""
    if "digits" in str(exc):
        return "a number with more digits than can be read (over 4300)"
    return str(exc)[:80]


def _too_deep(source: str, what: str) -> ConfigError:
    return ConfigError(
        source, "", f"a {what} whose mappings and lists nest at most {MAX_DEPTH} levels deep"
    )


def _check_shape(data: object, source: str, what: str) -> None:
    """Refuse a loaded document nested deeper than :data:`MAX_DEPTH`, holding more than
    :data:`MAX_VALUES` values once its YAML aliases are expanded, or holding an alias that
    contains itself — before anything walks it value by value. Shared (aliased) values are
    measured once, so a billion-laughs file is refused in microseconds."""
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    on_path: set[int] = set()
    # iterative post-order walk: (value, children visited?)
    stack: list[tuple[object, bool]] = [(data, False)]
    while stack:
        value, done = stack.pop()
        key = id(value)
        children: list[object] = (
            list(value.keys()) + list(value.values())
            if isinstance(value, Mapping)
            else list(value)
            if isinstance(value, list | tuple)
            else []
        )
        if not done:
            if key in sizes:
                continue
            if key in on_path:
                raise ConfigError(
                    source, "", f"a {what} in which no YAML alias contains itself", "one that does"
                )
            if not children:
                sizes[key], depths[key] = 1, 0
                continue
            on_path.add(key)
            if len(on_path) > MAX_DEPTH:
                raise _too_deep(source, what)
            stack.append((value, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        on_path.discard(key)
        sizes[key] = 1 + sum(sizes[id(c)] for c in children)
        depths[key] = 1 + max(depths[id(c)] for c in children)
        if sizes[key] > MAX_VALUES:
            raise ConfigError(
                source,
                "",
                f"a {what} of at most {MAX_VALUES:,} values with its YAML aliases expanded",
                "more (aliases that multiply, as in a 'billion laughs' file)",
            )


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
    if p.suffix.lower() == ".json":
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    else:
        text = yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True, width=100)
    write_text_atomically(p, text, "file")


def write_text_atomically(path: str | os.PathLike[str], text: str, what: str) -> None:
    """Write ``text`` to ``path`` (creating its folder) through a temporary file beside it,
    renamed into place: readers never see half a file, and an interrupted or failed write
    leaves no temporary file behind (nor is it hindered by one an earlier crash left).

    Raises:
        ConfigError: ``path`` is a directory, or it or its folder cannot be written (naming the
            path and the reason).
    """
    p = Path(path)
    source = str(p)
    if p.is_dir():
        raise ConfigError(source, "", f"a {what} path to write, but this is a directory")
    where = f"a {what} path in a folder that can be written"
    for part in p.parents:  # the nearest existing part of the folder must be a folder
        if part.is_dir():
            break
        if part.exists():
            raise ConfigError(source, "", where, f"{part}, which is a file, not a folder")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as exc:
        reason = f"{exc.strerror or type(exc).__name__} in {p.parent}"
        raise ConfigError(source, "", where, reason) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        tmp.replace(p)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(source, "", f"a {what} path that can be written", reason) from None
    except BaseException:  # interrupted: leave nothing half-written behind
        tmp.unlink(missing_ok=True)
        raise
