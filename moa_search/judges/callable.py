"""Your own judge: a function ``(item, candidate, baseline) -> preference``, or its import path."""

from __future__ import annotations

import importlib
import inspect
import math
import numbers
import re
from collections.abc import Awaitable, Callable

from moa_search.config.dataset import TaskItem
from moa_search.errors import ConfigError
from moa_search.judges.base import Judge, Verdict

__all__ = ["CallableJudge", "JudgeFunction", "load_callable_judge"]

#: A user judge: ``(item, candidate, baseline) -> float in [0, 1] | Verdict``, sync or async.
JudgeFunction = Callable[[TaskItem, str, str], "float | Verdict | Awaitable[float | Verdict]"]

_IMPORT_PATH_RE = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_IMPORT_EXPECTED = (
    'an import path of the form "package.module:function" naming a function '
    "(item, candidate, baseline) -> float in [0, 1] or Verdict"
)


class CallableJudge(Judge):
    """A judge from a function ``(item, candidate, baseline)`` returning a float in [0, 1] or a
    :class:`Verdict`; plain and ``async`` functions both work.

    A plain function runs on the event loop's thread, so keep it quick (pure computation); do
    I/O in an ``async def``. A result that is not a number in [0, 1] or a Verdict raises
    :class:`ValueError`/:class:`TypeError` naming the judge.
    """

    def __init__(self, func: JudgeFunction, *, name: str | None = None) -> None:
        if not callable(func):
            raise TypeError(f"CallableJudge needs a callable, got {func!r}")
        self.func = func
        module = getattr(func, "__module__", None) or "?"
        qualname = getattr(func, "__qualname__", None) or type(func).__name__
        self.name = name or f"callable:{module}:{qualname}"

    async def apreference(self, item: TaskItem, candidate: str, baseline: str) -> Verdict:
        result = self.func(item, candidate, baseline)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, Verdict):
            return result
        if isinstance(result, bool) or not isinstance(result, numbers.Real):
            raise TypeError(
                f"judge {self.name} returned {result!r}; expected a float in [0, 1] or a Verdict"
            )
        value = float(result)
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(
                f"judge {self.name} returned {value!r}; expected a float in [0, 1] or a Verdict"
            )
        return Verdict(value)


def load_callable_judge(import_path: str, *, name: str | None = None) -> CallableJudge:
    """A :class:`CallableJudge` from ``"package.module:function"`` (the attribute may be
    dotted, e.g. ``"pkg.mod:Class.method"``).

    Raises:
        ConfigError: the path is malformed, the module cannot be imported, or the attribute is
            missing or not callable; the message names the path and the expected form.
    """
    source = f"judge '{import_path}'"
    if not isinstance(import_path, str) or not _IMPORT_PATH_RE.fullmatch(import_path.strip()):
        raise ConfigError(source, "", _IMPORT_EXPECTED, "a malformed path")
    module_name, _, attr_path = import_path.strip().partition(":")
    try:
        obj: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        raise ConfigError(source, "", _IMPORT_EXPECTED, f"no module named '{missing}'") from exc
    except Exception as exc:
        raise ConfigError(
            source,
            "",
            _IMPORT_EXPECTED,
            f"module '{module_name}' failed to import: {type(exc).__name__}: {exc}",
        ) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(
                source, "", _IMPORT_EXPECTED, f"no attribute '{attr_path}' in '{module_name}'"
            ) from None
    if not callable(obj):
        raise ConfigError(
            source, "", _IMPORT_EXPECTED, f"'{attr_path}' is a {type(obj).__name__}, not callable"
        )
    return CallableJudge(obj, name=name or f"callable:{import_path.strip()}")
