"""Detectors: the real YOLO (int8 ONNX) on real COCO images, whole-frame boxes, COCO boxes files, the
per-data-set box table, and face boxes from a person model's head keypoints (known numbers, WFLW's ground
truth, and a real run of YOLO + a COCO model on WFLW images)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, DETECTOR, ROOT, load_fixture, needs_shared

from poseapp.boxes import (
    COCO_HEAD,
    BoxesFile,
    DetectorError,
    FaceFromPose,
    WholeFrameDetector,
    YoloDetector,
    box_rule_for,
    box_rules,
    detector_classes_for,
    face_boxes_from_keypoints,
    resolve_classes,
)
from poseapp.errors import UnknownNameError
from poseapp.keypoints import get_keypoint_set
from poseapp.results import Detections, Frame

COCO = DATA / "coco"
DET_FILE = COCO / "test_coco_det_AP_H_56.json"
ANN_FILE = COCO / "test_coco.json"

COCO_NAMES = {0: "person", 9: "traffic light", 15: "cat", 16: "dog", 17: "horse"}


def iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of xyxy boxes a (N, 4) and b (M, 4)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def blank_frame(source: str, h: int = 4, w: int = 6) -> Frame:
    return Frame(np.zeros((h, w, 3), np.uint8), source)


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


# ---------------------------------------------------------------------------------------------------------------
# YOLO (real int8 ONNX model, CPU)
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def yolo() -> YoloDetector:
    return YoloDetector(DETECTOR, classes=(0,))


@pytest.fixture(scope="module")
def coco_frames() -> list[Frame]:
    import cv2

    return [Frame(cv2.imread(str(p)), str(p)) for p in sorted(COCO.glob("*.jpg"))]


@needs_shared
def test_yolo_finds_every_annotated_person(yolo, coco_frames):
    ann = json.loads(ANN_FILE.read_text())
    file_of = {im["id"]: im["file_name"] for im in ann["images"]}
    found = {Path(f.source).name: d for f, d in zip(coco_frames, yolo(coco_frames))}
    people = [a for a in ann["annotations"] if a["num_keypoints"] > 0]
    assert len(people) == 12
    for a in people:
        x, y, w, h = a["bbox"]
        det = found[file_of[a["image_id"]]]
        best = iou_xyxy(np.array([[x, y, x + w, y + h]]), det.boxes.astype(np.float64)).max(initial=0.0)
        assert best >= 0.5, f"person {a['id']} of image {a['image_id']}: best IoU {best:.2f}"


@needs_shared
def test_yolo_batch_gives_one_detections_per_frame_inside_the_image(yolo, coco_frames):
    out = yolo(coco_frames)
    assert len(out) == len(coco_frames) == 4
    for frame, det in zip(coco_frames, out):
        h, w = frame.shape
        assert isinstance(det, Detections) and len(det) >= 1
        assert det.boxes.dtype == np.float32 and det.boxes.shape == (len(det), 4)
        assert det.scores.dtype == np.float32 and det.labels.dtype == np.int64
        assert (det.labels == 0).all()  # classes=(0,): persons only
        assert (det.scores >= 0.25).all() and (det.scores <= 1).all()
        assert (det.boxes[:, :2] >= 0).all() and (det.boxes[:, 2] <= w).all() and (det.boxes[:, 3] <= h).all()
        assert (det.boxes[:, 2:] > det.boxes[:, :2]).all()


@needs_shared
def test_yolo_batch_equals_single_frames(yolo, coco_frames):
    batch = yolo(coco_frames[:2])
    for frame, det in zip(coco_frames[:2], batch):
        (single,) = yolo([frame])
        np.testing.assert_allclose(single.boxes, det.boxes, atol=1e-3)


@needs_shared
def test_yolo_empty_batch_and_class_names(yolo):
    assert yolo([]) == []
    names = yolo.class_names
    assert len(names) == 80 and names[0] == "person" and names[16] == "dog"
    assert resolve_classes(["person", "dog", "16"], names) == [0, 16]


@needs_shared
def test_yolo_is_offline_and_quiet_in_a_fresh_process():
    """No DNS/socket traffic, no pip, nothing on stdout, when run outside pytest (analytics are live there)."""
    script = textwrap.dedent(
        f"""
        import json, sys
        events = []
        def hook(name, args):
            if name in ("socket.getaddrinfo", "socket.connect", "subprocess.Popen", "os.system"):
                events.append([name, repr(args)[:200]])
        sys.addaudithook(hook)
        import cv2
        from poseapp.boxes import YoloDetector
        from poseapp.results import Frame
        det = YoloDetector({str(DETECTOR)!r})
        (d,) = det([Frame(cv2.imread({str(COCO / '000000000785.jpg')!r}), "785.jpg")])
        sys.stderr.write("RESULT " + json.dumps({{"n": len(d), "events": events}}) + "\\n")
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "ULTRALYTICS_", "PYTEST_"))}
    env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout == ""
    result = json.loads(run.stderr.split("RESULT ", 1)[1])
    assert result["n"] >= 1
    network = [e for e in result["events"] if e[0].startswith("socket")]
    installs = [e for e in result["events"] if "pip" in e[1] or "uv" in e[1].split()]
    assert network == [] and installs == [], result["events"]


