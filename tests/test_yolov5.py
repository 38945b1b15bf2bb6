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
sys.path.insert(0, str(FIXTURE))
from seeded import seeded_state_dict  # noqa: E402

DOC = json.loads((FIXTURE / "reference.json").read_text())
REFERENCE = np.load(FIXTURE / "reference.npz")


def seeded_weights(network) -> dict[str, torch.Tensor]:
    """The reference's weights: seeded, through float16 (the checkpoint's), anchors in grid cells."""
    weights = {k: v.half().float() if v.is_floating_point() else v
               for k, v in seeded_state_dict(network.state_dict()).items()}
    strides = torch.tensor([8.0, 16.0, 32.0]).view(-1, 1, 1)
    weights["model.24.anchors"] = torch.tensor(DOC["yaml"]["anchors"], dtype=torch.float32).view(3, -1, 2) / strides
    return weights


@pytest.fixture(scope="module")
def network():
    net = build_yolov5(DOC["yaml"])
    net.load_state_dict(seeded_weights(net))
    return net.fuse()


def test_the_network_has_yolov5s_keys_and_shapes():
    net = build_yolov5(DOC["yaml"])
    assert sorted(net.state_dict()) == DOC["layouts"]["v7"]["state_dict"]
    assert sum(p.numel() for p in net.parameters()) == 21060447  # what yolov5's model summary printed


@needs_shared
@pytest.mark.parametrize("image_name", DOC["images"])
@pytest.mark.parametrize("size", DOC["sizes"])
def test_outputs_and_boxes_equal_yolov5s(network, image_name, size):
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
    np.testing.assert_allclose(det[:, :4].numpy(), reference[:, :4], rtol=0, atol=1e-3)
    np.testing.assert_allclose(det[:, 4].numpy(), reference[:, 4], rtol=0, atol=1e-5)
    assert np.array_equal(det[:, 5].numpy(), reference[:, 5])
    boxes = to_image(det[:, :4], image.shape[:2], tuple(x.shape[-2:]))
    np.testing.assert_allclose(boxes.numpy(), REFERENCE[f"{tag}/boxes"], rtol=0, atol=1e-3)


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


def write_yolov5_checkpoint(path: Path, layout: str) -> Path:
    """A seeded YOLOv5m saved as yolov5 saved stripped checkpoints (its module tree pickled under the
    repository's names, models.yolo / models.common; float16), without yolov5: poseapp's own modules, which
    have yolov5's structure, are given those names while the file is written."""
    import copy
    import types

    from poseapp.boxes.yolov5 import network as nw

    net = build_yolov5(DOC["yaml"])
    net.load_state_dict(seeded_weights(net))
    net.yaml, net.names = copy.deepcopy(DOC["yaml"]), list(DOC["names"])
    root = "Model" if layout == "v5" else "DetectionModel"
    classes = {"models.common": [nw.Conv, nw.Focus, nw.Bottleneck, nw.C3, nw.SPP, nw.Concat],
               "models.yolo": [nw.Detect, nw.YoloV5]}
    saved = {c: (c.__module__, c.__qualname__) for cs in classes.values() for c in cs}
    modules = {"models": types.ModuleType("models")}
    try:
        for module, cs in classes.items():
            modules[module] = types.ModuleType(module)
            for c in cs:
                c.__module__, c.__qualname__ = module, root if c is nw.YoloV5 else c.__name__
                setattr(modules[module], c.__qualname__, c)
        sys.modules.update(modules)
        model = copy.deepcopy(net).half()
        if layout == "v5":
            detect = model.detect
            grid = (detect.anchors * detect.stride.view(-1, 1, 1)).view(3, 1, 3, 1, 1, 2)  # anchors in pixels
            detect.register_buffer("anchor_grid", grid)
        ckpt = {"epoch": -1, "best_fitness": None, "model": model, "optimizer": None, "wandb_id": None,
                **({"training_results": None} if layout == "v5" else {"ema": None, "updates": None})}
        torch.save(ckpt, path)
    finally:
        for c, (module, qualname) in saved.items():
            c.__module__, c.__qualname__ = module, qualname
        for name in modules:
            sys.modules.pop(name, None)
    return path


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
def test_a_checkpoint_loads_weights_only_into_the_same_detector(checkpoint):
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
