"""Ctrl-C during a search: raised at once, never absorbed by a cancellation."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["ctrl_c_raises"]


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def ctrl_c_raises() -> Iterator[None]:
    """Ctrl-C (SIGINT) raises :class:`KeyboardInterrupt` at once while a trial's coroutine runs.

    Left to itself, :class:`asyncio.Runner` turns SIGINT into a cancellation of the coroutine and
    raises :class:`KeyboardInterrupt` only if the coroutine ends cancelled. A cancellation
    absorbed anywhere below (a call that completes as it is cancelled, in the SDK or HTTP
    stack) then loses the Ctrl-C: the clean-clone test suite saw a search run on to its last
    trial and exit 0 after SIGINT. Installing this handler first makes the Runner keep its
    hands off SIGINT (it only takes over Python's default handler); Optuna then fails the
    running trial and the command exits 130.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
