"""Keypoint-distance metrics (PCK, AUC, EPE, NME, MPII PCKh) against MMPose 1.3.2's evaluators.

1. The metric fixtures of ../shared/metrics/public (MMPose's printed values for seeded noisy predictions on
   the real test data of ../shared/data): every printed value within 1e-6, with the ground truth read from
   the annotation file; and the mask, box and head size derived from the annotation file alone equal the
   ones MMPose's datasets handed its metrics.
2. The ground truth as its own prediction scores perfectly on every annotation file (AUC: 0.95, MMPose's
   best, see the test).
3. Seeded perturbed predictions against straightforward loops written here (not the module), to 1e-9.
4. Edge cases: keypoint types with nothing visible, zero normalisers, empty input, MMPose's quirks.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache

import numpy as np
import pytest

from conftest import SHARED
from poseapp.evaluation import keypoint_metrics as km
from poseapp.evaluation.datasets import center_scale_xyxy, coco_bbox_xyxy

METRICS_DIR = SHARED / "metrics" / "public"
DATA_DIR = SHARED / "data"
FIXTURES = ("mpii", "ak", "locust", "zebra", "fld", "deepfasion2", "wflw")

needs_fixtures = pytest.mark.skipif(
    not (METRICS_DIR / "mpii.json").is_file(),
    reason="../shared/metrics (MMPose metric fixtures) and ../shared/data are not beside the project: "
    "these tests only run in the project's CI and developer checkouts",
)


# ------------------------------------------------------------- ground truth as MMPose's datasets read it

# LocustDataset / ZebraDataset ignore the annotation's box: the whole 160x160 frame
WHOLE_FRAME = {"locust": (0.0, 0.0, 160.0, 160.0), "zebra": (0.0, 0.0, 160.0, 160.0)}
MPII_PIXEL_STD = 200.0
MPII_HEAD_TOP, MPII_UPPER_NECK = 9, 8


def mpii_bbox(ann: dict) -> np.ndarray:
    """MpiiDataset's box: float32 centre, float32 ``scale * 200`` square; the centre moves down by
    ``15 / 200 * size`` (unless centre x is -1), then by -1 (1-based -> 0-based); ``bbox_cs2xyxy``."""
    center = np.array(ann["center"], dtype=np.float32)
    size = np.array([ann["scale"], ann["scale"]], dtype=np.float32) * MPII_PIXEL_STD
    if center[0] != -1:
        center[1] = center[1] + 15.0 / MPII_PIXEL_STD * size[1]
    return center_scale_xyxy(center - 1, size)[0]


def mpii_derived_headbox(joints: list) -> np.ndarray:
    """The fixture's derived head box (shared/metrics/README): a square centred between GT head top (9) and
    upper neck (8), side = their distance; float64 from the JSON joints. (2, 2) = [[x1, y1], [x2, y2]]."""
    j = np.asarray(joints, dtype=np.float64)
    center = (j[MPII_HEAD_TOP] + j[MPII_UPPER_NECK]) / 2
    side = np.linalg.norm(j[MPII_HEAD_TOP] - j[MPII_UPPER_NECK])
    return np.array([center - side / 2, center + side / 2])


def mpii_head_size(headbox: np.ndarray) -> float:
    """MpiiDataset: the head box's diagonal (float64 ``np.linalg.norm``) times SC_BIAS 0.6."""
    return float(np.linalg.norm(headbox[1] - headbox[0], axis=0) * km.MPII_SC_BIAS)


def wflw_bbox(ann: dict) -> np.ndarray:
    """WFLWDataset: float32 centre and ``scale * 200`` square, ``bbox_cs2xyxy``."""
    center = np.array([ann["center"]], dtype=np.float32)
    size = np.array([[ann["scale"], ann["scale"]]], dtype=np.float32) * MPII_PIXEL_STD
    return center_scale_xyxy(center, size)[0]


