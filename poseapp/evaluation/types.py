"""The records evaluation passes around: one predicted instance, one ground-truth instance."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from poseapp.errors import PoseAppError


class MetricError(PoseAppError, ValueError):
    """A metric cannot be computed from these inputs: the annotation file or predictions cannot be evaluated,
    or the inputs or settings do not fit (shapes, unknown norm item...); the message names the file and fix."""


@dataclass
class KeypointPrediction:
    """One predicted instance, as MMPose's evaluators receive it from a top-down model.

    Attributes:
        id: the sample's id: the annotation id when the boxes are the ground truth's, else the index of the
            box in the detections file (MMPose's ``id``); used to sort instances within an image.
        image_id: the annotation file's image id.
        category_id: the annotation file's category id.
        bbox: (4,) xyxy box the model was run on, image pixels.
        bbox_score: the box's score (1 for ground-truth boxes).
        keypoints: (K, 2) float32 image pixels.
        keypoint_scores: (K,) float32.
        area: the OKS-NMS area MMPose's CocoMetric uses: the product of the padded, aspect-fixed box scale
            (``bbox_scale``) the crop was made from, not the box's own area.
    """

    id: int
    image_id: int
    category_id: int
    bbox: np.ndarray
    bbox_score: float
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    area: float
