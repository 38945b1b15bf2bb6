"""One end-to-end CLI run per data set of ../shared/data, with a model of that data set and the box source
its domain gets by default (people: the detector's person class; AnimalPose / AP-10K: COCO animal classes;
Locust, Zebra, Animal Kingdom and WFLW faces: the whole frame).

The pose weights are parity checkpoints (or seeded random ones where the data set has no parity fixture),
so keypoints are not accurate: the tests check what holds for any weights: the boxes the domain calls for,
the keypoint set and its names in the JSON, K keypoints per instance, and an annotated image drawn with that
set's tables (compared with ``draw`` re-run on the saved keypoints).
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import DATA, DETECTOR, needs_shared
from poseapp.cli import main

pytestmark = [needs_shared, pytest.mark.usefixtures("reuse_loaded_models")]

PERSON, ANIMALPOSE_CLASSES, WHOLE_FRAME = "person", "animalpose", "whole frame"
AP10K_CLASSES = "ap10k"
# data folder -> (zoo recipe, parity fixture or None (random weights), box source, keypoint set, K, extra args)
DOMAINS = {
    "coco": ("rtmpose-m_coco-256x192", "coco_rtmpose-m", PERSON, "coco", 17, []),
    "crowdpose": ("simdr-w32_coco-256x192", "sithu_simdr-w32", PERSON, "coco", 17, ["--max-det", "3"]),
    "mpii": ("res50-rle_mpii-256x256", "mpii_res50_rle", PERSON, "mpii", 16, []),
    "ap10k": ("cspnext-m-udp_ap10k-256x256", "ap10k_cspnext-m_udp", AP10K_CLASSES, "ap10k", 17, []),
    "animalpose": ("res50_animalpose-256x256", None, ANIMALPOSE_CLASSES, "animalpose", 20, []),
    "ak": ("hrnet-w32_animalkingdom-p1-256x256", None, WHOLE_FRAME, "animalkingdom", 23, ["--recursive"]),
    "locust": ("res50_locust-160x160", "locust_res50_hm", WHOLE_FRAME, "locust", 35, []),
    "zebra": ("res50_zebra-160x160", None, WHOLE_FRAME, "zebra", 9, []),
    "fld": ("hrnet-w48-udp_deepfashion-full-256x192", "deepfashion-full_hrnet-w48_udp", PERSON,
            "deepfashion_full", 8, []),
    "deepfasion2": ("res50_deepfashion2-long-sleeved-dress-256x192", "deepfashion2-lsdress_res50_hm", PERSON,
                    "deepfashion2/long-sleeved-dress", 37, []),  # channels 219-255 of the 294
    "wflw": ("res50-deeppose_wflw-256x256", "wflw_res50_reg", WHOLE_FRAME, "wflw", 98, []),
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def _expected_classes(source: str) -> tuple[int, ...] | None:
    """The 0-based COCO class ids each box source keeps, written out here independently of poseapp."""
    return {PERSON: (0,), ANIMALPOSE_CLASSES: (15, 16, 17, 18, 19), AP10K_CLASSES: tuple(range(14, 24)),
            WHOLE_FRAME: None}[source]


@pytest.fixture(scope="module", params=list(DOMAINS))
def domain_run(request, make_checkpoint, random_checkpoint, tmp_path_factory) -> dict:
    folder = request.param
    zoo_name, fixture, boxes, kset, k, extra = DOMAINS[folder]
    ckpt = make_checkpoint(fixture, "sithu" if fixture.startswith("sithu") else "1x") if fixture else \
        random_checkpoint(zoo_name)
    out = tmp_path_factory.mktemp(folder) / "predict"
    argv = ["--source", str(DATA / folder), "--pose-model", str(ckpt), "--pose-arch", zoo_name,
            "--det-model", str(DETECTOR), "--no-flip", "--json", "--kpt-thr", "0", "--draw-bbox", "--out", str(out),
            *extra]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    inputs = sorted(p for p in (DATA / folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return {"folder": folder, "zoo_name": zoo_name, "boxes": boxes, "kset": kset, "k": k, "out": out,
            "doc": json.loads((out / "predictions.json").read_text()), "inputs": inputs, "extra": extra}


def test_json_names_the_keypoint_set(domain_run):
    from poseapp.keypoints import get_keypoint_set

    doc, k = domain_run["doc"], domain_run["k"]
    assert doc["model"] == domain_run["zoo_name"]
    assert doc["keypoint_set"] == domain_run["kset"]
    full = get_keypoint_set(domain_run["kset"].split("/")[0])
    names = doc["keypoint_names"]
    assert len(names) == k and len(set(names)) == k
    assert set(names) <= set(full.names)
    assert sorted(p.name for p in domain_run["inputs"]) == sorted(Path(e["image"]).name for e in doc["images"])
    for entry in doc["images"]:
        for inst in entry["instances"]:
            assert np.asarray(inst["keypoints"]).shape == (k, 2)
            assert np.asarray(inst["keypoint_scores"]).shape == (k,)
            assert np.isfinite(inst["keypoints"]).all()


def test_boxes_follow_the_domain(domain_run):
    """Person/animal data sets get the detector's boxes of those classes; the others the whole frame."""
    from poseapp.boxes import YoloDetector
    from poseapp.results import Frame

    classes = _expected_classes(domain_run["boxes"])
    detector = None if classes is None else YoloDetector(DETECTOR, classes=list(classes))
    max_det = int(domain_run["extra"][1]) if "--max-det" in domain_run["extra"] else None
    found = 0
    for entry in domain_run["doc"]["images"]:
        image = cv2.imread(entry["image"])
        got = np.array([inst["bbox"] for inst in entry["instances"]]).reshape(-1, 4)
        if detector is None:
            h, w = image.shape[:2]
            np.testing.assert_array_equal(got, [[0, 0, w, h]])
        else:
            want = detector([Frame(image=image, source=entry["image"])])[0].boxes[:max_det]
            np.testing.assert_allclose(got, np.round(want.astype(np.float64), 3), atol=1e-3)
        found += len(got)
    assert found >= 1, f"no {domain_run['boxes']} box in {domain_run['folder']}"


