"""draw(): a pure function that walks the keypoint set's tables."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import DATA, needs_shared
from poseapp.drawing import default_radius, draw
from poseapp.keypoints import get_keypoint_set
from poseapp.results import Poses


def _poses(set_name: str, keypoints: np.ndarray, scores: np.ndarray, box=(0, 0, 10, 10)) -> Poses:
    """Poses of one instance from (K, 2) keypoints and (K,) scores."""
    return Poses(
        boxes=np.array([box], np.float32),
        box_scores=np.array([0.8], np.float32),
        keypoints=keypoints[None].astype(np.float64),
        scores=scores[None].astype(np.float64),
        keypoint_set=get_keypoint_set(set_name),
    )


def _canvas(h: int = 200, w: int = 300) -> np.ndarray:
    return np.full((h, w, 3), 40, np.uint8)


def _far_away(k: int) -> np.ndarray:
    """(K, 2) keypoints all at (-100, -100): outside the image, never drawn."""
    return np.full((k, 2), -100.0)


def test_returns_new_array_and_leaves_input_untouched():
    image = _canvas()
    before = image.copy()
    kpts = _far_away(17)
    kpts[0] = (50, 50)
    out = draw(image, _poses("coco", kpts, np.ones(17)))
    assert out is not image and out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(image, before)
    assert not np.array_equal(out, image)


def test_keypoint_above_threshold_drawn_below_not():
    kpts = _far_away(17)
    kpts[0] = (50, 50)
    kpts[1] = (200, 150)
    scores = np.zeros(17)
    scores[0], scores[1] = 0.9, 0.1
    image = _canvas()
    out = draw(image, _poses("coco", kpts, scores), kpt_thr=0.3)
    assert not np.array_equal(out[50, 50], image[50, 50])
    np.testing.assert_array_equal(out[140:160, 190:210], image[140:160, 190:210])
    # the colour is the table's RGB turned into BGR
    r, g, b = get_keypoint_set("coco").keypoint_colors[0]
    np.testing.assert_array_equal(out[50, 50], [b, g, r])


def test_link_needs_both_ends_visible():
    kset = get_keypoint_set("coco")
    a, b = (int(i) for i in kset.skeleton[0])
    kpts = _far_away(17)
    kpts[a], kpts[b] = (50, 100), (250, 100)
    scores = np.zeros(17)
    scores[a] = scores[b] = 0.9
    image = _canvas()
    out = draw(image, _poses("coco", kpts, scores), radius=2, thickness=3)
    assert not np.array_equal(out[100, 150], image[100, 150])  # middle of the link
    scores[b] = 0.1
    out = draw(image, _poses("coco", kpts, scores), radius=2, thickness=3)
    np.testing.assert_array_equal(out[100, 150], image[100, 150])
    assert not np.array_equal(out[100, 50], image[100, 50])  # the visible end is still drawn


def test_no_instances_and_bbox():
    image = _canvas()
    empty = Poses(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 17, 2)), np.zeros((0, 17)),
                  get_keypoint_set("coco"))
    np.testing.assert_array_equal(draw(image, empty), image)
    poses = _poses("coco", _far_away(17), np.zeros(17), box=(20, 30, 120, 150))
    assert np.array_equal(draw(image, poses), image)
    boxed = draw(image, poses, draw_bbox=True, thickness=2)
    assert not np.array_equal(boxed[90, 20], image[90, 20])  # left edge of the box


def test_default_radius_scales_with_image():
    assert default_radius(2000, 4000, 17) > default_radius(200, 300, 17) >= 1
    assert default_radius(1080, 1920, 294) < default_radius(1080, 1920, 17)


def test_rejects_wrong_image_or_keypoint_count():
    with pytest.raises(ValueError, match="uint8"):
        draw(np.zeros((10, 10), np.uint8), _poses("coco", _far_away(17), np.zeros(17)))
    with pytest.raises(ValueError, match="coco"):
        draw(_canvas(), Poses(np.zeros((1, 4), np.float32), np.ones(1, np.float32), np.zeros((1, 16, 2)),
                              np.zeros((1, 16)), get_keypoint_set("coco")))


def test_dense_294_keypoint_set():
    kset = get_keypoint_set("deepfashion2")
    assert kset.num_keypoints == 294
    rng = np.random.default_rng(0)
    kpts = rng.uniform(10, 290, (294, 2))
    image = _canvas(300, 300)
    out = draw(image, _poses("deepfashion2", kpts, np.ones(294)))
    assert out.shape == image.shape and not np.array_equal(out, image)


def test_set_without_skeleton():
    kset = get_keypoint_set("deepfashion_full")
    assert len(kset.skeleton) == 0
    kpts = np.array([[20.0 + 30 * i, 100.0] for i in range(kset.num_keypoints)])
    image = _canvas()
    out = draw(image, _poses("deepfashion_full", kpts, np.ones(kset.num_keypoints)))
    assert not np.array_equal(out[100, 20], image[100, 20])


@needs_shared
def test_real_image():
    import cv2

    image = cv2.imread(str(DATA / "coco" / "000000000785.jpg"))
    h, w = image.shape[:2]
    kpts = np.stack([np.linspace(w * 0.2, w * 0.8, 17), np.linspace(h * 0.2, h * 0.8, 17)], axis=1)
    out = draw(image, _poses("coco", kpts, np.ones(17), box=(0, 0, w / 2, h / 2)), draw_bbox=True)
    assert out.shape == image.shape and (out != image).any(axis=2).sum() > 100