def read_ground_truth(dataset: str, ann_doc, ids: list[int]) -> dict[str, np.ndarray]:
    """GT of the instances ``ids`` (COCO annotation ids; MPII: indices in the JSON list), derived from the
    annotation file alone: ``keypoints`` (N, K, 2) float32, ``visibility`` (N, K) raw flags, ``bbox``
    (N, 4) float32 xyxy, and for MPII ``head_size`` (N,) float64 and ``headbox`` (N, 2, 2)."""
    if dataset == "mpii":
        anns = [ann_doc[i] for i in ids]
        heads = np.array([mpii_derived_headbox(a["joints"]) for a in anns])
        return {
            "keypoints": np.array([a["joints"] for a in anns], dtype=np.float32),
            "visibility": np.array([a["joints_vis"] for a in anns]),
            "bbox": np.array([mpii_bbox(a) for a in anns]),
            "headbox": heads,
            "head_size": np.array([mpii_head_size(h) for h in heads]),
        }
    by_id = {a["id"]: a for a in ann_doc["annotations"]}
    images = {im["id"]: im for im in ann_doc["images"]}
    anns = [by_id[i] for i in ids]
    flat = [np.array(a["keypoints"], dtype=np.float32).reshape(-1, 3) for a in anns]
    if dataset in WHOLE_FRAME:
        boxes = [np.array(WHOLE_FRAME[dataset], dtype=np.float32) for _ in anns]
    elif dataset == "wflw":
        boxes = [wflw_bbox(a) for a in anns]
    else:
        boxes = [coco_bbox_xyxy(a["bbox"], images[a["image_id"]]["width"], images[a["image_id"]]["height"])
                 for a in anns]
    return {"keypoints": np.array([f[:, :2] for f in flat]), "visibility": np.array([f[:, 2] for f in flat]),
            "bbox": np.array(boxes)}


@lru_cache(maxsize=None)
def load_fixture(dataset: str) -> dict:
    return json.loads((METRICS_DIR / f"{dataset}.json").read_text())


@lru_cache(maxsize=None)
def load_annotations(dataset: str):
    return json.loads((DATA_DIR / load_fixture(dataset)["annotation_file"]).read_text())


def all_ids(dataset: str) -> list[int]:
    doc = load_annotations(dataset)
    return list(range(len(doc))) if dataset == "mpii" else [a["id"] for a in doc["annotations"]]


def evaluate_like_mmpose(fixture: dict, pred, gt, mask, bbox, head_size) -> dict[str, float]:
    """Every evaluator of the fixture, with its ``effective_kwargs``, merged as Evaluator.evaluate does."""
    out: dict[str, float] = {}
    dataset_name = fixture["dataset_meta"]["dataset_name"]
    for ev in fixture["evaluator"]:
        kw = ev["effective_kwargs"]
        kind = ev["type"]
        if kind == "PCKAccuracy":
            out.update(km.pck_metric(pred, gt, mask, bbox, kw["thr"], kw["norm_item"], head_size=head_size))
        elif kind == "AUC":
            out.update(km.auc_metric(pred, gt, mask, kw["norm_factor"], kw["num_thrs"]))
        elif kind == "EPE":
            out.update(km.epe_metric(pred, gt, mask))
        elif kind == "NME":
            out.update(km.nme_metric(pred, gt, mask, norm_mode=kw["norm_mode"],
                                     keypoint_indices=kw["keypoint_indices"], dataset=dataset_name))
        elif kind == "MpiiPCKAccuracy":
            assert kw["norm_item"] == "head"
            out.update(km.mpii_metric(pred, gt, mask, head_size, kw["thr"]))
        else:
            raise AssertionError(f"no re-implementation for evaluator {kind}")
    return out


# ------------------------------------------------------------------------------------ 1. the fixtures

@needs_fixtures
@pytest.mark.parametrize("dataset", FIXTURES)
def test_printed_metrics_match_mmpose(dataset):
    fx = load_fixture(dataset)
    preds = fx["predictions"]
    pred = np.array([p["keypoints"] for p in preds], dtype=np.float32)
    gt = read_ground_truth(dataset, load_annotations(dataset), [p["gt_ann_id"] for p in preds])["keypoints"]
    inputs = [p["mmpose_eval_inputs"] for p in preds]
    mask = np.array([i["gt_keypoints_visible"] for i in inputs])
    bbox = np.array([i["gt_bbox"] for i in inputs])
    head = np.array([i["head_size"] for i in inputs]) if dataset == "mpii" else None

    ours = evaluate_like_mmpose(fx, pred, gt, mask, bbox, head)

    assert list(ours) == list(fx["metrics"])
    for name, value in fx["metrics"].items():
        assert abs(ours[name] - value) <= 1e-6, (name, ours[name], value)


