"""Running a pose model over a data set's boxes, batched, and the predictions file ``eval --json`` writes.

``estimate_boxes(estimator, boxes)`` loads each image once and sends the crops of many images through the network
together (the estimator splits them into ``batch_size`` forward passes). The predictions file is a COCO
results list (``image_id``, ``category_id``, ``keypoints`` as [x, y, score] x K, ``score``) whose entries
also carry what the metrics need to be recomputed later: ``id`` (the sample id), ``bbox`` (xywh, the box the
model ran on), ``bbox_score`` and ``area`` (the OKS-NMS area).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from poseapp.errors import marked_form
from poseapp.evaluation.datasets import BoxToRun, DatasetError, load_json
from poseapp.evaluation.types import KeypointPrediction
from poseapp.geometry import xywh_to_xyxy

IMAGES_PER_STEP = 16  # images whose crops go to the estimator together (it batches them by batch_size)


def estimate_boxes(estimator, boxes: Sequence[BoxToRun], *, num_keypoints: int,
            progress: Callable[[int], None] | None = None,
            max_pixels: int | None = None) -> list[KeypointPrediction]:
    """One KeypointPrediction per box, in the order of ``boxes``.

    ``num_keypoints`` is the annotation's K: a DeepFashion2 category model's keypoints (its recipe's
    ``keypoint_range``) are placed at their place among the 294, the rest left at 0 with score 0.
    ``progress(n)`` is called after each step with the number of boxes done in it.
    """
    from poseapp.estimator import crop_areas
    from poseapp.sources import DEFAULT_MAX_PIXELS, read_image

    recipe = estimator.recipe
    order = _by_image(boxes)
    out: dict[int, KeypointPrediction] = {}
    for step in _chunks(list(order.items()), IMAGES_PER_STEP):
        images, step_boxes = [], []
        for image_path, indices in step:
            image, reason = read_image(Path(image_path), max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
            if image is None:
                raise DatasetError(f"cannot read image {image_path}: {marked_form(reason)} (check --images: the "
                                   "folder the annotation file's file names are relative to)")
            images.append(image)
            step_boxes.append(np.stack([boxes[i].bbox for i in indices]).astype(np.float32))
        results = estimator(images, step_boxes)
        for (_, indices), (keypoints, scores), bb in zip(step, results, step_boxes):
            areas = crop_areas(bb, recipe)
            for j, i in enumerate(indices):
                box = boxes[i]
                kpts, kscores = _place(keypoints[j], scores[j], recipe.keypoint_range, num_keypoints)
                out[i] = KeypointPrediction(box.id, box.image_id, box.category_id, box.bbox, box.score, kpts,
                                            kscores, float(areas[j]))
        if progress is not None:
            progress(sum(len(indices) for _, indices in step))
    return [out[i] for i in range(len(boxes))]


def _by_image(boxes: Sequence[BoxToRun]) -> dict[Path, list[int]]:
    order: dict[Path, list[int]] = {}
    for i, box in enumerate(boxes):
        order.setdefault(box.image, []).append(i)
    return order


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _place(keypoints: np.ndarray, scores: np.ndarray, keypoint_range, k: int) -> tuple[np.ndarray, np.ndarray]:
    keypoints = np.asarray(keypoints, np.float32)
    scores = np.asarray(scores, np.float32)
    if keypoint_range is None or len(keypoints) == k:
        return keypoints, scores
    start, stop = keypoint_range
    full_k, full_s = np.zeros((k, 2), np.float32), np.zeros(k, np.float32)
    full_k[start:stop], full_s[start:stop] = keypoints, scores
    return full_k, full_s


# ----------------------------------------------------------------------------------------- predictions file

def to_results(predictions: Sequence[KeypointPrediction], scores: Sequence[float]) -> list[dict]:
    """COCO results (``coco_metric.to_coco_results``: ``score`` is the instance score the metric ranks by)
    with the fields ``read_predictions`` needs to score them again: ``id``, ``bbox_score`` and ``area``."""
    from poseapp.evaluation.coco_metric import to_coco_results

    results = to_coco_results(predictions, scores)
    for result, p in zip(results, predictions):
        result.update(id=int(p.id), bbox_score=float(p.bbox_score), area=float(p.area))
    return results


def read_predictions(path: str | Path) -> list[KeypointPrediction]:
    """Predictions from a file ``eval --json`` wrote (a COCO results list with ``id``, ``bbox``, ``bbox_score``
    and ``area``); keypoint values are read as float32, as the model produced them. DatasetError names the
    file, the entry and the field that is not what ``eval --json`` writes."""
    doc = load_json(path, "predictions file")
    need = {"image_id", "category_id", "keypoints", "id", "bbox", "bbox_score", "area"}
    if not isinstance(doc, list) or not all(isinstance(d, dict) and need <= set(d) for d in doc):
        raise DatasetError(f"predictions file {path} is not what `eval --json` writes (a list of COCO results with "
                           f"{', '.join(sorted(need))})")
    return [_prediction(d, i, path) for i, d in enumerate(doc)]


def _prediction(d: dict, i: int, path: str | Path) -> KeypointPrediction:
    """Entry ``i`` of a predictions file (a dict holding every field read_predictions needs)."""

    def field(name: str, convert, expected: str):
        try:
            return convert(d[name])
        except (TypeError, ValueError, OverflowError):
            shown = repr(d[name])
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise DatasetError(f"predictions file {path}: entry {i} has {name} {shown}, not {expected} (pass a file "
                               "`eval --json` wrote)") from None

    def keypoints(value) -> np.ndarray:  # (K, 3) float32, K >= 1
        flat = np.asarray(value, np.float64).reshape(-1, 3) if isinstance(value, list) else ()  # not a string
        if not len(flat):
            raise ValueError("no keypoints")
        return _float32(flat)

    def xyxy(value) -> np.ndarray:  # [x, y, w, h] -> (4,) float32 [x1, y1, x2, y2]
        if not isinstance(value, list) or len(value) != 4:  # "1234" would read as [1, 2, 3, 4]
            raise ValueError("not 4 numbers")
        return _float32(xywh_to_xyxy([float(v) for v in value]))

    flat = field("keypoints", keypoints, "[x, y, score] * K numbers")
    return KeypointPrediction(field("id", int, "an integer"), field("image_id", int, "an integer"),
                              field("category_id", int, "an integer"), field("bbox", xyxy, "[x, y, w, h]"),
                              field("bbox_score", lambda v: float(_float32(float(v))), "a number"),
                              flat[:, :2].copy(), flat[:, 2].copy(), field("area", float, "a number"))


def _float32(values) -> np.ndarray:
    """``values`` as float32; ValueError for a finite value beyond float32's range (what a model gives is
    float32: such a value is not from ``eval --json``, and the cast would make it infinite)."""
    values = np.asarray(values, np.float64)
    if (np.abs(values[np.isfinite(values)]) > np.finfo(np.float32).max).any():
        raise ValueError("beyond float32")
    return values.astype(np.float32)


def write_json(path: Path, doc) -> None:
    """Write ``doc`` as JSON to ``path`` atomically (temp file + rename; OutputError naming it on failure)."""
    from poseapp.sinks import atomic_write

    atomic_write(Path(path), lambda f: f.write(json.dumps(doc).encode()))
