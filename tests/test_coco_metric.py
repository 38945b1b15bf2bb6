"""COCO keypoint AP/AR (poseapp.evaluation.coco_metric) against MMPose 1.3.2's CocoMetric.

- the metrics MMPose printed for ../shared/metrics/public/{coco,crowdpose,ap10k,animalpose}.json;
- the ground truth as its own prediction;
- pycocotools called directly on the same results (data sets where xtcocotools' rules change nothing);
- the xtcocotools rules the module adds to pycocotools, on small hand-made annotation files;
- rescore and OKS-NMS with known numbers.
"""
from __future__ import annotations

import contextlib
import io
import json
from collections import defaultdict

import numpy as np
import pytest
from conftest import SHARED

from poseapp.evaluation.coco_metric import (MetricError, coco_keypoint_metrics, oks_nms, rescore, soft_oks_nms,
                                            to_coco_results)
from poseapp.evaluation.datasets import DatasetError
from poseapp.evaluation.types import KeypointPrediction

METRICS = SHARED / "metrics" / "public"
DATA = SHARED / "data"
COCO_STYLE = ["coco", "crowdpose", "ap10k", "animalpose"]
needs_metrics = pytest.mark.skipif(not METRICS.is_dir() or not DATA.is_dir(),
                                   reason="../shared/metrics and ../shared/data (MMPose's metric fixtures and the "
                                   "test annotation files) are not beside the project")


def _fixture(name: str) -> dict:
    return json.loads((METRICS / f"{name}.json").read_text())


def _settings(fx: dict) -> dict:
    """coco_keypoint_metrics' keyword arguments from a fixture's evaluator settings."""
    kw = fx["evaluator"][0]["effective_kwargs"]
    return dict(sigmas=fx["dataset_meta"]["sigmas"], iou_type=kw["iou_type"], use_area=kw["use_area"],
                score_mode=kw["score_mode"], keypoint_score_thr=kw["keypoint_score_thr"], nms_mode=kw["nms_mode"],
                nms_thr=kw["nms_thr"], prefix=fx["evaluator"][0]["prefix_used"])


def _pred(id, image_id, category_id, keypoints, scores, bbox_xyxy, bbox_score=1.0, area=None) -> KeypointPrediction:
    bbox = np.asarray(bbox_xyxy, np.float32)
    if area is None:
        area = float((bbox[2] - bbox[0]) * (bbox[3] - bbox[1]))
    return KeypointPrediction(id=id, image_id=image_id, category_id=category_id, bbox=bbox, bbox_score=bbox_score,
                              keypoints=np.asarray(keypoints, np.float32),
                              keypoint_scores=np.asarray(scores, np.float32), area=area)


def _gt_predictions(doc: dict) -> list[KeypointPrediction]:
    """Every annotation with keypoints as a prediction: its keypoints where the file puts them, score 1 where
    labelled (v > 0) and 0 elsewhere, box score 1, area = the annotation's (CrowdPose has none: w * h)."""
    preds = []
    for ann in doc["annotations"]:
        kpts = np.asarray(ann["keypoints"], np.float32).reshape(-1, 3)
        x, y, w, h = ann["bbox"]
        preds.append(_pred(ann["id"], ann["image_id"], ann["category_id"], kpts[:, :2], kpts[:, 2] > 0,
                           [x, y, x + w, y + h], area=ann.get("area", w * h)))
    return preds


# ------------------------------------------------------------------------------------------ MMPose's numbers

@needs_metrics
@pytest.mark.parametrize("name", COCO_STYLE)
def test_matches_mmpose_fixture(name):
    fx = _fixture(name)
    preds = [_pred(p["id"], p["image_id"], p["category_id"], p["keypoints"], p["keypoint_scores"], p["bbox"],
                   p["bbox_score"], p["mmpose_eval_inputs"]["nms_area"]) for p in fx["predictions"]]
    metrics = coco_keypoint_metrics(DATA / fx["annotation_file"], preds, **_settings(fx))
    assert list(metrics) == list(fx["metrics"])
    for key, expected in fx["metrics"].items():
        assert metrics[key] == pytest.approx(expected, abs=1e-6, rel=0), key


# ------------------------------------------------------------------------------------------ the ground truth

