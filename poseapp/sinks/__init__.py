"""Where results go: writers with one interface, and the preview window.

Every writer is a context manager with ``write(result, annotated)`` (a :class:`Sink`): ``result`` is the
frame's :class:`~poseapp.results.FrameResult`, ``annotated`` its drawn image (None when no writer of the run
needs one). Closing a writer, also through an exception (Ctrl-C, SIGTERM, a write error), finalises what it
has, so nothing written so far is lost, and no half-written file ever carries its final name (``files``).

- ``files``: temporary names, the one atomic write, the run folder (``runs/predict2``...), stale temps.
- ``images``: :class:`ImageWriter`, annotated images under their sources' names.
- ``video``: :class:`VideoWriter`, an annotated ``<stem>.mp4`` at the source's size and rate.
- ``keypoint_files``: :class:`JsonWriter` (one document for images), :class:`JsonlWriter` (a line a frame),
  :class:`CsvWriter` (a row per frame and instance).
- ``window``: :class:`Window`, the ``--show`` preview.

``poseapp.outputs.open_outputs`` picks the writers a source's run needs.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from poseapp.results import FrameResult
from poseapp.sinks.files import atomic_write, next_run_dir, remove_stale_temps
from poseapp.sinks.images import ImageWriter, image_output_name
from poseapp.sinks.keypoint_files import CsvWriter, JsonlWriter, JsonWriter
from poseapp.sinks.video import DEFAULT_FPS, VideoWriter, video_output_name
from poseapp.sinks.window import Window


class Sink(Protocol):
    """What every writer offers (``with writer: writer.write(result, annotated)``)."""

    needs_image: bool
    """Whether ``write`` uses ``annotated`` (so the run must draw the frame)."""

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> object: ...

    def close(self) -> None: ...

    def __enter__(self) -> "Sink": ...

    def __exit__(self, *exc: object) -> None: ...


__all__ = ["DEFAULT_FPS", "CsvWriter", "ImageWriter", "JsonWriter", "JsonlWriter", "Sink", "VideoWriter", "Window",
           "atomic_write", "image_output_name", "next_run_dir", "remove_stale_temps", "video_output_name"]
