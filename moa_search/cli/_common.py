"""What the commands share: flag value types, the pre-flight check of a pool, opening a study,
formatting.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from moa_search.errors import ConfigError

if TYPE_CHECKING:
    from moa_search.config import Pool
    from moa_search.search.session import SearchSession

__all__ = [
    "Parser",
    "default_cache_path",
    "fmt_duration",
    "json_safe",
    "open_session",
    "pool_source",
    "port_number",
    "positive_bytes",
    "positive_float",
    "positive_int",
    "preflight",
]


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one paragraph and exit code 2, like every bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help').\n")


if TYPE_CHECKING:
    #: What ``add_subparsers`` returns; each command group adds its parsers to it.
    Subparsers = argparse._SubParsersAction[Parser]


def _checked(
    parse: Callable[[str], float],
    what: str,
    ok: Callable[[float], bool],
    range_text: str,
) -> Callable[[str], Any]:
    """An argparse type: ``parse`` the text (else "expected {what}"), then check it is ``ok``
    (else "expected {range_text}")."""

    def check(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {range_text}, got {value}")
        return value

    return check


port_number = _checked(int, "a port number", lambda v: 0 <= v <= 65535, "a port from 0 to 65535")
positive_bytes = _checked(int, "a number of bytes", lambda v: v >= 1, "a positive number of bytes")
positive_int = _checked(
    int, "a whole number", lambda v: 1 <= v <= 100_000, "a number from 1 to 100000"
)
positive_float = _checked(
    float, "a number of seconds", lambda v: 0 < v <= 30 * 86400, "seconds in (0, 2592000]"
)


def default_cache_path() -> Path:
    from moa_search.local import state_dir

    return state_dir() / "cache.sqlite"


def preflight(source: str, prefix: str, pool: Pool, aliases: Sequence[str]) -> None:
    """Fail early, as bad input, on what would fail every call: a model's API-key variable that
    is not set, or an endpoint that refuses connections (checked once per host and port)."""
    checked: set[tuple[str, int]] = set()
    for i, spec in enumerate(pool.models):
        if spec.alias not in aliases:
            continue
        if spec.api_key_env and not os.environ.get(spec.api_key_env):
            raise ConfigError(
                source,
                f"{prefix}models[{i}].api_key_env",
                f"the environment variable {spec.api_key_env} to hold the API key of model "
                f"'{spec.alias}', but it is not set",
            )
        if spec.replay or spec.base_url is None:
            continue  # recorded answers: no endpoint to reach
        url = urlsplit(spec.base_url)
        host = url.hostname or ""
        port = url.port or (443 if url.scheme == "https" else 80)
        if (host, port) in checked:
            continue
        try:
            socket.create_connection((host, port), timeout=5).close()
        except OSError as exc:
            raise ConfigError(
                source,
                f"{prefix}models[{i}].base_url",
                f"an endpoint that accepts connections for model '{spec.alias}'",
                f"{spec.base_url} ({exc.strerror or type(exc).__name__})",
            ) from None
        checked.add((host, port))


def pool_source(
    declared: object, owner: str | Path, flag: str | None, default: Path
) -> tuple[str, str]:
    """Which file a pool came from, and the field prefix of its models there."""
    if flag is not None:
        return flag, ""
    if isinstance(declared, str):
        return str(Path(owner).parent / declared), ""
    if declared is not None:
        return str(owner), "pool."
    return str(default), ""


def open_session(args: argparse.Namespace, *, cache: str | None = None) -> SearchSession:
    """The study of ``args.spec`` in ``args.storage`` (default: beside its results)."""
    from moa_search.local import default_pool_path
    from moa_search.search.session import SearchSession

    return SearchSession(
        args.spec,
        storage=args.storage,
        cache=cache,
        default_pool_path=default_pool_path(),
    )


def fmt_duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def json_safe(value: object) -> object:
    """NaN and infinities as null, so the output is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
