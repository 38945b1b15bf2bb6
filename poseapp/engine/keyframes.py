"""Detection every N frames: between detections each instance's box comes from its own keypoints.

The way rtmlib's ``PoseTracker`` (``det_frequency``) and MMDeploy's pose tracker (``det_interval``) do it: on
a key frame the detector's boxes are used; on the frames after it, an instance's box is the extent of its
confident keypoints in the frame before, padded as the recipe pads a detector's box. When an instance is
lost (too few confident keypoints in this frame where there were enough in the one before, or two
instances merged into one box) the detector runs again on that frame, early; an instance the detector found
with too few confident keypoints is not followed, and waits for the next key frame. Each frame then depends on
the one before, so this pose stage runs frame by frame (the detector stage still works ahead).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from poseapp.engine.batching import Prepared, frame_result
from poseapp.estimator import make_crops
from poseapp.results import Detections, Frame, FrameResult

if TYPE_CHECKING:
    from poseapp.engine.queues import Inbox
    from poseapp.estimator import TopDownEstimator

MIN_CONFIDENT = 0.25
"""An instance is lost when fewer than this fraction of its keypoints (and fewer than 2) score >= kpt_thr."""
DUPLICATE_IOU = 0.7
"""Two boxes from keypoints that overlap this much follow one instance: the weaker is dropped."""


def boxes_from_keypoints(keypoints: np.ndarray, scores: np.ndarray, *, kpt_thr: float, padding: float,
                         size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The box each instance's confident keypoints give, as a detector would draw it.

    Args:
        keypoints: (N, K, 2) image pixels.
        scores: (N, K).
        kpt_thr: keypoints scoring below it are left out.
        padding: the box around them grows by this factor about its centre (the recipe's ``bbox_padding``).
        size: the image's (height, width); boxes are clipped to it.

    Returns:
        (boxes (N, 4) float32 xyxy, kept (N,) bool): ``kept`` is False for an instance that is lost (fewer
        than MIN_CONFIDENT of its keypoints, or fewer than 2, score >= kpt_thr); its box row is zeros.
    """
    n, k = scores.shape[:2]
    boxes = np.zeros((n, 4), np.float32)
    kept = np.zeros(n, bool)
    h, w = size
    for i in range(n):
        good = (scores[i] >= kpt_thr) & np.all(np.isfinite(keypoints[i]), axis=1)
        if good.sum() < max(2, MIN_CONFIDENT * k):
            continue
        pts = keypoints[i][good]
        low, high = pts.min(axis=0), pts.max(axis=0)
        center, half = (low + high) / 2, (high - low) / 2 * padding
        box = np.concatenate([center - half, center + half])
        box = np.clip(box, 0, [w, h, w, h])
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            continue
        boxes[i], kept[i] = box, True
    return boxes, kept


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of (N, 4) and (M, 4) xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def drop_duplicates(boxes: np.ndarray, strength: np.ndarray, iou: float = DUPLICATE_IOU) -> np.ndarray:
    """(N,) bool: which boxes to keep, the strongest first, dropping any that overlaps a kept one by > iou."""
    keep = np.zeros(len(boxes), bool)
    for i in np.argsort(-strength, kind="stable"):
        if not keep.any() or box_iou(boxes[i:i + 1], boxes[keep]).max() <= iou:
            keep[i] = True
    return keep


@dataclass
class _Previous:
    detections: Detections
    keypoints: np.ndarray
    scores: np.ndarray


def propagated_poses(inbox: "Inbox", estimator: "TopDownEstimator", detect: Callable[[Frame], Detections], *,
                     kpt_thr: float) -> Iterator[FrameResult]:
    """The pose stage for ``--det-every N`` > 1 (see the module's doc).

    Args:
        inbox: Prepared frames; ``detections`` is None on the frames the detector skipped.
        estimator: the pose model.
        detect: runs the detector on one frame (for an early detection when an instance is lost).
        kpt_thr: the score a keypoint needs to count towards its instance's box.
    """
    recipe = estimator.recipe
    previous: _Previous | None = None

    def early(frame: Frame) -> tuple[Detections, float]:
        t0 = time.perf_counter()
        detections = detect(frame)
        return detections, time.perf_counter() - t0

    for item in inbox:
        detect_time = item.detect_time
        detections, crops = item.detections, item.crops
        carried = detections is None
        if carried:
            detections, lost = _carried(previous, item.frame, kpt_thr, recipe.bbox_padding)
            if lost:  # two instances of the frame before merged into one box: detect again, now
                detections, seconds = early(item.frame)
                detect_time, carried = detect_time + seconds, False
            crops = make_crops([item.frame.image], [detections.boxes], recipe)
        start = time.perf_counter()
        keypoints, scores = estimator.keypoints_of(crops)
        pose_time = time.perf_counter() - start
        if carried:
            _, kept = boxes_from_keypoints(keypoints, scores, kpt_thr=kpt_thr, padding=1.0, size=item.frame.shape)
            if not kept.all():  # an instance was lost in this frame: detect again, now
                detections, seconds = early(item.frame)
                carried = False
                crops = make_crops([item.frame.image], [detections.boxes], recipe)
                start = time.perf_counter()
                keypoints, scores = estimator.keypoints_of(crops)
                pose_time += time.perf_counter() - start
                detect_time += seconds
        previous = _Previous(detections, keypoints, scores)
        yield frame_result(Prepared(item.frame, detections, crops, detect_time, detected=not carried), keypoints,
                           scores, pose_time, estimator)


def _carried(previous: _Previous | None, frame: Frame, kpt_thr: float,
             padding: float) -> tuple[Detections, bool]:
    """The boxes the previous frame's keypoints give this frame, each keeping its detector score and class,
    and whether an instance was lost on the way: a duplicate of another (two followed one person). An
    instance without enough confident keypoints is left out but not counted lost: one the detector found
    weak stays weak, and detecting again for it on every frame would undo ``det_every``."""
    if previous is None or not len(previous.keypoints):
        return Detections.empty(), False
    boxes, kept = boxes_from_keypoints(previous.keypoints, previous.scores, kpt_thr=kpt_thr, padding=padding,
                                       size=frame.shape)
    strength = np.where(kept, previous.scores.mean(axis=1), -1.0)
    unique = drop_duplicates(boxes, strength)
    merged = bool((kept & ~unique).any())
    kept &= unique
    d = previous.detections
    return Detections(boxes[kept], d.scores[kept], d.labels[kept]), merged


def locked(detector: Callable, lock: threading.Lock) -> Callable[[Frame], Detections]:
    """``detector`` on one frame, one call at a time (the detector stage and an early detection share it)."""

    def detect(frame: Frame) -> Detections:
        with lock:
            return detector([frame])[0]

    return detect