@needs_fixtures
@pytest.mark.parametrize("dataset", FIXTURES)
def test_annotation_file_gives_mmpose_eval_inputs(dataset):
    """Mask = visibility != 0, the box and MPII's head size, from the annotation file alone, equal (exactly)
    what MMPose's dataset handed the metric."""
    fx = load_fixture(dataset)
    preds = fx["predictions"]
    derived = read_ground_truth(dataset, load_annotations(dataset), [p["gt_ann_id"] for p in preds])
    inputs = [p["mmpose_eval_inputs"] for p in preds]

    np.testing.assert_array_equal(km.visible_mask(derived["visibility"]),
                                  np.array([i["gt_keypoints_visible"] for i in inputs], dtype=bool))
    np.testing.assert_array_equal(derived["bbox"], np.array([i["gt_bbox"] for i in inputs], dtype=np.float32))
    if dataset == "mpii":
        np.testing.assert_array_equal(derived["headbox"], np.array(fx["mpii_headboxes_derived"]))
        np.testing.assert_array_equal(derived["head_size"], np.array([i["head_size"] for i in inputs]))


@needs_fixtures
@pytest.mark.parametrize("dataset", FIXTURES)
def test_fixture_metrics_from_derived_inputs(dataset):
    """The lead's reader path: everything (GT, mask, box, head size) from the annotation file."""
    fx = load_fixture(dataset)
    preds = fx["predictions"]
    gt = read_ground_truth(dataset, load_annotations(dataset), [p["gt_ann_id"] for p in preds])
    pred = np.array([p["keypoints"] for p in preds], dtype=np.float32)
    ours = evaluate_like_mmpose(fx, pred, gt["keypoints"], km.visible_mask(gt["visibility"]), gt["bbox"],
                                gt.get("head_size"))
    assert max(abs(ours[k] - v) for k, v in fx["metrics"].items()) <= 1e-6


# ------------------------------------------------------------------ 2. ground truth as its own prediction

@needs_fixtures
@pytest.mark.parametrize("dataset", FIXTURES)
def test_ground_truth_scores_perfectly(dataset):
    gt = read_ground_truth(dataset, load_annotations(dataset), all_ids(dataset))
    kpts, mask, bbox = gt["keypoints"], km.visible_mask(gt["visibility"]), gt["bbox"]
    assert mask.any()

    if dataset == "mpii":  # predictions are 0-based: MMPose adds 1 before comparing with the 1-based GT
        table = km.mpii_metric(kpts - 1, kpts, mask, gt["head_size"])
        assert all(v == 100.0 for k, v in table.items()), table
    assert km.pck_metric(kpts, kpts, mask, bbox, 0.05) == {"PCK": 1.0}
    # MMPose's AUC cannot reach 1: its first threshold is 0 and a hit is ``distance < thr``, so even exact
    # predictions score 0 there: the best AUC is (num_thrs - 1) / num_thrs = 0.95
    assert km.auc_metric(kpts, kpts, mask) == {"AUC": pytest.approx(0.95, abs=1e-12)}
    assert km.epe_metric(kpts, kpts, mask) == {"EPE": 0.0}
    assert km.nme_metric(kpts, kpts, mask, norm_mode="use_norm_item", norm=km.bbox_size(bbox)) == {"NME": 0.0}
    if dataset == "wflw":
        assert km.nme_metric(kpts, kpts, mask, norm_mode="keypoint_distance", dataset="wflw") == {"NME": 0.0}


# --------------------------------------------------- 3. perturbed predictions against plain loops (1e-9)

def perturbed(gt: np.ndarray, seed: int, spread) -> np.ndarray:
    """Deterministic predictions: GT plus Gaussian noise of ``spread`` pixels (a number, or (N,) per
    instance), as float32."""
    rng = np.random.default_rng(seed)
    spread = np.asarray(spread, dtype=np.float64).reshape(-1, 1, 1)
    return (gt + rng.normal(0.0, 1.0, gt.shape) * spread).astype(np.float32)


