"""Face boxes for face models (WFLW) from a person model's head keypoints on a person detector's boxes."""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from poseapp.boxes.base import Detector, DetectorError
from poseapp.errors import arg
from poseapp.results import Detections, Frame

log = logging.getLogger(__name__)

COCO_HEAD = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")  # COCO keypoints 0-4

# A mean adult head in face widths (ear to ear = 1; anthropometric means: pupils 63 mm apart, ears 145 mm),
# origin between the pupils, x to the subject's left, y down, z out of the face: COCO's nose (its tip), eyes
# (pupils) and ears (the tragus, beside the ear canal), in COCO_HEAD order.
_HEAD_3D = np.array([
    [0.0, 0.30, 0.18],  # nose tip: 43 mm below the pupils, 26 mm in front of them
    [0.22, 0.0, 0.0],  # left eye
    [-0.22, 0.0, 0.0],  # right eye
    [0.5, 0.12, -0.55],  # left ear: 17 mm below the pupils, 80 mm behind them
    [-0.5, 0.12, -0.55],  # right ear
])
# No view of the head shows two of its points further apart than they are in 3D: pixel distance / span is
# a lower bound on the face width in pixels, whatever the head's yaw, pitch and roll.
_HEAD_SPAN = np.linalg.norm(_HEAD_3D[:, None] - _HEAD_3D[None], axis=-1)
FACE_TOP = 0.2  # brow top above the eye line, in face widths
FACE_BOTTOM = 0.8  # chin below the eye line, in face widths


def face_boxes_from_keypoints(
    keypoints: np.ndarray, scores: np.ndarray, thr: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """Face boxes from COCO head keypoints, shaped like WFLW's (a tight box around its 98 face landmarks).

    Args:
        keypoints: (N, K, 2) image pixels of N persons; the first 5 of the K are COCO's nose, left eye,
            right eye, left ear, right ear (COCO-17 and its supersets).
        scores: (N, K) keypoint confidences.
        thr: a head keypoint counts when its score is at least this.

    Returns:
        boxes (M, 4) float32 xyxy image pixels, and kept (M,) int64: the person each box belongs to.
        A person with fewer than 2 head keypoints scoring at least ``thr`` (or whose confident head
        keypoints all coincide) gets no box.

    The rule, in face widths ``w`` (ear to ear, which a WFLW box spans; it is as tall as wide):

    - ``w`` is the largest ``pixel distance / 3D distance`` over the pairs of confident head keypoints, the
      3D distances taken on a mean head (``_HEAD_3D``). A pair never looks longer than it is, so each ratio
      is a lower bound on ``w`` and the largest is the least foreshortened: the ears in a frontal view, the
      eyes when an ear is hidden, ear to nose or eye in profile.
    - Vertically, the box runs from ``FACE_TOP`` = 0.2 w above the eye line (the brows) to ``FACE_BOTTOM``
      = 0.8 w below it (the chin; about 1.7 nose-to-eye heights below the nose). The eye line is the
      confident eyes' mean y, else the ears' mean y less 0.12 w (the ears sit that far below the pupils).
    - Horizontally, it is centred on the confident keypoints' x extent, ``w`` wide (wider if they span
      more): ear to ear in a frontal view, ear to nose in profile.

    On WFLW's ground truth (its pupils as eyes, its nose tip as nose) the box has IoU 0.75 or more with the
    tight landmark box (``tests/test_detect.py``). The box ignores roll: for a tilted head it is the upright
    face's box, a little smaller than the tilted face's (the pose model's crop padding covers that).
    """
    kpts = np.asarray(keypoints, np.float64)[:, : len(COCO_HEAD)]
    conf = np.asarray(scores, np.float64)[:, : len(COCO_HEAD)]
    boxes, kept = [], []
    for i, (points, ok) in enumerate(zip(kpts, conf >= thr)):
        idx = np.flatnonzero(ok & np.isfinite(points).all(axis=1))
        if len(idx) < 2:
            continue
        a, b = np.triu_indices(len(idx), k=1)
        pair_px = np.linalg.norm(points[idx[a]] - points[idx[b]], axis=1)
        w = float((pair_px / _HEAD_SPAN[idx[a], idx[b]]).max())
        if w <= 0:
            continue
        eyes, ears = idx[(idx == 1) | (idx == 2)], idx[idx >= 3]
        eye_y = points[eyes, 1].mean() if len(eyes) else points[ears, 1].mean() - _HEAD_3D[3, 1] * w
        x0, x1 = points[idx, 0].min(), points[idx, 0].max()
        half = max(w, x1 - x0) / 2
        cx = (x0 + x1) / 2
        boxes.append([cx - half, eye_y - FACE_TOP * w, cx + half, eye_y + FACE_BOTTOM * w])
        kept.append(i)
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(kept, np.int64)


def check_coco_head(keypoint_set: Any, model: str) -> None:
    """Raise DetectorError unless ``keypoint_set`` (a KeypointSet) starts with COCO's nose, eyes and ears."""
    if tuple(keypoint_set.names[: len(COCO_HEAD)]) != COCO_HEAD:
        raise DetectorError(
            f"{model} has the {keypoint_set.name} keypoint set: face boxes need a person model with COCO "
            f"keypoints (nose, eyes and ears first), e.g. {arg('face_from')} res50_coco-256x192"
        )


class FaceFromPose:
    """Face boxes for face models (WFLW): a person model's head keypoints on a person detector's boxes.

    Args:
        persons: finds the people (a YoloDetector keeping the person class, or WholeFrameDetector).
        estimator: a person pose model with COCO keypoints (``poseapp.create_model("res50_coco-256x192")``):
            ``estimator(images, boxes) -> [(keypoints (N, K, 2), scores (N, K)), ...]``, with a ``keypoint_set``.
        thr: a head keypoint counts when it scores at least this.

    One face box per person with at least 2 confident head keypoints (``face_boxes_from_keypoints``),
    clipped to the frame; a box left with no area (a face outside the frame) is dropped. Scores are the
    person boxes' scores; labels are -1 (no detector class). Raises DetectorError on construction for a
    model whose keypoints do not start with COCO's nose, eyes and ears.
    """

    def __init__(self, persons: Detector, estimator: Any, thr: float = 0.3) -> None:
        check_coco_head(estimator.keypoint_set, getattr(getattr(estimator, "recipe", None), "name", "the model"))
        self.persons = persons
        self.estimator = estimator
        self.thr = thr

    def __call__(self, frames: Sequence[Frame]) -> list[Detections]:
        if not frames:
            return []
        people = self.persons(frames)
        poses = self.estimator([f.image for f in frames], [d.boxes for d in people])
        out = []
        for frame, det, (keypoints, scores) in zip(frames, people, poses):
            boxes, kept = face_boxes_from_keypoints(keypoints, scores, self.thr)
            h, w = frame.shape
            boxes = np.clip(boxes, 0, np.array([w, h, w, h], np.float32))
            inside = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes, kept = boxes[inside], kept[inside]
            log.debug("%s: %d of %d persons gave a face box", frame.source, len(kept), len(det))
            out.append(Detections(boxes, det.scores[kept], np.full(len(kept), -1, np.int64)))
        return out