@needs_metrics
@pytest.mark.parametrize("name", COCO_STYLE)
def test_ground_truth_is_perfect(name):
    """OKS only looks at labelled keypoints, so wherever the unlabelled ones are predicted each annotation's
    OKS with itself is exactly 1 and AR is exactly 1. AP is 1 up to COCOeval's precision tp / (tp + fp + eps):
    with one ground truth in a category (AP-10K) that is 1 / (1 + 2^-52), 2^-52 below 1. Annotations without
    labelled keypoints (2 in COCO's file, 1 in CrowdPose's) are ignored, and their predictions, all scores 0,
    are dropped (xtcocotools' rule). No data set here has iscrowd annotations. The ranges with no ground truth
    print -1: AP-10K's and AnimalPose's animals are all large (M: -1); CrowdPose's two images have crowdIndex
    0.33 and 0.39, so only AP(M) (its value rounded to 4 decimals: exactly 1) has images."""
    fx = _fixture(name)
    doc = json.loads((DATA / fx["annotation_file"]).read_text())
    metrics = coco_keypoint_metrics(DATA / fx["annotation_file"], _gt_predictions(doc), **_settings(fx))
    empty = {"crowdpose": {"AP(E)", "AP(H)"}, "ap10k": {"AP (M)", "AR (M)"}, "animalpose": {"AP (M)", "AR (M)"}}
    for key, value in metrics.items():
        stat = key.split("/")[-1]
        if stat in empty.get(name, ()):
            assert value == -1.0, key
        elif stat.startswith("AR") or stat == "AP(M)":
            assert value == 1.0, key
        else:
            assert abs(value - 1.0) <= 2 ** -52, key


# ------------------------------------------------------------------------------------------ pycocotools itself

def _perturbed(doc: dict, seed: int) -> list[KeypointPrediction]:
    """Seeded noisy copies of the annotations: noise 1-12 % of sqrt(box area), 10 % of keypoints moved
    anywhere in the box with a low score, every 3rd instance repeated (slightly moved, lower box score: for
    the NMS to drop) and one false positive per image. Every keypoint score is > 0."""
    rng = np.random.default_rng(seed)
    preds, next_id = [], 0
    for n, ann in enumerate(doc["annotations"]):
        gt = np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)
        x, y, w, h = ann["bbox"]
        box = np.array([x, y, x + w, y + h])
        size = np.sqrt(w * h) * rng.uniform(0.01, 0.12)
        kpts = gt[:, :2] + rng.normal(0, size, gt[:, :2].shape)
        scores = rng.uniform(0.3, 1.0, len(gt))
        moved = rng.uniform(size=len(gt)) < 0.1
        kpts[moved] = box[:2] + rng.uniform(size=(moved.sum(), 2)) * [w, h]
        scores[moved] = rng.uniform(0.01, 0.15, moved.sum())
        bbox_score, area = float(rng.uniform(0.5, 1.0)), w * h * rng.uniform(1.0, 1.6)
        preds.append(_pred(next_id, ann["image_id"], ann["category_id"], kpts, scores, box, bbox_score, area))
        if n % 3 == 0:
            preds.append(_pred(next_id + 1, ann["image_id"], ann["category_id"], kpts + rng.normal(0, 0.5, kpts.shape),
                               scores, box, bbox_score * 0.9, area))
        next_id += 2
    for img in doc["images"]:
        x, y = rng.uniform(0, img["width"] / 2), rng.uniform(0, img["height"] / 2)
        w, h = rng.uniform(20, img["width"] / 2), rng.uniform(20, img["height"] / 2)
        kpts = [x, y] + rng.uniform(size=(len(preds[0].keypoints), 2)) * [w, h]
        preds.append(_pred(next_id, img["id"], doc["annotations"][0]["category_id"], kpts,
                           rng.uniform(0.05, 0.9, len(kpts)), [x, y, x + w, y + h], float(rng.uniform(0.05, 0.4))))
        next_id += 1
    rng.shuffle(preds)
    return preds


def _pycocotools_stats(ann_file, preds: list[KeypointPrediction], sigmas) -> tuple[list[float], int]:
    """MMPose's steps written out here (group by image, sort by id, rescore, OKS-NMS at 0.9) and plain
    pycocotools: COCO(ann_file), loadRes, COCOeval('keypoints') with the sigmas. Returns (stats, kept)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    by_image = defaultdict(list)
    for p in preds:
        by_image[p.image_id].append(p)
    results = []
    for instances in by_image.values():
        instances.sort(key=lambda p: p.id)
        scores = rescore(instances, "bbox_keypoint", 0.2)
        keep = oks_nms(np.stack([p.keypoints for p in instances]), scores, [p.area for p in instances], 0.9, sigmas)
        results += to_coco_results([instances[k] for k in keep], scores[keep])
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        ev = COCOeval(gt, gt.loadRes(results), "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sigmas, np.float32)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(s) for s in ev.stats], len(results)


@needs_metrics
@pytest.mark.parametrize("name", ["coco", "ap10k", "animalpose"])
def test_matches_pycocotools(name):
    """Where xtcocotools' rules change nothing (no result with all scores 0, num_keypoints = the labelled
    count, no annotation id 0, use_area), the numbers are pycocotools' own."""
    fx = _fixture(name)
    ann_file = DATA / fx["annotation_file"]
    doc = json.loads(ann_file.read_text())
    assert all(a["num_keypoints"] == np.count_nonzero(np.asarray(a["keypoints"])[2::3] > 0) and a["id"] > 0
               for a in doc["annotations"])
    sigmas = fx["dataset_meta"]["sigmas"]
    for seed in (0, 1, 2):
        preds = _perturbed(doc, seed)
        expected, kept = _pycocotools_stats(ann_file, preds, sigmas)
        assert kept < len(preds)  # the NMS dropped repeats
        metrics = coco_keypoint_metrics(ann_file, preds, sigmas=sigmas, prefix=None)
        assert list(metrics.values()) == pytest.approx(expected, abs=1e-12, rel=0)
        assert 0 < metrics["AP"] < 1


