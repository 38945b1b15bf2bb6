"""COCO keypoint AP/AR as MMPose 1.3.2's ``CocoMetric`` computes it (COCO, CrowdPose, AP-10K, AnimalPose).

The steps, in MMPose's order (``CocoMetric.compute_metrics``):

1. group the predictions by image (first appearance), sort each image's by ``id`` and drop repeated ids;
2. ``rescore``: the instance score (``score_mode``);
3. ``oks_nms`` (or ``soft_oks_nms``) per image, with the OKS-NMS ``area`` (the padded crop scale);
4. ``to_coco_results``: the survivors as COCO keypoint results;
5. COCOeval with the data set's sigmas. MMPose uses xtcocotools; poseapp uses pycocotools plus the few
   xtcocotools rules that differ (``_XtcocotoolsEval``), so the numbers are xtcocotools'.

Numbers follow MMPose's dtypes: keypoints, keypoint scores, box scores, areas and sigmas are float32 there
(and the NMS OKS is stored as float32), so they are here; the evaluated keypoints are those float32 values.
"""
from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from poseapp.evaluation.types import KeypointPrediction, MetricError

SCORE_MODES = ("bbox", "bbox_keypoint", "bbox_rle", "keypoint")
NMS_MODES = ("oks_nms", "soft_oks_nms", "none")
IOU_TYPES = ("keypoints", "keypoints_crowd")

STATS_NAMES = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")
CROWD_STATS_NAMES = ("AP", "AP .5", "AP .75", "AR", "AR .5", "AR .75", "AP(E)", "AP(M)", "AP(H)")
_CROWD_EASY, _CROWD_HARD = 0.2, 0.8  # xtcocotools' get_type_result(first=0.2, second=0.8) on image crowdIndex


# ---------------------------------------------------------------------------------------------- scoring, NMS

def rescore(predictions: Sequence[KeypointPrediction], score_mode: str = "bbox_keypoint",
            keypoint_score_thr: float = 0.2) -> np.ndarray:
    """Each instance's score, as ``CocoMetric`` computes it.

    - ``'bbox_keypoint'``: ``bbox_score * mean(keypoint_scores[keypoint_scores > thr])``, 0 when no keypoint
      score is above ``thr`` (strictly; compared in float32, as NumPy 2 compares MMPose's float32 scores);
    - ``'bbox'``: ``bbox_score``; ``'keypoint'``: ``mean(keypoint_scores)``;
    - ``'bbox_rle'``: ``bbox_score + mean(keypoint_scores) + max(keypoint_scores)`` (the RLE models' configs).

    Returns:
        (N,) scores with MMPose's dtype: float32, float64 for ``'bbox_rle'`` (MMPose makes that one a Python
        float); the dtype decides how the NMS's unstable argsort orders exact ties, so it is kept.
    """
    if score_mode not in SCORE_MODES:
        raise ValueError(f"score_mode must be one of {', '.join(SCORE_MODES)}, not {score_mode!r}")
    thr = np.float32(keypoint_score_thr)
    scores = []
    for p in predictions:
        kpt_scores = np.asarray(p.keypoint_scores, np.float32)
        bbox_score = np.float32(p.bbox_score)
        if score_mode == "bbox":
            scores.append(bbox_score)
        elif score_mode == "keypoint":
            scores.append(np.mean(kpt_scores))
        elif score_mode == "bbox_rle":
            scores.append(float(bbox_score + np.mean(kpt_scores) + np.max(kpt_scores)))
        else:  # a running float32 sum in keypoint order, like MMPose's loop (np.sum would sum pairwise)
            total, count = np.float32(0), 0
            for s in kpt_scores:
                if s > thr:
                    total, count = total + s, count + 1
            scores.append(bbox_score * (total / np.float32(count)) if count else bbox_score * np.float32(0))
    return np.array(scores, np.float64 if score_mode == "bbox_rle" else np.float32)


