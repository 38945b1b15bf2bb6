"""The command line on bad input and options: one-line message, exit code, and nothing else lost.

Exit codes (poseapp/cli/): 0 all good, 1 some inputs failed (the rest processed and saved, the
summary lists them), 2 a usage or input error (one line starting with ``error:``, a traceback only
with --verbose). Runs that need a pose model use the HRNet-W32 COCO parity checkpoint, --no-flip, and
the whole frame (``--det-model none``) or a boxes file as boxes, so each costs a crop or two.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner, Result

from conftest import DATA, DETECTOR, ROOT, make_truncated_avi, needs_shared
from poseapp.cli import main
from poseapp.results import Detections, Frame

pytestmark = pytest.mark.usefixtures("reuse_loaded_models")

ARCH = "hrnet-w32_coco-256x192"
COCO = sorted((DATA / "coco").glob("*.jpg"))
DEMO_MP4 = DATA / "demo" / "demo.mp4"


# --------------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture(scope="module")
def pose(make_checkpoint) -> list[str]:
    """Options for the HRNet-W32 parity checkpoint, flip test off."""
    return ["--pose-model", str(make_checkpoint("coco_hrnet-w32_hm")), "--pose-arch", ARCH, "--no-flip"]


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the CLI gets as far as loading a pose model."""
    import poseapp.create

    def refuse(*args, **kwargs):
        raise AssertionError("a pose model was loaded")

    monkeypatch.setattr(poseapp.create, "create_model", refuse)


def cli(*args) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def error_line(result: Result, code: int = 2) -> str:
    """The run failed with ``code``, printed exactly one ``error:`` line and no traceback: that line."""
    assert not isinstance(result.exception, AssertionError), result.exception  # e.g. from no_model_load
    assert result.exit_code == code, f"{result.output}\n{result.exception!r}"
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def write_png(path: Path, size: tuple[int, int] = (64, 48), value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((size[1], size[0], 3), value, np.uint8))
    return path


