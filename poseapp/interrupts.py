"""Signals that end a run as Ctrl-C does, and the blocks they do not cut.

``ending_signals()`` (the command line's predict) turns SIGINT into KeyboardInterrupt and SIGTERM (kill, docker
stop, timeout) and SIGHUP (a closed terminal) into ``Terminated``, each unwinding so every writer finalises what
it has. Inside ``atomic()`` (one frame written to every writer, and counted) a signal waits for the block's
end, so the files of a stopped run agree frame for frame; a second Ctrl-C cuts it (a write that hangs).

Outside the main thread, where Python cannot take signals, nothing changes; without ``ending_signals`` (a
program using the API), Python's own Ctrl-C handler stays and ``atomic`` only nests.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

_ENDING = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like KeyboardInterrupt, so every writer finalises what it has."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _State:
    depth = 0  # atomic blocks open in the main thread
    pending: int | None = None  # a signal that arrived inside one


def _exception(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def _handler(signum: int, frame: object) -> None:
    if signum != signal.SIGINT:  # a repeat of SIGTERM or SIGHUP while the outputs are finalised: ignored
        for sig in _ENDING:
            if sig != signal.SIGINT and signal.getsignal(sig) is _handler:
                signal.signal(sig, signal.SIG_IGN)
    if _State.depth and not (signum == signal.SIGINT and _State.pending is not None):
        _State.pending = _State.pending or signum  # a second Ctrl-C cuts the block (a write that hangs)
        return
    _State.pending = None
    raise _exception(signum)


@contextmanager
def ending_signals() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP end the block's run by an exception (KeyboardInterrupt, Terminated) unless
    inside ``atomic``; a signal already ignored (SIGHUP under nohup) stays ignored; then as before."""
    try:
        previous = {sig: signal.signal(sig, _handler) for sig in _ENDING
                    if signal.getsignal(sig) is not signal.SIG_IGN}
    except ValueError:  # not the main thread
        yield
        return
    _State.pending = None
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)  # None: one set from C, not restorable
        _State.pending = None  # one the run ended without raising (its own error came first) ends with it


@contextmanager
def atomic() -> Iterator[None]:
    """A block a signal does not cut: one arriving inside it (in the main thread) is raised at its end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _State.depth += 1
    try:
        yield
    except BaseException:
        _State.depth -= 1
        if _State.depth == 0:
            _State.pending = None  # the block's own error ends the run
        raise
    _State.depth -= 1
    if _State.depth == 0 and _State.pending is not None:
        signum, _State.pending = _State.pending, None
        raise _exception(signum)