def _nms_oks(kpts: np.ndarray, i: int, others: np.ndarray, areas: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """MMPose's ``oks_iou`` of instance ``i`` against ``others`` (vis_thr=None: every keypoint counts).

    ``exp(-d^2 / (2 * (2 sigma)^2 * ((a_i + a_j) / 2 + eps)))`` averaged over the K keypoints, with MMPose's
    dtypes (NumPy 2): the squared distance over the variances in float32, the rest in float64, the result
    stored as float32."""
    ious = np.zeros(len(others), np.float32)
    for n, j in enumerate(others):
        d = kpts[j] - kpts[i]  # (K, 2) float32
        ratio = (d[:, 0] ** 2 + d[:, 1] ** 2) / variances  # float32
        scale = np.float64((areas[i] + areas[j]) / np.float32(2)) + np.spacing(1)
        e = ratio.astype(np.float64) / scale / 2
        ious[n] = np.sum(np.exp(-e)) / len(e) if len(e) else 0.0
    return ious


def _nms_inputs(keypoints, scores, areas, sigmas):
    kpts = np.asarray(keypoints, np.float32)[..., :2]
    sig = np.asarray(sigmas, np.float32)
    return kpts, np.asarray(scores), np.asarray(areas, np.float32), (sig * 2) ** 2


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, thr: float,
            sigmas: Sequence[float]) -> np.ndarray:
    """Greedy OKS non-maximum suppression of one image's instances (MMPose's ``oks_nms``).

    Args:
        keypoints: (N, K, 2) (or (N, K, 3), the third column unused) image pixels.
        scores: (N,) instance scores; visited in ``scores.argsort()[::-1]`` order (exact ties in numpy's
            unstable order, reversed, as MMPose).
        areas: (N,) the OKS-NMS areas (``KeypointPrediction.area``).
        thr: an instance is dropped when its OKS with a kept one is above ``thr`` (kept when ``<= thr``,
            compared in float32).
        sigmas: (K,) the data set's OKS sigmas.

    Returns:
        The kept indices, highest score first.
    """
    kpts, scores, areas, variances = _nms_inputs(keypoints, scores, areas, sigmas)
    order = scores.argsort()[::-1]
    keep = []
    while len(order) > 0:
        i = order[0]
        keep.append(i)
        oks = _nms_oks(kpts, i, order[1:], areas, variances)
        order = order[1:][oks <= np.float32(thr)]
    return np.array(keep, np.intp)


def soft_oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, thr: float,
                 sigmas: Sequence[float], max_dets: int = 20) -> np.ndarray:
    """MMPose's ``soft_oks_nms`` (Gaussian): after each pick the rest are rescored ``s * exp(-oks^2 / thr)``
    and re-sorted; the first ``max_dets`` picks are kept (CocoMetric leaves it at 20). The rescored values
    only order the picks: MMPose evaluates the instances with their original scores. Arguments as
    ``oks_nms``; returns the kept indices in pick order."""
    kpts, scores, areas, variances = _nms_inputs(keypoints, scores, areas, sigmas)
    order = scores.argsort()[::-1]
    scores = scores[order]
    keep = []
    while len(order) > 0 and len(keep) < max_dets:
        i = order[0]
        oks = _nms_oks(kpts, i, order[1:], areas, variances)
        order = order[1:]
        scores = scores[1:] * np.exp(-oks ** 2 / np.float32(thr))  # float32 (float64 scores stay float64)
        resort = scores.argsort()[::-1]
        order, scores = order[resort], scores[resort]
        keep.append(i)
    return np.array(keep, np.intp)


