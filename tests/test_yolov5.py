"""The classic YOLOv5 detector (issue 14): poseapp's network, letterbox and NMS against yolov5's own code,
through the reference in tests/fixtures/yolov5 (a seeded YOLOv5m, see make_reference.py)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import DATA, needs_shared
from poseapp.boxes.yolov5.network import ArchitectureError, build_yolov5
from poseapp.boxes.yolov5.processing import letterbox, non_max_suppression, to_image, to_tensor

FIXTURE = Path(__file__).parent / "fixtures" / "yolov5"
from fixtures.yolov5.yolov5_file import seeded_weights, write_yolov5_checkpoint

DOC = json.loads((FIXTURE / "reference.json").read_text())
REFERENCE = np.load(FIXTURE / "reference.npz", allow_pickle=False)


REFERENCE_THREADS = 2  # torch's intra-op threads when the reference was made (a sum's order follows them)


SCORE_TIE = 1e-5  # scores this close are a tie: their order follows float rounding, which the CPU's kernels decide


def tie_groups(scores: np.ndarray) -> np.ndarray:
    """Each detection's run of tied scores: consecutive ``scores`` (descending, as NMS returns them) within
    SCORE_TIE of each other share a number."""
    return np.concatenate([[0], np.cumsum(np.abs(np.diff(scores)) > SCORE_TIE)])


def tie_pairs(rows: np.ndarray, reference: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (ours, theirs) of our leading detections ``rows`` and the whole ``reference``, whose two
    orders may differ in how ties fell: place by place, except within a run of tied reference ``scores``
    (``tie_groups``, which may reach past our last row), where each of our rows pairs with the nearest of
    that run's reference rows not yet paired."""
    group = tie_groups(scores)
    free = {int(g): list(np.flatnonzero(group == g)) for g in np.unique(group)}
    theirs = []
    for i in range(len(rows)):
        candidates = free[int(group[i])]
        theirs.append(int(candidates.pop(int(np.argmin([np.abs(rows[i] - reference[j]).max() for j in candidates])))))
    return np.arange(len(rows)), np.array(theirs)


def decided(scores: np.ndarray, last: float, total: int, limit: int = 300) -> int:
    """How many of the leading detections (``scores`` descending, of ``total`` NMS kept) float rounding cannot
    change: all of them, unless NMS stopped at its ``limit`` of boxes (its last score ``last``), where which
    of the boxes tied with the last one made the cut is rounding's choice too (those above it are all among
    the reference's, though a run of ties may mix their order with boxes below: ``tie_pairs``)."""
    if total < limit:
        return len(scores)
    return int((scores > last + SCORE_TIE).sum())


@pytest.fixture(scope="module")
def network():
    net = build_yolov5(DOC["yaml"])
    net.load_state_dict(seeded_weights(net))
    return net.fuse()


@pytest.fixture
def reference_threads():
    """Sums in the reference's order: with other thread counts, float32 rounding moves outputs of ~200 px by
    ~1e-4 and can swap detections whose scores tie to 1e-7."""
    threads = torch.get_num_threads()
    torch.set_num_threads(REFERENCE_THREADS)
    yield
    torch.set_num_threads(threads)


def test_the_network_has_yolov5s_keys_and_shapes():
    net = build_yolov5(DOC["yaml"])
    assert sorted(net.state_dict()) == DOC["layouts"]["v7"]["state_dict"]
    assert sum(p.numel() for p in net.parameters()) == 21060447  # what yolov5's model summary printed