def loop_distances(pred, gt, mask, norms) -> list[list[float | None]]:
    """[k][n] normalised float64 distance, None where the entry does not count (masked or norm 0)."""
    n_inst, n_kpt = mask.shape
    out = []
    for k in range(n_kpt):
        row = []
        for n in range(n_inst):
            nx, ny = float(norms[n][0]), float(norms[n][1])
            if not mask[n][k] or nx == 0 or ny == 0:
                row.append(None)
                continue
            nx, ny = (1e6 if nx < 0 else nx), (1e6 if ny < 0 else ny)
            dx = (float(pred[n][k][0]) - float(gt[n][k][0])) / nx
            dy = (float(pred[n][k][1]) - float(gt[n][k][1])) / ny
            row.append(math.sqrt(dx * dx + dy * dy))
        out.append(row)
    return out


def loop_pck(dists, thr) -> tuple[list[float], float]:
    per_type, valid = [], []
    for row in dists:
        counted = [d for d in row if d is not None]
        if counted:
            acc = sum(1 for d in counted if d < thr) / len(counted)
            per_type.append(acc)
            valid.append(acc)
        else:
            per_type.append(-1.0)
    return per_type, (sum(valid) / len(valid) if valid else 0.0)


def assert_clear_of(dists, thresholds, margin=1e-5):
    """The seeded data keep every distance ``margin`` (relative) away from every threshold, so the float32
    distances MMPose stores cannot flip a hit that float64 loops decide."""
    for row in dists:
        for d in row:
            if d is not None:
                assert all(abs(d - t) > margin * max(t, 1e-3) for t in thresholds), (d, thresholds)


def _realistic(dataset: str, seed: int):
    gt = read_ground_truth(dataset, load_annotations(dataset), all_ids(dataset))
    kpts = gt["keypoints"]
    mask = km.visible_mask(gt["visibility"])
    rng = np.random.default_rng(seed + 1)
    mask = mask & (rng.random(mask.shape) > 0.15)  # hide some more
    return gt, kpts, mask


@needs_fixtures
@pytest.mark.parametrize("dataset", FIXTURES)
@pytest.mark.parametrize("thr", [0.05, 0.1])
def test_pck_and_auc_match_plain_loops(dataset, thr):
    gt, kpts, mask = _realistic(dataset, seed=7)
    sizes = km.bbox_size(gt["bbox"]).astype(np.float64)
    pred = perturbed(kpts, seed=11, spread=0.06 * sizes)  # PCK@0.05 about 0.4, PCK@0.1 about 0.8
    bbox_norms = [(s, s) for s in sizes]
    dists = loop_distances(pred, kpts, mask, bbox_norms)
    assert_clear_of(dists, [thr])
    per_type, avg = loop_pck(dists, thr)

    acc, ours_avg, count = km.pck_accuracy(pred, kpts, mask, thr, np.stack([sizes, sizes], 1))
    np.testing.assert_allclose(acc, per_type, rtol=0, atol=1e-9)
    assert count == sum(1 for a in per_type if a >= 0)
    assert abs(ours_avg - avg) <= 1e-9
    assert abs(km.pck_metric(pred, kpts, mask, gt["bbox"], thr)["PCK"] - avg) <= 1e-9

    thresholds = [i / 20 for i in range(20)]
    pixel = loop_distances(pred, kpts, mask, [(30.0, 30.0)] * len(pred))
    assert_clear_of(pixel, thresholds[1:])
    expected_auc = sum(loop_pck(pixel, t)[1] for t in thresholds) / 20
    assert abs(km.auc_metric(pred, kpts, mask)["AUC"] - expected_auc) <= 1e-9


