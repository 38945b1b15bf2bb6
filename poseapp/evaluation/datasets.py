"""Data set readers: annotation files -> the instances a top-down model is evaluated on, as MMPose 1.3.2's
data sets parse them (``BaseCocoStyleDataset.parse_data_info`` and ``_is_valid_instance``, the Locust,
Zebra and WFLW overrides, ``MpiiDataset._load_annotations``, ``_load_detection_results``).

- ``read_coco_style(ann_file, images, dataset)``: COCO-style JSON (COCO, CrowdPose, AP-10K, AnimalPose,
  Animal Kingdom, Locust, Zebra, DeepFashion, DeepFashion2, WFLW).
- ``read_mpii(ann_file, images, headboxes=None)``: MPII's JSON list (joints, joints_vis, center, scale).
- ``read_detections(boxes_file, eval_set)``: a COCO detection-results file (xywh, score) as the boxes to run
  on (person class only, like MMPose).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from poseapp.errors import PoseAppError
from poseapp.geometry import xywh_to_xyxy

log = logging.getLogger(__name__)

_PIXEL_STD = 200.0
_MPII_SC_BIAS = 0.6  # MPII head size = 0.6 x the head box diagonal
_MPII_HEAD_TOP, _MPII_UPPER_NECK = 9, 8
_FIXED_BOXES = {"locust": (0.0, 0.0, 160.0, 160.0), "zebra": (0.0, 0.0, 160.0, 160.0)}  # MMPose's fixed boxes


class DatasetError(PoseAppError):
    """An annotation, boxes or head-box file cannot be read or does not fit; names the file and the fix."""


@dataclass
class GroundTruth:
    """One annotated instance, as MMPose's data set hands it to the model and the evaluator.

    Attributes:
        id: the annotation id (COCO-style) or the index in the list (MPII).
        image_id, category_id: as in the annotation file (MPII: the image file's number, 1).
        image: path of the image file.
        bbox: (4,) xyxy float32: the box the model runs on with ground-truth boxes, and PCK's normaliser.
        keypoints: (K, 2) float32 ground-truth locations.
        visible: (K,) float32, min(1, v): the evaluators' mask is ``visible != 0`` (MMPose casts it to bool).
        head_size: MPII's PCKh normaliser, else None.
    """

    id: int
    image_id: int
    category_id: int
    image: Path
    bbox: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray
    head_size: float | None = None


@dataclass
class BoxToRun:
    """A box the model runs on (from the ground truth or a detections file) and the id its prediction gets."""

    id: int
    image_id: int
    category_id: int
    image: Path
    bbox: np.ndarray
    score: float = 1.0


@dataclass
class EvalSet:
    """A data set's annotated instances (valid ones, in file order), its K, and every image's path by id."""

    dataset: str
    ann_file: Path
    images: Path
    instances: list[GroundTruth]
    num_keypoints: int
    image_files: dict[int, Path] = field(default_factory=dict)

    def gt_boxes(self) -> list[BoxToRun]:
        """The ground-truth boxes as the boxes to run on (score 1, id = annotation id)."""
        return [BoxToRun(g.id, g.image_id, g.category_id, g.image, g.bbox) for g in self.instances]


def load_json(path: str | Path, what: str):
    """The JSON document at ``path``; DatasetError naming ``what`` and the file when it is absent or unreadable
    (``jsonfile.read_json``)."""
    from poseapp.jsonfile import read_json

    return read_json(path, what, DatasetError)


def read_coco_style(ann_file: str | Path, images: str | Path, dataset: str) -> EvalSet:
    """The valid top-down instances of a COCO-style annotation file, as MMPose parses them for ``dataset``.

    Boxes are the annotation's xywh clipped to the image (``[0, w-1]``, ``[0, h-1]``); Locust and Zebra use
    the fixed box (0, 0, 160, 160); WFLW the box of its ``center``/``scale`` (scale x 200). Instances that are
    crowd, have no labelled keypoints, an empty box or only non-positive keypoints are left out (MMPose's
    ``_is_valid_instance``).
    """
    ann_file, images = Path(ann_file), Path(images)
    doc = load_json(ann_file, "annotation file")
    if not isinstance(doc, dict) or "annotations" not in doc or "images" not in doc:
        raise DatasetError(f"annotation file {ann_file} is not COCO-style (no 'images'/'annotations'); for MPII's "
                           "JSON list pass --dataset mpii")
    image_info = {img["id"]: img for img in doc["images"]}
    instances: list[GroundTruth] = []
    num_keypoints = 0
    for ann in doc["annotations"]:
        if "keypoints" not in ann or ("bbox" not in ann and dataset not in _FIXED_BOXES and dataset != "wflw"):
            continue
        img = image_info.get(ann["image_id"])
        if img is None:
            raise DatasetError(f"annotation {ann.get('id')} in {ann_file} names image {ann['image_id']}, which its "
                               "'images' list lacks")
        try:
            kpts = np.asarray(ann["keypoints"], np.float32).reshape(-1, 3)
            bbox = _coco_bbox(ann, img, dataset)
            gt = GroundTruth(id=int(ann["id"]), image_id=int(ann["image_id"]),
                             category_id=int(ann.get("category_id", 1)), image=images / img["file_name"],
                             bbox=bbox, keypoints=kpts[:, :2].copy(), visible=np.minimum(1, kpts[:, 2]))
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            what = f"lacks {e}" if isinstance(e, KeyError) else f"has a malformed field ({e})"
            raise DatasetError(f"annotation {ann.get('id')} in {ann_file} {what}: is --dataset {dataset} the "
                               f"data set of this file?") from e
        num_keypoints = len(kpts)
        if _is_valid(ann, gt):
            instances.append(gt)
    files = {i: images / img["file_name"] for i, img in image_info.items()}
    return EvalSet(dataset, ann_file, images, instances, num_keypoints, files)


def _coco_bbox(ann: dict, img: dict, dataset: str) -> np.ndarray:
    if dataset in _FIXED_BOXES:
        return np.array(_FIXED_BOXES[dataset], np.float32)
    if dataset == "wflw":
        center = np.asarray(ann["center"], np.float32)
        size = np.float32(ann["scale"]) * np.float32(_PIXEL_STD)
        return center_scale_xyxy(center, np.array([size, size], np.float32))[0].astype(np.float32)
    return coco_bbox_xyxy(ann["bbox"], img["width"], img["height"])


def coco_bbox_xyxy(bbox_xywh: Sequence[float], image_width: int, image_height: int) -> np.ndarray:
    """A COCO-style annotation's ``bbox`` (x, y, w, h) -> the (4,) float32 xyxy box BaseCocoStyleDataset
    keeps: both corners clipped to ``[0, width - 1] x [0, height - 1]`` (in float64, then cast)."""
    x, y, w, h = (float(v) for v in bbox_xywh)
    x1, x2 = np.clip([x, x + w], 0, image_width - 1)
    y1, y2 = np.clip([y, y + h], 0, image_height - 1)
    return np.array([x1, y1, x2, y2], dtype=np.float32)


def center_scale_xyxy(center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(N, 2) centres and (N, 2) sizes -> (N, 4) xyxy, as MMPose's ``bbox_cs2xyxy``: the top-left corner is
    ``center - 0.5 * scale`` and the bottom-right is that corner ``+ scale`` (not ``center + 0.5 * scale``,
    which can differ in the last float32 bit). Keeps the inputs' dtype."""
    center, scale = np.atleast_2d(center), np.atleast_2d(scale)
    top_left = center - 0.5 * scale
    return np.hstack([top_left, top_left + scale])


def _is_valid(ann: dict, gt: GroundTruth) -> bool:
    """MMPose's ``_is_valid_instance``: not crowd, labelled keypoints, a non-empty box, a positive keypoint."""
    if ann.get("iscrowd", 0):
        return False
    if ann.get("num_keypoints", 1) == 0:
        return False
    w, h = gt.bbox[2:] - gt.bbox[:2]
    if w <= 0 or h <= 0:
        return False
    return bool(np.max(gt.keypoints) > 0)


def read_mpii(ann_file: str | Path, images: str | Path, headboxes: str | Path | None = None) -> EvalSet:
    """MPII's JSON list as MMPose's ``MpiiDataset`` reads it.

    The box is the annotation's centre (moved down by 15 px x scale, then to 0-based pixels) and scale x 200.
    PCKh needs each person's head size: from ``headboxes`` (MPII's ``mpii_gt_val.mat``, ``headboxes_src``;
    0.6 x the box diagonal) when given, else derived from the ground truth's head top and upper neck (a
    square head box centred between them with their distance as its side: the same 0.6 x diagonal rule).
    """
    ann_file, images = Path(ann_file), Path(images)
    doc = load_json(ann_file, "annotation file")
    if not isinstance(doc, list):
        raise DatasetError(f"annotation file {ann_file} is not MPII's JSON list (joints, joints_vis, center, "
                           "scale); for a COCO-style file pass its data set with --dataset")
    heads = _mpii_head_sizes(headboxes, len(doc)) if headboxes is not None else None
    if heads is None:
        log.warning("MPII head sizes are derived from the ground truth's head top and upper neck; pass the "
                    "official head boxes (--headboxes mpii_gt_val.mat) for the published PCKh")
    instances = []
    for idx, ann in enumerate(doc):
        center = np.asarray(ann["center"], np.float32)
        scale = np.array([ann["scale"], ann["scale"]], np.float32) * np.float32(_PIXEL_STD)
        if center[0] != -1:
            center[1] = center[1] + np.float32(15.0 / _PIXEL_STD) * scale[1]
        center = center - 1
        bbox = center_scale_xyxy(center, scale)[0].astype(np.float32)
        joints = np.asarray(ann["joints"], np.float32).reshape(-1, 2)
        head = heads[idx] if heads is not None else _derived_head_size(ann["joints"])
        instances.append(GroundTruth(id=idx, image_id=int(Path(ann["image"]).stem), category_id=1,
                                     image=images / ann["image"], bbox=bbox, keypoints=joints,
                                     visible=np.asarray(ann["joints_vis"], np.float32).reshape(-1),
                                     head_size=float(head)))
    files = {g.image_id: g.image for g in instances}
    return EvalSet("mpii", ann_file, images, instances, 16, files)


def _mpii_head_sizes(path: str | Path, count: int) -> np.ndarray:
    try:
        from scipy.io import loadmat
    except ImportError as e:
        raise DatasetError(f"reading {path} needs scipy: pip install scipy") from e
    try:
        boxes = np.transpose(loadmat(str(path))["headboxes_src"], [2, 0, 1])
    except (OSError, KeyError, ValueError) as e:
        raise DatasetError(f"cannot read head boxes from {path}: {e} (pass MPII's mpii_gt_val.mat)") from e
    if len(boxes) != count:
        raise DatasetError(f"{path} has {len(boxes)} head boxes for {count} annotations: pass the head boxes of "
                           "this annotation file")
    return np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=1) * _MPII_SC_BIAS