@needs_shared
@pytest.mark.parametrize("image_name", DOC["images"])
@pytest.mark.parametrize("size", DOC["sizes"])
def test_outputs_and_boxes_equal_yolov5s(network, image_name, size, reference_threads):
    image = cv2.cvtColor(cv2.imread(str(DATA / image_name)), cv2.COLOR_BGR2RGB)  # the seed runs on RGB
    tag = f"v7/{Path(image_name).stem}/{size}"
    x = to_tensor(letterbox(image, size))
    assert list(x.shape[-2:]) == DOC["letterboxed"][f"{Path(image_name).stem}/{size}"]
    with torch.no_grad():
        rows = network(x)[0]
    np.testing.assert_allclose(rows.numpy(), REFERENCE[f"{tag}/raw"], rtol=0, atol=1e-4)
    det = non_max_suppression(rows, DOC["conf"], DOC["iou"])
    reference = REFERENCE[f"{tag}/det"]
    assert len(det) == len(reference) >= 50
    boxes = to_image(det[:, :4], image.shape[:2], tuple(x.shape[-2:])).numpy()
    det = det.numpy()
    np.testing.assert_allclose(det[:, 4], reference[:, 4], rtol=0, atol=SCORE_TIE)
    n = decided(reference[:, 4], reference[-1, 4], len(reference))
    assert n >= len(reference) - 30  # the tie at the cut is a few boxes of 300
    det, boxes = det[:n], boxes[:n]
    ours, theirs = tie_pairs(det[:, [5, 0, 1, 2, 3]], reference[:, [5, 0, 1, 2, 3]], reference[:, 4])
    np.testing.assert_allclose(det[ours, :4], reference[theirs, :4], rtol=0, atol=1e-3)
    np.testing.assert_allclose(det[ours, 4], reference[theirs, 4], rtol=0, atol=SCORE_TIE)
    assert np.array_equal(det[ours, 5], reference[theirs, 5])
    np.testing.assert_allclose(boxes[ours], REFERENCE[f"{tag}/boxes"][theirs], rtol=0, atol=1e-3)


def test_a_description_outside_the_table_is_refused():
    for change, words in [({"activation": "__import__('os').system('true')"}, "activation"),
                          ({"backbone": [[-1, 1, "Evil", [64]]] + DOC["yaml"]["backbone"][1:]}, "'Evil'"),
                          ({"nc": "two"}, "not a yolov5 model description"),
                          ({"width_multiple": 100}, "multiples up to 2"),  # 100 x 1024 channels: gigabytes
                          ({"backbone": [[-1, 1, "Focus", [64, 3]], [-1, 1, "Conv", [8000, 3, 2]]]},
                           "at most 64 and 4096")]:
        with pytest.raises(ArchitectureError, match=words):
            build_yolov5({**DOC["yaml"], **change})


# --------------------------------------------------------------------------------------------------
# Checkpoints: classic yolov5 files, read without running their code


@pytest.fixture(scope="module", params=["v5", "v7"])
def checkpoint(request, tmp_path_factory):
    return request.param, write_yolov5_checkpoint(tmp_path_factory.mktemp("yolov5") / "det.pt", request.param)


def test_a_written_checkpoint_names_what_yolov5_pickled(checkpoint):
    layout, path = checkpoint
    names = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    reference = {g for g in DOC["layouts"][layout]["globals"] if not g.startswith(("torch.", "collections.",
                                                                                  "__builtin__."))}
    assert {g for g in names if g.startswith("models.")} == reference


@needs_shared
def test_a_checkpoint_loads_weights_only_into_the_same_detector(checkpoint, reference_threads):
    from poseapp.boxes.yolov5.checkpoint import read_yolov5_checkpoint

    layout, path = checkpoint
    loaded = read_yolov5_checkpoint(path)
    assert loaded.names == ["person", "head"] and loaded.yaml == DOC["yaml"]
    assert ("model.24.anchor_grid" in loaded.state_dict) == (layout == "v5")
    net = build_yolov5(loaded.yaml)
    net.load_state_dict(loaded.state_dict)
    image = cv2.cvtColor(cv2.imread(str(DATA / DOC["images"][0])), cv2.COLOR_BGR2RGB)
    with torch.no_grad():
        rows = net.fuse()(to_tensor(letterbox(image, 640)))[0]
    np.testing.assert_allclose(rows.numpy(), REFERENCE[f"v7/{Path(DOC['images'][0]).stem}/640/raw"], atol=1e-4, rtol=0)


