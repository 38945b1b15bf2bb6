"""Precomputed boxes: the one reader of COCO detection-results (and annotation) files."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from poseapp.boxes.base import DetectorError
from poseapp.geometry import xywh_to_xyxy
from poseapp.results import Detections, Frame

log = logging.getLogger(__name__)


_Key = tuple[str, "str | int"]  # ("name", "000000000785.jpg") or ("id", 785)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class BoxesFile:
    """Precomputed boxes from a COCO detection-results JSON.

    The file is a list of ``{"image_id": int | str, "bbox": [x, y, w, h], "score": float,
    "category_id": int}``; an entry may name its image with ``"file_name"`` or ``"image"`` instead of
    ``image_id``. A COCO annotation file (a dict with ``annotations`` and ``images``) is read the same way
    (ground-truth boxes, score 1.0 where absent).

    Frames are matched by file name (basename of ``Frame.source``), by stem, or, for an integer image id,
    by the integer value of the file stem (``000000000785.jpg`` <-> 785). ``ann_file`` (a COCO annotation
    JSON with ``images: [{id, file_name}]``) maps ids to file names instead.

    Boxes keep file order. ``[x, y, w, h]`` becomes ``[x, y, x + w, y + h]`` computed in float64, then
    cast to float32 (the rule MMPose's parity fixtures follow, bit for bit). Labels are the file's
    ``category_id`` (COCO's 1-based ids: 1 = person; -1 where absent); ``classes`` keeps only those ids and
    ``min_score`` drops lower scores. A frame with no entry gets empty Detections.

    Raises DetectorError naming the file and the problem for a missing, unreadable or malformed file.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        classes: Sequence[int] | None = None,
        min_score: float = 0.0,
        ann_file: str | Path | None = None,
    ) -> None:
        self.path = Path(path)
        data = _read_json(self.path, "boxes file")
        id_to_name = _image_names(_read_json(Path(ann_file), "annotation file"), Path(ann_file)) if ann_file else {}
        if isinstance(data, dict) and "annotations" in data:
            id_to_name = {**_image_names(data, self.path), **id_to_name}
            data = data["annotations"]
        if not isinstance(data, list):
            raise DetectorError(
                f"boxes file {self.path} must hold a JSON list of {{image_id, bbox, score, category_id}} entries, "
                f"got {type(data).__name__}"
            )
        boxes, scores, labels, keys = _parse_entries(data, self.path, id_to_name)
        keep = scores >= min_score
        if classes is not None:
            keep &= np.isin(labels, np.asarray(list(classes), np.int64))
        self._boxes, self._scores, self._labels = boxes[keep], scores[keep], labels[keep]
        self._rows: dict[_Key, list[int]] = {}
        for row, key in enumerate(k for k, kept in zip(keys, keep) if kept):
            self._rows.setdefault(key, []).append(row)
        log.info("boxes file %s: %d of %d boxes kept, %d images", self.path, keep.sum(), len(keep), len(self._rows))

    def __call__(self, frames: Sequence[Frame]) -> list[Detections]:
        return [self.for_source(f.source) for f in frames]

    def for_source(self, source: str) -> Detections:
        """The boxes of the image file ``source`` (a path or a file name), in file order."""
        rows = sorted({r for key in _frame_keys(source) for r in self._rows.get(key, [])})
        if not rows:
            return Detections.empty()
        idx = np.asarray(rows)
        return Detections(self._boxes[idx], self._scores[idx], self._labels[idx])


def _read_json(path: Path, what: str) -> Any:
    """The parsed JSON at ``path``, or a DetectorError naming it and what is wrong (``jsonfile.read_json``)."""
    from poseapp.jsonfile import read_json

    return read_json(path, what, DetectorError)


def _image_names(ann: Any, path: Path) -> dict[int, str]:
    """id -> file basename from a COCO annotation dict's ``images`` list."""
    images = ann.get("images") if isinstance(ann, dict) else None
    if not isinstance(images, list):
        raise DetectorError(f"annotation file {path} has no 'images' list of {{id, file_name}}")
    try:
        return {int(im["id"]): Path(str(im["file_name"])).name for im in images}
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise DetectorError(f"annotation file {path}: an 'images' entry lacks a valid id or file_name ({e})") from e


def _parse_entries(
    entries: list[Any], path: Path, id_to_name: Mapping[int, str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[_Key]]:
    """(N, 4) float32 xyxy, (N,) float32 scores, (N,) int64 category ids, and each entry's image key."""
    xywh = np.zeros((len(entries), 4), np.float64)
    scores = np.ones(len(entries), np.float64)
    labels = np.full(len(entries), -1, np.int64)
    keys: list[_Key] = []
    for i, entry in enumerate(entries):
        where = f"boxes file {path}: entry {i}"
        if not isinstance(entry, dict):
            raise DetectorError(f"{where} is not an object")
        xywh[i] = _bbox(entry, where)
        try:
            scores[i] = float(entry.get("score", 1.0))
            labels[i] = int(entry.get("category_id", -1))
        except (TypeError, ValueError) as e:
            raise DetectorError(f"{where} has a non-numeric score or category_id ({e})") from e
        except OverflowError as e:  # a category_id beyond int64, a number beyond a float
            raise DetectorError(f"{where} has a score or category_id out of range ({e}): category_id is a COCO "
                                f"class id (1 = person), score a number") from e
        if not abs(scores[i]) <= _FLOAT32_MAX:  # NaN, an infinity, or one once float32
            raise DetectorError(f"{where} has the score {entry.get('score')!r}: a score is a finite number")
        keys.append(_entry_key(entry, where, id_to_name))
    xyxy = xywh_to_xyxy(xywh).astype(np.float32)  # the sums in float64 (range checked above), then float32
    return xyxy, scores.astype(np.float32), labels, keys


def _bbox(entry: Mapping[str, Any], where: str) -> list[float]:
    """``entry["bbox"]`` as 4 float64 values [x, y, w, h] with w, h >= 0."""
    if "bbox" not in entry:
        raise DetectorError(f"{where} has no bbox")
    bbox = entry["bbox"]
    values: list[float] = []
    if isinstance(bbox, (list, tuple)):  # not a string: "1234" would read as [1, 2, 3, 4]
        try:
            values = [float(v) for v in bbox]
        except (TypeError, ValueError, OverflowError):
            values = []
    if len(values) != 4 or not all(np.isfinite(values)):
        raise DetectorError(f"{where}: bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}")
    if values[2] < 0 or values[3] < 0:
        raise DetectorError(f"{where}: bbox {bbox!r} has a negative width or height (expected [x, y, w, h])")
    x, y, w, h = values
    if max(abs(x), abs(y), abs(x + w), abs(y + h)) > _FLOAT32_MAX:  # boxes are float32: it would be infinite
        raise DetectorError(f"{where}: bbox {bbox!r} is beyond float32's range (expected [x, y, w, h] in pixels)")
    return values


def _entry_key(entry: Mapping[str, Any], where: str, id_to_name: Mapping[int, str]) -> _Key:
    """The image an entry belongs to, as a frame-matching key."""
    for field in ("file_name", "image"):
        if isinstance(entry.get(field), str):
            return ("name", Path(entry[field]).name)
    image_id = entry.get("image_id")
    if isinstance(image_id, str):
        if not (image_id.isascii() and image_id.isdigit()):  # "\u00b2".isdigit(), but int() refuses it
            return ("name", Path(image_id).name)
        image_id = int(image_id)
    if isinstance(image_id, int) and not isinstance(image_id, bool):
        return ("name", id_to_name[image_id]) if image_id in id_to_name else ("id", image_id)
    raise DetectorError(f"{where} has no image_id, file_name or image")


def _frame_keys(source: str) -> list[_Key]:
    """The keys a frame from ``source`` answers to: basename, stem, and the stem's integer value."""
    p = Path(source)
    keys: list[_Key] = [("name", p.name), ("name", p.stem)]
    if p.stem.isascii() and p.stem.isdigit():  # as _entry_key: "\u00b2".isdigit(), but int() refuses it
        keys.append(("id", int(p.stem)))
    return keys