def jsonl(path: Path) -> tuple[dict, list[dict]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return lines[0]["header"], lines[1:]


# --------------------------------------------------------------------------------------------------
# Sources that cannot be read


def test_missing_source(tmp_path, no_model_load):
    missing = tmp_path / "nope.jpg"
    line = error_line(cli("--source", missing, "--out", tmp_path / "out"))
    assert str(missing) in line and "not found" in line
    assert not (tmp_path / "out").exists()  # failed before creating anything


def test_missing_source_verbose_shows_traceback(tmp_path, no_model_load):
    missing = tmp_path / "nope.jpg"
    result = cli("--source", missing, "--out", tmp_path / "out", "--verbose")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "SourceError" in result.stderr
    assert f"error: source '{missing}' not found" in result.stderr


def test_missing_source_real_process(tmp_path):
    """The real process: exit status 2, one line on stderr, no traceback."""
    missing = tmp_path / "nope.jpg"
    proc = subprocess.run([sys.executable, "infer.py", "--source", str(missing), "--out", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(f"error: source '{missing}' not found")
    assert proc.stdout == ""


@needs_shared
def test_bad_files_in_folder_are_listed_and_the_rest_saved(tmp_path, pose):
    folder = tmp_path / "photos"
    folder.mkdir()
    good = {"a.jpg": COCO[0], "e.jpg": COCO[1]}
    for name, src in good.items():
        shutil.copy(src, folder / name)
    (folder / "b.jpg").write_bytes(b"")
    (folder / "c.jpg").write_text("this is text, not an image")
    data = COCO[2].read_bytes()
    (folder / "d.jpg").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"

    result = cli("--source", folder, *pose, "--det-model", "none", "--json", "--out", out)

    assert result.exit_code == 1, f"{result.output}\n{result.exception!r}"
    assert "Traceback" not in result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "e.jpg", "predictions.json"]
    for name, src in good.items():
        assert cv2.imread(str(out / name)).shape == cv2.imread(str(src)).shape
    doc = json.loads((out / "predictions.json").read_text())
    assert [e["image"] for e in doc["images"]] == [str(folder / "a.jpg"), str(folder / "e.jpg")]
    assert all(len(e["instances"]) == 1 for e in doc["images"])  # the whole frame
    assert "3 input(s) failed:" in result.stderr
    summary = result.stderr[result.stderr.index("3 input(s) failed:"):]
    assert f"{folder / 'b.jpg'}: empty file (0 bytes)" in summary
    assert f"{folder / 'c.jpg'}: cannot decode image" in summary
    assert f"{folder / 'd.jpg'}: truncated JPEG" in summary
    assert "2 frame(s)" in result.stderr


def test_video_that_cannot_be_opened(tmp_path, no_model_load):
    fake = tmp_path / "clip.mp4"
    fake.write_text("not a video")
    line = error_line(cli("--source", fake, "--out", tmp_path / "out"))
    assert f"cannot open video '{fake}'" in line
    assert not (tmp_path / "out").exists()


@needs_shared
def test_video_that_ends_early_keeps_what_was_processed(tmp_path, pose):
    """An AVI states its frame count in the header, so a truncated copy opens and then ends early
    (as in test_sources.py): the frames read are saved in a finalised mp4 and the JSONL, exit 1."""
    cut = make_truncated_avi(tmp_path)
    out = tmp_path / "out"

    result = cli("--source", cut, *pose, "--det-model", "none", "--json", "--out", out)

    assert result.exit_code == 1, f"{result.output}\n{result.exception!r}"
    assert "Traceback" not in result.output
    assert sorted(p.name for p in out.iterdir()) == ["cut.jsonl", "cut.mp4"]  # renamed from the temp names
    header, frames = jsonl(out / "cut.jsonl")
    n = len(frames)
    assert 0 < n < 10 and [f["frame"] for f in frames] == list(range(n))
    assert len(header["keypoint_names"]) == 17
    video = cv2.VideoCapture(str(out / "cut.mp4"))
    assert video.isOpened()
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == n
    assert (int(video.get(cv2.CAP_PROP_FRAME_WIDTH)), int(video.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (960, 540)
    decoded = 0
    while video.read()[0]:
        decoded += 1
    video.release()
    assert decoded == n
    assert "1 input(s) failed:" in result.stderr
    assert f"{cut}: video ended early at frame {n} of 10" in result.stderr


def test_absent_webcam(tmp_path, no_model_load):
    line = error_line(cli("--source", "99", "--out", tmp_path / "out"))
    assert "webcam 99 cannot be opened" in line and "--source" in line
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------
# Outputs that cannot be made


def test_show_without_display_fails_before_loading_anything(tmp_path, monkeypatch, no_model_load):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    image = write_png(tmp_path / "x.png")
    start = time.perf_counter()
    line = error_line(cli("--source", image, "--show", "--out", tmp_path / "out"))
    assert time.perf_counter() - start < 5
    assert "--show needs a display" in line
    assert not (tmp_path / "out").exists()


def test_unwritable_out(tmp_path, no_model_load):
    (tmp_path / "file").write_text("a regular file")
    image = write_png(tmp_path / "x.png")
    target = tmp_path / "file" / "predict"
    line = error_line(cli("--source", image, "--out", target))
    assert f"cannot write to '{target}'" in line and "--out" in line
    assert (tmp_path / "file").read_text() == "a regular file"


# --------------------------------------------------------------------------------------------------
# Models and checkpoints


@needs_shared
def test_checkpoint_of_another_architecture(tmp_path, make_checkpoint):
    ckpt = make_checkpoint("coco_res50_hm")  # ResNet-50 weights
    image = write_png(tmp_path / "x.png")
    line = error_line(cli("--source", image, "--pose-model", ckpt, "--pose-arch", ARCH, "--det-model", "none",
                          "--out", tmp_path / "out"))
    assert f"checkpoint {ckpt} (a heatmap head for 17 keypoints) does not fit {ARCH} (hrnet-w32, 17 keypoints)" in line
    assert "missing: backbone." in line and "unexpected: backbone." in line
    assert not (tmp_path / "out").exists()  # the empty run folder is removed


@needs_shared
def test_checkpoint_with_another_keypoint_count(tmp_path, make_checkpoint):
    ckpt = make_checkpoint("coco_res50_hm")  # ResNet-50, 17 COCO keypoints; animalpose has 20
    image = write_png(tmp_path / "x.png")
    line = error_line(cli("--source", image, "--pose-model", ckpt, "--pose-arch", "res50_animalpose-256x256",
                          "--det-model", "none", "--out", tmp_path / "out"))
    assert f"checkpoint {ckpt}" in line and "0 missing, 0 unexpected keys" in line
    assert "shape mismatch: head.final_layer.weight: checkpoint (17, 256, 1, 1) vs model (20, 256, 1, 1)" in line
    assert not (tmp_path / "out").exists()


@needs_shared
def test_checkpoint_named_like_no_zoo_entry_needs_pose_arch(tmp_path, make_checkpoint):
    ckpt = make_checkpoint("coco_hrnet-w32_hm")  # "coco_hrnet-w32_hm.1x.pth": no zoo file name
    image = write_png(tmp_path / "x.png")
    line = error_line(cli("--source", image, "--pose-model", ckpt, "--det-model", "none", "--out", tmp_path / "out"))
    assert f"'{ckpt.name}'" in line and "matches no zoo entry" in line and "pass --pose-arch" in line
    assert not (tmp_path / "out").exists()


def test_unknown_model_name_suggests_the_closest(tmp_path):
    image = write_png(tmp_path / "x.png")
    line = error_line(cli("--source", image, "--pose-model", "hrnet-w32_coco", "--out", tmp_path / "out"))
    assert "unknown model 'hrnet-w32_coco'" in line and "hrnet-w32_coco-256x192" in line
    assert not (tmp_path / "out").exists()


def test_failed_run_keeps_an_existing_output_folder(tmp_path):
    """--exist-ok into a folder holding earlier results, then a failure: the folder and its files stay."""
    image = write_png(tmp_path / "x.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.json").write_text("{}")
    error_line(cli("--source", image, "--pose-model", "no-such-model", "--out", out, "--exist-ok"))
    assert [p.name for p in out.iterdir()] == ["earlier.json"]
    (out / "earlier.json").unlink()
    error_line(cli("--source", image, "--pose-model", "no-such-model", "--out", out, "--exist-ok"))
    assert out.is_dir()  # an empty folder the user made is not this run's to remove


@needs_shared
@pytest.mark.parametrize("content, problem", [
    ("not json at all", "is not valid JSON"),
    ('[{"image_id": 1, "bbox": [1, 2]}]', "bbox must be 4 finite numbers"),
    ('{"boxes": []}', "must hold a JSON list"),
], ids=["not-json", "short-bbox", "not-a-list"])
def test_malformed_boxes_file(tmp_path, pose, content, problem):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(content)
    image = write_png(tmp_path / "x.png")
    line = error_line(cli("--source", image, *pose, "--boxes", boxes, "--out", tmp_path / "out"))
    assert str(boxes) in line and problem in line
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------
# Which boxes each model gets: the data set's default, or --boxes / --det-classes / --face-from


DEFAULT_CLASSES = {  # the rule: people -> person, animals with COCO classes -> those, else the whole frame
    "coco": (0,),
    "mpii": (0,),
    "deepfashion_upper": (0,),
    "deepfashion_lower": (0,),
    "deepfashion_full": (0,),
    "deepfashion2": (0,),
    "animalpose": (15, 16, 17, 18, 19),  # cat, dog, horse, sheep, cow
    "ap10k": tuple(range(14, 24)),  # every COCO animal
    "locust": None,
    "zebra": None,
    "animalkingdom": None,
    "wflw": None,  # faces: the whole frame unless --face-from
}


def predict_opts(*args) -> dict:
    """predict's options as click hands them to the command (its defaults, then ``args``)."""
    from poseapp.cli.predict import predict

    return predict.make_context("predict", ["--source", "x.jpg", *map(str, args)]).params


def _build_detector(opts: dict, recipe, device: str):
    """The detector predict builds from its parsed flags (``predict_options`` -> ``job.detector_for``)."""
    from poseapp.cli.predict import predict_options
    from poseapp.job import detector_for

    return detector_for(predict_options(opts), recipe, device)


def recipe_of(dataset: str):
    """A zoo recipe of ``dataset``, or a stand-in with the fields _build_detector reads."""
    from types import SimpleNamespace

    from poseapp.zoo import list_recipes

    found = [r for r in list_recipes() if r.dataset == dataset]
    return found[0] if found else SimpleNamespace(name=f"test_{dataset}", dataset=dataset, keypoint_set=dataset)


class FakeYolo:
    """Stands in for YoloDetector: records its arguments; every frame gets ``boxes``."""

    boxes = Detections(np.array([[10, 10, 60, 90]], np.float32), np.array([0.8], np.float32), np.zeros(1, np.int64))

    def __init__(self, model, **kwargs) -> None:
        self.model, self.kwargs = model, kwargs

    def __call__(self, frames):
        return [self.boxes for _ in frames]


@pytest.fixture
def fake_yolo(monkeypatch):
    import poseapp.boxes.yolo

    monkeypatch.setattr(poseapp.boxes.yolo, "YoloDetector", FakeYolo)


@pytest.mark.parametrize("dataset", sorted(DEFAULT_CLASSES))
def test_each_data_set_gets_its_default_boxes(dataset, fake_yolo):
    from poseapp.cli.predict import DEFAULT_DET_MODEL
    from poseapp.boxes import WholeFrameDetector

    detector = _build_detector(predict_opts(), recipe_of(dataset), "cpu")
    if DEFAULT_CLASSES[dataset] is None:
        assert isinstance(detector, WholeFrameDetector)
    else:
        assert isinstance(detector, FakeYolo) and detector.model == DEFAULT_DET_MODEL
        assert tuple(detector.kwargs["classes"]) == DEFAULT_CLASSES[dataset]


def test_every_zoo_model_gets_its_data_sets_boxes(fake_yolo):
    from poseapp.boxes import WholeFrameDetector, box_rule_for
    from poseapp.zoo import list_recipes

    for recipe in list_recipes():
        detector = _build_detector(predict_opts(), recipe, "cpu")
        classes = box_rule_for(recipe.dataset).classes
        if classes is None:
            assert isinstance(detector, WholeFrameDetector), recipe.name
        else:
            assert tuple(detector.kwargs["classes"]) == classes, recipe.name


def test_options_override_the_default_boxes(tmp_path, fake_yolo):
    from poseapp.boxes import BoxesFile, WholeFrameDetector

    boxes = tmp_path / "boxes.json"
    boxes.write_text("[]")
    for dataset in ("coco", "locust", "wflw"):
        assert isinstance(_build_detector(predict_opts("--boxes", boxes), recipe_of(dataset), "cpu"), BoxesFile)
    locust = _build_detector(predict_opts("--det-classes", "person, dog", "--det-model", "det.onnx", "--det-conf",
                                          0.5), recipe_of("locust"), "cpu")
    assert locust.model == "det.onnx" and locust.kwargs["classes"] == ["person", "dog"]
    assert locust.kwargs["conf"] == 0.5
    wflw = _build_detector(predict_opts("--det-classes", "person"), recipe_of("wflw"), "cpu")
    assert wflw.kwargs["classes"] == ["person"]
    coco = _build_detector(predict_opts("--det-model", "none"), recipe_of("coco"), "cpu")
    assert isinstance(coco, WholeFrameDetector)


def test_face_from_builds_the_person_model_on_person_boxes(monkeypatch, fake_yolo):
    """--face-from: YOLO keeps persons, the named model (mocked) finds their heads, FaceFromPose makes the boxes."""
    import poseapp.create
    from poseapp.boxes import FaceFromPose, WholeFrameDetector
    from poseapp.keypoints import get_keypoint_set

    calls = []

    class HeadModel:  # a frontal head at the top of every person box, as wide as a third of the box
        keypoint_set = get_keypoint_set("coco")

        def __call__(self, images, boxes):
            out = []
            for b in boxes:
                keypoints, scores = np.zeros((len(b), 17, 2)), np.full((len(b), 17), 0.9)
                for i, (x0, y0, x1, _) in enumerate(b):
                    width = (x1 - x0) / 3
                    keypoints[i, :5] = [[0, 0.3], [0.22, 0], [-0.22, 0], [0.5, 0.12], [-0.5, 0.12]]
                    keypoints[i, :5] = keypoints[i, :5] * width + [(x0 + x1) / 2, y0 + 0.2 * width]
                out.append((keypoints, scores))
            return out

    def create_model(model, **kwargs):
        calls.append((model, kwargs))
        return HeadModel()

    monkeypatch.setattr(poseapp.create, "create_model", create_model)
    opts = predict_opts("--face-from", "res50_coco-256x192", "--face-from-thr", 0.4, "--no-flip", "--batch-size", 4)
    detector = _build_detector(opts, recipe_of("wflw"), "cpu")
    assert isinstance(detector, FaceFromPose) and detector.thr == 0.4
    assert isinstance(detector.persons, FakeYolo) and tuple(detector.persons.kwargs["classes"]) == (0,)
    (model, kwargs), = calls  # the person model, resolved once, with predict's options
    assert model.recipe.name == "res50_coco-256x192" and model.path is None
    assert kwargs == dict(device="cpu", half=False, batch_size=4, flip_test=False, offline=False)
    frame = Frame(np.zeros((100, 80, 3), np.uint8), "face.jpg")
    (faces,) = detector([frame])  # person [10, 10, 60, 90]: a head 16.7 px wide at its top
    np.testing.assert_allclose(faces.boxes, [[35 - 25 / 3, 10, 35 + 25 / 3, 10 + 50 / 3]], atol=1e-3)
    assert faces.scores.tolist() == pytest.approx([0.8]) and faces.labels.tolist() == [-1]

    whole = _build_detector(predict_opts("--face-from", "res50_coco-256x192", "--det-model", "none"),
                            recipe_of("wflw"), "cpu")
    assert isinstance(whole.persons, WholeFrameDetector)


def face_model() -> str:
    from poseapp.zoo import list_recipes

    names = [r.name for r in list_recipes() if r.dataset == "wflw"]
    if not names:
        pytest.skip("no WFLW model in the zoo")
    return names[0]


@pytest.mark.parametrize("args, expected", [
    (["--face-from", "res50_coco-256x192"], ["--face-from makes face boxes for a face model (WFLW)",
                                             "hrnet-w32_coco-256x192 is a COCO model (boxes: person)",
                                             "drop --face-from"]),
    (["-m", "FACE", "--face-from", "res50_coco-256x192", "--boxes", "boxes.json"],
     ["--face-from and --boxes both give the face boxes: pass one of them"]),
    (["-m", "FACE", "--face-from", "res50_coco"],
     ["--face-from res50_coco: unknown model 'res50_coco'. Did you mean: res50_coco-256x192"]),
    (["-m", "FACE", "--face-from", "res50_ap10k-256x256"],
     ["--face-from res50_ap10k-256x256 has the ap10k keypoint set: face boxes need a person model with COCO "
      "keypoints (nose, eyes and ears first), e.g. --face-from res50_coco-256x192"]),
    (["-m", "FACE", "--face-from", "missing/person.pth"],
     ["--face-from missing/person.pth: checkpoint 'missing/person.pth' does not exist (check --face-from"]),
    (["-m", "FACE", "--face-from", "person.pth"],
     ["--face-from person.pth: cannot tell which model 'person.pth' is", "pass --face-from-arch NAME"]),
    (["-m", "FACE", "--face-from-arch", "res50_coco-256x192"], ["--face-from-arch", "add --face-from PATH"]),
    (["--det-classes", "dog", "--det-model", "none"], ["--det-classes needs a detector: drop --det-model none"]),
    (["--det-classes", "dog", "--boxes", "boxes.json"], ["--det-classes picks detector boxes and --boxes"]),
    (["--det-classes", " , "], ["--det-classes is empty"]),
], ids=["not-a-face-model", "with-boxes", "unknown-name", "not-coco-keypoints", "missing-path", "unknown-file",
        "arch-alone", "classes-without-detector", "classes-with-boxes", "empty-classes"])
def test_bad_box_options_fail_before_any_model_loads(tmp_path, monkeypatch, no_model_load, args, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "boxes.json").write_text("[]")
    (tmp_path / "person.pth").write_bytes(b"not read")
    image = write_png(tmp_path / "x.png")
    args = [face_model() if a == "FACE" else a for a in args]
    line = error_line(cli("--source", image, *args, "--out", tmp_path / "out"))
    for text in expected:
        assert text in line
    assert not (tmp_path / "out").exists()


@needs_shared
def test_face_model_with_face_from_on_wflw_images(tmp_path, make_checkpoint):
    """The real detector finds persons, a COCO model (random weights) their heads, and the WFLW model (random
    weights) runs on the face boxes: only the wiring is checked."""
    out = tmp_path / "out"
    result = cli("--source", DATA / "wflw", "--pose-model", make_checkpoint("wflw_res50_reg"), "--pose-arch",
                 face_model(), "--face-from", make_checkpoint("coco_res50_hm"), "--face-from-arch",
                 "res50_coco-256x192", "--face-from-thr", 0.2, "--det-model", DETECTOR, "--max-det", 2, "--no-flip",
                 "--json", "--no-save", "--out", out)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    doc = json.loads((out / "predictions.json").read_text())
    assert doc["keypoint_set"] == "wflw" and len(doc["images"]) == 2
    assert sum(len(e["instances"]) for e in doc["images"]) >= 1
    for entry in doc["images"]:
        assert len(entry["instances"]) <= 2  # one face per person at most
        for face in entry["instances"]:
            x0, y0, x1, y1 = face["bbox"]
            assert 0 <= x0 < x1 <= entry["width"] and 0 <= y0 < y1 <= entry["height"]
            assert len(face["keypoints"]) == 98


# --------------------------------------------------------------------------------------------------
# Output options


@needs_shared
def test_output_folders_are_numbered_unless_exist_ok(tmp_path, pose):
    image = write_png(tmp_path / "x.png")
    empty_boxes = tmp_path / "boxes.json"
    empty_boxes.write_text("[]")  # no box for any image: fast runs that still write their outputs
    base = tmp_path / "runs" / "predict"
    for _ in range(2):
        result = cli("--source", image, *pose, "--boxes", empty_boxes, "--out", base)
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in base.parent.iterdir()) == ["predict", "predict2"]
    assert (base / "x.png").is_file() and (base.parent / "predict2" / "x.png").is_file()
    (base / "keep.txt").write_text("earlier results")
    result = cli("--source", image, *pose, "--boxes", empty_boxes, "--out", base, "--exist-ok", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in base.parent.iterdir()) == ["predict", "predict2"]
    assert sorted(p.name for p in base.iterdir()) == ["keep.txt", "predictions.json", "x.png"]


@needs_shared
def test_outputs_get_the_usual_permissions(tmp_path, pose):
    image = write_png(tmp_path / "x.png")
    empty_boxes = tmp_path / "boxes.json"
    empty_boxes.write_text("[]")
    out = tmp_path / "out"
    result = cli("--source", image, *pose, "--boxes", empty_boxes, "--json", "--out", out)
    assert result.exit_code == 0, result.output
    umask = os.umask(0)
    os.umask(umask)
    for name in ("x.png", "predictions.json"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


@needs_shared
def test_no_save_with_json_writes_json_only(tmp_path, pose):
    image = write_png(tmp_path / "in" / "x.png")
    out = tmp_path / "out"
    result = cli("--source", image, *pose, "--det-model", "none", "--no-save", "--json", "--out", out)
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.iterdir()] == ["predictions.json"]
    doc = json.loads((out / "predictions.json").read_text())
    assert [e["image"] for e in doc["images"]] == [str(image)] and len(doc["images"][0]["instances"]) == 1


@needs_shared
def test_max_frames_on_a_folder(tmp_path, pose):
    for i in range(3):
        write_png(tmp_path / "in" / f"{i}.png", value=40 * i)
    out = tmp_path / "out"
    result = cli("--source", tmp_path / "in", *pose, "--det-model", "none", "--max-frames", 2, "--json", "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["0.png", "1.png", "predictions.json"]
    doc = json.loads((out / "predictions.json").read_text())
    assert [Path(e["image"]).name for e in doc["images"]] == ["0.png", "1.png"]
    assert "2 frame(s)" in result.stderr


@needs_shared
def test_vid_stride(tmp_path, pose):
    out = tmp_path / "out"
    result = cli("--source", DEMO_MP4, *pose, "--det-model", "none", "--vid-stride", 2, "--json", "--no-save",
                 "--out", out)
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.iterdir()] == ["demo.jsonl"]
    header, frames = jsonl(out / "demo.jsonl")
    assert header["keypoint_set"] == "coco"
    assert [f["frame"] for f in frames] == [0, 2, 4]
    assert [f["timestamp"] for f in frames] == pytest.approx([0.0, 0.4, 0.8])


def grey_clip(path: Path, frames: int, step: int) -> Path:
    """A 64x48 mp4v clip at 20 fps of plain grey frames, ``step`` levels brighter each frame."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 20, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), step * i, np.uint8))
    writer.release()
    return path


def test_http_stream_and_image_url(tmp_path, file_server, random_checkpoint):
    """A video served over http is a stream: its annotated copy has the frames' own size and the stream's
    fps; an http URL of an image is an image, saved under the URL's file name (not a 1-frame video)."""
    arch = "mobilenetv2-rle_coco-256x192"
    fast = ["--pose-model", random_checkpoint(arch), "--pose-arch", arch, "--no-flip", "--det-model", "none"]
    clip = grey_clip(tmp_path / "cam.mp4", 6, 30)
    file_server.files["/live/cam.mp4"] = clip.read_bytes()
    file_server.files["/pics/cat.png"] = cv2.imencode(".png", np.full((30, 40, 3), 99, np.uint8))[1].tobytes()

    result = cli("--source", f"{file_server.base}/live/cam.mp4", *fast, "--json", "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["cam.jsonl", "cam.mp4"]
    cap = cv2.VideoCapture(str(tmp_path / "s" / "cam.mp4"))
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (64, 48)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(20) and cap.get(cv2.CAP_PROP_FRAME_COUNT) == 6
    cap.release()
    _, frames = jsonl(tmp_path / "s" / "cam.jsonl")
    assert [f["timestamp"] for f in frames] == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2, 0.25])

    result = cli("--source", f"{file_server.base}/pics/cat.png", *fast, "--json", "--out", tmp_path / "i")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "i").iterdir()) == ["cat.png", "predictions.json"]