def _derived_head_size(joints: list) -> float:
    """0.6 x the diagonal of the square box centred between head top and upper neck, their distance wide."""
    top, neck = np.asarray(joints[_MPII_HEAD_TOP], np.float64), np.asarray(joints[_MPII_UPPER_NECK], np.float64)
    centre, side = (top + neck) / 2, np.linalg.norm(top - neck)
    box = np.stack([centre - side / 2, centre + side / 2])
    return float(np.linalg.norm(box[1] - box[0]) * _MPII_SC_BIAS)


def read_detections(boxes_file: str | Path, eval_set: EvalSet) -> list[BoxToRun]:
    """The person boxes (category 1) of a COCO detection-results file, numbered in file order like MMPose's
    ``_load_detection_results``; each must name an image of ``eval_set``'s annotation file."""
    dets = load_json(Path(boxes_file), "boxes file")
    if not isinstance(dets, list) or not all(isinstance(d, dict) and {"bbox", "image_id", "score"} <= set(d)
                                             for d in dets):
        raise DatasetError(f"boxes file {boxes_file} is not a COCO detection-results list "
                           "([{image_id, category_id, bbox: [x, y, w, h], score}, ...])")
    boxes = []
    for det in dets:
        if det.get("category_id", 1) != 1:
            continue
        image = eval_set.image_files.get(det["image_id"])
        if image is None:
            raise DatasetError(f"boxes file {boxes_file} names image {det['image_id']}, which "
                               f"{eval_set.ann_file} does not list (boxes for another annotation file?)")
        try:
            xyxy = xywh_to_xyxy(det["bbox"][:4], np.float32)  # MMPose reads them as float32 first
        except (TypeError, ValueError) as e:
            raise DatasetError(f"boxes file {boxes_file}: the box of image {det['image_id']} is not [x, y, w, h] "
                               f"numbers ({e})") from e
        boxes.append(BoxToRun(len(boxes), int(det["image_id"]), 1, image, xyxy,
                              float(np.float32(det["score"]))))
    return boxes
