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