def test_det_every_is_ignored_where_boxes_cost_nothing(tmp_path, random_checkpoint):
    """--det-every keeps boxes from the frame before only for a detector that costs something: whole-frame
    boxes are the frame's own, every frame, with a warning naming the flag."""
    arch = "mobilenetv2-rle_coco-256x192"
    clip = grey_clip(tmp_path / "clip.mp4", 6, 30)
    result = cli("--source", clip, "--pose-model", random_checkpoint(arch), "--pose-arch", arch, "--no-flip",
                 "--det-model", "none", "--det-every", 3, "--json", "--no-save", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "warning: --det-every 3 is ignored: the boxes come from the whole frame at no cost" in result.output
    _, frames = jsonl(tmp_path / "o" / "clip.jsonl")
    assert [f["instances"][0]["bbox"] for f in frames] == [[0, 0, 64, 48]] * 6


def test_savgol_on_a_stream_says_it_delays_and_every_frame_comes_through(tmp_path, file_server, random_checkpoint):
    arch = "mobilenetv2-rle_coco-256x192"
    clip = grey_clip(tmp_path / "cam.mp4", 12, 20)
    file_server.files["/live/cam.mp4"] = clip.read_bytes()
    result = cli("--source", f"{file_server.base}/live/cam.mp4", "--pose-model", random_checkpoint(arch),
                 "--pose-arch", arch, "--no-flip", "--det-model", "none", "--smooth", "savgol", "--json", "--no-save",
                 "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output
    assert "warning: --smooth savgol holds each frame of a stream back 4 frames" in result.output
    _, frames = jsonl(tmp_path / "s" / "cam.jsonl")
    assert [f["frame"] for f in frames] == list(range(12))  # an http(s) stream is not live: nothing dropped


def test_dead_stream_is_one_line(tmp_path, no_model_load):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts and never answers
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/live"
        line = error_line(cli("--source", url, "--stream-timeout", 1, "--out", tmp_path / "out"))
    finally:
        listener.close()
    assert line == (f"error: stream '{url}' did not answer within 1 s: check the URL and the network (--source), "
                    f"or wait longer with --stream-timeout")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------
# models, --help, --version


def test_models_lists_the_zoo():
    from poseapp.zoo import list_recipes

    from poseapp.zoo import list_unavailable

    result = cli("models")
    assert result.exit_code == 0
    rows = result.stdout.splitlines()
    assert rows[0].split() == ["name", "dataset", "family", "backbone", "input", "metric", "boxes"]
    names = [r.name for r in list_recipes()]
    missing = [u.name for u in list_unavailable()]
    assert [row.split()[0] for row in rows[1:]] == names + missing
    assert f"{len(names) + len(missing)} model(s) ({len(missing)} without public weights)" in result.stderr
    assert "hrnet-w32_coco-256x192" in names
    row = next(r for r in rows if r.startswith("hrnet-w32_coco-256x192 "))
    assert row.split()[1:] == ["coco", "heatmap", "HRNet-W32", "256x192", "AP", "0.749", "person"]
    row = next(r for r in rows if r.startswith("udp-psa-w48_coco-256x192 "))
    assert row.split()[1:8] == ["coco", "-", "HRNet-W48", "256x192", "AP", "78.9", "no"]


def test_models_boxes_column_is_each_data_sets_default():
    from poseapp.boxes import box_rule_for
    from poseapp.zoo import list_recipes

    result = cli("models")
    assert result.exit_code == 0
    header, *rows = result.stdout.splitlines()
    start = header.index("boxes")
    column = {row.split()[0]: row[start:].strip() for row in rows}
    column = {name: boxes for name, boxes in column.items() if not boxes.startswith("no public weights")}
    assert column == {r.name: box_rule_for(r.dataset).summary for r in list_recipes()}
    seen = set(column.values())
    assert {"person", "animals (cat,dog,horse,sheep,cow)", "animals (bird,cat,dog,...)", "whole frame"} <= seen
    if any(r.dataset == "wflw" for r in list_recipes()):
        assert "face" in seen


def test_models_filtered_by_dataset():
    from poseapp.zoo import list_recipes

    result = cli("models", "--dataset", "ap10k")
    assert result.exit_code == 0
    rows = result.stdout.splitlines()[1:]
    expected = sorted(r.name for r in list_recipes() if r.dataset == "ap10k")
    assert {"hrnet-w32_ap10k-256x256", "res50_ap10k-256x256"} <= set(expected)
    assert sorted(row.split()[0] for row in rows) == expected
    assert all(row.split()[1] == "ap10k" for row in rows)
    assert f"{len(expected)} model(s)" in result.stderr


def test_help_is_instant_and_imports_nothing_heavy():
    """--help (of the group and of predict) in a real process: no torch, ultralytics or cv2 import."""
    code = (
        "import runpy, sys\n"
        "for argv in (['infer.py', '--help'], ['infer.py', 'predict', '--help']):\n"
        "    sys.argv = argv\n"
        "    try:\n"
        "        runpy.run_path('infer.py', run_name='__main__')\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, None), e.code\n"
        "print('HEAVY', sorted(m for m in ('torch', 'ultralytics', 'cv2') if m in sys.modules))\n"
    )
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    assert "--source" in proc.stdout and "models" in proc.stdout and "fetch" in proc.stdout
    assert elapsed < 10  # python + click only (≈0.3 s when the machine is idle)


def test_predict_help_says_each_data_sets_default_boxes():
    from poseapp.boxes import box_rules

    result = cli("predict", "--help")
    assert result.exit_code == 0
    epilog = " ".join(result.stdout.split("Default boxes, by the pose model's data set:")[1].split())
    person = epilog.split("person ", 1)[1].split(": the detector's person class.")[0]
    assert person.split(", ") == [r.title for r in box_rules().values() if r.kind == "person"]
    assert ("AnimalPose (cat, dog, horse, sheep, cow), AP-10K (bird, cat, dog, horse, sheep, cow, elephant, bear, "
            "zebra, giraffe): the detector's classes of those animals.") in epilog
    assert "whole frame Locust, Zebra, Animal Kingdom: the whole frame" in epilog
    assert "face WFLW: the whole frame." in epilog
    assert "--face-from MODEL makes a face box per detected person" in epilog and "--boxes FILE" in epilog


def test_help_and_version_real_process():
    proc = subprocess.run([sys.executable, "infer.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and "predict" in proc.stdout and "models" in proc.stdout
    from poseapp import __version__

    result = cli("--version")
    assert result.exit_code == 0 and __version__ in result.stdout



def test_a_refused_run_folder_beside_an_existing_one_is_removed(tmp_path, no_model_load):
    """--out runs/predict exists, so the run would write runs/predict2; that lies inside the folder
    --recursive walks and is refused: the refused folder is removed again (only what was there stays)."""
    runs = tmp_path / "runs"
    (runs / "predict").mkdir(parents=True)
    write_png(runs / "a.png")
    line = error_line(cli("--source", runs, "--recursive", "--out", runs / "predict"))
    assert "which --recursive walks" in line and "predict2" in line
    assert sorted(p.name for p in runs.iterdir()) == ["a.png", "predict"]


def test_errors_name_the_option_in_python_and_the_flag_on_the_command_line(tmp_path, no_model_load):
    """The library names the option that was wrong as PredictOptions calls it; predict shows its flag."""
    from poseapp import PredictOptions, run_predict
    from poseapp.errors import PoseAppError

    folder = tmp_path / "photos"
    image = write_png(folder / "x.png")
    inside = folder / "out"
    cases = [  # (PredictOptions fields, its words; predict's flags, their words)
        (dict(source=""), "source is empty", ["--source", ""], "--source is empty"),
        (dict(source=str(image), det_classes=[]), "det_classes is empty", ["--source", image, "--det-classes", " , "],
         "--det-classes is empty: name detector classes or ids, e.g. --det-classes person,dog"),
        (dict(source=str(image), pose_model=str(tmp_path / "no.pth")), "(check pose_model, or pass a zoo name",
         ["--source", image, "--pose-model", tmp_path / "no.pth"], "(check --pose-model, or pass a zoo name"),
        (dict(source=str(folder), recursive=True, out_dir=str(inside)), f"out_dir {inside} lies inside",
         ["--source", folder, "--recursive", "--out", inside], f"--out {inside} lies inside"),
    ]
    for options, words, args, flag_words in cases:
        with pytest.raises(PoseAppError) as e:
            run_predict(PredictOptions(**{"out_dir": str(tmp_path / "out"), **options}))
        assert words in str(e.value) and "\x1f" not in str(e.value), str(e.value)
        assert flag_words in error_line(cli(*args, *([] if "--out" in args else ["--out", tmp_path / "out"])))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # no run folder left behind


def test_img_size_and_its_alias_reach_the_detector(fake_yolo):
    """The seed's --img-size (ultralytics' --imgsz): the detector's input size, 640 unless given."""
    assert _build_detector(predict_opts(), recipe_of("coco"), "cpu").kwargs["imgsz"] == 640
    for flag in ("--img-size", "--imgsz"):
        assert _build_detector(predict_opts(flag, 320), recipe_of("coco"), "cpu").kwargs["imgsz"] == 320
    line = error_line(cli("--source", "x.jpg", "--img-size", "16"))
    assert "--img-size" in line and "16" in line


def test_predict_options_check_what_the_flags_check(tmp_path):
    """A program builds PredictOptions without click: the same ranges and types are checked, naming the field."""
    from poseapp import PredictOptions
    from poseapp.errors import PoseAppError

    (tmp_path / "a.json").write_text("[]")
    bad = {"radius": -3, "thickness": 0, "det_conf": 2.0, "det_iou": -1, "max_det": 0, "batch_size": 0,
           "face_from_thr": 3, "kpt_thr": float("nan"), "vid_stride": "2", "max_frames": 0, "max_pixels": 1.5,
           "img_size": 16, "stream_timeout": 0, "out_dir": str(tmp_path / "a.json")}
    for field, value in bad.items():
        with pytest.raises(PoseAppError) as e:
            PredictOptions(source="x.jpg", **{field: value})
        assert str(e.value).startswith(field) and "\x1f" not in repr(e.value), (field, str(e.value))
    ok = PredictOptions(source="x.jpg", det_classes="person, dog", trust_checkpoint="det.pt", max_frames=None)
    assert ok.det_classes == ["person", "dog"] and ok.trust_checkpoint == ("det.pt",)
