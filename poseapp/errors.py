"""Typed errors a user can cause. Each message names the file or flag and the fix.

The CLI prints ``str(error)`` as one line and exits non-zero; ``--verbose`` adds the traceback.
"""
from __future__ import annotations


class PoseAppError(Exception):
    """Base class for every error a user can cause (bad path, bad model, bad checkpoint...)."""


class SourceError(PoseAppError):
    """An input (image, folder, video, webcam, stream) cannot be read."""


class CheckpointError(PoseAppError):
    """A checkpoint file cannot be loaded or does not fit the chosen architecture."""


class UnknownNameError(PoseAppError, KeyError):
    """A model, architecture or keypoint-set name is not known; the message suggests close names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class OutputError(PoseAppError):
    """An output cannot be written (unwritable --out, no display for --show...)."""


def suggest(name: str, known: "list[str] | tuple[str, ...]", what: str) -> UnknownNameError:
    """Build an UnknownNameError for ``name`` listing the closest ``known`` names."""
    import difflib

    close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return UnknownNameError(f"unknown {what} '{name}'.{hint} ({len(known)} known)")
