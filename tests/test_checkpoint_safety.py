"""No model file runs code (poseapp/boxes/yolo_checkpoint.py).

Malicious pickles, each of which creates a marker file when unpickled in full, reach the app the three ways
a detector file does: as ``--det-model``, as the cached default detector (``yolo11n.pt`` in POSEAPP_HOME) and
through POSEAPP_MIRROR (a local HTTP server). None may create the marker; each is one ``error:`` line and
exit 2 (``fetch``: 1, a failed download). With ``--trust-checkpoint`` naming the file, ultralytics unpickles it
and the marker appears: the payloads are live, and the flag does what its help says.

Real ultralytics checkpoints (YOLOv8n and YOLO11n from ultralytics' yaml, saved by its own ``save``) load
weights-only, give the same raw network outputs and boxes as ultralytics' own (unsafe) load of the same file,
and give boxes end to end. Every ``torch.load`` on the detector path has ``weights_only=True``, and the
project's source holds no unpickling call without it.
"""
from __future__ import annotations

import ast
import json
import os
import pickle
import re
import shlex
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from conftest import ROOT, needs_shared

from poseapp.cli import main
from poseapp.boxes import DetectorError, YoloDetector, detector_url
from poseapp.results import Frame
from poseapp.boxes.yolo_checkpoint import (
    NotACheckpointError,
    UnsafeCheckpointError,
    _BuildOnly,
    _referenced_globals,
    allow_list,
    check_yolo_checkpoint,
    read_yolo_checkpoint,
)

ARCH = "mobilenetv2-rle_coco-256x192"
IMAGE = ROOT / "assets" / "astronaut.jpg"


def cli(*args) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def error_line(result: Result, code: int = 2) -> str:
    """The run failed with ``code``, printed exactly one ``error:`` line and no traceback: that line."""
    assert result.exit_code == code, f"{result.output}\n{result.exception!r}"
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


# --------------------------------------------------------------------------------------------------
# Malicious files


class _System:
    """Unpickles as ``os.system("touch MARKER")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


class _CallsDetectionModel:
    """Unpickles as ``DetectionModel(cfg)``, a class on the allow-list called with the file's arguments: its
    yaml parser evaluates ``activation``, which touches MARKER."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        from ultralytics.nn.tasks import DetectionModel

        code = f"__import__('os').system({f'touch {shlex.quote(str(self.marker))}'!r})"
        return DetectionModel, ({"nc": 80, "activation": code, "backbone": [[-1, 1, "Conv", [16, 3, 2]]], "head": []},)


def write_evil(kind: str, path: Path, marker: Path) -> Path:
    if kind == "plain-pickle":  # not torch.save: what pickle.dump writes
        path.write_bytes(pickle.dumps(_System(marker)))
    elif kind == "protocol-0-pickle":  # text opcodes: starts with the GLOBAL opcode, not a protocol header
        path.write_bytes(pickle.dumps(_System(marker), protocol=0))
    elif kind == "torch-zip":
        torch.save(_System(marker), path)
    elif kind == "dict-under-model":  # shaped like an ultralytics checkpoint
        torch.save({"model": _System(marker), "train_args": {}, "date": "2026-01-01"}, path)
    elif kind == "calls-detectionmodel":
        torch.save({"model": _CallsDetectionModel(marker)}, path)
    else:
        raise ValueError(kind)
    return path


KINDS = ["plain-pickle", "protocol-0-pickle", "torch-zip", "dict-under-model", "calls-detectionmodel"]


@pytest.fixture(scope="module")
def pose(random_checkpoint) -> list[str]:
    return ["--pose-model", str(random_checkpoint(ARCH)), "--pose-arch", ARCH, "--no-flip"]


@pytest.fixture
def offline_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("POSEAPP_HOME", str(home))
    monkeypatch.setenv("POSEAPP_OFFLINE", "1")
    monkeypatch.delenv("POSEAPP_MIRROR", raising=False)
    return home


