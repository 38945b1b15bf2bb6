"""Geometry: box -> centre/scale, aspect fix, the standard / UDP / HRNet-repo warps and the way back to the
image, on numbers worked out by hand. Needs nothing from ../shared."""
from __future__ import annotations

import numpy as np
import pytest

from poseapp import geometry
from poseapp.codecs import MSRAHeatmap, UDPHeatmap

BOX = np.array([[10, 20, 110, 220]], np.float32)  # 100 x 200 px, centre (60, 120)
INPUT = (192, 256)  # (w, h): aspect ratio 0.75

# For BOX: padded size (125, 250); 125 < 250 * 0.75 so the width grows to 187.5. The warp scales by
# 192 / 187.5 = 1.024 and puts the centre (60, 120) at the crop's centre (96, 128):
# t = (96 - 1.024 * 60, 128 - 1.024 * 120) = (34.56, 5.12).
STANDARD = np.array([[1.024, 0.0, 34.56], [0.0, 1.024, 5.12]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(P, 2) points through a 2x3 affine matrix, in float64."""
    m = np.asarray(matrix, np.float64)
    return points @ m[:, :2].T + m[:, 2]


# ---------------------------------------------------------------- box -> centre / scale

def test_bbox_xyxy2cs_pads_the_size_not_the_centre():
    center, scale = geometry.bbox_xyxy2cs(BOX, padding=1.25)
    np.testing.assert_array_equal(center, [[60, 120]])
    np.testing.assert_array_equal(scale, [[125, 250]])
    assert center.dtype == scale.dtype == np.float32
    # one (4,) box is one row; padding 1 is the box itself
    center, scale = geometry.bbox_xyxy2cs(np.array([0, 0, 8, 6]), padding=1.0)
    np.testing.assert_array_equal(center, [[4, 3]])
    np.testing.assert_array_equal(scale, [[8, 6]])


@pytest.mark.parametrize("size, ratio, expected", [
    ((125, 250), 0.75, (187.5, 250)),  # too tall: the width grows
    ((200, 100), 0.75, (200, 800 / 3)),  # too wide: the height grows
    ((150, 200), 0.75, (150, 200)),  # already 3:4: unchanged
    ((10, 10), 2.0, (20, 10)),
])
def test_fix_aspect_ratio_grows_the_short_side(size, ratio, expected):
    out = geometry.fix_aspect_ratio(np.array([size], np.float64), ratio)
    np.testing.assert_allclose(out, [expected], rtol=0, atol=1e-12)
    assert out[0, 0] / out[0, 1] == pytest.approx(ratio, abs=1e-12)
    assert np.all(out >= np.array(size))  # never shrinks a side


def test_crop_center_scale_pads_then_fixes_the_aspect():
    boxes = np.vstack([BOX, [[0, 0, 200, 100]]])
    center, scale = geometry.crop_center_scale(boxes, INPUT, padding=1.25)
    np.testing.assert_array_equal(center, [[60, 120], [100, 50]])
    # second box: padded (250, 125), too wide -> height 250 / 0.75
    np.testing.assert_allclose(scale, [[187.5, 250], [250, 1000 / 3]], rtol=1e-6)


# ---------------------------------------------------------------- standard (MMPose get_warp_matrix)

def test_warp_matrix_closed_form():
    center, scale = geometry.crop_center_scale(BOX, INPUT, 1.25)
    m = geometry.warp_matrix(center[0], scale[0], INPUT)
    assert m.shape == (2, 3) and m.dtype == np.float64
    np.testing.assert_allclose(m, STANDARD, rtol=0, atol=1e-9)


def test_warp_matrix_maps_box_edges_to_crop_edges():
    """Standard convention: the box's left/top edge goes to crop 0 and its right/bottom edge to (w, h),
    pixel edges; crop pixel w - 1 samples one crop pixel in from the right edge."""
    center, scale = np.array([60.0, 120.0]), np.array([187.5, 250.0])
    m = geometry.warp_matrix(center, scale, INPUT)
    corners = np.array([[60 - 93.75, 120 - 125], [60 + 93.75, 120 + 125], [60, 120]])
    np.testing.assert_allclose(_apply(m, corners), [[0, 0], [192, 256], [96, 128]], atol=1e-9)


def test_warp_matrix_scales_by_the_width_only():
    """Like MMPose, the 3-point construction uses scale[0] only: the map is isotropic whatever scale[1]
    says, which is why the scale must be aspect-fixed first."""
    m = geometry.warp_matrix(np.array([50.0, 50.0]), np.array([100.0, 400.0]), (50, 50))
    np.testing.assert_allclose(m, [[0.5, 0, 0], [0, 0.5, 0]], atol=1e-9)


def test_crop_to_image_inverts_the_standard_warp():
    """Image -> crop with the warp, back with crop_to_image: the identity, for two instances at once.
    Both scales are exact in float32 (the aspect fix divides 125 or 256 by 0.75 / 1.0 exactly)."""
    boxes = np.array([[10, 20, 110, 220], [-40, 5, 216, 261]], np.float32)  # second: 256 x 256 px
    centers, scales = geometry.crop_center_scale(boxes, (256, 256), padding=1.0)
    np.testing.assert_array_equal(scales, [[200, 200], [256, 256]])
    image_pts = np.array([[13.0, 7.0], [60.0, 120.0], [250.5, -40.25], [0.0, 0.0]])
    crop = np.stack([_apply(geometry.warp_matrix(c, s, (256, 256)), image_pts) for c, s in zip(centers, scales)])
    back = geometry.crop_to_image(crop, centers, scales, (256, 256))
    assert back.dtype == np.float64
    np.testing.assert_allclose(back, np.stack([image_pts, image_pts]), rtol=0, atol=1e-9)


def test_crop_to_image_known_numbers_and_no_mutation():
    """Crop (0, 0) is the padded box's top-left corner, the crop centre is the box centre, (w, h) its
    bottom-right; extra columns (e.g. a score) pass through; dtype and input are kept."""
    kpts = np.array([[[0, 0, 0.9], [96, 128, 0.8], [192, 256, 0.7]]], np.float32)
    before = kpts.copy()
    out = geometry.crop_to_image(kpts, np.array([[60, 120]], np.float32), np.array([[187.5, 250]], np.float32), INPUT)
    np.testing.assert_allclose(out[0, :, :2], [[-33.75, -5], [60, 120], [153.75, 245]], atol=1e-5)
    np.testing.assert_array_equal(out[..., 2], kpts[..., 2])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(kpts, before)


def test_round_trip_of_a_general_box_is_float32_close():
    """A box whose aspect-fixed height is not exact in float32 (333.33334): the warp uses the width, the
    way back the height per axis, so they differ by float32 rounding only (a few 1e-6 px)."""
    centers, scales = geometry.crop_center_scale(np.array([[0, 0, 200, 100]]), INPUT, 1.25)
    m = geometry.warp_matrix(centers[0], scales[0], INPUT)
    pts = np.array([[13.0, 7.0], [100.0, 50.0], [250.0, -40.0]])
    back = geometry.crop_to_image(_apply(m, pts)[None], centers, scales, INPUT)[0]
    np.testing.assert_allclose(back, pts, rtol=0, atol=1e-4)


def test_heatmap_peak_maps_back_to_the_image_point_standard():
    """MSRA heatmap pixel j is crop pixel j * stride: a symmetric peak (no quarter shift) at heatmap
    (5, 7) on a 48x64 map of a 192x256 input lands on the image point the warp sent to (20, 28)."""
    centers, scales = geometry.crop_center_scale(BOX, INPUT, 1.25)
    hm = np.zeros((1, 1, 64, 48), np.float32)
    hm[0, 0, 7, 5] = 1.0
    kpts, _ = MSRAHeatmap(INPUT, (48, 64)).decode(hm)
    np.testing.assert_array_equal(kpts, [[[20, 28]]])
    image = geometry.crop_to_image(kpts.astype(np.float64), centers, scales, INPUT)
    # inverse of STANDARD: ((20, 28) - (34.56, 5.12)) / 1.024
    np.testing.assert_allclose(image, [[[-14.21875, 22.34375]]], atol=1e-9)
    heatmap_m = geometry.warp_matrix(centers[0], scales[0], (48, 64))
    np.testing.assert_allclose(_apply(heatmap_m, image[0]), [[5, 7]], atol=1e-9)


# ---------------------------------------------------------------- UDP (MMPose get_udp_warp_matrix)

def test_udp_warp_matrix_closed_form():
    """UDP scales by (w - 1) / scale: 191 / 187.5 and 255 / 250 = 1.02; the box's top-left corner
    (60 - 93.75, 120 - 125) goes to 0, so t = (sx * 33.75, 1.02 * 5)."""
    center, scale = geometry.crop_center_scale(BOX, INPUT, 1.25)
    m = geometry.udp_warp_matrix(center[0], scale[0], INPUT)
    assert m.dtype == np.float32
    sx = 191 / 187.5
    np.testing.assert_allclose(m, [[sx, 0, sx * 33.75], [0, 1.02, 5.1]], rtol=1e-6)


def test_udp_warp_maps_box_edges_to_pixel_centres():
    """UDP convention: the box's edges go to the first and last pixel centres, 0 and (w - 1, h - 1)."""
    m = geometry.udp_warp_matrix(np.array([60.0, 120.0]), np.array([187.5, 250.0]), INPUT)
    corners = np.array([[60 - 93.75, 120 - 125], [60 + 93.75, 120 + 125], [60, 120]])
    np.testing.assert_allclose(_apply(m, corners), [[0, 0], [191, 255], [95.5, 127.5]], atol=1e-4)


def test_heatmap_peak_maps_back_to_the_image_point_udp():
    """UDP: heatmap pixel j is j / (W - 1) of the box; decode (input / (W - 1)) then crop_to_image is the
    exact inverse of the UDP warp at heatmap size. A symmetric peak has zero DARK offset."""
    centers, scales = np.array([[60.0, 120.0]]), np.array([[187.5, 250.0]])
    hm = np.zeros((1, 1, 64, 48), np.float32)
    yy, xx = np.mgrid[:64, :48]
    hm[0, 0] = np.exp(-((xx - 10) ** 2 + (yy - 17) ** 2) / 8.0)
    kpts, _ = UDPHeatmap(INPUT, (48, 64)).decode(hm)
    np.testing.assert_allclose(kpts, [[[10 / 47 * 192, 17 / 63 * 256]]], atol=1e-9)
    image = geometry.crop_to_image(kpts, centers, scales, INPUT)
    np.testing.assert_allclose(image, [[[10 / 47 * 187.5 - 33.75, 17 / 63 * 250 - 5]]], atol=1e-9)
    heatmap_m = geometry.udp_warp_matrix(centers[0], scales[0], (48, 64))
    np.testing.assert_allclose(_apply(heatmap_m, image[0]), [[10, 17]], atol=1e-4)  # float32 matrix


# ---------------------------------------------------------------- warp_crop: which image point each crop pixel samples

def _ramp(h: int = 60, w: int = 50) -> np.ndarray:
    """(h, w, 3) float32 image whose channels 0 and 1 hold each pixel's own x and y."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    return np.dstack([xx, yy, np.zeros_like(xx)])


@pytest.mark.parametrize("warp, step", [(geometry.warp_matrix, 14 / 8), (geometry.udp_warp_matrix, 14 / 7)])
def test_warp_crop_samples_where_the_convention_says(warp, step):
    """Box centre (20, 30), size 14, crop 8x8. Standard: crop pixel u samples image x = 13 + u * 14 / 8
    (pixel 7 at 25.25, one step short of the box edge 27); UDP: x = 13 + u * 14 / 7 (pixel 7 on 27).
    Bilinear sampling of a ramp is exact; the steps are multiples of OpenCV's 1/32 sub-pixel grid."""
    m = warp(np.array([20.0, 30.0]), np.array([14.0, 14.0]), (8, 8))
    crop = geometry.warp_crop(_ramp(), m, (8, 8))
    assert crop.shape == (8, 8, 3)
    u = np.arange(8)
    np.testing.assert_allclose(crop[0, :, 0], 13 + step * u, atol=1e-3)
    np.testing.assert_allclose(crop[:, 0, 1], 23 + step * u, atol=1e-3)


def test_warp_crop_shape_is_w_by_h():
    crop = geometry.warp_crop(np.zeros((40, 30, 3), np.uint8), STANDARD, INPUT)
    assert crop.shape == (256, 192, 3) and crop.dtype == np.uint8


# ---------------------------------------------------------------- HRNet-repo convention (200-pixel units)

def test_hrnet_center_scale_in_pixel_std_units():
    """HRNet repo: aspect fix first, then / 200 * 1.25. BOX: 100 x 200 -> 150 x 200 -> (0.9375, 1.25)."""
    center, scale = geometry.hrnet_center_scale(np.vstack([BOX, [[0, 0, 200, 100]]]), INPUT)
    np.testing.assert_array_equal(center, [[60, 120], [100, 50]])
    np.testing.assert_allclose(scale, [[0.9375, 1.25], [1.25, 200 / 0.75 / 200 * 1.25]], rtol=1e-6)
    assert scale.dtype == np.float32


def test_hrnet_warp_matrix_matches_mmpose_for_the_same_box():
    """The repo builds its 3 points along y, MMPose along x, and pads after the aspect fix instead of
    before; for the same box both give the same matrix (STANDARD for BOX)."""
    boxes = np.array([[10, 20, 110, 220], [0, 0, 200, 100], [33.3, 41.7, 97.1, 250.9]], np.float32)
    c, s = geometry.crop_center_scale(boxes, INPUT, 1.25)
    hc, hs = geometry.hrnet_center_scale(boxes, INPUT, 1.25)
    np.testing.assert_allclose(geometry.hrnet_warp_matrix(hc[0], hs[0], INPUT), STANDARD, atol=1e-9)
    for i in range(len(boxes)):
        np.testing.assert_allclose(geometry.hrnet_warp_matrix(hc[i], hs[i], INPUT),
                                   geometry.warp_matrix(c[i], s[i], INPUT), atol=1e-4)


def test_hrnet_crop_to_image_inverts_hrnet_warp():
    """Round trip within float32 (hrnet_crop_to_image computes in float32, as the repo does)."""
    boxes = np.array([[10, 20, 110, 220], [33.3, 41.7, 97.1, 250.9]], np.float32)
    centers, scales = geometry.hrnet_center_scale(boxes, INPUT)
    pts = np.array([[13.0, 7.0], [60.0, 120.0], [150.5, 240.25]])
    crop = np.stack([_apply(geometry.hrnet_warp_matrix(c, s, INPUT), pts) for c, s in zip(centers, scales)])
    back = geometry.hrnet_crop_to_image(crop, centers, scales, INPUT)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, np.stack([pts, pts]), rtol=0, atol=1e-4)
    # known numbers: crop centre -> box centre, crop (0, 0) -> the padded box's top-left corner
    out = geometry.hrnet_crop_to_image(np.array([[[96.0, 128.0], [0.0, 0.0]]]), centers[:1], scales[:1], INPUT)
    np.testing.assert_allclose(out, [[[60, 120], [60 - 93.75, 120 - 125]]], atol=1e-4)
