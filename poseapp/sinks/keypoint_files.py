"""Keypoint files: one JSON document for image sources, JSON Lines for videos and streams, CSV for both.

* :class:`JsonWriter` (image sources): one document, ``{"schema_version", "keypoint_set", "keypoint_names",
  "images": [{"image", "width", "height", "instances"}], **meta}``.
* :class:`JsonlWriter` (videos and streams): a header line ``{"header": {"schema_version", "keypoint_set",
  "keypoint_names", **meta}}``, then one ``FrameResult.to_dict()`` per line.
* :class:`CsvWriter` (``--csv``): one row per frame and instance (``csv_header`` names the columns).

README.md ("Use" and "Video") documents every field and column; ``SCHEMA_VERSION`` changes when they do.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path
from typing import IO, Any

import numpy as np

from poseapp.results import FrameResult
from poseapp.sinks.files import Closing, atomic_write, output_error, publish, reason, temp_path

logger = logging.getLogger(__name__)


SCHEMA_VERSION = 2
"""The layout of the keypoint files: 2 added track_id, keypoints_raw and this field (1: files without it)."""


def _set_header(result: FrameResult) -> dict[str, Any]:
    kset = result.poses.keypoint_set
    return {"schema_version": SCHEMA_VERSION, "keypoint_set": kset.name, "keypoint_names": list(kset.names)}


class JsonWriter(Closing):
    """Collects per-image results; on close writes ONE JSON document atomically (COCO results style).

    Layout: ``{"keypoint_set": name, "keypoint_names": [...], "images": [{"image": source, "width",
    "height", "instances": [{"bbox" (xyxy), "bbox_score", "keypoints" ([[x, y]] * K),
    "keypoint_scores"}]}], **meta}``; a page of a multi-page TIFF adds ``"page"`` (1-based) after
    ``"image"``. An image whose keypoint set differs from the first image's carries its own
    ``"keypoint_set"``. Written on close also after an exception (what was collected); when no image
    was written, no file is.
    """

    needs_image = False

    _RESERVED = ("schema_version", "keypoint_set", "keypoint_names", "images")

    def __init__(self, path: Path, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.meta = dict(meta or {})
        clash = [k for k in self._RESERVED if k in self.meta]
        if clash:
            raise ValueError(f"meta keys {clash} clash with the JSON layout")
        self._header: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "keypoint_set": None, "keypoint_names": []}
        self._images: list[dict[str, Any]] = []
        self._closed = False

    def write(self, result: FrameResult, annotated: np.ndarray | None = None) -> None:
        """Add one image's result (the drawn image is not needed)."""
        d = result.to_dict()
        if not self._images:
            self._header = _set_header(result)
        entry = {"image": d["source"], **({"page": d["page"]} if "page" in d else {}),
                 "width": d["width"], "height": d["height"]}
        if d["keypoint_set"] != self._header["keypoint_set"]:
            entry["keypoint_set"] = d["keypoint_set"]
        entry["instances"] = d["instances"]
        self._images.append(entry)

    def close(self) -> None:
        """Write the document (safe to call twice)."""
        if self._closed:
            return
        self._closed = True
        if not self._images:
            logger.info("%s: no image written, no file saved", self.path)
            return
        doc = {**self._header, "images": self._images, **self.meta}
        atomic_write(self.path, lambda f: f.write(json.dumps(doc).encode()))