@pytest.mark.parametrize("kind", KINDS)
def test_malicious_det_model_runs_nothing(kind, tmp_path, pose, offline_home):
    marker = tmp_path / "MARKER"
    evil = write_evil(kind, tmp_path / "crowdhuman_yolov5m.pt", marker)
    line = error_line(cli("--source", IMAGE, *pose, "--det-model", evil, "--out", tmp_path / "out"))
    assert not marker.exists()
    assert f"detector model {evil}" in line
    if kind.endswith("pickle"):  # not a torch.save zip: refused before any unpickling
        assert "it is not a PyTorch checkpoint (a torch.save zip archive" in line
    else:
        assert "is refused" in line and f"--trust-checkpoint {evil}" in line
    assert not (tmp_path / "out").exists()  # nothing was written


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "calls-detectionmodel"])
def test_trusting_the_file_by_name_unpickles_it_in_full(kind, tmp_path, pose, offline_home):
    """The same files with --trust-checkpoint FILE: ultralytics' own load runs the payload (then fails, for
    the file holds no model). This is what the flag's help and README warn of, and it shows each payload
    above is live. (The DetectionModel payload stays inert even then: poseapp turns on ultralytics' own
    ULTRALYTICS_SAFE_LOAD, under which its yaml parser evaluates no ``activation``.)"""
    marker = tmp_path / "MARKER"
    evil = write_evil(kind, tmp_path / "det.pt", marker)
    result = cli("--source", IMAGE, *pose, "--det-model", evil, "--trust-checkpoint", evil, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert marker.exists()


def test_trusting_another_file_changes_nothing(tmp_path, pose, offline_home, caplog):
    marker = tmp_path / "MARKER"
    evil = write_evil("torch-zip", tmp_path / "det.pt", marker)
    other = write_evil("torch-zip", tmp_path / "other.pt", marker)
    result = cli("--source", IMAGE, *pose, "--det-model", evil, "--trust-checkpoint", other, "--out", tmp_path / "o")
    assert "refused" in error_line(result) and not marker.exists()
    assert f"--trust-checkpoint {other} is not the detector this run loads ({evil})" in caplog.text


@pytest.mark.parametrize("kind", ["torch-zip", "dict-under-model", "calls-detectionmodel"])
def test_malicious_cached_default_detector_runs_nothing(kind, tmp_path, pose, offline_home):
    """A file placed in the weights cache under the default detector's name (a tampered download)."""
    marker = tmp_path / "MARKER"
    cached = write_evil(kind, offline_home / "yolo11n.pt", marker)
    line = error_line(cli("--source", IMAGE, *pose, "--out", tmp_path / "out"))  # --det-model yolo11n.pt
    assert not marker.exists()
    assert f"detector model {cached}" in line and "refused" in line


@pytest.fixture
def mirror(file_server, tmp_path, monkeypatch) -> tuple:
    """POSEAPP_MIRROR -> the local server, an empty POSEAPP_HOME, online; (server, home, yolo11n.pt's path)."""
    home = tmp_path / "home"
    monkeypatch.setenv("POSEAPP_MIRROR", file_server.base)
    monkeypatch.setenv("POSEAPP_HOME", str(home))
    monkeypatch.delenv("POSEAPP_OFFLINE", raising=False)
    return file_server, home, urlsplit(detector_url("yolo11n.pt")).path


@pytest.mark.parametrize("kind", KINDS)
def test_malicious_download_through_the_mirror_runs_nothing_and_is_deleted(kind, tmp_path, pose, mirror):
    server, home, asset = mirror
    marker = tmp_path / "MARKER"
    server.files[asset] = write_evil(kind, tmp_path / "served.pt", marker).read_bytes()
    line = error_line(cli("--source", IMAGE, *pose, "--out", tmp_path / "out"))
    assert not marker.exists() and server.requests == [asset]
    assert f"the download of {server.base}{asset} was deleted" in line
    why = {"plain-pickle": "it is not a PyTorch checkpoint", "protocol-0-pickle": "it is not a PyTorch checkpoint",
           "calls-detectionmodel": "it calls ultralytics.nn.tasks.DetectionModel with arguments"}
    assert why.get(kind, "it needs posix.system, which a model checkpoint does not") in line
    assert sorted(p.name for p in home.iterdir()) == []  # no yolo11n.pt, no .part

    fetched = cli("fetch", "yolo11n.pt")  # the same through `fetch`: a failed download, exit 1
    assert "was deleted" in error_line(fetched, code=1)
    assert not marker.exists() and list(home.iterdir()) == []


def test_a_pinned_digest_is_checked_before_the_allow_list(tmp_path, mirror, monkeypatch, yolo_checkpoints):
    """Where a detector's publisher gives a sha256, it is pinned and checked: a real checkpoint that is not
    the pinned file is deleted all the same."""
    import poseapp.boxes.yolo

    server, home, asset = mirror
    server.files[asset] = yolo_checkpoints["yolo11n"].read_bytes()
    monkeypatch.setitem(poseapp.boxes.yolo._DETECTOR_SHA256, "yolo11n.pt", "00000000")
    assert "sha256 mismatch" in error_line(cli("fetch", "yolo11n.pt"), code=1)
    assert list(home.iterdir()) == []
    assert "(sha256 00000000...)" in cli("fetch", "yolo11n.pt", "--dry-run").output


# --------------------------------------------------------------------------------------------------
# Real ultralytics checkpoints


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return cv2.imread(str(IMAGE))


@pytest.mark.parametrize("name", ["yolov8n", "yolo11n"])
def test_real_checkpoint_loads_weights_only_and_matches_ultralytics(name, yolo_checkpoints, image, monkeypatch):
    from ultralytics import YOLO

    path = yolo_checkpoints[name]
    loads: list[dict] = []
    real_load = torch.load

    def spy(*args, **kwargs):
        loads.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    ours = YoloDetector(path, conf=1e-4, classes=None, max_det=50)
    (det,) = ours([Frame(image, str(IMAGE))])
    assert loads and all(kw.get("weights_only") is True for kw in loads), loads  # the detector path
    monkeypatch.setattr(torch, "load", real_load)

    theirs = YOLO(str(path))  # ultralytics' own load of the same file (its own restricted loader)
    x = torch.from_numpy(cv2.resize(image, (640, 640))[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        a, b = ours._model.model(x), theirs.model(x)
    a, b = (a[0], b[0]) if isinstance(a, (tuple, list)) else (a, b)
    assert a.shape == b.shape == (1, 84, 8400) and torch.equal(a, b)

    ref = theirs.predict(image, conf=1e-4, max_det=50, verbose=False)[0].boxes
    assert len(det) > 0 and len(det) == len(ref)
    np.testing.assert_array_equal(det.boxes, ref.xyxy.numpy())
    np.testing.assert_array_equal(det.scores, ref.conf.numpy())


def test_real_checkpoint_gives_boxes_end_to_end(yolo_checkpoints, tmp_path, pose, offline_home):
    out = tmp_path / "out"
    result = cli("--source", IMAGE, *pose, "--det-model", yolo_checkpoints["yolov8n"], "--det-conf", 1e-4,
                 "--max-det", 3, "--json", "--no-save", "--out", out)
    assert result.exit_code == 0, result.output
    (record,) = json.loads((out / "predictions.json").read_text())["images"]
    assert len(record["instances"]) == 3
    assert all(0 < inst["bbox_score"] < 1e-3 for inst in record["instances"])  # random weights: tiny scores


def test_a_model_yaml_is_refused(tmp_path, offline_home):
    marker = tmp_path / "MARKER"
    yaml = tmp_path / "det.yaml"
    yaml.write_text(f"nc: 80\nactivation: __import__('os').system('touch {marker}')\nbackbone: []\nhead: []\n")
    with pytest.raises(DetectorError, match="is a model yaml"):
        YoloDetector(yaml)
    assert not marker.exists()


def test_non_checkpoints_are_one_line(tmp_path, offline_home):
    from poseapp.errors import CheckpointError

    cases = {"garbage.pt": b"not a checkpoint\n", "image.pth": IMAGE.read_bytes()}
    for name, body in cases.items():
        (tmp_path / name).write_bytes(body)
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "pose.pt")
    torch.save(torch.zeros(2), tmp_path / "tensor.pt")
    expected = {"garbage.pt": "it is not a PyTorch checkpoint (a torch.save zip", "image.pth": "it is not a PyTorch c",
                "pose.pt": "it holds no model (no 'model' or 'ema' module)", "tensor.pt": "it holds a Tensor"}
    for name, words in expected.items():
        with pytest.raises(CheckpointError, match=re.escape(words)) as e:
            YoloDetector(tmp_path / name)
        assert "\n" not in str(e.value) and not isinstance(e.value, UnsafeCheckpointError)


# --------------------------------------------------------------------------------------------------
# The allow-list itself


def test_allow_list_admits_what_real_checkpoints_need(yolo_checkpoints):
    for path in yolo_checkpoints.values():
        names = _referenced_globals(path)
        assert any(n.startswith("ultralytics.nn.") for n in names) and any(n.startswith("torch.nn.") for n in names)
        entries, refused = allow_list(names)
        assert refused == []
        built = [obj for obj, name in (e for e in entries if isinstance(e, tuple)) if name in names]
        assert len(built) == len(names) and all(isinstance(obj, _BuildOnly) for obj in built)
        check_yolo_checkpoint(path)  # no error
        assert isinstance(read_yolo_checkpoint(path)["model"], torch.nn.Module)


@pytest.mark.parametrize("name", [
    "posix.system", "builtins.eval", "builtins.exec", "subprocess.Popen", "os.system",
    "torchvision.ops.misc.Conv2dNormActivation",  # an nn.Module, but of another package
    "ultralytics.nn.tasks.torch_safe_load",  # a function in an admitted module
    "ultralytics.nn.tasks.yaml_model_load",
    "ultralytics.utils.downloads.safe_download",
    "ultralytics.nn.modules.no_such_module.Conv",  # never imported: refused
    "torch.nn.modules.conv.F",  # a module object, not a class
    "torch.nn.modulesX.conv.Conv2d",  # a look-alike of an admitted tree
    "ultralytics.utils.checks.check_requirements",
])
def test_allow_list_refuses(name):
    assert allow_list([name])[1] == [name]


def test_admitted_classes_are_built_never_called():
    from ultralytics.nn.tasks import DetectionModel

    stand_in = allow_list(["ultralytics.nn.tasks.DetectionModel"])[0][-1][0]
    assert isinstance(stand_in, _BuildOnly) and stand_in == DetectionModel
    with pytest.raises(pickle.UnpicklingError, match="it calls ultralytics.nn.tasks.DetectionModel with arguments"):
        stand_in({"backbone": [], "head": []})
    blank = stand_in.__new__(stand_in)  # NEWOBJ: no __init__, no yaml parsed
    assert type(blank) is DetectionModel and "_modules" not in vars(blank)
    assert allow_list(["builtins.getattr"])[1] == ["builtins.getattr"]  # no function of a class is reachable


# --------------------------------------------------------------------------------------------------
# What the review found: files that pass the unpickler but are not what a checkpoint is


def _doctored(yolo_checkpoints, tmp_path, change) -> Path:
    """yolov8n's checkpoint with ``change(ckpt)`` applied, saved as a new file."""
    ckpt = read_yolo_checkpoint(yolo_checkpoints["yolov8n"])
    change(ckpt)
    path = tmp_path / "doctored.pt"
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("change, words, error", [
    (lambda c: c.update(model=torch.nn.Sequential()), "its model is a Sequential, not an ultralytics detector",
     NotACheckpointError),  # an empty Sequential is falsy: ultralytics would load its model by name instead
    (lambda c: c.update(model=torch.nn.Conv2d(3, 3, 1)), "its model is a Conv2d", NotACheckpointError),
    (lambda c: c["model"].model[0].register_forward_hook(torch.nn.Identity()), "it installs hooks (_forward_hooks)",
     UnsafeCheckpointError),
    (lambda c: c["model"].model[0]._modules.update(act=torch.nn.SiLU), "it puts the class torch.nn.modules.activation."
     "SiLU where a module belongs", UnsafeCheckpointError),
    (lambda c: c["model"].model[0]._modules.update(act=torch.nn.SiLU.__new__(torch.nn.SiLU)), "it holds a SiLU that was never initialised",
     UnsafeCheckpointError),
    (lambda c: c.update(extra=getattr), "it needs builtins.getattr", UnsafeCheckpointError),
], ids=["empty-sequential", "conv2d", "forward-hook", "class-as-module", "blank-module", "getattr"])
def test_checkpoints_holding_what_no_checkpoint_holds_are_refused(change, words, error, yolo_checkpoints, tmp_path):
    path = _doctored(yolo_checkpoints, tmp_path, change)
    with pytest.raises(error, match=re.escape(words)) as e:
        check_yolo_checkpoint(path)
    with pytest.raises(error, match=re.escape(words)):
        YoloDetector(path)
    assert "\n" not in str(e.value)


def test_classes_registered_process_wide_by_another_library_do_not_count(tmp_path, monkeypatch):
    """ultralytics' own restricted loader registers the real classes with add_safe_globals for the process;
    poseapp's load sets them aside, so the real DetectionModel is still never called."""
    from ultralytics.nn.tasks import DetectionModel

    marker = tmp_path / "MARKER"
    evil = write_evil("calls-detectionmodel", tmp_path / "det.pt", marker)
    saved = torch.serialization.get_safe_globals()
    torch.serialization.add_safe_globals([DetectionModel])
    try:
        with pytest.raises(UnsafeCheckpointError, match="it calls ultralytics.nn.tasks.DetectionModel with"):
            read_yolo_checkpoint(evil)
        assert DetectionModel in torch.serialization.get_safe_globals()  # put back
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved)
    assert not marker.exists()


def test_a_legacy_torch_save_file_is_not_a_checkpoint(yolo_checkpoints, tmp_path):
    ckpt = read_yolo_checkpoint(yolo_checkpoints["yolov8n"])
    torch.save(ckpt, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(NotACheckpointError, match=re.escape("it is not a PyTorch checkpoint (a torch.save zip")):
        YoloDetector(tmp_path / "legacy.pt")


@pytest.mark.parametrize("name, words", [
    ("yolo11n", "is a folder but not an OpenVINO export"),  # ultralytics would open yolo11n.pt beside it
    ("evil.pt ", "is a folder but not an OpenVINO export"),  # ... evil.pt (it strips names)
    ("e'vil.pt", "is a folder but not an OpenVINO export"),  # ... evil.pt (it drops quotes)
    ("yolov5n.pt", "is a folder but not an OpenVINO export"),  # ... yolov5nu.pt (its yolov5u renaming)
    ("evil.yaml ", "is a folder but not an OpenVINO export"),
    ("x'_openvino_model", "ultralytics would not open this name as it stands"),
    ("x_openvino_model ", "is a folder but not an OpenVINO export"),
])
def test_folders_ultralytics_would_open_something_else_for_are_refused(name, words, tmp_path, yolo_checkpoints):
    marker = tmp_path / "MARKER"
    for sibling in ("yolo11n.pt", "evil.pt", "yolov5nu.pt", "evil.yaml"):  # what ultralytics would open instead
        write_evil("torch-zip", tmp_path / sibling, marker)
    (tmp_path / name).mkdir()
    with pytest.raises(DetectorError, match=re.escape(words)):
        YoloDetector(tmp_path / name)
    assert not marker.exists()


def test_a_checkpoint_named_like_a_yaml_is_read_as_a_checkpoint(yolo_checkpoints, tmp_path):
    """``evil.yaml `` (a trailing space) holding a real checkpoint, beside an ``evil.yaml`` whose activation
    would run: ultralytics is handed the module under an inert name, never this name to strip and build."""
    marker = tmp_path / "MARKER"
    (tmp_path / "evil.yaml").write_text(f"nc: 80\nactivation: __import__('os').system('touch {marker}')\n"
                                        "backbone: [[-1, 1, Conv, [16, 3, 2]]]\nhead: []\n")
    shutil.copyfile(yolo_checkpoints["yolov8n"], tmp_path / "evil.yaml ")
    detector = YoloDetector(tmp_path / "evil.yaml ", conf=1e-4, classes=None)
    assert len(detector([Frame(cv2.imread(str(IMAGE)), "a.jpg")])[0]) > 0 and not marker.exists()


@pytest.mark.parametrize("suffix", [".torchscript", ".engine", ".tflite", "_saved_model"])
def test_formats_poseapp_does_not_vet_need_trust(suffix, tmp_path):
    path = tmp_path / f"det{suffix}"
    path.mkdir() if suffix.startswith("_") else path.write_bytes(b"x" * 100)
    with pytest.raises(DetectorError, match="a format poseapp does not vet .* or trusted") as e:
        YoloDetector(path)  # the library names its argument; predict names its flag (--trust-checkpoint)
    assert "or --trust-checkpoint " in e.value.render({"trusted": "--trust-checkpoint"})


# --------------------------------------------------------------------------------------------------
# The source


_PICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}


def _unsafe_loads(tree: ast.AST) -> list[str]:
    """Calls that unpickle without torch's weights-only unpickler, in one parsed file."""
    bad = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = ast.unparse(node.func.value)
        kwargs = {kw.arg: kw.value for kw in node.keywords}
        constant = lambda key: getattr(kwargs.get(key), "value", None)  # noqa: E731
        if owner in _PICKLERS and node.func.attr in {"load", "loads", "Unpickler", "open"}:
            bad.append(ast.unparse(node))
        elif owner in {"torch", "torch.serialization"} and node.func.attr == "load" and constant("weights_only") is not True:
            bad.append(ast.unparse(node))
        elif owner in {"np", "numpy"} and node.func.attr == "load" and constant("allow_pickle") is not False:
            bad.append(ast.unparse(node))
    return bad


def test_no_unpickling_without_weights_only_in_the_project():
    files = [ROOT / "infer.py", *(ROOT / "poseapp").rglob("*.py"), *(ROOT / "bench").glob("*.py"),
             *(ROOT / "tests").glob("*.py")]
    found = {str(f.relative_to(ROOT)): calls for f in files if (calls := _unsafe_loads(ast.parse(f.read_text())))}
    assert found == {}
    # the check itself sees what it is for (the probe calls are assembled, so no source line spells one)
    unsafe = [f"{owner}.{call}({arg})" for owner, call, arg in [("torch", "load", "p"), ("pickle", "loads", "b"),
                                                               ("np", "load", "f")]]
    safe = unsafe[0][:-1] + ", weights_only=True)"
    assert _unsafe_loads(ast.parse("\n".join([*unsafe, safe]))) == unsafe


def test_ultralytics_own_restricted_loading_is_on(monkeypatch):
    """The second line: whatever the user set, ultralytics runs with ULTRALYTICS_SAFE_LOAD, so should it open
    a checkpoint itself, that is weights-only, and a yaml's activation is not evaluated."""
    from ultralytics.nn import tasks

    from poseapp.boxes.yolo import import_yolo

    monkeypatch.setenv("ULTRALYTICS_SAFE_LOAD", "0")
    monkeypatch.setattr(tasks, "SAFE_LOAD", False)  # as if ultralytics had been imported before poseapp
    import_yolo()
    assert tasks.SAFE_LOAD is True and tasks._SafeLoad.restricted()
    with pytest.raises(TypeError, match="unsupported activation"):
        tasks._SafeLoad.activation("__import__('os').system('true')")


# --------------------------------------------------------------------------------------------------
# What a second review found: metadata that steers ultralytics, sizes that exhaust memory, renamed names


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _with_metadata(onnx: bytes, key: str, value: str) -> bytes:
    """An ONNX model with one more metadata entry: ModelProto field 14 (metadata_props), appended, as protobuf
    allows for a repeated field."""
    def field(number: int, data: bytes) -> bytes:
        return _varint(number << 3 | 2) + _varint(len(data)) + data

    return onnx + field(14, field(1, key.encode()) + field(2, value.encode()))


@needs_shared
@pytest.mark.parametrize("key, value, words", [
    ("format", "dnn", "format='dnn' is not one ultralytics' exporter writes"),  # OpenCV's reader instead of ORT
    ("imgsz", "[16000, 16000]", "imgsz='[16000, 16000]' is not an image size up to 4096"),
    ("batch", "1000", "batch='1000' is not a batch size from 1 to 64"),
    ("stride", "16000", "is not one of [8, 16, 32, 64, 128]"),
])
def test_onnx_metadata_that_would_steer_ultralytics_is_refused(key, value, words, tmp_path):
    from conftest import DETECTOR

    path = tmp_path / "det.onnx"
    path.write_bytes(_with_metadata(DETECTOR.read_bytes(), key, value))
    with pytest.raises(DetectorError, match=re.escape(words)) as e:
        YoloDetector(path)
    assert f"detector model {path}: its metadata entry {key}=" in str(e.value)


@needs_shared
def test_onnx_tool_annotations_are_admitted(tmp_path):
    from conftest import DETECTOR

    path = tmp_path / "det.onnx"
    path.write_bytes(_with_metadata(DETECTOR.read_bytes(), "onnx.tool", "anything"))
    assert YoloDetector(path).class_names[0] == "person"


def test_a_stride_no_detector_has_is_refused(yolo_checkpoints, tmp_path):
    """ultralytics rounds the input size up to the stride: 16000 would allocate gigabytes."""
    path = _doctored(yolo_checkpoints, tmp_path, lambda c: setattr(c["model"], "stride", torch.tensor([16000.0])))
    with pytest.raises(NotACheckpointError, match=re.escape("its stride tensor([16000.]) is not a detector's")):
        YoloDetector(path)


def test_a_method_planted_in_a_module_dict_is_refused(yolo_checkpoints, tmp_path):
    path = _doctored(yolo_checkpoints, tmp_path,
                     lambda c: c["model"].model[0].__dict__.update(forward=torch.nn.Identity()))
    with pytest.raises(UnsafeCheckpointError, match="it sets forward on a Conv, which only its class defines"):
        YoloDetector(path)


def _zip_bomb(source: Path, path: Path) -> Path:
    """``source`` (a torch.save archive) rewritten with its records deflated, plus one record of 50 MB of
    zeros deflated to a few kB: unpacked, it is larger than the file."""
    import zipfile

    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        prefix = src.namelist()[0].split("/")[0]
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
        dst.writestr(f"{prefix}/data/9999", bytes(50_000_000))
    return path


def test_zip_bombs_are_refused_before_unpacking(yolo_checkpoints, random_checkpoint, tmp_path):
    from poseapp.errors import CheckpointError
    from poseapp.models.checkpoint import read_checkpoint

    bomb = _zip_bomb(yolo_checkpoints["yolov8n"], tmp_path / "det.pt")
    assert bomb.stat().st_size < 20_000_000
    with pytest.raises(NotACheckpointError, match="it holds compressed records, which torch.save never writes"):
        YoloDetector(bomb)
    pose = _zip_bomb(random_checkpoint(ARCH), tmp_path / "pose.pth")
    with pytest.raises(CheckpointError, match="it holds compressed records"):
        read_checkpoint(pose)


def test_the_pose_loader_sets_aside_classes_registered_process_wide(tmp_path):
    from ultralytics.nn.tasks import DetectionModel

    from poseapp.errors import CheckpointError
    from poseapp.models.checkpoint import read_checkpoint

    marker = tmp_path / "MARKER"
    evil = tmp_path / "pose.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "meta": {"x": _CallsDetectionModel(marker)}}, evil)
    saved = torch.serialization.get_safe_globals()
    torch.serialization.add_safe_globals([DetectionModel])  # as ultralytics' own restricted loader does
    try:
        with pytest.raises(CheckpointError, match="ultralytics.nn.tasks.DetectionModel"):
            read_checkpoint(evil)
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved)
    assert not marker.exists()


@pytest.mark.parametrize("folder", ["yolov5nu.yaml", "yolov8n6.yaml"])
def test_a_trusted_file_is_the_file_loaded(folder, tmp_path):
    """ultralytics rewrites 'yolov5nu.yaml' to 'yolov5n.yaml' anywhere in a path, and P6 yaml names: trusting
    tt/yolov5nu.yaml/det.torchscript must not load tt/yolov5n.yaml/det.torchscript."""
    named = tmp_path / folder / ("det.torchscript" if folder.startswith("yolov5") else "")
    if folder.startswith("yolov5"):
        named.parent.mkdir()
        named.write_bytes(b"x")
    else:
        named = tmp_path / folder
        named.write_text("nc: 80\n")
    with pytest.raises(DetectorError, match="ultralytics would not open this name as it stands"):
        YoloDetector(named, trusted=[named])