def test_drawing_uses_the_keypoint_set(domain_run):
    """The saved image is exactly ``draw`` of the saved keypoints and boxes with the model's keypoint set
    (its links, colours and radius; encoded as the writer encodes it), and every image with an instance
    shows it."""
    from poseapp.drawing import draw
    from poseapp.estimator import output_keypoint_set
    from poseapp.results import Poses
    from poseapp.zoo import get_recipe

    kset = output_keypoint_set(get_recipe(domain_run["zoo_name"]))
    k = kset.num_keypoints
    for entry in domain_run["doc"]["images"]:
        path = Path(entry["image"])
        image = cv2.imread(str(path))
        saved = cv2.imread(str(domain_run["out"] / path.relative_to(DATA / domain_run["folder"])))
        inst = entry["instances"]
        poses = Poses(np.array([i["bbox"] for i in inst], np.float32).reshape(-1, 4),
                      np.array([i["bbox_score"] for i in inst], np.float32),
                      np.array([i["keypoints"] for i in inst], np.float32).reshape(-1, k, 2),
                      np.array([i["keypoint_scores"] for i in inst], np.float32).reshape(-1, k), kset)
        expected = draw(image, poses, kpt_thr=0.0, draw_bbox=True)
        ok, buf = cv2.imencode(path.suffix, expected)
        assert ok
        np.testing.assert_array_equal(saved, cv2.imdecode(buf, cv2.IMREAD_COLOR),
                                      err_msg=f"{path}: the saved image is not the drawing of its keypoints")
        if inst:
            assert (saved != image).any()