@needs_fixtures
@pytest.mark.parametrize("seed", [0, 1, 3])  # seed 2 puts a distance 1.3e-6 below 0.5: see assert_clear_of
def test_mpii_pckh_matches_plain_loops(seed):
    gt = read_ground_truth("mpii", load_annotations("mpii"), all_ids("mpii"))
    joints, mask, head = gt["keypoints"], km.visible_mask(gt["visibility"]), gt["head_size"]
    pred0 = perturbed(joints - 1, seed=seed, spread=0.25 * head)  # 0-based; PCKh@0.5 about 0.8
    pred1 = pred0 + np.float32(1.0)
    dists = loop_distances(pred1, joints, mask, [(h, h) for h in head])
    assert_clear_of(dists, [0.5, 0.1])
    pck05, _ = loop_pck(dists, 0.5)
    pck01, _ = loop_pck(dists, 0.1)
    # MMPose stores the per-joint PCKh@0.1 percentages as float32 before weighting them
    pct05 = [100.0 * a for a in pck05]
    pct01 = [float(np.float32(100.0 * a)) for a in pck01]
    counts = [int(mask[:, j].sum()) if j not in (6, 7) else 0 for j in range(16)]
    total = sum(counts)
    expected = {
        "Head PCK": pct05[9],
        "Shoulder PCK": (pct05[13] + pct05[12]) / 2,
        "Elbow PCK": (pct05[14] + pct05[11]) / 2,
        "Wrist PCK": (pct05[15] + pct05[10]) / 2,
        "Hip PCK": (pct05[3] + pct05[2]) / 2,
        "Knee PCK": (pct05[4] + pct05[1]) / 2,
        "Ankle PCK": (pct05[5] + pct05[0]) / 2,
        "PCK": sum(p * c for p, c in zip(pct05, counts)) / total,
        "PCK@0.1": sum(p * c for p, c in zip(pct01, counts)) / total,
    }
    ours = km.mpii_metric(pred0, joints, mask, head)
    assert list(ours) == list(expected)
    for name, value in expected.items():
        assert abs(ours[name] - value) <= 1e-9, (name, ours[name], value)


PYTHAGOREAN = [(0, 0, 0), (3, 4, 5), (5, 12, 13), (8, 15, 17), (7, 24, 25), (20, 21, 29), (6, 8, 10), (0, 9, 9)]


def integer_case(seed: int, n: int = 6, k: int = 98):
    """Integer GT and offsets from Pythagorean triples: every distance (and with power-of-two normalisers,
    every normalised distance) and every partial sum is exact in float32 and float64, so MMPose's float32
    arithmetic and plain float64 loops must agree to the last bit after the final float32 rounding."""
    rng = np.random.default_rng(seed)
    gt = rng.integers(100, 900, size=(n, k, 2)).astype(np.float64)
    offsets = np.zeros_like(gt)
    expected_px = np.zeros((n, k))
    for i in range(n):
        for j in range(k):
            a, b, c = PYTHAGOREAN[rng.integers(len(PYTHAGOREAN))]
            if rng.random() < 0.5:
                a, b = b, a
            offsets[i, j] = (a * rng.choice([-1, 1]), b * rng.choice([-1, 1]))
            expected_px[i, j] = c
    mask = rng.random((n, k)) > 0.2
    return gt.astype(np.float32), (gt + offsets).astype(np.float32), mask, expected_px


def loop_mean(values) -> float:
    """Mean of exactly representable values, rounded once to float32 as MMPose's float32 mean is."""
    values = list(values)
    return float(np.float32(math.fsum(values) / max(1, len(values))))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_epe_and_nme_match_plain_loops_exactly(seed):
    gt, pred, mask, px = integer_case(seed)
    n, k = mask.shape
    expected_epe = loop_mean(px[i, j] for i in range(n) for j in range(k) if mask[i, j])
    assert abs(km.epe_metric(pred, gt, mask)["EPE"] - expected_epe) <= 1e-9

    norms = np.array([64.0, 128.0, 0.0, 32.0, 256.0, 16.0])  # one instance with a 0 normaliser: skipped
    expected_nme = loop_mean(px[i, j] / norms[i] for i in range(n) for j in range(k) if mask[i, j] and norms[i])
    ours = km.nme_metric(pred, gt, mask, norm_mode="use_norm_item", norm=norms.astype(np.float32))
    assert abs(ours["NME"] - expected_nme) <= 1e-9

    # inter-ocular normaliser: WFLW's (60, 72) set 128 px apart along x
    gt_eyes = gt.copy()
    gt_eyes[:, 72] = gt_eyes[:, 60] + np.float32([128.0, 0.0])
    pred_eyes = pred.copy()
    pred_eyes[:, 72] = gt_eyes[:, 72] + (pred[:, 72] - gt[:, 72])
    expected_io = loop_mean(px[i, j] / 128.0 for i in range(n) for j in range(k) if mask[i, j])
    ours = km.nme_metric(pred_eyes, gt_eyes, mask, norm_mode="keypoint_distance", dataset="wflw")
    assert abs(ours["NME"] - expected_io) <= 1e-9