class _LineFile(Closing):
    """A file written a line at a time, flushed after each: lines go to ``temp_path`` (a hidden file in the
    same folder, which can be tailed live) and the file is renamed to ``path`` on close, also after an
    exception. A write that fails (disk full) raises OutputError; the file is cut back to its last complete
    line, and closing still publishes those lines. Only a killed process leaves the temporary file (the next
    run into the folder removes it). No file when no frame was written."""

    needs_image = False

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lines_written = 0  # frames written
        self._complete = 0  # bytes of complete lines in the file
        try:
            self.temp_path = temp_path(self.path)
            self._file: IO[bytes] | None = open(self.temp_path, "wb")
        except OSError as e:
            raise output_error(self.path, e) from e

    def _line(self, text: str) -> None:
        if self._file is None:
            raise ValueError(f"{type(self).__name__} for '{self.path}' is closed")
        data = text.encode()
        try:
            self._file.write(data)
            self._file.flush()
        except OSError as e:
            self._cut_back()
            raise output_error(self.path, e) from e
        self._complete += len(data)

    def _cut_back(self) -> None:
        """Drop a partly written last line (after a failed write), so the file stays whole lines."""
        assert self._file is not None
        try:
            self._file.close()  # its buffer cannot be flushed either; closing discards it
        except OSError:
            pass
        try:
            os.truncate(self.temp_path, self._complete)
            self._file = open(self.temp_path, "ab")
        except OSError as e:
            logger.warning("%s: cannot cut the partial last line (%s)", self.temp_path, reason(e))
            self._file = None
            self.temp_path.unlink(missing_ok=True)
            self.temp_path = None  # type: ignore[assignment]

    def close(self) -> None:
        """Close and rename onto ``path`` (safe to call twice); no file when no frame was written."""
        if self._file is None:
            return
        file, self._file = self._file, None
        try:
            file.close()
        except OSError as e:
            self.temp_path.unlink(missing_ok=True)
            raise output_error(self.path, e) from e
        if self.lines_written == 0:
            self.temp_path.unlink(missing_ok=True)
            return
        publish(self.temp_path, self.path)


class JsonlWriter(_LineFile):
    """One JSON object per line for videos and streams (a :class:`_LineFile`: flushed after each line,
    renamed onto ``path`` on close).

    The first line is a header, ``{"header": {"schema_version", "keypoint_set", "keypoint_names",
    **meta}}`` (written with the first result); every other line is ``FrameResult.to_dict()``.
    """

    def __init__(self, path: Path, meta: dict[str, Any] | None = None) -> None:
        self.meta = dict(meta or {})
        super().__init__(path)

    def write(self, result: FrameResult, annotated: np.ndarray | None = None) -> None:
        """Append one frame's result (after the header on the first call; the drawn frame is not needed)."""
        if self.lines_written == 0:
            self._line(json.dumps({"header": {**_set_header(result), **self.meta}}) + "\n")
        self._line(json.dumps(result.to_dict()) + "\n")
        self.lines_written += 1


def csv_header(names: tuple[str, ...] | list[str]) -> list[str]:
    """The CSV columns for keypoints ``names``: source, frame, page, time, track_id, the box (xyxy) and its
    score, then x, y and score per keypoint (``nose_x, nose_y, nose_score, ...``)."""
    cols = ["source", "frame", "page", "time", "track_id", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2",
            "bbox_score"]
    for name in names:
        cols += [f"{name}_x", f"{name}_y", f"{name}_score"]
    return cols


class CsvWriter(_LineFile):
    """``--csv``: one row per frame and instance (a :class:`_LineFile`: flushed after each frame, renamed onto
    ``path`` on close); the columns are :func:`csv_header`'s. ``page`` is a multi-page TIFF's page (1-based;
    empty for every other frame), ``time`` seconds (empty for a still image), ``track_id`` empty when the
    instance has none, x/y the keypoints drawn (smoothed when smoothing
    is on: the model's own are in the JSON Lines' ``keypoints_raw``). A frame without instances has no row.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._names: tuple[str, ...] | None = None

    def _rows(self, rows: list[list[Any]]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        self._line(buffer.getvalue())

    def write(self, result: FrameResult, annotated: np.ndarray | None = None) -> None:
        """Append the rows of one frame's instances (the header first)."""
        names = tuple(result.poses.keypoint_set.names)
        if self._names is None:
            self._names = names
            self._rows([csv_header(names)])
        elif names != self._names:
            raise ValueError(f"{self.path}: frames of two keypoint sets cannot share one CSV file")
        f = result.frame
        time = "" if f.timestamp is None else round(f.timestamp, 4)
        rows = []
        for inst in result:
            row: list[Any] = [f.source, f.index, "" if f.page is None else f.page, time,
                              "" if inst.track_id is None else inst.track_id]
            row += [round(float(v), 3) for v in inst.box] + [round(float(inst.box_score), 5)]
            for (x, y), score in zip(inst.keypoints, inst.scores):
                row += [round(float(x), 4), round(float(y), 4), round(float(score), 5)]
            rows.append(row)
        if rows:
            self._rows(rows)
        self.lines_written += 1
