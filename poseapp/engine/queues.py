"""Stages joined by bounded queues: each stage a thread, back-pressure instead of buffering.

:func:`run_stages` runs ``items -> stage_1 -> ... -> stage_n`` with every stage in its own thread and yields
what the last one produces, in order. A queue between two stages holds at most ``maxsize`` items, so a fast
stage waits for a slow one and memory stays flat however long the input. A :class:`Newest` mailbox in
front of the first stage keeps only the newest item when that stage falls behind (a live camera), and
counts what it dropped.

An exception in any stage ends the run and is raised, as it was, where the results are read; closing the
results (a ``break``, Ctrl-C) stops every stage and waits for its thread, so a capture is released in the
thread that reads it.
"""
from __future__ import annotations

import collections
import queue
import threading
from contextlib import closing
from typing import Any, Callable, Iterable, Iterator

Stage = Callable[[Iterator[Any]], Iterator[Any]]
"""A stage: a generator function from the items before it to the items after it."""

POLL = 0.05  # seconds a blocked put or get waits before it looks at the stop flag again


class _End:
    """The item after the last one."""


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Stopped(BaseException):
    """Raised inside a stage thread when the run is stopped while it waits (a BaseException, so a stage's
    ``except Exception`` does not catch it)."""


EMPTY = object()
"""What :meth:`Inbox.poll` returns when nothing came in time."""
END = object()
"""What :meth:`Inbox.poll` returns at the end of the input."""


class Newest:
    """A mailbox that never blocks its writer: an item not yet taken is replaced by the next (``dropped``
    counts them). The end of the input and errors are never dropped."""

    def __init__(self) -> None:
        self._items: collections.deque = collections.deque()
        self._ready = threading.Condition()
        self.dropped = 0

    def put(self, item: Any, timeout: float | None = None) -> None:
        with self._ready:
            control = isinstance(item, (_End, _Failed))
            if not control and self._items and not isinstance(self._items[-1], (_End, _Failed)):
                self._items.pop()
                self.dropped += 1
            self._items.append(item)
            self._ready.notify()

    def get(self, timeout: float | None = None) -> Any:
        with self._ready:
            if not self._items and not self._ready.wait(timeout):
                raise queue.Empty
            if not self._items:
                raise queue.Empty
            return self._items.popleft()

    def qsize(self) -> int:
        with self._ready:
            return len(self._items)


class Inbox:
    """What a stage reads: an iterator over the items before it that can also wait a limited time for the
    next (``poll(seconds)``), for a stage that gathers a batch without holding a live frame back for long."""

    def __init__(self, box: Any, stop: threading.Event) -> None:
        self._box = box
        self._stop = stop
        self._ended = False

    def __iter__(self) -> "Inbox":
        return self

    def _take(self, timeout: float | None) -> Any:
        """The next item, or queue.Empty after ``timeout`` (None: wait as long as it takes)."""
        if self._ended:
            raise StopIteration
        waited = 0.0
        while True:
            if self._stop.is_set():
                raise _Stopped
            step = POLL if timeout is None else min(POLL, max(0.0, timeout - waited))
            try:
                item = self._box.get(timeout=step)
                break
            except queue.Empty:
                waited += step
                if timeout is not None and waited >= timeout:
                    raise
        if isinstance(item, _End):
            self._ended = True
            raise StopIteration
        if isinstance(item, _Failed):
            self._ended = True
            raise item.error
        return item

    def __next__(self) -> Any:
        return self._take(None)

    def poll(self, seconds: float | None) -> Any:
        """The next item if it comes within ``seconds`` (None: however long it takes), else EMPTY; END at the
        end of the input."""
        try:
            return self._take(seconds)
        except queue.Empty:
            return EMPTY
        except StopIteration:
            return END


def _put(box: Any, item: Any, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            box.put(item, timeout=POLL)
            return
        except queue.Full:
            continue


def _pump(items: Iterator[Any], out: Any, stop: threading.Event) -> None:
    """Thread body: every item of ``items`` into ``out``, then the end (or the error that stopped it)."""
    try:
        with closing(items) if hasattr(items, "close") else _nothing():
            for item in items:
                _put(out, item, stop)
        _put(out, _End(), stop)
    except _Stopped:
        pass
    except BaseException as e:  # noqa: B036 - handed on: each later stage raises it, and so does the reader
        try:
            _put(out, _Failed(e), stop)
        except _Stopped:
            pass


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class Run:
    """The running stages: iterate it for the last stage's items; ``dropped`` counts what a :class:`Newest`
    mailbox dropped; ``close()`` (or closing the iteration: a ``break`` in a ``with closing(...)``, Ctrl-C)
    stops every thread."""

    def __init__(self, items: Iterable[Any], stages: list[Stage], *, maxsize: int, newest_first: bool,
                 first_size: int | None, name: str) -> None:
        self._stop = threading.Event()
        self._mailboxes: list[Any] = []
        self._threads: list[threading.Thread] = []
        upstream: Iterator[Any] = iter(items)
        for i, stage in enumerate([None, *stages]):
            size = first_size if i == 0 and first_size else maxsize
            box: Any = Newest() if i == 0 and newest_first else queue.Queue(maxsize=max(1, size))
            self._mailboxes.append(box)
            body = upstream if stage is None else stage(Inbox(self._mailboxes[-2], self._stop))
            thread = threading.Thread(target=_pump, args=(body, box, self._stop), daemon=True,
                                      name=f"{name}-{i}")
            self._threads.append(thread)
        self._out = Inbox(self._mailboxes[-1], self._stop)
        self._started = False

    @property
    def dropped(self) -> int:
        first = self._mailboxes[0]
        return first.dropped if isinstance(first, Newest) else 0

    def __iter__(self) -> Iterator[Any]:
        if not self._started:
            self._started = True
            for thread in self._threads:
                thread.start()
        try:
            yield from self._out
        except _Stopped:
            return
        finally:
            self.close()

    def close(self) -> None:
        """Stop every stage and wait for its thread (a stage blocked in a model call ends after it)."""
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join()


def run_stages(items: Iterable[Any], stages: list[Stage], *, maxsize: int = 4, newest_first: bool = False,
               first_size: int | None = None, name: str = "stage") -> Run:
    """``items`` through each stage in turn, every stage in a thread of its own (see the module's doc).

    Args:
        items: the input (iterated in a thread of its own: a source's reads overlap the stages).
        stages: generator functions, each taking the previous one's items.
        maxsize: the most items waiting between two stages.
        newest_first: keep only the newest input item when the first stage falls behind (live sources).
        first_size: the most input items waiting for the first stage (None: ``maxsize``), where they are
            not dropped (a live source's buffer).
        name: the threads' name prefix.
    """
    return Run(items, stages, maxsize=maxsize, newest_first=newest_first, first_size=first_size, name=name)
