"""Box sources: frames in, boxes out, and which boxes a pose model gets.

Every box source is a callable ``detector(frames) -> list[Detections]`` (one entry per frame, in order):

- ``YoloDetector`` (``yolo``): an ultralytics YOLO detector (a .pt read weights-only through an allow-list,
  ``yolo_checkpoint``; an .onnx export; an OpenVINO folder; a name it downloads), all frames at once.
- ``WholeFrameDetector`` (``base``): one box covering the frame (Locust, Zebra, Animal Kingdom, faces).
- ``BoxesFile`` (``coco``): precomputed boxes from a COCO detection-results JSON, matched by file name or id.
- ``FaceFromPose`` (``face``): face boxes for face models (WFLW) from a person model's head keypoints.

``create_detector(model, ...)`` (``create``) gives a pose model its default boxes, by its data set
(``rules``: the one table the CLI, its ``--help`` and ``python infer.py models`` use), with the overrides
``predict`` offers. Boxes are xyxy float32 image pixels everywhere.
"""
from __future__ import annotations

from poseapp.boxes.base import Detector, DetectorError, WholeFrameDetector
from poseapp.boxes.coco import BoxesFile
from poseapp.boxes.create import create_detector
from poseapp.boxes.face import COCO_HEAD, FaceFromPose, check_coco_head, face_boxes_from_keypoints
from poseapp.boxes.rules import (
    COCO_ANIMALS,
    PERSON,
    BoxRule,
    box_rule_for,
    box_rules,
    detector_classes_for,
    resolve_classes,
)
from poseapp.boxes.yolo import YoloDetector, detector_url, fetch_detector, is_detector_name

__all__ = [
    "BoxRule", "BoxesFile", "COCO_ANIMALS", "COCO_HEAD", "Detector", "DetectorError", "FaceFromPose", "PERSON",
    "WholeFrameDetector", "YoloDetector", "box_rule_for", "box_rules", "check_coco_head", "create_detector",
    "detector_classes_for", "detector_url", "face_boxes_from_keypoints", "fetch_detector", "is_detector_name",
    "resolve_classes",
]
