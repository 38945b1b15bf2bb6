"""Signals that end a run: deferred to the end of a frame's writes, and never lost in a library's code.
Runs without ../shared."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from poseapp.interrupts import Terminated, atomic, ending_signals, iterate_apart


def _send(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # the handler runs at the next bytecode of the main thread


def test_a_signal_inside_atomic_waits_for_its_end():
    written = []
    with ending_signals():
        with pytest.raises(KeyboardInterrupt):
            for frame in range(5):
                with atomic():
                    written.append(("video", frame))
                    if frame == 2:
                        _send(signal.SIGINT)
                    written.append(("json", frame))
    assert written == [(kind, f) for f in range(3) for kind in ("video", "json")]  # frame 2 in both, no more


def test_sigterm_is_terminated_and_a_repeat_is_ignored_while_finishing():
    with ending_signals():
        with pytest.raises(Terminated) as caught:
            with atomic():
                _send(signal.SIGTERM)
                _send(signal.SIGTERM)  # a second kill while the outputs are finalised: ignored
        assert caught.value.signum == signal.SIGTERM
        _send(signal.SIGTERM)  # still ignored until the run ends
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_without_ending_signals_atomic_leaves_ctrl_c_as_python_has_it():
    with pytest.raises(KeyboardInterrupt):
        with atomic():
            _send(signal.SIGINT)
            pytest.fail("Python's own handler raises at once")


def _dropping_interrupts(n: int):
    """A library's iterator that catches KeyboardInterrupt and goes on (as a callback or destructor does)."""
    for i in range(n):
        try:
            time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        yield i


def test_a_ctrl_c_lands_in_the_loop_not_in_the_iterator_that_would_drop_it():
    with ending_signals():
        timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        got: list[int] = []
        with pytest.raises(KeyboardInterrupt):
            for i in iterate_apart(_dropping_interrupts(50), "test-rows"):
                got.append(i)
        timer.join()
    assert len(got) <= 4  # ended by the signal at 0.5 s, an item every 0.2 s
    seen: list[int] = []  # without it, the same iterator loses the Ctrl-C and runs to its end
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with ending_signals():
        for i in _dropping_interrupts(5):
            seen.append(i)
    timer.join()
    assert seen == [0, 1, 2, 3, 4]


def test_iterate_apart_yields_in_order_raises_what_the_iterator_raises_and_stops_when_closed():
    assert list(iterate_apart(iter(range(100)), "test")) == list(range(100))

    def broken():
        yield 1
        raise ValueError("bad row")

    with pytest.raises(ValueError, match="bad row"):
        list(iterate_apart(broken(), "test"))
    drawn: list[int] = []

    def counted():
        for i in range(1000):
            drawn.append(i)
            time.sleep(0.01)
            yield i

    rows = iterate_apart(counted(), "test")
    assert next(rows) == 0
    rows.close()
    time.sleep(0.1)
    assert len(drawn) <= 3  # the drawing stopped after the item in hand