class _Payload:
    """Pickles as a call of os.system: what a malicious checkpoint puts where data belongs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_runs_code_runs_nothing(tmp_path):
    from poseapp.boxes.yolo_checkpoint import UnsafeCheckpointError
    from poseapp.boxes.yolov5.checkpoint import read_yolov5_checkpoint

    import types

    marker = tmp_path / "ran"
    torch.save({"epoch": -1, "model": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeCheckpointError, match="posix.system|os.system"):
        read_yolov5_checkpoint(tmp_path / "evil.pt")

    class Model:  # pickles as a call of models.yolo.Model with arguments (its __init__ would parse a yaml)
        def __reduce__(self):
            return Model, ({"activation": f"__import__('os').system('touch {marker}')"},)

    Model.__module__, Model.__qualname__ = "models.yolo", "Model"
    fake = types.ModuleType("models.yolo")
    fake.Model = Model
    sys.modules.update({"models": types.ModuleType("models"), "models.yolo": fake})
    try:
        torch.save({"epoch": -1, "model": Model()}, tmp_path / "calls.pt")
    finally:
        sys.modules.pop("models.yolo")
        sys.modules.pop("models")
    with pytest.raises(UnsafeCheckpointError, match="calls models.yolo.Model with arguments"):
        read_yolov5_checkpoint(tmp_path / "calls.pt")
    assert not marker.exists()


def test_what_is_not_a_yolov5_checkpoint_is_refused_in_one_line(tmp_path):
    from poseapp.boxes.yolo_checkpoint import NotACheckpointError
    from poseapp.boxes.yolov5.checkpoint import read_yolov5_checkpoint

    (tmp_path / "text.pt").write_text("not a checkpoint")
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "weights.pt")
    for name, words in [("text.pt", "not a PyTorch checkpoint"), ("weights.pt", "holds no yolov5 Model")]:
        with pytest.raises(NotACheckpointError, match=words) as e:
            read_yolov5_checkpoint(tmp_path / name)
        assert "\n" not in str(e.value)


# --------------------------------------------------------------------------------------------------
# The detector, and the seed's own command line


@needs_shared
def test_the_detector_gives_the_seeds_boxes(checkpoint, reference_threads):
    """YoloV5Detector on a BGR frame: the reference's detections of that image (class person kept, as the
    seed keeps it), back in image pixels and rounded as the seed's scale_boxes rounds them."""
    from poseapp.boxes.yolov5.detector import YoloV5Detector, is_classic_yolov5
    from poseapp.results import Frame

    _, path = checkpoint
    assert is_classic_yolov5(path)
    image_name = DOC["images"][0]
    frame = Frame(cv2.imread(str(DATA / image_name)), image_name)
    detector = YoloV5Detector(path, conf=DOC["conf"], iou=DOC["iou"], classes=["person"])
    assert detector.class_names == {0: "person", 1: "head"} and detector.classes == (0,)
    (found,) = detector([frame])
    tag = f"v7/{Path(image_name).stem}/640"
    det = REFERENCE[f"{tag}/det"]
    persons = det[:, 5] == 0
    assert persons.all()  # all of the seed's 300 boxes: a persons-only NMS keeps 300 too
    reference = np.round(REFERENCE[f"{tag}/boxes"][persons])
    scores = det[persons, 4]
    n = decided(scores, det[-1, 4], len(det))  # the persons tied at the seed's 300-box cut aside
    assert len(found.boxes) == len(reference) and n >= len(reference) - 30
    boxes = found.boxes[:n]
    np.testing.assert_allclose(found.scores[:n], scores[:n], rtol=0, atol=SCORE_TIE)
    ours, theirs = tie_pairs(boxes, reference, scores)
    np.testing.assert_array_equal(boxes[ours], reference[theirs])
    assert found.labels.tolist() == [0] * len(found.boxes) and n >= 50
    heads = YoloV5Detector(path, conf=DOC["conf"], iou=DOC["iou"], classes=["head"])  # --det-classes head
    found_heads = heads([frame])[0]
    assert heads.classes == (1,) and len(found_heads) > 0 and set(found_heads.labels.tolist()) == {1}
    seed = YoloV5Detector(path)  # the seed's defaults: conf 0.4, IoU 0.5, persons
    assert (seed.conf, seed.iou) == (0.4, 0.5)
    kept = seed([frame])[0]
    assert len(kept) > 0 and (kept.scores > 0.4).all() and set(kept.labels.tolist()) == {0}


