"""Masking key-like strings in what a server relays or logs.

Upstream error text can quote a key ("Incorrect API key provided: sk-…"), and a client can put
one in a query string that the access log records. :func:`mask_secrets` replaces the secret
part of anything that looks like a key — ``sk-…``/``gsk_…``-style prefixed keys, ``Bearer``
and ``Basic`` credentials, ``key=``/``token=`` query parameters, long hex or base64 tokens —
with ``***`` (a known prefix stays, so the reader still sees which kind of key it was).
:class:`SecretMaskingFilter` applies it to log records; a server installs it on
:data:`SERVING_LOGGERS` (uvicorn's, its own, and the runtime's that report upstream errors).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from moa_search.config.files import KEY_PREFIXES, mixes_case_and_digits

__all__ = [
    "SERVING_LOGGERS",
    "SecretMaskingFilter",
    "install_log_masking",
    "mask_secrets",
    "mask_tree",
]

MASK = "***"

#: The loggers whose records can carry upstream text or a request's URL while serving.
SERVING_LOGGERS = (
    "uvicorn.access",
    "uvicorn.error",
    "moa_search.serve.app",
    "moa_search.serve.service",
    "moa_search.serve.streaming",
    "moa_search.runtime.calls",
    "moa_search.runtime.executor",
    "moa_search.runtime.mixture",
)

_PREFIXED = re.compile(r"\b" + KEY_PREFIXES + r"[A-Za-z0-9_\-]{8,}")
_CREDENTIAL = re.compile(r"\b(Bearer|Basic|Token)(\s+)[A-Za-z0-9._~+/=\-]{6,}", re.IGNORECASE)
_QUERY = re.compile(
    r"([?&;](?:api[_-]?key|key|token|access[_-]?token|secret|password|auth)=)[^&;\s\"']+",
    re.IGNORECASE,
)
_HEX = re.compile(r"\b[0-9a-fA-F]{32,}\b")
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/_\-])[A-Za-z0-9+/_\-]{32,}={0,2}")


def _opaque(match: re.Match[str]) -> str:
    token = match.group(0)
    return MASK if mixes_case_and_digits(token) else token


def _hex(match: re.Match[str]) -> str:
    token = match.group(0)
    return MASK if any(c.isdigit() for c in token) else token


def mask_secrets(text: str) -> str:
    """``text`` with every key-like string masked (see the module docstring)."""
    text = _PREFIXED.sub(lambda m: m.group(1) + MASK, text)
    text = _CREDENTIAL.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
    text = _QUERY.sub(lambda m: m.group(1) + MASK, text)
    text = _HEX.sub(_hex, text)
    return _BASE64.sub(_opaque, text)


def mask_tree(value: Any) -> Any:
    """A JSON-like value (e.g. a trace's dict) with every string in it masked."""
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, dict):
        return {key: mask_tree(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_tree(item) for item in value]
    return value


def _masked_arg(arg: Any) -> Any:
    if isinstance(arg, int | float | bool) or arg is None:
        return arg
    text = str(arg)
    masked = mask_secrets(text)
    return arg if masked == text else masked


class SecretMaskingFilter(logging.Filter):
    """Masks key-like strings in a record's message, its arguments (kept a tuple, so formatters
    that unpack them still work) and its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask_secrets(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_masked_arg(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _masked_arg(arg) for key, arg in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_secrets(logging.Formatter().formatException(record.exc_info))
        return True


def install_log_masking(*names: str) -> None:
    """Add a :class:`SecretMaskingFilter` to each named logger (once)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, SecretMaskingFilter) for f in logger.filters):
            logger.addFilter(SecretMaskingFilter())
