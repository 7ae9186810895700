"""Ctrl-C during a search raises at once (``search/_interrupt.py``), whatever the asyncio
runner would do with it, unless the process was started with SIGINT ignored (a background job
of a non-interactive shell), which the search respects. Each test sets the disposition it needs:
the suite itself may run as such a background job."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from moa_search.search._interrupt import ctrl_c_raises


@pytest.fixture
def sigint(request: pytest.FixtureRequest) -> Iterator[Any]:
    """SIGINT's disposition for the test (``request.param``), the previous one restored after."""
    previous = signal.signal(signal.SIGINT, request.param)
    try:
        yield request.param
    finally:
        signal.signal(signal.SIGINT, previous)


def _sigint_now() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    signal.pthread_sigmask(signal.SIG_BLOCK, [])  # a bytecode boundary: a handler runs here


@pytest.mark.parametrize("sigint", [signal.default_int_handler], indirect=True)
def test_ctrl_c_raises_at_once_and_the_handler_is_restored(sigint: Any) -> None:
    with ctrl_c_raises():
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):
            _sigint_now()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("sigint", [signal.SIG_IGN], indirect=True)
def test_an_ignored_sigint_stays_ignored(sigint: Any) -> None:
    with ctrl_c_raises():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        _sigint_now()  # nothing happens: the shell asked for that
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_a_callers_own_handler_is_left_alone() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        with ctrl_c_raises():
            _sigint_now()
        assert seen == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)