# ------------------------------------------------------------------------------------------ xtcocotools' rules

SIGMAS3 = [0.05, 0.05, 0.05]


def _write_ann(tmp_path, annotations: list[dict], images=None) -> str:
    images = images or [{"id": 1, "width": 640, "height": 480, "file_name": "a.jpg"}]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "person"}]}))
    return str(path)


def _ann(id, keypoints, bbox=(100, 100, 100, 200), **extra) -> dict:
    return {"id": id, "image_id": 1, "category_id": 1, "bbox": list(bbox), "area": bbox[2] * bbox[3] * 0.8,
            "iscrowd": 0, "keypoints": keypoints, "num_keypoints": sum(v > 0 for v in keypoints[2::3]), **extra}


KPTS_A = [120, 150, 2, 150, 200, 2, 180, 250, 1]
KPTS_B = [300, 150, 2, 330, 200, 2, 360, 250, 2]


def test_annotation_id_zero_is_found(tmp_path):
    """pycocotools marks 'unmatched' with id 0, so its annotation 0 is never found; xtcocotools uses -1."""
    ann_file = _write_ann(tmp_path, [_ann(0, KPTS_A), _ann(1, KPTS_B, bbox=(280, 100, 100, 200))])
    metrics = coco_keypoint_metrics(ann_file, _gt_predictions(json.loads(open(ann_file).read())), sigmas=SIGMAS3)
    assert metrics["coco/AR"] == 1.0 and metrics["coco/AP"] == 1.0


def test_ignore_counts_labelled_keypoints_not_num_keypoints(tmp_path):
    """xtcocotools ignores an annotation with no v > 0 keypoint, whatever its num_keypoints says (pycocotools
    would ignore this one, num_keypoints 0, and print -1)."""
    ann_file = _write_ann(tmp_path, [_ann(5, KPTS_A, num_keypoints=0)])
    metrics = coco_keypoint_metrics(ann_file, _gt_predictions(json.loads(open(ann_file).read())), sigmas=SIGMAS3)
    assert metrics["coco/AR"] == 1.0


def test_result_without_keypoint_scores_is_dropped(tmp_path):
    """A result whose keypoint scores are all 0 is not evaluated (pycocotools would count it: here a false
    positive ranked first, as score_mode 'bbox' gives it the best box score)."""
    ann_file = _write_ann(tmp_path, [_ann(5, KPTS_A), _ann(6, KPTS_B, bbox=(280, 100, 100, 200))])
    preds = _gt_predictions(json.loads(open(ann_file).read()))
    for p in preds:
        p.bbox_score = 0.5
    ghost = _pred(99, 1, 1, [[10, 10], [20, 20], [30, 30]], [0, 0, 0], [0, 0, 40, 40], bbox_score=1.0)
    kwargs = dict(sigmas=SIGMAS3, score_mode="bbox", nms_mode="none")
    assert coco_keypoint_metrics(ann_file, preds + [ghost], **kwargs) == coco_keypoint_metrics(ann_file, preds,
                                                                                                **kwargs)


