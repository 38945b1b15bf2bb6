"""The YOLOv5 reference fixture (tests/fixtures/yolov5, issue 14): what yolov5's own code and the seed's
pipeline gave on a seeded YOLOv5m, checked for what later tests rely on. It needs neither yolov5 nor
../shared: the fixture is in the repository, rebuilt by its make_reference.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

FIXTURE = Path(__file__).parent / "fixtures" / "yolov5"
from fixtures.yolov5.seeded import seeded_state_dict, seeded_tensor

DOC = json.loads((FIXTURE / "reference.json").read_text())
ARRAYS = np.load(FIXTURE / "reference.npz", allow_pickle=False)


def test_seeded_weights_depend_on_the_key_alone():
    a = seeded_tensor("model.2.cv1.conv.weight", (36, 72, 1, 1))
    assert torch.equal(a, seeded_tensor("model.2.cv1.conv.weight", (36, 72, 1, 1)))
    assert not torch.equal(a, seeded_tensor("model.2.cv2.conv.weight", (36, 72, 1, 1)))
    assert abs(float(a.std()) - 72 ** -0.5) < 0.02  # N(0, 1/fan_in)
    state = {"b.running_var": torch.ones(3), "b.num_batches_tracked": torch.tensor(7),
             "model.24.anchors": torch.ones(3, 3, 2)}
    seeded = seeded_state_dict(state)
    assert ((seeded["b.running_var"] >= 0.5) & (seeded["b.running_var"] <= 1.5)).all()
    assert int(seeded["b.num_batches_tracked"]) == 0
    assert torch.equal(seeded["model.24.anchors"], state["model.24.anchors"])


def test_the_reference_holds_every_image_and_size_with_enough_boxes():
    assert DOC["layouts_agree"] and set(DOC["layouts"]) == {"v5", "v7"}
    for image in DOC["images"]:
        for size in DOC["sizes"]:
            tag = f"v7/{Path(image).stem}/{size}"
            h, w = DOC["letterboxed"][f"{Path(image).stem}/{size}"]
            assert max(h, w) == size and h % 32 == 0 and w % 32 == 0
            raw, det, boxes = ARRAYS[f"{tag}/raw"], ARRAYS[f"{tag}/det"], ARRAYS[f"{tag}/boxes"]
            anchors = 3 * sum((h // s) * (w // s) for s in (8, 16, 32))  # 3 anchors a cell at strides 8, 16, 32
            assert raw.shape == (anchors, 7) and raw.dtype == np.float32
            assert 50 <= len(det) <= 300 and det.shape[1] == 6 and boxes.shape == (len(det), 4)
            assert (det[:, 4] > DOC["conf"]).all() and set(np.unique(det[:, 5])) <= {0.0, 1.0}


def test_the_two_layouts_name_what_yolov5_pickled():
    v5, v7 = DOC["layouts"]["v5"], DOC["layouts"]["v7"]
    assert "models.yolo.Model" in v5["globals"] and "models.yolo.DetectionModel" in v7["globals"]
    for layout in (v5, v7):
        assert {"models.common.Focus", "models.common.C3", "models.common.SPP", "models.yolo.Detect"} <= set(
            layout["globals"])
        assert not any(g.startswith("yolov5.") for g in layout["globals"])  # the repository's module paths
    assert "model.24.anchor_grid" in v5["state_dict"] and "model.24.anchor_grid" not in v7["state_dict"]
    assert "anchor_grid" in v7["attributes"]["models.yolo.Detect"]  # a plain attribute (a list) in v7.0
