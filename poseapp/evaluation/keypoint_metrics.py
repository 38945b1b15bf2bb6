"""Keypoint-distance metrics exactly as MMPose 1.3.2 computes them: PCK (bbox / head / torso normalised),
AUC, EPE, NME and MPII's PCKh table.

Two layers, both pure functions on numpy arrays:

* the functional layer (``pck_accuracy``, ``auc``, ``epe``, ``nme``, ``mpii_pckh``) mirrors
  ``mmpose/evaluation/functional/keypoint_eval.py``; it keeps the dtypes it is given, because MMPose's
  numbers depend on them;
* the evaluator layer (``pck_metric``, ``auc_metric``, ``epe_metric``, ``nme_metric``, ``mpii_metric``)
  mirrors the metric classes of ``mmpose/evaluation/metrics/keypoint_2d_metrics.py``: it takes what those
  classes read per instance, casts it to the dtypes MMPose's datasets and models hold (keypoints and boxes
  float32, MPII head sizes float64) and returns the dict ``tools/test.py`` prints.

Shapes: ``pred``/``gt`` (N, K, 2) image pixels, ``mask`` (N, K) (nonzero = the GT keypoint counts),
``bbox_xyxy`` (N, 4), per-instance normalisers (N,) or (N, 2).

MMPose's rules, kept bit for bit:

* A distance is ``|| (pred - gt) / norm ||`` per keypoint, stored as **float32**; entries that are masked,
  or whose instance has a normaliser component equal to 0, are set to -1 and skipped everywhere. A negative
  normaliser is replaced by 1e6 (so the entry stays valid, with a near-zero distance).
* PCK per keypoint type = hits / valid entries (``distance < thr``), -1 for a type with no valid entry; the
  average is over the types with a valid entry only (0.0 when there is none).
* EPE and NME are the float32 sum of the valid distances (keypoint-major order, numpy's pairwise sum)
  divided by ``max(1, count)``: a float32 value.
* AUC sums ``avg_pck(thr_i) / num_thrs`` for ``thr_i = i / num_thrs``, i = 0..num_thrs-1, with a fixed
  normaliser (30 px by default).
* MPII adds 1.0 to the predictions (the GT is 1-based), normalises by ``head_size``; see ``mpii_pckh``.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from poseapp.evaluation.types import MetricError

log = logging.getLogger(__name__)

# NME.DEFAULT_KEYPOINT_INDICES: the inter-ocular pair per data set (``dataset_meta['dataset_name']``)
NME_KEYPOINT_INDICES: dict[str, tuple[int, int]] = {
    "horse10": (0, 1),
    "300w": (36, 45),
    "coco_wholebody_face": (36, 45),
    "cofw": (8, 9),
    "wflw": (60, 72),
    "lapa": (66, 79),
}

PCK_NORM_ITEMS = ("bbox", "head", "torso")
_PCK_NAMES = {"bbox": "PCK", "head": "PCKh", "torso": "tPCK"}
TORSO_INDICES = (4, 5)  # PCKAccuracy's hard-coded torso pair (JHMDB)

# MpiiPCKAccuracy's table: printed name -> the joints averaged (MPII order: 0 r_ankle ... 15 l_wrist)
MPII_PARTS: dict[str, tuple[int, ...]] = {
    "Head PCK": (9,),
    "Shoulder PCK": (13, 12),
    "Elbow PCK": (14, 11),
    "Wrist PCK": (15, 10),
    "Hip PCK": (3, 2),
    "Knee PCK": (4, 1),
    "Ankle PCK": (5, 0),
}
MPII_EXCLUDED = (6, 7)  # pelvis, thorax: not in the overall PCKh
MPII_SC_BIAS = 0.6  # head_size = head-box diagonal * 0.6
# MpiiPCKAccuracy evaluates thresholds np.arange(0, 0.51, 0.01) and prints the one at index 10 as PCK@0.1
_MPII_THR_01 = float(np.arange(0, 0.5 + 0.01, 0.01)[10])


# ------------------------------------------------------------------------------------ small derivations

def visible_mask(visibility: np.ndarray) -> np.ndarray:
    """Annotation visibility flags (COCO ``v``, MPII ``joints_vis``), any shape -> bool mask of the same
    shape: MMPose stores ``minimum(1, v)`` and its metrics cast that to bool, so every nonzero flag counts
    (v = 1 "labelled, hidden" included; a negative flag would count too)."""
    return np.asarray(visibility) != 0


def bbox_size(bbox_xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy boxes -> (N,) ``max(w, h)``, in the boxes' dtype: PCKAccuracy's ``bbox`` normaliser."""
    boxes = np.asarray(bbox_xyxy).reshape(-1, 4)
    return np.max(boxes[:, 2:] - boxes[:, :2], axis=1)