@needs_fixtures
@pytest.mark.parametrize("dataset", FIXTURES)
def test_epe_and_nme_on_real_data_match_plain_loops(dataset):
    """Real-valued coordinates: MMPose sums float32 distances, so agreement is to float32 precision."""
    gt, kpts, mask = _realistic(dataset, seed=3)
    pred = perturbed(kpts, seed=5, spread=8.0)
    n, k = mask.shape
    px = loop_distances(pred, kpts, mask, [(1.0, 1.0)] * n)
    expected_epe = math.fsum(d for row in px for d in row if d is not None) / max(1, int(mask.sum()))
    assert km.epe_metric(pred, kpts, mask)["EPE"] == pytest.approx(expected_epe, rel=2e-6)
    sizes = km.bbox_size(gt["bbox"]).astype(np.float64)
    normed = loop_distances(pred, kpts, mask, [(s, s) for s in sizes])
    counted = [d for row in normed for d in row if d is not None]
    ours = km.nme_metric(pred, kpts, mask, norm_mode="use_norm_item", norm=km.bbox_size(gt["bbox"]))["NME"]
    assert ours == pytest.approx(math.fsum(counted) / max(1, len(counted)), rel=2e-6)


# ------------------------------------------------------------------------------------- 4. edge cases

def _toy():
    gt = np.array([[[0, 0], [10, 0], [20, 0]], [[0, 0], [10, 0], [20, 0]]], dtype=np.float32)
    pred = gt + np.array([[[1, 0], [0, 30], [9, 0]], [[4, 0], [0, 0], [0, 2]]], dtype=np.float32)
    return pred, gt


def test_keypoint_type_with_nothing_visible_is_left_out_of_the_average():
    pred, gt = _toy()
    mask = np.array([[True, False, True], [True, False, True]])
    norm = np.full((2, 2), 10.0)
    acc, avg, count = km.pck_accuracy(pred, gt, mask, 0.5, norm)
    np.testing.assert_array_equal(acc, [1.0, -1.0, 0.5])  # type 1 has no visible GT: -1, not 0
    assert (avg, count) == (0.75, 2)
    # and all masked: nothing counts, MMPose's 0.0
    acc, avg, count = km.pck_accuracy(pred, gt, np.zeros((2, 3), bool), 0.5, norm)
    np.testing.assert_array_equal(acc, [-1.0, -1.0, -1.0])
    assert (avg, count) == (0.0, 0)
    assert km.epe(pred, gt, np.zeros((2, 3), bool)) == 0.0


def test_zero_normaliser_excludes_the_instance_and_negative_counts_as_a_hit():
    pred, gt = _toy()
    mask = np.ones((2, 3), bool)
    norm = np.array([[10.0, 10.0], [0.0, 10.0]])  # instance 1: a zero component, skipped
    acc, avg, count = km.pck_accuracy(pred, gt, mask, 0.5, norm)
    np.testing.assert_array_equal(acc, [1.0, 0.0, 0.0])
    assert count == 3
    assert km.nme(pred, gt, mask, norm) == pytest.approx((0.1 + 3.0 + 0.9) / 3)
    np.testing.assert_array_equal(norm, [[10.0, 10.0], [0.0, 10.0]])  # the caller's array is left alone
    # MMPose replaces a negative normaliser by 1e6: the instance stays, with ~0 distances (all hits)
    acc, _, _ = km.pck_accuracy(pred, gt, mask, 0.5, np.array([[-1.0, -1.0], [-1.0, -1.0]]))
    np.testing.assert_array_equal(acc, [1.0, 1.0, 1.0])
    # per-instance (N,) normalisers are used for both axes
    np.testing.assert_array_equal(km.pck_accuracy(pred, gt, mask, 0.5, np.array([10.0, 0.0]))[0], acc * [1, 0, 0])


