"""Keypoint files: one JSON document for image sources, JSON Lines for videos and streams.

* :class:`JsonWriter` (image sources): one document,
  ``{"keypoint_set", "keypoint_names", "images": [{"image", "width", "height", "instances"}], **meta}``.
* :class:`JsonlWriter` (videos and streams): a header line ``{"header": {"keypoint_set",
  "keypoint_names", **meta}}``, then one ``FrameResult.to_dict()`` per line.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import IO, Any

import numpy as np

from poseapp.results import FrameResult
from poseapp.sinks.files import Closing, atomic_write, output_error, publish, reason, temp_path

logger = logging.getLogger(__name__)


def _set_header(result: FrameResult) -> dict[str, Any]:
    kset = result.poses.keypoint_set
    return {"keypoint_set": kset.name, "keypoint_names": list(kset.names)}


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

    _RESERVED = ("keypoint_set", "keypoint_names", "images")

    def __init__(self, path: Path, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.meta = dict(meta or {})
        clash = [k for k in self._RESERVED if k in self.meta]
        if clash:
            raise ValueError(f"meta keys {clash} clash with the JSON layout")
        self._header: dict[str, Any] = {"keypoint_set": None, "keypoint_names": []}
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


class JsonlWriter(Closing):
    """One JSON object per line for videos and streams, flushed after each line.

    The first line is a header, ``{"header": {"keypoint_set", "keypoint_names", **meta}}`` (written
    with the first result); every other line is ``FrameResult.to_dict()``. Lines go to
    ``temp_path`` (a hidden file in the same folder, which can be tailed live) and the file is renamed
    to ``path`` on close, also after an exception. A write that fails (disk full) raises OutputError;
    the file is cut back to its last complete line, and closing still publishes those lines. Only a
    killed process leaves the temporary file (the next run into the folder removes it).
    """

    needs_image = False

    def __init__(self, path: Path, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.meta = dict(meta or {})
        self.lines_written = 0
        self._complete = 0  # bytes of complete lines in the file
        try:
            self.temp_path = temp_path(self.path)
            self._file: IO[bytes] | None = open(self.temp_path, "wb")
        except OSError as e:
            raise output_error(self.path, e) from e

    def _line(self, obj: dict[str, Any]) -> None:
        if self._file is None:
            raise ValueError(f"JsonlWriter for '{self.path}' is closed")
        data = (json.dumps(obj) + "\n").encode()
        try:
            self._file.write(data)
            self._file.flush()
        except OSError as e:
            self._cut_back()
            raise output_error(self.path, e) from e
        self._complete += len(data)

    def _cut_back(self) -> None:
        """Drop a partly written last line (after a failed write), so the file stays valid JSON Lines."""
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

    def write(self, result: FrameResult, annotated: np.ndarray | None = None) -> None:
        """Append one frame's result (after the header on the first call; the drawn frame is not needed)."""
        if self.lines_written == 0:
            self._line({"header": {**_set_header(result), **self.meta}})
        self._line(result.to_dict())
        self.lines_written += 1

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