# ------------------------------------------------------------------------------------- functional layer

def _check(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred), np.asarray(gt)
    mask = np.asarray(mask)
    if pred.ndim != 3 or pred.shape != gt.shape:
        raise MetricError(f"predictions {pred.shape} and ground truth {gt.shape} must both be (N, K, D)")
    if mask.ndim == 3 and mask.shape[-1] == 1:  # MMPose's (N, K, 1) visibility
        mask = mask[..., 0]
    if mask.shape != pred.shape[:2]:
        raise MetricError(f"mask {mask.shape} must be (N, K) = {pred.shape[:2]}")
    return pred, gt, mask.astype(bool)


def _norm2(norm: np.ndarray, n: int) -> np.ndarray:
    """A per-instance normaliser, (N,), (N, 1) or (N, D=2), as (N, 2); keeps its dtype."""
    norm = np.asarray(norm)
    if norm.ndim == 1 or (norm.ndim == 2 and norm.shape[1] == 1):
        norm = np.tile(norm.reshape(-1, 1), (1, 2))
    if norm.shape != (n, 2):
        raise MetricError(f"normaliser {norm.shape} must be (N,) or (N, 2) with N = {n}")
    return norm


def _distances(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """Normalised keypoint distances, (K, N) float32, -1 where the entry does not count.

    MMPose's ``_calc_distances``: an entry counts when its mask is set and no component of its instance's
    normaliser is 0; a normaliser component <= 0 is replaced by 1e6 before dividing (on a copy: the caller's
    array is left alone). The division and the norm run in numpy's promoted dtype of the inputs; the
    distances are then stored as float32.

    Args:
        pred: (N, K, D) predicted keypoints.
        gt: (N, K, D) ground-truth keypoints.
        mask: (N, K) bool, True for the entries that count.
        norm: (N, D) normaliser per instance and axis.
    """
    n, k = mask.shape
    valid = mask.copy()
    valid[np.any(norm == 0, axis=1)] = False
    safe = norm.copy()
    safe[safe <= 0] = 1e6
    out = np.full((n, k), -1, dtype=np.float32)
    out[valid] = np.linalg.norm(((pred - gt) / safe[:, None, :])[valid], axis=-1)
    return out.T


def _as_mutated(norm: np.ndarray) -> np.ndarray:
    """The normaliser as MMPose leaves it after one ``_calc_distances`` call, which sets entries <= 0 to
    1e6 in place. ``keypoint_auc`` and ``MpiiPCKAccuracy`` pass the same array to every threshold, so from
    the second call on an instance with a 0 normaliser is no longer skipped (its distances are ~0: hits).
    Only a 0 normaliser (AUC ``norm_factor=0``, an MPII ``head_size`` of 0) changes a number."""
    out = norm.copy()
    out[out <= 0] = 1e6
    return out


def _accuracy(dist: np.ndarray, thr: float) -> np.ndarray:
    """(K, N) distances -> (K,) float64 share below ``thr`` among the entries != -1; -1 for a row with none."""
    valid = dist != -1
    count = valid.sum(axis=1)
    hits = ((dist < thr) & valid).sum(axis=1)
    acc = np.full(len(dist), -1.0)
    np.divide(hits, count, out=acc, where=count > 0)
    return acc


def _average(acc: np.ndarray) -> tuple[float, int]:
    valid = acc[acc >= 0]
    return (float(valid.mean()) if len(valid) else 0.0), len(valid)


def pck_accuracy(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, thr: float,
                 norm: np.ndarray) -> tuple[np.ndarray, float, int]:
    """PCK per keypoint type and its average, as MMPose's ``keypoint_pck_accuracy``.

    Args:
        pred: (N, K, 2) predicted keypoints.
        gt: (N, K, 2) ground-truth keypoints.
        mask: (N, K) bool (or 0/1), True where the GT keypoint counts.
        thr: threshold on the normalised distance (``distance < thr`` is a hit).
        norm: (N, 2) normaliser per instance and axis, or (N,) used for both axes.

    Returns:
        ``(acc, avg, count)``: (K,) float64 accuracy per keypoint type, -1 where the type has no valid entry;
        the mean over the types with a valid entry (0.0 if none); the number of such types.
    """
    pred, gt, mask = _check(pred, gt, mask)
    acc = _accuracy(_distances(pred, gt, mask, _norm2(norm, len(pred))), thr)
    avg, count = _average(acc)
    return acc, avg, count


def auc(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, norm_factor: float = 30, num_thrs: int = 20) -> float:
    """Area under the PCK curve, as MMPose's ``keypoint_auc``: the PCK average at thresholds ``i / num_thrs``
    (i = 0 .. num_thrs - 1) with every distance divided by ``norm_factor`` pixels, summed with weight
    ``1 / num_thrs``. Shapes as ``pck_accuracy``. (``norm_factor=0``: MMPose skips everything at the first
    threshold and, its array overwritten with 1e6, counts everything as a hit at the others; so does this.)"""
    pred, gt, mask = _check(pred, gt, mask)
    norm = np.full((len(pred), 2), norm_factor)
    first = _distances(pred, gt, mask, norm)
    rest = _distances(pred, gt, mask, _as_mutated(norm))
    total = 0.0
    for i in range(num_thrs):
        avg, _ = _average(_accuracy(first if i == 0 else rest, 1.0 * i / num_thrs))
        total += 1.0 / num_thrs * avg
    return float(total)


def _mean_valid(dist: np.ndarray) -> float:
    """Float32 sum of the entries != -1 (keypoint-major, as MMPose indexes them) / max(1, count)."""
    valid = dist[dist != -1]
    return float(valid.sum() / max(1, len(valid)))


def epe(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """End-point error: mean pixel distance over the entries of ``mask``, as MMPose's ``keypoint_epe``
    (float32 distances and sum; 0.0 when nothing counts). Shapes as ``pck_accuracy``."""
    pred, gt, mask = _check(pred, gt, mask)
    return _mean_valid(_distances(pred, gt, mask, np.ones((len(pred), pred.shape[2]), dtype=np.float32)))


def nme(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, norm: np.ndarray) -> float:
    """Normalised mean error, as MMPose's ``keypoint_nme``: mean of ``|| (pred - gt) / norm ||`` over the
    counted entries (float32 distances and sum; 0.0 when nothing counts).

    Args:
        pred, gt, mask: as ``pck_accuracy``.
        norm: (N, 2) as MMPose's ``keypoint_nme`` takes it, or (N,) per instance (MMPose's ``NME`` metric
            tiles its per-instance value to both axes, which this does for you). Instances with a 0
            normaliser are skipped.
    """
    pred, gt, mask = _check(pred, gt, mask)
    return _mean_valid(_distances(pred, gt, mask, _norm2(norm, len(pred))))


def mpii_pckh(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, head_size: np.ndarray,
              thr: float = 0.5) -> dict[str, float]:
    """MPII's PCKh table, as MMPose's ``MpiiPCKAccuracy.compute_metrics`` prints it (percent).

    ``pred + 1.0`` (0-based predictions against MATLAB 1-based GT) is compared with ``gt``, normalised by
    ``head_size``. Per part: the mean of the left and right joints' PCKh@thr (a joint with no valid entry
    has MMPose's sentinel -1, i.e. -100 here). ``PCK``: the per-joint PCKh@thr weighted by each joint's
    count of ``mask`` entries, pelvis and thorax (6, 7) left out. ``PCK@0.1``: the same weighting of
    PCKh@0.1, whose per-joint values MMPose stores as float32 first. MMPose computes PCKh@0.1 after its
    first call has overwritten 0 head sizes with 1e6 in place, so there (only there) an instance with
    ``head_size == 0`` is not skipped but counts as hits; this is reproduced.

    Args:
        pred: (N, 16, 2) predicted keypoints (0-based pixels).
        gt: (N, 16, 2) ground-truth joints as in the annotation file (1-based).
        mask: (N, 16) ``joints_vis``.
        head_size: (N,) head-box diagonal * 0.6 (MpiiDataset's ``head_size``).
        thr: the PCKh threshold (0.5).

    Returns:
        ``{'Head PCK', 'Shoulder PCK', 'Elbow PCK', 'Wrist PCK', 'Hip PCK', 'Knee PCK', 'Ankle PCK', 'PCK',
        'PCK@0.1'}``; ``PCK`` and ``PCK@0.1`` are NaN when no joint outside pelvis/thorax is in ``mask``
        (MMPose divides 0 by 0 there).
    """
    pred, gt, mask = _check(pred, gt, mask)
    if pred.shape[1] != 16:
        raise MetricError(f"MPII PCKh needs the 16 MPII joints, got {pred.shape[1]} keypoints")
    pred = pred + 1.0
    norm = _norm2(head_size, len(pred))
    pckh = 100.0 * _accuracy(_distances(pred, gt, mask, norm), thr)
    dist_01 = _distances(pred, gt, mask, _as_mutated(norm))
    pckh_01 = (100.0 * _accuracy(dist_01, _MPII_THR_01)).astype(np.float32).astype(np.float64)

    counts = mask.sum(axis=0)
    counts[list(MPII_EXCLUDED)] = 0
    total = counts.sum()
    out = {name: float(pckh[j[0]] if len(j) == 1 else 0.5 * (pckh[j[0]] + pckh[j[1]]))
           for name, j in MPII_PARTS.items()}
    if total == 0:
        return {**out, "PCK": float("nan"), "PCK@0.1": float("nan")}
    ratio = counts / np.float64(total)
    out["PCK"] = _weighted_sum(pckh, ratio)
    out["PCK@0.1"] = _weighted_sum(pckh_01, ratio)
    return out


def _weighted_sum(values: np.ndarray, ratio: np.ndarray) -> float:
    """``sum(values * ratio)`` over the 16 joints with pelvis/thorax as exact zeros, summed by numpy in the
    same order as MMPose's masked-array sum (``filled(0).sum()``)."""
    terms = values * ratio
    terms[list(MPII_EXCLUDED)] = 0.0
    return float(np.sum(terms))


# -------------------------------------------------------------------------------------- evaluator layer

def _as_float32(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(pred, dtype=np.float32), np.asarray(gt, dtype=np.float32)


def pck_metric(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, bbox_xyxy: np.ndarray | None, thr: float,
               norm_item: str | Sequence[str] = "bbox", head_size: np.ndarray | None = None,
               torso: tuple[int, int] | None = None) -> dict[str, float]:
    """MMPose's ``PCKAccuracy(thr, norm_item)`` on N instances: ``{'PCK': ...}`` for ``'bbox'`` (normaliser
    ``max(w, h)`` of the GT box), ``'PCKh'`` for ``'head'`` (``head_size``), ``'tPCK'`` for ``'torso'``; one
    key per item asked, in the order bbox, head, torso.

    Args:
        pred: (N, K, 2) predictions (cast to float32, as MMPose's models return them).
        gt: (N, K, 2) GT keypoints (cast to float32, as MMPose's datasets hold them).
        mask: (N, K) GT visibility (nonzero counts).
        bbox_xyxy: (N, 4) GT boxes as the dataset holds them (cast to float32; ``max(w, h)`` in float32);
            only needed for ``'bbox'``.
        thr: the PCK threshold.
        norm_item: ``'bbox'``, ``'head'``, ``'torso'`` or a sequence of them.
        head_size: (N,) head sizes (float64, as MpiiDataset makes them); only needed for ``'head'``.
        torso: the keypoint pair whose GT distance is the torso size; None = MMPose's (4, 5). When the GT
            distance is below 1 px, MMPose uses the predicted pair's distance instead (and so does this).
    """
    items = [norm_item] if isinstance(norm_item, str) else list(norm_item)
    unknown = [i for i in items if i not in PCK_NORM_ITEMS]
    if unknown:
        raise MetricError(f"PCK norm_item {unknown[0]!r} is not one of {', '.join(PCK_NORM_ITEMS)}")
    pred, gt = _as_float32(pred, gt)
    norms = {}
    if "bbox" in items:
        if bbox_xyxy is None:
            raise MetricError("PCK normalised by 'bbox' needs the GT boxes (bbox_xyxy)")
        norms["bbox"] = bbox_size(np.asarray(bbox_xyxy, dtype=np.float32))
    if "head" in items:
        if head_size is None:
            raise MetricError("PCK normalised by 'head' needs head_size (MPII's head-box diagonal * 0.6)")
        norms["head"] = np.asarray(head_size, dtype=np.float64).reshape(-1)
    if "torso" in items:
        norms["torso"] = torso_size(pred, gt, TORSO_INDICES if torso is None else torso)
    return {_PCK_NAMES[item]: pck_accuracy(pred, gt, mask, thr, norms[item])[1]
            for item in PCK_NORM_ITEMS if item in items}


def torso_size(pred: np.ndarray, gt: np.ndarray, pair: tuple[int, int] = TORSO_INDICES) -> np.ndarray:
    """(N,) torso sizes as PCKAccuracy's ``'torso'`` item: the GT distance between the keypoints of ``pair``,
    or the predicted one where the GT distance is below 1 (logged). Keeps the inputs' dtype.

    One 1-D ``np.linalg.norm`` per instance, as MMPose computes it (a dot product: it can round differently
    from the batched ``axis=-1`` norm)."""
    i, j = pair
    sizes = []
    for p, g in zip(pred, gt):
        size = np.linalg.norm(g[i] - g[j])
        if size < 1:
            log.warning("ground-truth torso size < 1: using the predicted torso size")
            size = np.linalg.norm(p[i] - p[j])
        sizes.append(size)
    return np.array(sizes, dtype=np.result_type(pred, gt)).reshape(-1)


def auc_metric(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, norm_factor: float = 30,
               num_thrs: int = 20) -> dict[str, float]:
    """MMPose's ``AUC(norm_factor, num_thrs)``: ``{'AUC': ...}``; pred/gt cast to float32."""
    pred, gt = _as_float32(pred, gt)
    return {"AUC": auc(pred, gt, mask, norm_factor, num_thrs)}


def epe_metric(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """MMPose's ``EPE()``: ``{'EPE': ...}`` in pixels; pred/gt cast to float32."""
    pred, gt = _as_float32(pred, gt)
    return {"EPE": epe(pred, gt, mask)}


def nme_keypoint_indices(dataset: str | None, keypoint_indices: Sequence[int] | None = None) -> tuple[int, int]:
    """The keypoint pair NME's ``'keypoint_distance'`` mode normalises by: the one given, else the data set's
    default (MMPose's ``NME.DEFAULT_KEYPOINT_INDICES``, keyed by ``dataset_meta['dataset_name']``)."""
    if keypoint_indices is not None:
        if len(keypoint_indices) != 2:
            raise MetricError(f"NME keypoint_indices must be a pair, got {list(keypoint_indices)}")
        return int(keypoint_indices[0]), int(keypoint_indices[1])
    if dataset not in NME_KEYPOINT_INDICES:
        raise MetricError(f"NME 'keypoint_distance' has no default keypoint pair for data set {dataset!r}: "
                          f"pass keypoint_indices (defaults exist for {', '.join(NME_KEYPOINT_INDICES)})")
    return NME_KEYPOINT_INDICES[dataset]


def nme_metric(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, *, norm_mode: str,
               keypoint_indices: Sequence[int] | None = None, norm: np.ndarray | None = None,
               dataset: str | None = None) -> dict[str, float]:
    """MMPose's ``NME(norm_mode, ...)``: ``{'NME': ...}``; pred/gt cast to float32.

    ``norm_mode='keypoint_distance'``: each instance is normalised by the float32 GT distance between the
    keypoints of ``keypoint_indices`` (default: the pair of ``dataset``, e.g. WFLW (60, 72)); instances where
    that distance is 0 are skipped. ``norm_mode='use_norm_item'``: by ``norm``, (N,) one value per instance
    (e.g. ``bbox_size(gt_boxes)`` for MMPose's ``norm_item='bbox_size'``), used in its own dtype.
    """
    pred, gt = _as_float32(pred, gt)
    if norm_mode == "keypoint_distance":
        i, j = nme_keypoint_indices(dataset, keypoint_indices)
        k = gt.shape[1] if gt.ndim == 3 else 0
        if not (0 <= i < k and 0 <= j < k):
            raise MetricError(f"NME keypoint_indices ({i}, {j}) are outside the {k} keypoints")
        norm = np.linalg.norm(gt[:, i, :] - gt[:, j, :], axis=1)
    elif norm_mode == "use_norm_item":
        if norm is None:
            raise MetricError("NME norm_mode 'use_norm_item' needs the per-instance normaliser (norm)")
        norm = np.asarray(norm).reshape(-1)
    else:
        raise MetricError(f"NME norm_mode must be 'keypoint_distance' or 'use_norm_item', got {norm_mode!r}")
    return {"NME": nme(pred, gt, mask, norm)}


def mpii_metric(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, head_size: np.ndarray,
                thr: float = 0.5) -> dict[str, float]:
    """MMPose's ``MpiiPCKAccuracy(thr)`` (norm_item 'head'): the printed PCKh table in percent (see
    ``mpii_pckh``); pred/gt cast to float32, head_size to float64, as MMPose holds them."""
    pred, gt = _as_float32(pred, gt)
    return mpii_pckh(pred, gt, mask, np.asarray(head_size, dtype=np.float64).reshape(-1), thr)
