"""Signals that end a run: deferred to the end of a frame's writes, cut by a second Ctrl-C, restored after.
Runs without ../shared."""
from __future__ import annotations

import signal

import pytest

from poseapp.interrupts import Terminated, atomic, ending_signals


@pytest.fixture(autouse=True)
def ctrl_c_as_python_sets_it():
    """SIGINT as an interactive Python has it, also where these tests run in the background (``cmd &``,
    where it is ignored, as a run then rightly keeps it); restored after."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _send(sig: int) -> None:
    """``sig`` to this thread (the main one), whose handler runs before this returns; not to the whole
    process, whose other threads (those earlier tests' libraries left) may take it: sent that way, in the full
    suite, the process once died of a segmentation fault here."""
    signal.raise_signal(sig)


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
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with ending_signals():
        with pytest.raises(Terminated) as caught:
            with atomic():
                _send(signal.SIGTERM)
                _send(signal.SIGTERM)  # a second kill while the outputs are finalised: ignored
        assert caught.value.signum == signal.SIGTERM
        _send(signal.SIGTERM)  # still ignored until the run ends
    assert {sig: signal.getsignal(sig) for sig in before} == before  # as they were


def test_without_ending_signals_atomic_leaves_ctrl_c_as_python_has_it():
    with pytest.raises(KeyboardInterrupt):
        with atomic():
            _send(signal.SIGINT)
            pytest.fail("Python's own handler raises at once")


def test_a_signal_pending_when_the_block_fails_ends_with_that_run():
    with ending_signals():
        with pytest.raises(OSError):
            with atomic():
                _send(signal.SIGINT)
                raise OSError("disk full")  # the run ends by its own error
        with atomic():
            pass  # no Ctrl-C of the failed write left over
    with atomic():
        pass


def test_a_second_ctrl_c_cuts_the_block():
    with ending_signals():
        with pytest.raises(KeyboardInterrupt):
            with atomic():
                _send(signal.SIGINT)
                _send(signal.SIGINT)  # a write that hangs: the user presses Ctrl-C again
                pytest.fail("the second Ctrl-C should have raised")
