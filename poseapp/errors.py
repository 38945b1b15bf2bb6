"""Typed errors a user can cause. Each message names the file or argument and the fix.

A message names the argument that was wrong with :func:`arg` (``arg("model")``), a marker that stays in the
message until it is shown: ``str(error)`` names the library's argument (``model``), and a command line shows
its own flag instead with ``error.render({"model": "--pose-model"})``. A library call that passes one of its
arguments on to another call renames the inner names to its own (:meth:`PoseAppError.renamed`), so no flag
name travels down into the library.
"""
from __future__ import annotations

import re
from typing import Mapping

_MARK = "\x1f"
_MARKED = re.compile(f"{_MARK}([A-Za-z_][A-Za-z0-9_]*){_MARK}")


def arg(name: str) -> str:
    """The argument ``name`` as it appears in an error message (shown as the caller names it)."""
    return f"{_MARK}{name}{_MARK}"


class Text(str):
    """A short text with its arguments marked (a failure's reason): as a ``str`` it reads as the library names
    them (``max_pixels``); :func:`render` shows a command line's flags instead (it keeps the marked form)."""

    marked: str

    def __new__(cls, text: str) -> "Text":
        marked = marked_form(text)
        self = super().__new__(cls, _MARKED.sub(lambda m: m[1], marked))
        self.marked = marked
        return self


def marked_form(text: str) -> str:
    """``text`` with its markers (a :class:`Text`'s marked form; any other string as it is)."""
    return getattr(text, "marked", text)


def render(text: str, names: Mapping[str, str] | None = None) -> str:
    """``text`` (a message, a warning, a failure's reason) with each :func:`arg` shown as ``names[arg]`` (a
    flag), else as the argument itself."""
    names = names or {}
    return _MARKED.sub(lambda m: names.get(m[1], m[1]), marked_form(text))


class PoseAppError(Exception):
    """Base class for every error a user can cause (bad path, bad model, bad checkpoint...)."""

    def render(self, names: Mapping[str, str] | None = None) -> str:
        """The message, each :func:`arg` shown as ``names[arg]`` (a flag), else as the argument itself."""
        text = str(self.args[0]) if len(self.args) == 1 else ", ".join(str(a) for a in self.args)
        return render(text, names)

    def renamed(self, names: Mapping[str, str]) -> "PoseAppError":
        """This error with its argument markers renamed (``{"model": "face_from"}``), for a caller whose own
        argument fed the call that failed. Changes the error in place and returns it."""
        if len(self.args) == 1 and isinstance(self.args[0], str):
            self.args = (_MARKED.sub(lambda m: arg(names.get(m[1], m[1])), self.args[0]),)
        return self

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:  # the markers stay in ``args`` (for ``render``), not in what is shown
        return f"{type(self).__name__}({self.render()!r})"


class SourceError(PoseAppError):
    """An input (image, folder, video, webcam, stream) cannot be read."""


class CheckpointError(PoseAppError):
    """A checkpoint file cannot be loaded or does not fit the chosen architecture."""


class UnknownNameError(PoseAppError, KeyError):
    """A model, architecture or keypoint-set name is not known; the message suggests close names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.render() if self.args else ""


class OutputError(PoseAppError):
    """An output cannot be written (unwritable --out, no display for --show...)."""


def suggest(name: str, known: "list[str] | tuple[str, ...]", what: str) -> UnknownNameError:
    """Build an UnknownNameError for ``name`` listing the closest ``known`` names."""
    import difflib

    close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return UnknownNameError(f"unknown {what} '{name}'.{hint} ({len(known)} known)")
