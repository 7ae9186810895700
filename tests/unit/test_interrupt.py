"""Ctrl-C during a search is never lost: the handler raises at once, and a Ctrl-C that
something below catches is raised again at the search's next step."""

from __future__ import annotations

import os
import signal

import pytest

from moa_search.search._interrupt import ctrl_c_raises, raise_if_interrupted


def _absorbed_sigint() -> None:
    """SIGINT to this process, caught right away the way a library below might catch it."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        signal.pthread_sigmask(signal.SIG_BLOCK, [])  # a bytecode boundary: the handler runs
    except KeyboardInterrupt:
        pass


def test_an_absorbed_ctrl_c_is_raised_again() -> None:
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with ctrl_c_raises():
        raise_if_interrupted()  # nothing yet
        _absorbed_sigint()
        with pytest.raises(KeyboardInterrupt):
            raise_if_interrupted()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    raise_if_interrupted()  # the mark ends with the block
    # a new search starts clean
    with ctrl_c_raises():
        raise_if_interrupted()


def test_nested_blocks_keep_the_outer_handler_and_the_mark() -> None:
    with ctrl_c_raises():
        outer = signal.getsignal(signal.SIGINT)
        with ctrl_c_raises():  # a trial's coroutine inside the search
            assert signal.getsignal(signal.SIGINT) is outer
            _absorbed_sigint()
        assert signal.getsignal(signal.SIGINT) is outer
        with pytest.raises(KeyboardInterrupt):
            raise_if_interrupted()


def test_a_callers_own_handler_is_left_alone() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        with ctrl_c_raises():
            os.kill(os.getpid(), signal.SIGINT)
            signal.pthread_sigmask(signal.SIG_BLOCK, [])
            raise_if_interrupted()  # the caller's handler took it: nothing to re-raise
        assert seen == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)
