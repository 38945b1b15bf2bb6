"""Result values: what the pipeline yields for each frame. Frozen, indexable, serialisable.

Coordinates are image pixels everywhere; boxes are xyxy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from poseapp.keypoints import KeypointSet


@dataclass(frozen=True)
class Frame:
    """One image from a source.

    Attributes:
        image: (H, W, 3) uint8 BGR pixels.
        source: the file path or stream name the frame came from.
        index: frame index within its source (0 for a single image).
        timestamp: seconds from the start of a video or stream; None for still images.
        kind: ``"image"``, ``"video"`` or ``"stream"``.
        alpha: (H, W) uint8 alpha channel of an image file that has one (the model never sees it; a
            saved PNG/TIFF/WebP keeps it); None otherwise.
        page: the page (1-based) of a multi-page TIFF; None for every other frame.
    """

    image: np.ndarray
    source: str
    index: int = 0
    timestamp: float | None = None
    kind: str = "image"
    alpha: np.ndarray | None = field(default=None, repr=False, compare=False)
    page: int | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.image.shape[0]), int(self.image.shape[1])


@dataclass(frozen=True)
class Detections:
    """Boxes for one frame.

    Attributes:
        boxes: (N, 4) float32 xyxy image pixels.
        scores: (N,) float32 detector confidence (1.0 for user or whole-frame boxes).
        labels: (N,) int64 detector class ids (-1 where unknown).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    @staticmethod
    def empty() -> "Detections":
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass(frozen=True)
class Instance:
    """One instance of a FrameResult (a person, an animal, a garment...).

    ``keypoints`` is what is drawn and written (smoothed when smoothing is on), ``keypoints_raw`` the model's
    own; ``track_id`` is None when the run does not track, or the instance has no confirmed track yet.
    """

    box: np.ndarray  # (4,) xyxy
    box_score: float
    keypoints: np.ndarray  # (K, 2)
    scores: np.ndarray  # (K,)
    track_id: int | None = None
    keypoints_raw: np.ndarray | None = None  # (K, 2); None: the same as keypoints (no smoothing)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.track_id is not None:
            d["track_id"] = self.track_id
        d["bbox"] = [round(float(v), 3) for v in self.box]
        d["bbox_score"] = round(float(self.box_score), 5)
        d["keypoints"] = _points(self.keypoints)
        if self.keypoints_raw is not None:
            d["keypoints_raw"] = _points(self.keypoints_raw)
        d["keypoint_scores"] = [round(float(s), 5) for s in self.scores]
        return d


def _points(keypoints: np.ndarray) -> list[list[float]]:
    return [[round(float(x), 4), round(float(y), 4)] for x, y in keypoints]


@dataclass(frozen=True)
class Poses:
    """Keypoints of all instances in one frame.

    Attributes:
        boxes: (N, 4) float32 xyxy boxes the crops were made from.
        box_scores: (N,) float32.
        keypoints: (N, K, 2) float64 image pixels.
        scores: (N, K) float64 keypoint confidences.
        keypoint_set: the layout the K keypoints follow.
        track_ids: (N,) int64 track IDs (-1: no confirmed track yet), or None when the run does not track.
        keypoints_raw: (N, K, 2) the model's keypoints when ``keypoints`` are smoothed, else None.
    """

    boxes: np.ndarray
    box_scores: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray
    keypoint_set: KeypointSet
    track_ids: np.ndarray | None = None
    keypoints_raw: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.boxes)

    def instance(self, i: int) -> Instance:
        track = None if self.track_ids is None or self.track_ids[i] < 0 else int(self.track_ids[i])
        raw = None if self.keypoints_raw is None else self.keypoints_raw[i]
        return Instance(self.boxes[i], float(self.box_scores[i]), self.keypoints[i], self.scores[i], track, raw)


@dataclass(frozen=True)
class FrameResult:
    """What the pipeline yields per frame: the frame and the poses found in it.

    ``result[i]`` is the i-th Instance; ``len(result)`` the number of instances. ``detected`` is False where
    the detector did not run on the frame (``--det-every``: the boxes came from the frame before).
    """

    frame: Frame
    poses: Poses
    timings: dict[str, float] = field(default_factory=dict, compare=False)
    detected: bool = True

    def __len__(self) -> int:
        return len(self.poses)

    def __getitem__(self, i: int) -> Instance:
        p = self.poses
        if not -len(p) <= i < len(p):
            raise IndexError(f"instance {i} out of range ({len(p)} instances)")
        return p.instance(i)

    def __iter__(self) -> Iterator[Instance]:
        return (self[i] for i in range(len(self)))

    @property
    def keypoints(self) -> np.ndarray:
        """(N, K, 2) image pixels."""
        return self.poses.keypoints

    @property
    def scores(self) -> np.ndarray:
        """(N, K) keypoint scores."""
        return self.poses.scores

    @property
    def boxes(self) -> np.ndarray:
        """(N, 4) xyxy."""
        return self.poses.boxes

    @property
    def track_ids(self) -> np.ndarray | None:
        """(N,) int64 track IDs (-1: not confirmed yet), None when the run does not track."""
        return self.poses.track_ids

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the frame's identity and one entry per instance."""
        f = self.frame
        h, w = f.shape
        d: dict[str, Any] = {"source": f.source, "frame": f.index, "width": w, "height": h}
        if f.page is not None:
            d["page"] = f.page
        if f.timestamp is not None:
            d["timestamp"] = round(f.timestamp, 4)
        d["keypoint_set"] = self.poses.keypoint_set.name
        d["instances"] = [p.to_dict() for p in self]
        return d

    def to_json(self) -> str:
        import json

        return json.dumps(self.to_dict())