def test_empty_input():
    empty = np.zeros((0, 16, 2), np.float32)
    mask = np.zeros((0, 16), bool)
    acc, avg, count = km.pck_accuracy(empty, empty, mask, 0.2, np.zeros((0, 2)))
    assert acc.shape == (16,) and (acc == -1).all() and (avg, count) == (0.0, 0)
    assert km.pck_metric(empty, empty, mask, np.zeros((0, 4)), 0.2) == {"PCK": 0.0}
    assert km.auc_metric(empty, empty, mask) == {"AUC": 0.0}
    assert km.epe_metric(empty, empty, mask) == {"EPE": 0.0}
    assert km.nme_metric(empty, empty, mask, norm_mode="use_norm_item", norm=np.zeros(0)) == {"NME": 0.0}
    table = km.mpii_metric(empty, empty, mask, np.zeros(0))
    assert table["Head PCK"] == -100.0  # MMPose's -1 sentinel, in percent
    assert math.isnan(table["PCK"]) and math.isnan(table["PCK@0.1"])


def test_mpii_zero_head_size_quirk():
    """MMPose overwrites a 0 head size with 1e6 in place during the PCKh@0.5 call, so PCKh@0.1 (computed
    later from the same array) counts that person's joints as hits."""
    rng = np.random.default_rng(0)
    gt = (rng.random((2, 16, 2)) * 100 + 50).astype(np.float32)
    pred = gt - 1 + np.float32(30.0)  # far off: misses at both thresholds for head size 10
    mask = np.ones((2, 16), bool)
    table = km.mpii_metric(pred, gt, mask, np.array([10.0, 0.0]))
    assert table["PCK"] == 0.0  # person 1 skipped at 0.5: no hits anywhere
    assert table["PCK@0.1"] == pytest.approx(50.0, abs=1e-4)  # person 1 counted as hits at 0.1
    # AUC's normaliser is reused the same way: norm_factor 0 skips everything at thr 0 only
    assert km.auc(pred, gt, mask, norm_factor=0) == pytest.approx(0.95)


def test_torso_and_head_normalisers():
    pred, gt = _toy()
    gt16 = np.zeros((2, 6, 2), np.float32)
    gt16[:, 4], gt16[:, 5] = (0, 0), (0, 20)  # torso size 20
    pred16 = gt16 + np.float32(3.0)  # distance 3*sqrt(2) = 4.24
    mask = np.ones((2, 6), bool)
    assert km.pck_metric(pred16, gt16, mask, None, 0.25, "torso") == {"tPCK": 1.0}
    assert km.pck_metric(pred16, gt16, mask, None, 0.2, "torso") == {"tPCK": 0.0}
    # GT torso below 1 px: MMPose uses the predicted torso (here also 20)
    gt_small = gt16.copy()
    gt_small[:, 5] = (0, 0.5)
    assert km.torso_size(pred16, gt_small).tolist() == [20.0, 20.0]
    boxes = np.array([[0, 0, 40, 10], [0, 0, 40, 10]], np.float32)
    both = km.pck_metric(pred16, gt16, mask, boxes, 0.2, ["head", "bbox"], head_size=np.array([30.0, 30.0]))
    assert both == {"PCK": 1.0, "PCKh": 1.0}  # MMPose's key order: bbox, head, torso


def test_helpers_and_errors():
    assert km.visible_mask(np.array([0, 1, 2, -1])).tolist() == [False, True, True, True]
    np.testing.assert_array_equal(coco_bbox_xyxy([10.5, -3, 700, 20], 640, 480), [10.5, 0, 639, 17])
    np.testing.assert_array_equal(km.bbox_size(np.array([[0, 0, 4, 9], [1, 1, 11, 3]])), [9, 10])
    assert km.nme_keypoint_indices("wflw") == (60, 72)
    pred, gt = _toy()
    mask = np.ones((2, 3), bool)
    with pytest.raises(km.MetricError, match="keypoint_indices"):
        km.nme_metric(pred, gt, mask, norm_mode="keypoint_distance", dataset="coco")
    with pytest.raises(km.MetricError, match="norm_mode"):
        km.nme_metric(pred, gt, mask, norm_mode="bbox")
    with pytest.raises(km.MetricError, match="norm_item"):
        km.pck_metric(pred, gt, mask, None, 0.2, "elbow")
    with pytest.raises(km.MetricError, match="16 MPII joints"):
        km.mpii_metric(pred, gt, mask, np.ones(2))
    with pytest.raises(km.MetricError, match="mask"):
        km.pck_accuracy(pred, gt, mask[:, :2], 0.2, np.ones((2, 2)))