def test_missing_model_path_raises_detector_error(tmp_path):
    missing = tmp_path / "models" / "det.onnx"
    with pytest.raises(DetectorError) as e:
        YoloDetector(missing)
    msg = str(e.value)
    assert str(missing) in msg and "det_model PATH" in msg and "yolo11n.pt" in msg and "\n" not in msg
    assert "pass --det-model PATH" in e.value.render({"det_model": "--det-model"})  # predict's words


def test_unknown_bare_name_is_not_fetched():
    with pytest.raises(DetectorError, match="detector model not_a_model.pt not found"):
        YoloDetector("not_a_model.pt")


def test_known_name_offline_and_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("POSEAPP_HOME", str(tmp_path))
    monkeypatch.setenv("POSEAPP_OFFLINE", "1")
    with pytest.raises(DetectorError, match="POSEAPP_OFFLINE") as e:
        YoloDetector("yolo11n.pt")
    assert str(tmp_path / "yolo11n.pt") in str(e.value)


def test_known_name_is_fetched_into_the_poseapp_cache(tmp_path, monkeypatch, file_server, yolo_checkpoints):
    """A bare known name not yet cached is downloaded there first (through POSEAPP_MIRROR: a local server)."""
    from urllib.parse import urlsplit

    from poseapp.boxes.yolo import _resolve_model, detector_url

    monkeypatch.setenv("POSEAPP_HOME", str(tmp_path))
    monkeypatch.setenv("POSEAPP_MIRROR", file_server.base)
    monkeypatch.delenv("POSEAPP_OFFLINE", raising=False)
    body = yolo_checkpoints["yolo11n"].read_bytes()
    file_server.files[urlsplit(detector_url("yolo11n.pt")).path] = body
    assert _resolve_model("yolo11n.pt") == tmp_path / "yolo11n.pt"
    assert (tmp_path / "yolo11n.pt").read_bytes() == body and len(file_server.requests) == 1
    assert _resolve_model("yolo11n.pt") == tmp_path / "yolo11n.pt" and len(file_server.requests) == 1
    (tmp_path / "yolov8n.pt").write_bytes(b"x")
    monkeypatch.setenv("POSEAPP_OFFLINE", "1")
    assert _resolve_model("yolov8n.pt") == tmp_path / "yolov8n.pt"  # a cached copy needs no network
    assert len(file_server.requests) == 1


def test_importing_detect_is_light():
    code = "import sys, poseapp.boxes; print(sorted(m for m in ('torch', 'ultralytics', 'cv2') if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "[]", run.stderr