def test_crowd_groups_and_area_from_box(tmp_path):
    """keypoints_crowd: AP(E)/AP(M)/AP(H) from the images' crowdIndex (< 0.2, < 0.8, the rest), -1 for a group
    without images; use_area=False needs no 'area'. Image 1 (easy) is predicted exactly, image 2 (hard) far off."""
    images = [{"id": 1, "width": 640, "height": 480, "file_name": "a.jpg", "crowdIndex": 0.1},
              {"id": 2, "width": 640, "height": 480, "file_name": "b.jpg", "crowdIndex": 0.9}]
    anns = [{k: v for k, v in _ann(1, KPTS_A).items() if k != "area"},
            {**{k: v for k, v in _ann(2, KPTS_B).items() if k != "area"}, "image_id": 2}]
    ann_file = _write_ann(tmp_path, anns, images)
    preds = _gt_predictions(json.loads(open(ann_file).read()))
    preds[1].keypoints = preds[1].keypoints + np.float32(1000)  # image 2 (hard): nothing found
    metrics = coco_keypoint_metrics(ann_file, preds, sigmas=SIGMAS3, iou_type="keypoints_crowd", use_area=False,
                                    prefix="crowdpose")
    assert list(metrics) == ["crowdpose/" + k for k in ("AP", "AP .5", "AP .75", "AR", "AR .5", "AR .75",
                                                         "AP(E)", "AP(M)", "AP(H)")]
    assert metrics["crowdpose/AR"] == 0.5
    assert (metrics["crowdpose/AP(E)"], metrics["crowdpose/AP(M)"], metrics["crowdpose/AP(H)"]) == (1.0, -1.0, 0.0)


def test_errors_name_the_fix(tmp_path):
    ann_file = _write_ann(tmp_path, [{k: v for k, v in _ann(1, KPTS_A).items() if k != "area"}])
    preds = _gt_predictions(json.loads(open(ann_file).read()))
    with pytest.raises(MetricError, match="use_area=False"):
        coco_keypoint_metrics(ann_file, preds, sigmas=SIGMAS3)
    with pytest.raises(MetricError, match="sigmas"):
        coco_keypoint_metrics(ann_file, preds, sigmas=[0.1] * 17, use_area=False)
    with pytest.raises(MetricError, match="does not list"):
        coco_keypoint_metrics(ann_file, [_pred(1, 7, 1, np.zeros((3, 2)), [1, 1, 1], [0, 0, 9, 9])],
                              sigmas=SIGMAS3, use_area=False)
    with pytest.raises(DatasetError, match="annotation file .*missing.json does not exist"):
        coco_keypoint_metrics(tmp_path / "missing.json", preds, sigmas=SIGMAS3)
    with pytest.raises(MetricError, match="crowdIndex"):
        coco_keypoint_metrics(ann_file, preds, sigmas=SIGMAS3, iou_type="keypoints_crowd", use_area=False)


# ------------------------------------------------------------------------------------------ rescore, NMS

def test_rescore_threshold_rule():
    preds = [_pred(0, 1, 1, np.zeros((4, 2)), [0.9, 0.2, 0.5, 0.1], [0, 0, 1, 1], bbox_score=0.8),
             _pred(1, 1, 1, np.zeros((4, 2)), [0.2, 0.1, 0.0, 0.15], [0, 0, 1, 1], bbox_score=0.8)]
    scores = rescore(preds, "bbox_keypoint", 0.2)
    assert scores.dtype == np.float32
    # 0.2 is not above 0.2 (compared in float32); no score above it -> 0
    assert scores.tolist() == [np.float32(0.8) * ((np.float32(0.9) + np.float32(0.5)) / np.float32(2)), 0.0]
    assert rescore(preds, "bbox").tolist() == [np.float32(0.8)] * 2
    assert rescore(preds, "keypoint").tolist() == pytest.approx([0.425, 0.1125])
    with pytest.raises(ValueError, match="score_mode"):
        rescore(preds, "mean")


def test_oks_nms_suppresses_duplicates_and_orders_by_score():
    sigmas = [0.1] * 3
    base = np.array([[100, 100], [120, 140], [140, 180]], np.float32)
    kpts = np.stack([base, base + 0.5, base + 60, base + 0.2])  # 1 and 3 copy 0; 2 is elsewhere
    scores = np.array([0.7, 0.9, 0.8, 0.3], np.float32)
    areas = np.full(4, 5000, np.float32)
    assert oks_nms(kpts, scores, areas, 0.9, sigmas).tolist() == [1, 2]
    assert oks_nms(kpts, scores, areas, 1.0, sigmas).tolist() == [1, 2, 0, 3]  # nothing is above OKS 1
    assert soft_oks_nms(kpts, scores, areas, 0.9, sigmas).tolist() == [1, 2, 0, 3]  # rescored, re-ordered
    assert soft_oks_nms(kpts, scores, areas, 0.9, sigmas, max_dets=2).tolist() == [1, 2]


def test_to_coco_results_format():
    p = _pred(3, 7, 2, [[1.5, 2.5], [3.0, 4.0]], [0.25, 0.75], [10, 20, 40, 80])
    assert to_coco_results([p], np.array([0.5], np.float32)) == [
        {"image_id": 7, "category_id": 2, "keypoints": [1.5, 2.5, 0.25, 3.0, 4.0, 0.75], "score": 0.5,
         "bbox": [10.0, 20.0, 30.0, 60.0]}]
