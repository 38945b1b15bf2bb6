"""Which metric each data set's published table uses, computed on predictions, and set next to the zoo's number.

``SETTINGS`` is the table: per data set (the zoo's ``dataset`` names, plus crowdpose) the reader and the
evaluators of the published MMPose 1.3.2 config (``val_evaluator``), with their arguments. ``score()`` runs
them on a list of KeypointPrediction.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from poseapp.errors import PoseAppError, suggest
from poseapp.evaluation.datasets import DatasetError, EvalSet, read_coco_style, read_mpii
from poseapp.evaluation.types import KeypointPrediction

# CrowdPose's OKS sigmas (MMPose configs/_base_/datasets/crowdpose.py); no zoo model predicts CrowdPose's 14
# keypoints, so it has no keypoint set in poseapp.keypoints.
CROWDPOSE_SIGMAS = (.079, .079, .072, .072, .062, .062, .107, .107, .087, .087, .089, .089, .079, .079)


@dataclass(frozen=True)
class Settings:
    """How one data set is evaluated.

    Attributes:
        reader: ``coco`` (COCO-style JSON) or ``mpii`` (MPII's JSON list).
        metrics: (evaluator, kwargs) in the published config's order: ``coco`` (CocoMetric), ``pck``
            (PCKAccuracy), ``auc``, ``epe``, ``nme``, ``mpii`` (MpiiPCKAccuracy).
        keypoint_set: the poseapp.keypoints set whose OKS sigmas CocoMetric uses (None: CROWDPOSE_SIGMAS).
        detections: whether a detections file may replace the ground-truth boxes (COCO-style AP only).
    """

    reader: str
    metrics: tuple[tuple[str, dict[str, Any]], ...]
    keypoint_set: str | None = None
    detections: bool = False


_PCK_AUC_EPE = (("pck", {"thr": 0.2}), ("auc", {"norm_factor": 30, "num_thrs": 20}), ("epe", {}))

SETTINGS: dict[str, Settings] = {
    "coco": Settings("coco", (("coco", {"iou_type": "keypoints", "use_area": True, "prefix": "coco"}),), "coco", True),
    "crowdpose": Settings("coco", (("coco", {"iou_type": "keypoints_crowd", "use_area": False,
                                             "prefix": "crowdpose"}),), None, True),
    "ap10k": Settings("coco", (("coco", {"iou_type": "keypoints", "use_area": True, "prefix": "coco"}),), "ap10k"),
    "animalpose": Settings("coco", (("coco", {"iou_type": "keypoints", "use_area": True, "prefix": "coco"}),),
                           "animalpose"),
    "mpii": Settings("mpii", (("mpii", {"thr": 0.5}),)),
    "animalkingdom": Settings("coco", (("pck", {"thr": 0.05}), ("auc", {"norm_factor": 30, "num_thrs": 20}))),
    "locust": Settings("coco", _PCK_AUC_EPE),
    "zebra": Settings("coco", _PCK_AUC_EPE),
    "deepfashion_upper": Settings("coco", _PCK_AUC_EPE),
    "deepfashion_lower": Settings("coco", _PCK_AUC_EPE),
    "deepfashion_full": Settings("coco", _PCK_AUC_EPE),
    "deepfashion2": Settings("coco", _PCK_AUC_EPE),
    "wflw": Settings("coco", (("nme", {"norm_mode": "keypoint_distance", "keypoint_indices": (60, 72)}),)),
}


def settings_for(dataset: str) -> Settings:
    """The evaluation settings of ``dataset``; an unknown name suggests the close ones."""
    if dataset not in SETTINGS:
        raise suggest(dataset, list(SETTINGS), "data set")
    return SETTINGS[dataset]


def read_eval_set(dataset: str, ann_file: str | Path, images: str | Path, headboxes: str | Path | None = None) -> EvalSet:
    """The annotation file read the way ``dataset``'s MMPose data set reads it."""
    settings = settings_for(dataset)
    if settings.reader == "mpii":
        return read_mpii(ann_file, images, headboxes)
    if headboxes is not None:
        raise DatasetError(f"--headboxes is for MPII; {dataset} does not use head boxes (drop it)")
    return read_coco_style(ann_file, images, dataset)


def sigmas_for(dataset: str) -> np.ndarray:
    settings = settings_for(dataset)
    if settings.keypoint_set is None:
        return np.asarray(CROWDPOSE_SIGMAS)
    from poseapp.keypoints import get_keypoint_set

    return get_keypoint_set(settings.keypoint_set).sigmas


def score_mode_for(recipe) -> str:
    """CocoMetric's instance score for a model's published config: the RLE configs use ``bbox_rle``, the
    others the default ``bbox_keypoint``."""
    return "bbox_rle" if recipe is not None and recipe.family == "rle" else "bbox_keypoint"


def score(dataset: str, eval_set: EvalSet, predictions: Sequence[KeypointPrediction],
          score_mode: str = "bbox_keypoint") -> dict[str, float]:
    """The metrics ``dataset``'s published config prints for ``predictions`` on ``eval_set``, keys as MMPose
    prints them (``coco/AP``, ``PCK``, ``AUC``, ``EPE``, ``NME``, ``Head PCK`` ... ``PCK@0.1``).
    ``score_mode`` is CocoMetric's instance score (``score_mode_for(recipe)``)."""
    settings = settings_for(dataset)
    out: dict[str, float] = {}
    paired = None
    for kind, kwargs in settings.metrics:
        if kind == "coco":
            from poseapp.evaluation.coco_metric import coco_keypoint_metrics

            out.update(coco_keypoint_metrics(eval_set.ann_file, predictions, sigmas=sigmas_for(dataset),
                                             score_mode=score_mode, **kwargs))
            continue
        paired = paired or _pair(eval_set, predictions)
        out.update(_keypoint_metric(kind, kwargs, *paired))
    return out


def _pair(eval_set: EvalSet, predictions: Sequence[KeypointPrediction]):
    """(pred, gt, mask, bbox, head_size) arrays, one row per ground-truth instance, matched by ``id``."""
    by_id = {p.id: p for p in predictions}
    missing = [g.id for g in eval_set.instances if g.id not in by_id]
    if missing:
        raise PoseAppError(f"{len(missing)} of {len(eval_set.instances)} annotated instances of {eval_set.ann_file} "
                           f"have no prediction (ids {missing[:5]}...): PCK-type metrics need one per instance, "
                           "made on the ground-truth boxes")
    k = eval_set.num_keypoints
    pred = np.stack([_full(by_id[g.id].keypoints, k) for g in eval_set.instances])
    gt = np.stack([g.keypoints for g in eval_set.instances])
    mask = np.stack([g.visible for g in eval_set.instances]) != 0
    bbox = np.stack([g.bbox for g in eval_set.instances])
    heads = np.array([g.head_size if g.head_size is not None else np.nan for g in eval_set.instances])
    return pred, gt, mask, bbox, heads


def _full(keypoints: np.ndarray, k: int) -> np.ndarray:
    """(K', 2) predictions as (k, 2); a DeepFashion2 category model predicts only its range (placed by the
    caller); anything else must already have k keypoints."""
    keypoints = np.asarray(keypoints, np.float32)
    if len(keypoints) != k:
        raise PoseAppError(f"predictions have {len(keypoints)} keypoints and the annotations {k}: a model of "
                           "another data set?")
    return keypoints


def _keypoint_metric(kind: str, kwargs: dict[str, Any], pred, gt, mask, bbox, heads) -> dict[str, float]:
    from poseapp.evaluation import keypoint_metrics as km

    if kind == "pck":
        return km.pck_metric(pred, gt, mask, bbox, kwargs["thr"])
    if kind == "auc":
        return km.auc_metric(pred, gt, mask, kwargs["norm_factor"], kwargs["num_thrs"])
    if kind == "epe":
        return km.epe_metric(pred, gt, mask)
    if kind == "nme":
        return km.nme_metric(pred, gt, mask, norm_mode=kwargs["norm_mode"], keypoint_indices=kwargs["keypoint_indices"])
    if kind == "mpii":
        return km.mpii_metric(pred, gt, mask, heads, kwargs["thr"])
    raise ValueError(f"unknown metric {kind}")


# ----------------------------------------------------------------------------------------- published numbers

# zoo metric name -> the name MMPose prints (``{p}`` = the CocoMetric prefix)
_PRINTED = {"AP": "{p}/AP", "AP50": "{p}/AP .5", "AP75": "{p}/AP .75", "APM": "{p}/AP (M)", "APL": "{p}/AP (L)",
            "AR": "{p}/AR", "AR50": "{p}/AR .5", "AR75": "{p}/AR .75", "ARM": "{p}/AR (M)", "ARL": "{p}/AR (L)",
            "PCK@0.2": "PCK", "PCK@0.05": "PCK", "PCK(0.05)": "PCK", "AUC": "AUC", "EPE": "EPE", "NME": "NME",
            "Mean": "PCK", "Mean@0.1": "PCK@0.1"}
_SCALE_FREE = {"EPE"}  # pixels in both


@dataclass
class Row:
    """One metric as the published table shows it: the name there, ours in its units, the published value."""

    name: str
    ours: float
    published: float | None = None


def table_row(metrics: dict[str, float], published: dict[str, Any], dataset: str) -> list[Row]:
    """Our metrics under the published table's names and units (fraction or percent, as it prints them), each
    with the published value; metrics the table lacks follow (AP/AR under the tables' names: APM, AR75...)."""
    prefix = next((kw.get("prefix") for kind, kw in settings_for(dataset).metrics if kind == "coco"), "coco")
    rows, used = [], set()
    for name, value in published.items():
        key = _PRINTED.get(name, "").format(p=prefix)
        if key not in metrics or value is None or not isinstance(value, (int, float)):
            continue
        rows.append(Row(name, _in_units(metrics[key], float(value), name, dataset), float(value)))
        used.add(key)
    names = {template.format(p=prefix): name for name, template in _PRINTED.items() if "{p}" in template}
    rows += [Row(names.get(k, k), v) for k, v in metrics.items() if k not in used]
    return rows


def _in_units(ours: float, published: float, name: str, dataset: str) -> float:
    """``ours`` scaled to the published value's units. MMPose prints MPII's PCKh in percent and everything else
    as fractions; the tables print AP, PCK and NME as fractions or percent (a published value above 1.5 is a
    percentage: these are trained models' numbers, e.g. DeepFashion's PCK 96.1, WFLW's NME 4.88)."""
    if name in _SCALE_FREE or ours < 0:
        return ours
    ours_percent, published_percent = dataset == "mpii", published > 1.5
    if ours_percent and not published_percent:
        return ours / 100
    if published_percent and not ours_percent:
        return ours * 100
    return ours