def test_corrupt_model_file_raises_detector_error(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not an onnx graph" * 10)
    with pytest.raises(DetectorError, match="cannot load detector model .*broken.onnx"):
        YoloDetector(bad)


# ---------------------------------------------------------------------------------------------------------------
# Whole frame
# ---------------------------------------------------------------------------------------------------------------


def test_whole_frame_box_is_the_frame_size():
    out = WholeFrameDetector()([blank_frame("a.jpg", h=480, w=640), blank_frame("b.jpg", h=5, w=3)])
    assert len(out) == 2
    np.testing.assert_array_equal(out[0].boxes, np.array([[0, 0, 640, 480]], np.float32))
    np.testing.assert_array_equal(out[1].boxes, np.array([[0, 0, 3, 5]], np.float32))
    assert out[0].boxes.dtype == np.float32 and out[0].scores.tolist() == [1.0] and out[0].labels.tolist() == [-1]
    assert out[0].labels.dtype == np.int64


# ---------------------------------------------------------------------------------------------------------------
# COCO boxes files
# ---------------------------------------------------------------------------------------------------------------


@needs_shared
def test_boxes_file_matches_frames_by_image_id_with_the_float64_sum_rule():
    entries = json.loads(DET_FILE.read_text())
    frames = [blank_frame(str(COCO / f"{i:012d}.jpg")) for i in (785, 40083, 196141, 197388)]
    out = BoxesFile(DET_FILE)(frames)
    n_rule_matters = 0
    for image_id, det in zip((785, 40083, 196141, 197388), out):
        mine = [e for e in entries if e["image_id"] == image_id]  # file order
        expected = np.array([[x, y, x + w, y + h] for x, y, w, h in (e["bbox"] for e in mine)], np.float64)
        expected = expected.astype(np.float32)
        assert det.boxes.dtype == np.float32
        np.testing.assert_array_equal(det.boxes, expected)  # bit for bit
        np.testing.assert_array_equal(det.scores, np.array([e["score"] for e in mine], np.float32))
        assert det.labels.tolist() == [1] * len(mine)
        xywh32 = np.array([e["bbox"] for e in mine], np.float32)
        n_rule_matters += int((xywh32[:, :2] + xywh32[:, 2:] != expected[:, 2:]).sum())
    assert n_rule_matters > 0  # adding in float32 would have given different bits


@needs_shared
def test_annotation_file_boxes_equal_the_parity_fixture_bit_for_bit():
    fx = load_fixture("coco_hrnet-w32_dark")
    boxes = BoxesFile(ANN_FILE)
    got = np.concatenate([boxes([blank_frame(str(DATA / name))])[0].boxes for name in fx["images"]])
    assert got.dtype == fx["bboxes"].dtype == np.float32
    np.testing.assert_array_equal(got, fx["bboxes"])


@needs_shared
def test_boxes_file_min_score():
    entries = json.loads(DET_FILE.read_text())
    out = BoxesFile(DET_FILE, min_score=0.5)([blank_frame(f"{i:012d}.jpg") for i in (785, 40083, 196141, 197388)])
    assert sum(len(d) for d in out) == sum(e["score"] >= 0.5 for e in entries) == 18
    assert all((d.scores >= 0.5).all() for d in out)


def test_boxes_file_filters_categories_and_keeps_file_order(tmp_path):
    path = write_json(
        tmp_path / "det.json",
        [
            {"image_id": 5, "bbox": [1, 2, 3, 4], "score": 0.9, "category_id": 1},
            {"image_id": 5, "bbox": [10, 10, 5, 5], "score": 0.8, "category_id": 18},
            {"image_id": 5, "bbox": [0, 0, 1, 1], "score": 0.1, "category_id": 1},
            {"image_id": 6, "bbox": [0, 0, 2, 2], "score": 0.5, "category_id": 1},
        ],
    )
    (d,) = BoxesFile(path, classes=[1])([blank_frame("/data/000000000005.jpg")])
    np.testing.assert_array_equal(d.boxes, np.array([[1, 2, 4, 6], [0, 0, 1, 1]], np.float32))
    assert d.labels.tolist() == [1, 1]
    (d,) = BoxesFile(path, classes=[18])([blank_frame("5.png")])
    assert d.labels.tolist() == [18] and d.scores.tolist() == [pytest.approx(0.8)]
    (d,) = BoxesFile(path, classes=[1], min_score=0.5)([blank_frame("00005.jpg")])
    assert len(d) == 1 and d.scores.tolist() == [pytest.approx(0.9)]


def test_boxes_file_by_file_name_image_and_ann_file(tmp_path):
    ann = write_json(tmp_path / "ann.json", {"images": [{"id": 7, "file_name": "val/cat.jpg"}]})
    path = write_json(
        tmp_path / "det.json",
        [
            {"file_name": "imgs/a.jpg", "bbox": [0, 0, 1, 1], "score": 1.0, "category_id": 1},
            {"image": "b.png", "bbox": [0, 0, 2, 2], "score": 1.0, "category_id": 1},
            {"image_id": 7, "bbox": [0, 0, 3, 3], "score": 1.0, "category_id": 16},
            {"image_id": "frame_3", "bbox": [0, 0, 4, 4], "score": 1.0, "category_id": 1},
        ],
    )
    frames = [blank_frame(s) for s in ("/x/a.jpg", "b.png", "/y/cat.jpg", "clip/frame_3.jpg", "nothing.jpg")]
    out = BoxesFile(path, ann_file=ann)(frames)
    assert [d.boxes[:, 2].tolist() for d in out] == [[1.0], [2.0], [3.0], [4.0], []]
    assert out[4].boxes.shape == (0, 4) and out[4].boxes.dtype == np.float32


def test_boxes_file_frame_without_entry_is_empty(tmp_path):
    path = write_json(tmp_path / "det.json", [{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 1, "category_id": 1}])
    (d,) = BoxesFile(path)([blank_frame("000000000002.jpg")])
    assert len(d) == 0 and d.scores.dtype == np.float32 and d.labels.dtype == np.int64


def test_boxes_file_missing_file_names_it(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(DetectorError, match="not found") as e:
        BoxesFile(missing)
    assert str(missing) in str(e.value)


@pytest.mark.parametrize(
    "content, problem",
    [
        ("{not json", "is not valid JSON"),
        (json.dumps({"foo": 1}), "must hold a JSON list"),
        (json.dumps([{"image_id": 1, "bbox": [0, 0, 1, 1]}, 5]), "entry 1 is not an object"),
        (json.dumps([{"image_id": 1, "bbox": [0, 0, 1, 1]}, {"image_id": 1, "score": 0.5}]), "entry 1 has no bbox"),
        (json.dumps([{"image_id": 1, "bbox": [0, 0, 1]}]), "entry 0: bbox must be 4 finite numbers"),
        (json.dumps([{"image_id": 1, "bbox": [0, 0, -1, 1]}]), "entry 0: bbox .* negative width"),
        (json.dumps([{"bbox": [0, 0, 1, 1]}]), "entry 0 has no image_id, file_name or image"),
        (json.dumps([{"image_id": 1, "bbox": [0, 0, 1, 1], "score": "high"}]), "entry 0 has a non-numeric score"),
    ],
)
def test_malformed_boxes_file_names_the_file_and_the_problem(tmp_path, content, problem):
    path = tmp_path / "dets.json"
    path.write_text(content)
    with pytest.raises(DetectorError, match=problem) as e:
        BoxesFile(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------------------------------
# Class tables
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dataset, classes",
    [
        ("coco", (0,)),
        ("mpii", (0,)),
        ("crowdpose", (0,)),
        ("posetrack", (0,)),
        ("deepfashion_upper", (0,)),
        ("deepfashion_lower", (0,)),
        ("deepfashion_full", (0,)),
        ("deepfashion2", (0,)),
        ("animalpose", (15, 16, 17, 18, 19)),
        ("ap10k", (14, 15, 16, 17, 18, 19, 20, 21, 22, 23)),
        ("locust", None),
        ("zebra", None),
        ("animalkingdom", None),
        ("ak", None),
        ("wflw", None),  # no COCO face class: the whole frame, or --face-from
    ],
)
def test_detector_classes_for(dataset, classes):
    assert detector_classes_for(dataset) == classes


@pytest.mark.parametrize(
    "dataset, kind, summary",
    [
        ("coco", "person", "person"),
        ("mpii", "person", "person"),
        ("deepfashion_upper", "person", "person"),
        ("deepfashion_lower", "person", "person"),
        ("deepfashion_full", "person", "person"),
        ("deepfashion2", "person", "person"),
        ("animalpose", "animals", "animals (cat,dog,horse,sheep,cow)"),
        ("ap10k", "animals", "animals (bird,cat,dog,...)"),
        ("locust", "whole frame", "whole frame"),
        ("zebra", "whole frame", "whole frame"),
        ("animalkingdom", "whole frame", "whole frame"),
        ("wflw", "face", "face"),
    ],
)
def test_box_rule_for_each_data_set(dataset, kind, summary):
    rule = box_rule_for(dataset)
    assert (rule.kind, rule.summary) == (kind, summary)
    assert rule.face == (dataset == "wflw")


def test_box_rules_name_their_classes_and_cover_the_zoo():
    from poseapp.zoo import list_recipes

    rules = box_rules()
    assert rules["ap10k"].class_names == ["bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear",
                                          "zebra", "giraffe"]
    assert rules["coco"].class_names == ["person"] and rules["locust"].class_names == []
    assert "ak" not in rules and box_rule_for("AK") is rules["animalkingdom"]  # aliases, case and '-' tolerated
    for recipe in list_recipes():  # a new data set in zoo.json needs its row in detect.py's table
        box_rule_for(recipe.dataset)


def test_detector_classes_for_unknown_dataset_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean: ap10k"):
        detector_classes_for("ap10")


def test_resolve_classes_by_name_and_id():
    assert resolve_classes(["person", "dog"], COCO_NAMES) == [0, 16]
    assert resolve_classes(["0", "16"], COCO_NAMES) == [0, 16]
    assert resolve_classes([16, "Person", "dog", " 0 "], COCO_NAMES) == [16, 0]
    assert resolve_classes(["traffic_light", "Traffic Light"], COCO_NAMES) == [9]


def test_resolve_classes_typo_suggests_the_name():
    with pytest.raises(UnknownNameError, match="unknown detector class 'persn'. Did you mean: person"):
        resolve_classes(["persn"], COCO_NAMES)
    with pytest.raises(UnknownNameError, match="unknown detector class id '99'"):
        resolve_classes(["99"], COCO_NAMES)


# ---------------------------------------------------------------------------------------------------------------
# Face boxes from head keypoints
# ---------------------------------------------------------------------------------------------------------------

# A frontal head in face widths, origin between the pupils (COCO_HEAD order): nose, left eye, right eye,
# left ear, right ear. The subject's left is the image's right.
FRONTAL = np.array([[0.0, 0.30], [0.22, 0.0], [-0.22, 0.0], [0.5, 0.12], [-0.5, 0.12]])


def person(head: np.ndarray, head_scores=(0.9,) * 5) -> tuple[np.ndarray, np.ndarray]:
    """(17, 2) keypoints and (17,) scores of a person whose first 5 are ``head``; the body scores 0.9 too."""
    keypoints = np.full((17, 2), 1000.0)
    keypoints[:5] = head
    scores = np.full(17, 0.9)
    scores[:5] = head_scores
    return keypoints, scores


def frontal(cx: float, eye_y: float, width: float) -> np.ndarray:
    return FRONTAL * width + [cx, eye_y]


def stack(*persons: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return np.stack([k for k, _ in persons]), np.stack([s for _, s in persons])


def test_frontal_face_box_is_ear_to_ear_and_brow_to_chin():
    """Ears 100 px apart: the box is 100 wide, from 20 px above the eyes to 80 px below them, centred."""
    keypoints, scores = stack(person(frontal(200, 100, 100)))
    boxes, kept = face_boxes_from_keypoints(keypoints, scores, thr=0.3)
    assert boxes.dtype == np.float32 and kept.dtype == np.int64 and kept.tolist() == [0]
    np.testing.assert_allclose(boxes, [[150, 80, 250, 180]], atol=1e-3)


@pytest.mark.parametrize(
    "visible",
    [(0, 1, 1, 0, 0), (1, 1, 1, 0, 0), (0, 0, 0, 1, 1), (0, 1, 1, 1, 1)],
    ids=["eyes", "eyes+nose", "ears", "no-nose"],
)
def test_frontal_face_box_from_part_of_the_head(visible):
    """Hidden ears, or hidden eyes (the eye line is then 0.12 face widths above the ears): the same box.
    (One hidden ear moves the box towards the other: the rule reads that as a head turned away from it.)"""
    keypoints, scores = stack(person(frontal(200, 100, 100), np.array(visible) * 0.9))
    boxes, kept = face_boxes_from_keypoints(keypoints, scores, thr=0.3)
    assert kept.tolist() == [0]
    np.testing.assert_allclose(boxes, [[150, 80, 250, 180]], atol=0.5)


def test_profile_face_box_spans_ear_to_nose():
    """Facing the image's left, one eye and one ear: the box is centred between the ear and the nose tip,
    contains both, has the eyes at 20% of its height, and is no wider than the face (ear to nose is 80 px,
    0.73 face widths on the mean head: 110 px) nor much narrower."""
    head = np.array([[100, 130], [0, 0], [125, 100], [0, 0], [180, 112]], np.float64)
    keypoints, scores = stack(person(head, (0.9, 0.0, 0.9, 0.0, 0.9)))
    (box,), kept = face_boxes_from_keypoints(keypoints, scores, thr=0.3)
    x0, y0, x1, y1 = box
    assert kept.tolist() == [0]
    assert (x0 + x1) / 2 == pytest.approx(140) and x0 < 100 and x1 > 180
    assert x1 - x0 == pytest.approx(y1 - y0, abs=1e-3) and 85 < y1 - y0 <= 110
    assert (100 - y0) / (y1 - y0) == pytest.approx(0.2, abs=1e-4)


def test_persons_with_too_few_confident_head_keypoints_get_no_box():
    keypoints, scores = stack(
        person(frontal(200, 100, 100)),
        person(frontal(500, 100, 100), (0.9, 0.1, 0.1, 0.1, 0.1)),  # the nose only
        person(frontal(800, 100, 100), (0.29,) * 5),  # all just below thr
        person(frontal(300, 300, 50), (0.0, 0.3, 0.3, 0.0, 0.0)),  # two eyes scoring exactly thr: kept
        person(np.full((5, 2), 40.0)),  # every head keypoint at one pixel: no size
    )
    boxes, kept = face_boxes_from_keypoints(keypoints, scores, thr=0.3)
    assert kept.tolist() == [0, 3]
    np.testing.assert_allclose(boxes[1], [275, 290, 325, 340], atol=1e-3)


def test_no_persons_no_boxes():
    boxes, kept = face_boxes_from_keypoints(np.zeros((0, 17, 2)), np.zeros((0, 17)), thr=0.3)
    assert boxes.shape == (0, 4) and boxes.dtype == np.float32 and kept.shape == (0,) and kept.dtype == np.int64


@needs_shared
def test_face_box_from_wflw_ground_truth_overlaps_the_wflw_box():
    """WFLW's 98 landmarks as COCO head keypoints (pupils 96/97 as eyes, nose tip 54 as nose): the rule's box
    against the tight box around the 98 landmarks (the box WFLW's centre/scale describe), on 4 real faces."""
    ann = json.loads((DATA / "wflw" / "test_wflw.json").read_text())
    ious = []
    for a in ann["annotations"]:
        landmarks = np.asarray(a["keypoints"], np.float64).reshape(98, 3)[:, :2]
        head = np.zeros((5, 2))
        head[:3] = landmarks[[54, 97, 96]]  # nose tip, the subject's left pupil, right pupil
        keypoints, scores = stack(person(head, (0.9, 0.9, 0.9, 0.0, 0.0)))
        boxes, _ = face_boxes_from_keypoints(keypoints, scores, thr=0.3)
        tight = np.concatenate([landmarks.min(axis=0), landmarks.max(axis=0)])[None]
        ious.append(float(iou_xyxy(boxes.astype(np.float64), tight)[0, 0]))
    assert len(ious) == 4 and min(ious) >= 0.75, ious


class FakePersonModel:
    """A person pose model stand-in: returns the given (keypoints, scores) per frame and records its input."""

    def __init__(self, outputs: list[tuple[np.ndarray, np.ndarray]], keypoint_set: str = "coco") -> None:
        self.outputs = outputs
        self.keypoint_set = get_keypoint_set(keypoint_set)
        self.calls: list[list[np.ndarray]] = []

    def __call__(self, images, boxes):
        self.calls.append([np.asarray(b) for b in boxes])
        return self.outputs


class FixedBoxes:
    """A detector stand-in: the same Detections for every frame."""

    def __init__(self, det: Detections) -> None:
        self.det = det

    def __call__(self, frames):
        return [self.det for _ in frames]


def test_face_from_pose_runs_the_person_model_on_the_person_boxes_and_clips_to_the_frame():
    persons = Detections(np.array([[0, 0, 100, 100], [100, 0, 150, 100], [150, 0, 200, 100], [0, 0, 5, 5]],
                                  np.float32), np.array([0.9, 0.8, 0.7, 0.6], np.float32), np.zeros(4, np.int64))
    keypoints, scores = stack(
        person(frontal(50, 30, 20)),  # -> [40, 26, 60, 46]
        person(frontal(120, 30, 20), (0.1,) * 5),  # not confident: no face
        person(frontal(195, 90, 20)),  # -> [185, 86, 205, 106], clipped at the frame's corner
        person(frontal(300, 50, 20)),  # outside the frame: dropped
    )
    model = FakePersonModel([(keypoints, scores)])
    frame = blank_frame("face.jpg", h=100, w=200)
    (faces,) = FaceFromPose(FixedBoxes(persons), model, thr=0.3)([frame])
    np.testing.assert_array_equal(model.calls[0][0], persons.boxes)
    np.testing.assert_allclose(faces.boxes, [[40, 26, 60, 46], [185, 86, 200, 100]], atol=1e-3)
    assert faces.boxes.dtype == np.float32 and faces.scores.dtype == np.float32 and faces.labels.dtype == np.int64
    assert faces.scores.tolist() == pytest.approx([0.9, 0.7]) and faces.labels.tolist() == [-1, -1]
    assert FaceFromPose(FixedBoxes(persons), model)([]) == []


def test_face_from_pose_needs_coco_head_keypoints():
    model = FakePersonModel([], keypoint_set="ap10k")
    with pytest.raises(DetectorError, match="has the ap10k keypoint set: face boxes need a person model") as e:
        FaceFromPose(WholeFrameDetector(), model)
    assert "e.g. face_from res50_coco" in str(e.value) and "\n" not in str(e.value)
    assert get_keypoint_set("coco").names[:5] == COCO_HEAD


@pytest.fixture(scope="module")
def person_model(make_checkpoint):
    """A COCO ResNet-50 heatmap model with the parity checkpoint's random weights, flip test off."""
    from poseapp.create import create_model

    return create_model(make_checkpoint("coco_res50_hm", "1x"), arch="res50_coco-256x192", device="cpu",
                        flip_test=False)


class Recorder:
    """Wraps a detector or pose model and keeps its last output."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.keypoint_set = getattr(inner, "keypoint_set", None)
        self.recipe = getattr(inner, "recipe", None)
        self.last = None

    def __call__(self, *args):
        self.last = self.inner(*args)
        return self.last


@needs_shared
def test_face_from_pose_on_wflw_images_with_the_real_detector(yolo, person_model):
    """YOLO's two best persons per WFLW image, a COCO model with random weights: only the wiring is checked
    (one face box per person with 2 confident head keypoints, from that person's keypoints, inside the image)."""
    import cv2

    frames = [Frame(cv2.imread(str(p)), str(p)) for p in sorted((DATA / "wflw").glob("*.jpg"))]
    top2 = Recorder(lambda fs: [Detections(d.boxes[:2], d.scores[:2], d.labels[:2]) for d in yolo(fs)])
    model = Recorder(person_model)
    thr = 0.2
    out = FaceFromPose(top2, model, thr=thr)(frames)
    assert len(out) == len(frames) == 2
    total = 0
    for frame, persons, (keypoints, scores), faces in zip(frames, top2.last, model.last, out):
        h, w = frame.shape
        assert len(persons) == 2 and keypoints.shape == (2, 17, 2)
        confident = (scores[:, :5] >= thr).sum(axis=1) >= 2
        assert len(faces) == confident.sum()
        expected, kept = face_boxes_from_keypoints(keypoints, scores, thr)
        np.testing.assert_allclose(faces.boxes, np.clip(expected, 0, [w, h, w, h]), atol=1e-3)
        np.testing.assert_array_equal(faces.scores, persons.scores[kept])
        assert (faces.boxes[:, :2] >= 0).all() and (faces.boxes[:, 2] <= w).all() and (faces.boxes[:, 3] <= h).all()
        assert (faces.boxes[:, 2:] > faces.boxes[:, :2]).all()
        total += len(faces)
    assert total >= 1


# ---------------------------------------------------------------------------------------------------------------
# create_detector: a model's default boxes through the Python API
# ---------------------------------------------------------------------------------------------------------------


@needs_shared
def test_create_detector_gives_each_data_set_its_default_boxes():
    """What predict gives, from the public API: AP-10K the COCO animal classes, WFLW and Locust the whole
    frame, COCO people; the overrides as predict's."""
    from poseapp import create_detector
    from poseapp.zoo import get_recipe

    ap10k = create_detector("hrnet-w32_ap10k-256x256", det_model=DETECTOR)
    assert isinstance(ap10k, YoloDetector) and ap10k._kwargs["classes"] == list(range(14, 24))
    assert isinstance(create_detector("res50-deeppose_wflw-256x256", det_model=DETECTOR), WholeFrameDetector)
    assert isinstance(create_detector(get_recipe("res50_locust-160x160"), det_model=DETECTOR), WholeFrameDetector)
    coco = create_detector(get_recipe("hrnet-w32_coco-256x192"), det_model=DETECTOR, classes=["dog", "person"])
    assert coco._kwargs["classes"] == [16, 0]
    assert isinstance(create_detector("hrnet-w32_coco-256x192", det_model=None), WholeFrameDetector)
    assert isinstance(create_detector("hrnet-w32_coco-256x192", boxes_file=DET_FILE), BoxesFile)


def test_create_detector_names_its_own_arguments_in_errors():
    from poseapp import create_detector
    from poseapp.errors import PoseAppError

    with pytest.raises(PoseAppError, match="^classes needs a detector: drop det_model none, or drop classes$"):
        create_detector("hrnet-w32_coco-256x192", det_model="none", classes=["dog"])
    with pytest.raises(PoseAppError, match="^face_from makes face boxes for a face model"):
        create_detector("hrnet-w32_coco-256x192", face_from="res50_coco-256x192")


def test_img_size_is_the_input_size_the_detector_runs_at(yolo_checkpoints, caplog):
    """--img-size (imgsz): a .pt runs at that size; a size off the stride is rounded up, with a warning."""
    import cv2

    image = cv2.imread(str(ROOT / "assets" / "astronaut.jpg"))
    small = YoloDetector(yolo_checkpoints["yolov8n"], imgsz=320, conf=1e-4, classes=None)
    assert small.imgsz == (320, 320) and small._model.predictor.args.imgsz == 320
    assert len(small([Frame(image, "a.jpg")])[0]) > 0
    with caplog.at_level("WARNING", logger="poseapp.boxes.yolo"):
        odd = YoloDetector(yolo_checkpoints["yolov8n"], imgsz=333, conf=1e-4, classes=None)
    assert odd.imgsz == (352, 352)
    assert "input size 333 is not used: the detector rounds it up to a multiple of its stride: 352x352" in caplog.text


@needs_shared
def test_an_export_for_one_size_keeps_it_and_says_so(caplog):
    with caplog.at_level("WARNING", logger="poseapp.boxes.yolo"):
        detector = YoloDetector(DETECTOR, imgsz=320)
    assert detector.imgsz == (640, 640)
    assert "input size 320 is not used: it is an export made for 640x640 only" in caplog.text


@needs_shared
def test_the_detector_leaves_torchs_thread_count_as_it_was():
    """ultralytics' predictor set-up sets torch's process-wide threads to the CPU count minus one (one of two
    on a 2-core machine): the pose network that runs beside the detector would lose half its speed."""
    import cv2
    import torch

    from poseapp.boxes import YoloDetector
    from poseapp.results import Frame

    before, cpus = torch.get_num_threads(), os.cpu_count()  # ultralytics would set cpus - 1
    torch.set_num_threads(cpus)
    try:
        detector = YoloDetector(DETECTOR, classes=(0,))
        assert torch.get_num_threads() == cpus
        detector([Frame(image=cv2.imread(str(DATA / "coco" / "000000000785.jpg")), source="a")])
        assert torch.get_num_threads() == cpus
    finally:
        torch.set_num_threads(before)