@needs_shared
def test_the_seeds_command_line_runs_as_written(make_checkpoint, tmp_path):
    """python infer.py --source TEST_SOURCE --det-model DET_MODEL_PATH --pose-model POSE_MODEL_PATH --img-size 640,
    with a yolov5 checkpoint and a sithu pose model (its parity checkpoint, under its published file name)."""
    import shutil

    from click.testing import CliRunner

    from poseapp.cli import main
    from poseapp.zoo import get_recipe

    det = write_yolov5_checkpoint(tmp_path / "crowdhuman_yolov5m.pt", "v5", objectness_shift=0.2)  # ~20 boxes
    pose = tmp_path / get_recipe("posehrnet-w32_coco-256x192").filename
    shutil.copyfile(make_checkpoint("sithu_posehrnet-w32", "sithu"), pose)
    out = tmp_path / "out"
    args = ["--source", str(DATA / "coco"), "--det-model", str(det), "--pose-model", str(pose), "--img-size", "640",
            "--json", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    images = json.loads((out / "predictions.json").read_text())["images"]
    assert len(images) == len(list((DATA / "coco").glob("*.jpg"))) and sum(len(i["instances"]) for i in images) > 0
    assert all(cv2.imread(str(out / i["image"].rsplit("/", 1)[-1])) is not None for i in images)
    assert json.loads((out / "predictions.json").read_text())["model"] == "posehrnet-w32_coco-256x192"


def test_the_seeds_detector_is_fetched_by_name_and_vetted(tmp_path, monkeypatch, file_server):
    """crowdhuman-yolov5m (or crowdhuman_yolov5m.pt) is fetched into the cache through the hub (here a mirror on
    127.0.0.1 standing in for Google Drive), read weights-only before it gets its name, and not fetched again."""
    from click.testing import CliRunner

    from poseapp.boxes.base import DetectorError
    from poseapp.boxes.yolov5.detector import classic_detector_name, fetch_classic_detector, is_classic_yolov5
    from poseapp.cli import main

    cache = tmp_path / "cache"
    monkeypatch.setenv("POSEAPP_HOME", str(cache))
    monkeypatch.setenv("POSEAPP_MIRROR", file_server.base)
    monkeypatch.delenv("POSEAPP_OFFLINE", raising=False)
    assert classic_detector_name("crowdhuman_yolov5m.pt") == classic_detector_name("crowdhuman-yolov5m") is not None
    dry = CliRunner().invoke(main, ["fetch", "crowdhuman-yolov5m", "--dry-run"])
    assert dry.exit_code == 0 and f"would download {file_server.base}/uc?id=" in dry.output
    file_server.files["/uc"] = write_yolov5_checkpoint(tmp_path / "served.pt", "v5").read_bytes()
    path = fetch_classic_detector("crowdhuman-yolov5m")
    assert path == cache / "crowdhuman_yolov5m.pt" and is_classic_yolov5(path)
    asked = len(file_server.requests)
    assert fetch_classic_detector("crowdhuman-yolov5m") == path and len(file_server.requests) == asked
    path.unlink()
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "other.pt")
    file_server.files["/uc"] = (tmp_path / "other.pt").read_bytes()
    with pytest.raises(DetectorError, match="was deleted: it holds no yolov5 Model"):
        fetch_classic_detector("crowdhuman-yolov5m")
    assert not path.exists() and not list(cache.glob("*.part"))