def to_coco_results(predictions: Sequence[KeypointPrediction], scores: Sequence[float]) -> list[dict]:
    """COCO keypoint results, one dict per prediction, in the given order.

    ``keypoints`` is ``[x, y, s] * K`` with the keypoint score as ``s`` (float32 values, as MMPose dumps
    them); ``score`` the instance score. ``bbox`` (xywh, from the xyxy box in float32) is written too, as
    MMPose does: COCO's ``loadRes`` then takes a result's ``area`` from it (w * h) instead of from the
    keypoints' extent, and that area decides which unmatched results the (M)/(L) ranges ignore.
    """
    results = []
    for p, score in zip(predictions, scores, strict=True):
        kpts = np.concatenate([np.asarray(p.keypoints, np.float32)[:, :2],
                               np.asarray(p.keypoint_scores, np.float32)[:, None]], axis=1)
        x1, y1, x2, y2 = np.asarray(p.bbox, np.float32)
        results.append({"image_id": int(p.image_id), "category_id": int(p.category_id),
                        "keypoints": kpts.reshape(-1).tolist(), "score": float(score),
                        "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]})
    return results


def coco_results(predictions: Sequence[KeypointPrediction], *, sigmas: Sequence[float],
                 score_mode: str = "bbox_keypoint", keypoint_score_thr: float = 0.2, nms_mode: str = "oks_nms",
                 nms_thr: float = 0.9) -> list[dict]:
    """Steps 1-4 of the module docstring: the COCO results MMPose's CocoMetric hands to COCOeval, in its
    order (images by first appearance, each image's survivors highest score first)."""
    if nms_mode not in NMS_MODES:
        raise ValueError(f"nms_mode must be one of {', '.join(NMS_MODES)}, not {nms_mode!r}")
    by_image: dict[int, list[KeypointPrediction]] = {}
    for p in predictions:
        by_image.setdefault(p.image_id, []).append(p)
    results = []
    for instances in by_image.values():
        instances = sorted(instances, key=lambda p: p.id)  # stable, so a repeated id keeps its first
        instances = [p for n, p in enumerate(instances) if n == 0 or p.id != instances[n - 1].id]
        scores = rescore(instances, score_mode, keypoint_score_thr)
        if nms_mode == "none":
            keep = np.arange(len(instances))
        else:
            nms = oks_nms if nms_mode == "oks_nms" else soft_oks_nms
            keep = nms(np.stack([p.keypoints for p in instances]), scores, [p.area for p in instances],
                       nms_thr, sigmas)
        results += to_coco_results([instances[k] for k in keep], scores[keep])
    return results


# ---------------------------------------------------------------------------------------------- evaluation

def _load_ground_truth(ann_file: Path, iou_type: str, use_area: bool) -> dict:
    """The annotation file as a dict, with what xtcocotools' COCO loader adds: ``iscrowd`` False where
    absent. Annotation ids are shifted so the smallest is 1 (a bijection) when one is 0 or less: pycocotools
    marks "unmatched" with id 0 where xtcocotools uses -1, so a ground truth with id 0 would never count as
    found."""
    from poseapp.evaluation.datasets import load_json

    doc = load_json(ann_file, "annotation file")
    if not isinstance(doc, dict) or not {"images", "annotations", "categories"} <= doc.keys():
        raise MetricError(f"annotation file {ann_file} is not COCO-style: it needs 'images', 'annotations' and "
                          "'categories'")
    anns = doc["annotations"]
    for ann in anns:
        ann.setdefault("iscrowd", False)
        if use_area and "area" not in ann:
            raise MetricError(f"annotation {ann.get('id')} in {ann_file} has no 'area'; evaluate with "
                              "use_area=False (as CrowdPose does)")
        if iou_type == "keypoints_crowd" and "num_keypoints" not in ann:
            raise MetricError(f"annotation {ann.get('id')} in {ann_file} has no 'num_keypoints', which "
                              "iou_type='keypoints_crowd' needs")
    if iou_type == "keypoints_crowd" and any("crowdIndex" not in img for img in doc["images"]):
        raise MetricError(f"annotation file {ann_file} has images without 'crowdIndex', which "
                          "iou_type='keypoints_crowd' needs (is it CrowdPose's?)")
    if anns and min(ann["id"] for ann in anns) <= 0:
        shift = 1 - min(ann["id"] for ann in anns)
        for ann in anns:
            ann["id"] += shift
    return doc


class _XtcocotoolsEval(COCOeval):
    """pycocotools' keypoint COCOeval with the rules in which xtcocotools 1.14.3's differs.

    xtcocotools' ``COCOeval(gt, dt, iou_type, sigmas, use_area)`` is pycocotools' with these changes (the
    rest, the OKS formula, matching, accumulation and the 10 summary numbers, is the same code):

    - a ground truth is ignored when it is a crowd or has no labelled keypoint, counted as ``v > 0`` in its
      ``keypoints`` (pycocotools trusts ``num_keypoints``); ``'keypoints_crowd'`` counts ``num_keypoints``
      (CrowdPose's counts only ``v == 2``, while its OKS still uses every ``v > 0`` keypoint);
    - a result with no keypoint score above 0 is dropped before matching;
    - ``use_area=False``: a ground truth's area is ``0.53 * w * h`` of its box, both as the OKS scale and for
      the area ranges;
    - ``'keypoints_crowd'`` (CrowdPose): the stats are AP, AP .5, AP .75, AR, AR .5, AR .75 over all areas,
      then AP(E), AP(M), AP(H): COCOeval re-run on the images whose ``crowdIndex`` is < 0.2, < 0.8 and the
      rest, each the plain mean of ``precision[:, :, :, all areas, :]`` (-1 entries included, so -1 when no
      image falls in the group) rounded to 4 decimals (``crowd_type_ap``);
    - "unmatched" is -1, not 0 (see ``_load_ground_truth``), and its loader sets a missing ``iscrowd`` to False.
    """

    def __init__(self, gt: COCO, dt: COCO, sigmas: np.ndarray, crowd: bool, use_area: bool):
        super().__init__(gt, dt, "keypoints")
        self.params.kpt_oks_sigmas = sigmas
        self.crowd, self.use_area = crowd, use_area

    def _prepare(self) -> None:
        p = self.params
        gts = self.cocoGt.loadAnns(self.cocoGt.getAnnIds(imgIds=p.imgIds, catIds=p.catIds))
        dts = self.cocoDt.loadAnns(self.cocoDt.getAnnIds(imgIds=p.imgIds, catIds=p.catIds))
        self._gts, self._dts = defaultdict(list), defaultdict(list)
        for ann in gts:
            gt = dict(ann)  # a copy: the area below is the evaluation's, not the file's
            labelled = gt["num_keypoints"] if self.crowd else np.count_nonzero(np.asarray(gt["keypoints"])[2::3] > 0)
            gt["ignore"] = bool(gt["iscrowd"]) or labelled == 0
            if not self.use_area:
                gt["area"] = gt["bbox"][2] * gt["bbox"][3] * 0.53
            self._gts[gt["image_id"], gt["category_id"]].append(gt)
        for dt in dts:
            if np.count_nonzero(np.asarray(dt["keypoints"])[2::3] > 0):
                self._dts[dt["image_id"], dt["category_id"]].append(dt)
        self.evalImgs, self.eval = defaultdict(list), {}

    def crowd_type_ap(self, image_ids: list[int]) -> float:
        """xtcocotools' ``get_type_result`` for one crowd group: AP over ``image_ids`` only."""
        self.params.imgIds = image_ids
        self.evaluate()
        self.accumulate()
        return float(round(np.mean(self.eval["precision"][:, :, :, 0, :]), 4))


def coco_keypoint_metrics(ann_file: str | Path, predictions: Sequence[KeypointPrediction], *,
                          sigmas: Sequence[float], iou_type: str = "keypoints", use_area: bool = True,
                          score_mode: str = "bbox_keypoint", keypoint_score_thr: float = 0.2,
                          nms_mode: str = "oks_nms", nms_thr: float = 0.9,
                          prefix: str | None = "coco") -> dict[str, float]:
    """COCO keypoint AP/AR of ``predictions`` against ``ann_file``, as MMPose 1.3.2's CocoMetric prints it.

    Args:
        ann_file: the COCO-style annotation file (read once per call).
        predictions: the top-down instances, any order.
        sigmas: (K,) the data set's OKS sigmas (used as float32, like MMPose's ``dataset_meta``).
        iou_type: ``'keypoints'``, or ``'keypoints_crowd'`` for CrowdPose.
        use_area: the ground truth's ``area`` as the OKS scale; False: ``0.53 * w * h`` of its box (CrowdPose).
        score_mode, keypoint_score_thr: see ``rescore``.
        nms_mode, nms_thr: ``'oks_nms'``, ``'soft_oks_nms'`` or ``'none'``; see ``oks_nms``.
        prefix: the metric names' prefix (``'coco'`` -> ``'coco/AP'``); None for bare names.

    Returns:
        ``{name: value}`` in MMPose's order: AP, AP .5, AP .75, AP (M), AP (L), AR, AR .5, AR .75, AR (M),
        AR (L); crowd: AP, AP .5, AP .75, AR, AR .5, AR .75, AP(E), AP(M), AP(H). -1 where there is no ground
        truth in that range.
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {', '.join(IOU_TYPES)}, not {iou_type!r}")
    crowd = iou_type == "keypoints_crowd"
    sigmas32 = np.asarray(sigmas, np.float32)
    doc = _load_ground_truth(Path(ann_file), iou_type, use_area)
    if not predictions:
        raise MetricError(f"no predictions to evaluate against {ann_file}")
    image_ids = {img["id"] for img in doc["images"]}
    unknown = sorted({p.image_id for p in predictions} - image_ids)
    if unknown:
        raise MetricError(f"predictions name images {unknown[:5]} that {ann_file} does not list (is it the "
                          "annotation file the predictions were made for?)")
    sizes = {len(a["keypoints"]) // 3 for a in doc["annotations"] if "keypoints" in a}
    sizes |= {len(p.keypoints) for p in predictions}
    if sizes != {len(sigmas32)}:
        raise MetricError(f"{len(sigmas32)} sigmas, but {ann_file} and the predictions have {sorted(sizes)} "
                          "keypoints: pass the data set's sigmas")
    results = coco_results(predictions, sigmas=sigmas32, score_mode=score_mode,
                           keypoint_score_thr=keypoint_score_thr, nms_mode=nms_mode, nms_thr=nms_thr)

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO()
        gt.dataset = doc
        gt.createIndex()
        ev = _XtcocotoolsEval(gt, gt.loadRes(results), sigmas32, crowd, use_area)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        stats = [float(s) for s in ev.stats]
        if crowd:
            groups: tuple[list, list, list] = ([], [], [])
            for img in doc["images"]:
                index = img["crowdIndex"]
                groups[0 if index < _CROWD_EASY else 1 if index < _CROWD_HARD else 2].append(img["id"])
            stats = [stats[i] for i in (0, 1, 2, 5, 6, 7)] + [ev.crowd_type_ap(ids) for ids in groups]
    names = CROWD_STATS_NAMES if crowd else STATS_NAMES
    return {(f"{prefix}/{name}" if prefix else name): value for name, value in zip(names, stats, strict=True)}
