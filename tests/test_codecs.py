"""Codecs: raw outputs -> crop-pixel keypoints + scores (MSRA, DARK, UDP, HRNet repo, SimCC, SimDR,
DeepPose/RLE) and the flip-test alignment, on tiny inputs whose answers can be written down. Needs nothing
from ../shared."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from poseapp.codecs import (
    HRNetHeatmap,
    MSRAHeatmap,
    RegressionCodec,
    SimCCCodec,
    SimDRCodec,
    UDPHeatmap,
    score_range,
)
from poseapp.codecs.flip import flip_coordinates, flip_heatmaps, flip_vectors
from poseapp.codecs.heatmap import heatmap_maximum, refine_dark, refine_dark_udp
from poseapp.keypoints import get_keypoint_set

# A 1x1x8x6 heatmap (H = 8, W = 6) of a 24x32 input: stride 4 on both axes.
H, W = 8, 6
MSRA = MSRAHeatmap(input_size=(24, 32), heatmap_size=(W, H))


def _peak(x: int, y: int, right: float = 0.0, left: float = 0.0, down: float = 0.0, up: float = 0.0,
          h: int = H, w: int = W) -> np.ndarray:
    """(1, 1, h, w) float32 map: 1 at (x, y), the given values at its in-range 4-neighbours, 0 elsewhere."""
    hm = np.zeros((1, 1, h, w), np.float32)
    for dx, dy, v in ((1, 0, right), (-1, 0, left), (0, 1, down), (0, -1, up)):
        if 0 <= x + dx < w and 0 <= y + dy < h:
            hm[0, 0, y + dy, x + dx] = v
    hm[0, 0, y, x] = 1.0
    return hm


def _gaussian(w: int, h: int, mx: float, my: float, sigma: float = 2.0) -> np.ndarray:
    """(1, 1, h, w) float32 Gaussian blob whose true (sub-pixel) peak is (mx, my), value 1 there."""
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    return np.exp(-((xx - mx) ** 2 + (yy - my) ** 2) / (2 * sigma**2)).astype(np.float32)[None, None]


# ---------------------------------------------------------------- argmax

def test_heatmap_maximum_finds_x_y_and_value():
    hm = np.zeros((2, 3, H, W), np.float32)
    hm[0, 0, 4, 3] = 0.7  # (x=3, y=4)
    hm[0, 1, 0, 5] = 0.2
    hm[1, 2, 7, 0] = 0.9
    hm[0, 2, 2, 2] = hm[0, 2, 2, 4] = 0.5  # a tie: the first in raster order wins
    hm[1, 0] = -0.3  # max <= 0: location -1
    locs, vals = heatmap_maximum(hm)
    assert locs.shape == (2, 3, 2) and locs.dtype == np.float32 and vals.shape == (2, 3)
    np.testing.assert_array_equal(locs, [[[3, 4], [5, 0], [2, 2]], [[-1, -1], [-1, -1], [0, 7]]])
    np.testing.assert_allclose(vals, [[0.7, 0.2, 0.5], [-0.3, 0.0, 0.9]])


# ---------------------------------------------------------------- MSRA: argmax + quarter-pixel shift

@pytest.mark.parametrize("neighbours, expected", [
    (dict(right=0.5, left=0.2, down=0.6, up=0.3), (3.25, 4.25)),  # towards the higher side
    (dict(right=0.2, left=0.5, down=0.3, up=0.6), (2.75, 3.75)),
    (dict(right=0.4, left=0.4, down=0.4, up=0.4), (3.0, 4.0)),  # balanced: no shift
])
def test_msra_quarter_pixel_shift(neighbours, expected):
    kpts, scores = MSRA.decode(_peak(3, 4, **neighbours))
    np.testing.assert_array_equal(kpts, [[np.array(expected) * 4]])  # stride 24 / 6 = 32 / 8 = 4
    np.testing.assert_array_equal(scores, [[1.0]])
    assert kpts.dtype == np.float32 and scores.dtype == np.float32


@pytest.mark.parametrize("x, y, expected", [
    (3, 4, (3.25, 4.25)),
    (1, 4, (1.0, 4.25)),  # x moves only if 1 < x (MMPose's bound, not 0 < x)
    (0, 4, (0.0, 4.0)),  # y moves only if 0 < x
    (4, 4, (4.25, 4.25)),  # x < W - 1 = 5
    (3, 7, (3.25, 7.0)),  # y moves only if y < H - 1; x still does (0 < y < H)
    (3, 1, (3.25, 1.0)),
    (3, 0, (3.0, 0.0)),  # x moves only if 0 < y
])
def test_msra_shift_bounds_follow_mmpose_refine_keypoints(x, y, expected):
    hm = _peak(x, y, right=0.5, down=0.5)
    kpts, _ = MSRA.decode(hm)
    np.testing.assert_array_equal(kpts[0, 0] / 4, expected)


def test_msra_zero_map_is_minus_one_times_the_stride():
    """max <= 0: location -1 (no shift), scaled like any location: (-4, -4) crop pixels, score = max."""
    kpts, scores = MSRA.decode(np.full((1, 1, H, W), -0.5, np.float32))
    np.testing.assert_array_equal(kpts, [[[-4, -4]]])
    np.testing.assert_array_equal(scores, [[-0.5]])


def test_msra_stride_per_axis():
    codec = MSRAHeatmap(input_size=(192, 256), heatmap_size=(48, 32))  # stride 4 in x, 8 in y
    kpts, _ = codec.decode(_peak(10, 20, h=32, w=48))
    np.testing.assert_array_equal(kpts, [[[40, 160]]])


def test_hrnet_repo_shifts_both_axes_or_neither():
    """HRNet repo: both axes move only when 1 < x < W-1 and 1 < y < H-1 (MMPose would move y at x = 1)."""
    codec = HRNetHeatmap(input_size=(24, 32), heatmap_size=(W, H))
    kpts, scores = codec.decode(_peak(3, 4, right=0.5, left=0.2, down=0.6, up=0.3))
    np.testing.assert_array_equal(kpts, [[[13, 17]]])
    np.testing.assert_array_equal(scores, [[1.0]])
    kpts, _ = codec.decode(_peak(1, 4, right=0.5, down=0.5))
    np.testing.assert_array_equal(kpts, [[[4, 16]]])
    kpts, _ = codec.decode(_peak(3, 1, right=0.5, down=0.5))
    np.testing.assert_array_equal(kpts, [[[12, 4]]])


# ---------------------------------------------------------------- DARK and UDP: Taylor (Newton) refinement

# Tolerance for the sub-pixel refinements: the blob is a sampled Gaussian (sigma 2), the modulation blurs
# it with OpenCV's sampled sigma-2 kernel (11 taps), which keeps it a Gaussian (sigma^2 = 4 + 4) up to
# sampling error; the log of a Gaussian is a quadratic, on which the central differences used for the
# gradient and Hessian are exact, so one Newton step lands on the true peak. What is left is sampling and
# float32 log error: measured under 5e-4 heatmap px for peaks 5+ px from the border. 2e-3 px is 1% of the
# 0.25 px quantisation the MSRA shift leaves, so the test would fail on any wrong sign, step or axis swap.
SUBPIXEL_TOL = 2e-3

PEAKS = [(6.3, 7.6), (5.5, 8.25), (8.7, 5.2), (7.0, 9.0)]


@pytest.mark.parametrize("mx, my", PEAKS)
def test_dark_recovers_the_subpixel_peak(mx, my):
    hm = _gaussian(16, 16, mx, my)
    kpts, scores = MSRAHeatmap(input_size=(64, 48), heatmap_size=(16, 16), unbiased=True).decode(hm)
    np.testing.assert_allclose(kpts[0, 0] / [4, 3], [mx, my], rtol=0, atol=SUBPIXEL_TOL)
    assert kpts.dtype == np.float32
    assert scores[0, 0] == hm.max()  # the score is the raw maximum, not the refined one
    # the quarter shift of the plain MSRA decode is off by up to 0.25 px on the same map
    plain, _ = MSRAHeatmap(input_size=(64, 48), heatmap_size=(16, 16)).decode(hm)
    if (mx, my) == (6.3, 7.6):
        np.testing.assert_array_equal(plain[0, 0] / [4, 3], [6.25, 7.75])


def test_dark_on_an_integer_peak_moves_nothing():
    locs = refine_dark(np.array([[[7.0, 9.0]]], np.float32), _gaussian(16, 16, 7.0, 9.0))
    np.testing.assert_array_equal(locs, [[[7, 9]]])


def test_dark_skips_locations_near_the_border():
    """DARK refines only where 1 < x < W-2 and 1 < y < H-2: a peak at x = 1 (true 1.3) stays on the pixel."""
    hm = _gaussian(16, 16, 1.3, 7.6)
    kpts, _ = MSRAHeatmap(input_size=(16, 16), heatmap_size=(16, 16), unbiased=True).decode(hm)
    np.testing.assert_array_equal(kpts, [[[1, 8]]])
    hm = _gaussian(16, 16, 13.7, 7.6)  # argmax x = 14 = W - 2: not refined either
    kpts, _ = MSRAHeatmap(input_size=(16, 16), heatmap_size=(16, 16), unbiased=True).decode(hm)
    np.testing.assert_array_equal(kpts, [[[14, 8]]])


@pytest.mark.parametrize("mx, my", PEAKS)
def test_udp_recovers_the_subpixel_peak_and_scales_by_size_minus_one(mx, my):
    """UDP: refined heatmap location * input / (heatmap - 1): 60 / 15 = 4 in x, 75 / 15 = 5 in y."""
    hm = _gaussian(16, 16, mx, my)
    kpts, scores = UDPHeatmap(input_size=(60, 75), heatmap_size=(16, 16)).decode(hm)
    assert kpts.dtype == np.float64 and scores.dtype == np.float32
    np.testing.assert_allclose(kpts[0, 0] / [4, 5], [mx, my], rtol=0, atol=SUBPIXEL_TOL)
    assert scores[0, 0] == hm.max()


def test_udp_refines_next_to_the_border_too():
    """UDP's refinement pads the log map by edge replication and has no border rule, unlike DARK's: a blob
    at x = 1.3 still moves off pixel 1 (y, away from the border, is exact). Near the edge the modulation's
    zero-padded blur darkens the outer side, which pushes x inwards: 1.72 here, and a blob truly at x = 1.0
    comes out at 1.56 (MMPose's ``gaussian_blur`` pads the same way)."""
    hm = _gaussian(16, 16, 1.3, 7.6)
    locs = refine_dark_udp(np.array([[[1.0, 8.0]]], np.float32), hm)
    assert locs.dtype == np.float32
    assert 1.3 < locs[0, 0, 0] < 2.0
    assert locs[0, 0, 1] == pytest.approx(7.6, abs=SUBPIXEL_TOL)
    dark = refine_dark(np.array([[[1.0, 8.0]]], np.float32), hm)
    np.testing.assert_array_equal(dark, [[[1, 8]]])


def test_multiple_instances_and_keypoints_decode_independently():
    hm = np.concatenate([np.concatenate([_gaussian(16, 16, *PEAKS[i]), _gaussian(16, 16, *PEAKS[i + 1])], 1)
                         for i in (0, 2)], 0)  # (2, 2, 16, 16)
    kpts, scores = UDPHeatmap(input_size=(60, 75), heatmap_size=(16, 16)).decode(hm)
    assert kpts.shape == (2, 2, 2) and scores.shape == (2, 2)
    expected = np.array(PEAKS).reshape(2, 2, 2) * [4, 5]
    np.testing.assert_allclose(kpts, expected, rtol=0, atol=SUBPIXEL_TOL * 5)


@pytest.mark.parametrize("codec", [
    MSRAHeatmap((64, 64), (16, 16)), MSRAHeatmap((64, 64), (16, 16), unbiased=True),
    UDPHeatmap((64, 64), (16, 16)), HRNetHeatmap((64, 64), (16, 16)),
], ids=["msra", "dark", "udp", "hrnet"])
def test_heatmap_codecs_leave_their_input_untouched(codec):
    hm = _gaussian(16, 16, 6.3, 7.6)
    before = hm.copy()
    codec.decode(hm)
    np.testing.assert_array_equal(hm, before)


# ---------------------------------------------------------------- SimCC / SimDR: 1-D argmax / split ratio

def test_simcc_argmax_divided_by_split_ratio_score_is_the_smaller_max():
    x = np.zeros((1, 1, 12), np.float32)  # 6 px * 2 bins
    y = np.zeros((1, 1, 16), np.float32)  # 8 px * 2 bins
    x[0, 0, 7], y[0, 0, 3] = 0.9, 0.6
    kpts, scores = SimCCCodec(split_ratio=2.0).decode(x, y)
    np.testing.assert_array_equal(kpts, [[[3.5, 1.5]]])
    np.testing.assert_allclose(scores, [[0.6]])
    assert kpts.dtype == np.float32 and scores.dtype == np.float32
    kpts, _ = SimCCCodec(split_ratio=1.5).decode(x, y)
    np.testing.assert_allclose(kpts, [[[7 / 1.5, 3 / 1.5]]], rtol=1e-6)


def test_simcc_non_positive_score_puts_both_axes_at_minus_one_bin():
    """One axis' maximum <= 0 makes the score <= 0 and the location -1 bin: -1 / split_ratio px."""
    x = np.zeros((2, 1, 12), np.float32)
    y = np.zeros((2, 1, 16), np.float32)
    x[0, 0, 7], y[0, 0] = 3.0, -1.0
    x[1, 0, 2], y[1, 0, 5] = 2.0, 4.0  # unnormalised logits: scores above 1 are fine
    kpts, scores = SimCCCodec(split_ratio=2.0).decode(x, y)
    np.testing.assert_array_equal(kpts, [[[-0.5, -0.5]], [[1.0, 2.5]]])
    np.testing.assert_array_equal(scores, [[-1.0], [2.0]])


def test_simdr_softmax_then_argmax_scores_are_probabilities():
    """x logits (0, ln 3, 0, 0) -> probabilities (1, 3, 1, 1) / 6, max 1/2 at bin 1; y (ln 2, 0) ->
    (2/3, 1/3), max at bin 0. Score = min(1/2, 2/3)."""
    x = np.log(np.array([[[1.0, 3.0, 1.0, 1.0]]], np.float32))
    y = np.log(np.array([[[2.0, 1.0]]], np.float32))
    kpts, scores = SimDRCodec(split_ratio=2.0).decode(x, y)
    np.testing.assert_array_equal(kpts, [[[0.5, 0.0]]])
    np.testing.assert_allclose(scores, [[0.5]], rtol=1e-6)
    assert kpts.dtype == np.float32


def test_vector_codecs_leave_their_input_untouched():
    x = np.array([[[0.1, 0.9, 0.3]]], np.float32)
    y = np.array([[[0.2, 0.4]]], np.float32)
    bx, by = x.copy(), y.copy()
    SimCCCodec().decode(x, y)
    SimDRCodec().decode(x, y)
    np.testing.assert_array_equal(x, bx)
    np.testing.assert_array_equal(y, by)


# ---------------------------------------------------------------- regression: DeepPose and RLE

def test_deeppose_scales_by_the_input_size_score_one():
    coords = np.array([[[0.25, 0.5], [0.0, 1.0]]], np.float32)
    kpts, scores = RegressionCodec(input_size=(192, 256)).decode(coords)
    np.testing.assert_array_equal(kpts, [[[48, 128], [0, 256]]])
    np.testing.assert_array_equal(scores, [[1, 1]])
    assert kpts.dtype == np.float64 and scores.dtype == np.float32


def test_rle_score_is_the_mean_of_one_minus_sigma():
    """RLE sigmas arrive after the sigmoid (the estimator applies it): score = mean(1 - sigma)."""
    coords = np.array([[[0.25, 0.5, 0.1, 0.3], [0.5, 0.5, 0.0, 1.0]]], np.float32)
    before = coords.copy()
    kpts, scores = RegressionCodec(input_size=(192, 256)).decode(coords)
    np.testing.assert_array_equal(kpts, [[[48, 128], [96, 128]]])
    np.testing.assert_allclose(scores, [[0.8, 0.5]], rtol=1e-6)
    np.testing.assert_array_equal(coords, before)


def test_regression_rejects_other_widths():
    with pytest.raises(ValueError, match="2 or 4"):
        RegressionCodec(input_size=(192, 256)).decode(np.zeros((1, 17, 3), np.float32))


def test_score_ranges():
    assert score_range("simcc") == (float("-inf"), float("inf"))
    for codec in ("msra", "udp", "simdr", "rle"):
        assert score_range(codec) == (0.0, 1.0)


# ---------------------------------------------------------------- flip test alignment

FLIP = [0, 2, 1]  # keypoint 0 (say the nose) maps to itself, 1 and 2 (left/right) swap


def test_coco_flip_indices_swap_left_and_right():
    kset = get_keypoint_set("coco")
    flip = kset.flip_indices
    np.testing.assert_array_equal(flip[flip], np.arange(17))  # an involution
    assert flip[0] == 0  # nose
    for left in range(1, 17, 2):
        assert kset.names[left].startswith("left_") and kset.names[flip[left]] == "right_" + kset.names[left][5:]


def test_flip_heatmaps_mirrors_columns_and_swaps_channels():
    hm = torch.zeros(1, 3, 2, 6)
    hm[0, 0, 0, 2] = 1.0  # nose at column 2
    hm[0, 1, 1, 1] = 2.0  # "left" at column 1
    hm[0, 2, 0, 5] = 3.0  # "right" at column 5
    before = hm.clone()
    out = flip_heatmaps(hm, FLIP, shift=False)
    expected = torch.zeros(1, 3, 2, 6)
    expected[0, 0, 0, 3] = 1.0  # column 2 -> 6 - 1 - 2 = 3
    expected[0, 2, 1, 4] = 2.0  # left -> right channel, column 1 -> 4
    expected[0, 1, 0, 0] = 3.0  # right -> left channel, column 5 -> 0
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    torch.testing.assert_close(flip_heatmaps(out, FLIP, shift=False), hm, rtol=0, atol=0)  # an involution
    torch.testing.assert_close(hm, before, rtol=0, atol=0)


def test_flip_heatmaps_shift_moves_one_column_right_and_keeps_the_first():
    """MMPose ``shift_heatmap``: out[..., 1:] = out[..., :-1]; column 0 keeps its value."""
    hm = torch.arange(6, dtype=torch.float32).reshape(1, 1, 1, 6)  # 0 1 2 3 4 5
    out = flip_heatmaps(hm, [0], shift=True)  # mirrored 5 4 3 2 1 0, then shifted
    torch.testing.assert_close(out, torch.tensor([[[[5.0, 5, 4, 3, 2, 1]]]]), rtol=0, atol=0)
    torch.testing.assert_close(hm, torch.arange(6, dtype=torch.float32).reshape(1, 1, 1, 6), rtol=0, atol=0)


def test_flip_vectors_reverses_x_only_and_swaps_channels():
    x = torch.zeros(1, 3, 8)
    y = torch.zeros(1, 3, 4)
    x[0, 1, 2] = 1.0  # "left" at x bin 2
    y[0, 1, 3] = 1.0  # ... and y bin 3
    fx, fy = flip_vectors(x, y, FLIP)
    assert fx[0, 2].argmax().item() == 5  # right channel, bin 8 - 1 - 2
    assert fy[0, 2].argmax().item() == 3  # y not mirrored
    assert fx[0, 1].abs().sum().item() == 0 and fy[0, 0].abs().sum().item() == 0


def test_flip_coordinates_mirrors_normalised_x_and_undoes_the_pixel_offset():
    """A keypoint at crop pixel u = 2 of an 8-px-wide input shows up at pixel 8 - 1 - 2 = 5 in the mirrored
    crop, i.e. x = 5/8; flipped back: 1 - 5/8 - 1/8 = 2/8 with ``shift``, 3/8 without. Sigmas only swap."""
    coords = torch.tensor([[[0.5, 0.1, 0.2, 0.3],
                            [0.625, 0.4, 0.5, 0.6],
                            [0.0, 0.7, 0.8, 0.9]]])
    before = coords.clone()
    out = flip_coordinates(coords, FLIP, shift=True, input_width=8)
    expected = torch.tensor([[[0.375, 0.1, 0.2, 0.3],
                              [0.875, 0.7, 0.8, 0.9],  # channel 1 now holds the mirrored channel 2
                              [0.25, 0.4, 0.5, 0.6]]])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-7)
    out = flip_coordinates(coords, FLIP, shift=False, input_width=8)
    torch.testing.assert_close(out[0, 2, 0], torch.tensor(0.375), rtol=0, atol=1e-7)
    torch.testing.assert_close(coords, before, rtol=0, atol=0)
