"""Heatmap codecs, decoding exactly as MMPose 1.3.2 (MSRA, DARK, UDP) and the HRNet repo do.

Shapes: heatmaps (N, K, H, W) float32; keypoints (N, K, 2) in crop pixels; scores (N, K).
Locations whose maximum is <= 0 are put at heatmap location -1 before refinement, as the references do.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


# ---------------------------------------------------------------- small pure helpers

def heatmap_maximum(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax of each (H, W) map: locations (N, K, 2) float32 (x, y), -1 where max <= 0; values (N, K)."""
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n * k, h * w)
    idx = np.argmax(flat, axis=1)
    y, x = np.unravel_index(idx, (h, w))
    locs = np.stack((x, y), axis=-1).astype(np.float32)
    vals = flat[np.arange(n * k), idx]
    locs[vals <= 0.0] = -1
    return locs.reshape(n, k, 2), vals.reshape(n, k)


def _pick(maps: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """maps (M, H, W), integer ys/xs (M,) clipped into range -> values (M,)."""
    h, w = maps.shape[1:]
    return maps[np.arange(len(maps)), np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)]


def refine_quarter_offset(locs: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """MSRA refinement: move 0.25 px from the maximum towards the higher neighbour, per axis.

    MMPose's ``refine_keypoints`` bounds: x moves if ``1 < x < W-1 and 0 < y < H``; y moves if
    ``1 < y < H-1 and 0 < x < W``. Returns new (N, K, 2) float32 locations.
    """
    n, k, h, w = heatmaps.shape
    maps = heatmaps.reshape(n * k, h, w)
    xy = locs.reshape(-1, 2).astype(int)
    x, y = xy[:, 0], xy[:, 1]
    dx = _pick(maps, y, x + 1) - _pick(maps, y, x - 1)
    dy = _pick(maps, y + 1, x) - _pick(maps, y - 1, x)
    dx = np.where((1 < x) & (x < w - 1) & (0 < y) & (y < h), dx, 0)
    dy = np.where((1 < y) & (y < h - 1) & (0 < x) & (x < w), dy, 0)
    step = np.sign(np.stack([dx, dy], axis=-1)).astype(np.float32) * np.float32(0.25)
    return locs + step.reshape(n, k, 2)


def gaussian_modulate(heatmaps: np.ndarray, kernel: int = 11) -> np.ndarray:
    """DARK's modulation: blur each map with a zero border and rescale it to its original maximum.

    (N, K, H, W) float32 -> a new array of the same shape (MMPose ``gaussian_blur``).
    """
    assert kernel % 2 == 1
    border = (kernel - 1) // 2
    n, k, h, w = heatmaps.shape
    out = np.empty_like(heatmaps)
    for i in range(n):
        for j in range(k):
            origin_max = np.max(heatmaps[i, j])
            padded = np.zeros((h + 2 * border, w + 2 * border), dtype=np.float32)
            padded[border:-border, border:-border] = heatmaps[i, j]
            blurred = cv2.GaussianBlur(padded, (kernel, kernel), 0)[border:-border, border:-border]
            out[i, j] = blurred * (origin_max / np.max(blurred))
    return out


def refine_dark(locs: np.ndarray, heatmaps: np.ndarray, kernel: int = 11) -> np.ndarray:
    """DARK (distribution-aware) refinement: one Newton step on the log of the modulated heatmap.

    Applied where ``1 < x < W-2 and 1 < y < H-2`` and the Hessian is invertible. Returns new locations.
    """
    n, k, h, w = heatmaps.shape
    logs = np.log(np.maximum(gaussian_modulate(heatmaps, kernel), 1e-10)).reshape(n * k, h, w)
    out = locs.reshape(-1, 2).copy()
    xy = out.astype(int)
    ok = (1 < xy[:, 0]) & (xy[:, 0] < w - 2) & (1 < xy[:, 1]) & (xy[:, 1] < h - 2)
    m, (x, y) = np.nonzero(ok)[0], xy[ok].T
    hm = logs[m]
    at = lambda dy, dx: hm[np.arange(len(m)), y + dy, x + dx]  # noqa: E731
    dx = 0.5 * (at(0, 1) - at(0, -1))
    dy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = 0.25 * (at(0, 2) - 2 * at(0, 0) + at(0, -2))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    dyy = 0.25 * (at(2, 0) - 2 * at(0, 0) + at(-2, 0))
    invertible = dxx * dyy - dxy**2 != 0
    hessian = np.stack([np.stack([dxx, dxy], -1), np.stack([dxy, dyy], -1)], -2)[invertible]
    derivative = np.stack([dx, dy], -1)[invertible][..., None]
    offset = (-np.linalg.inv(hessian) @ derivative)[..., 0]
    out[m[invertible]] += offset
    return out.reshape(n, k, 2)


def refine_dark_udp(locs: np.ndarray, heatmaps: np.ndarray, kernel: int = 11) -> np.ndarray:
    """UDP's DARK refinement (MMPose ``refine_keypoints_dark_udp``): edge-padded log map, one Newton step.

    Returns new (N, K, 2) float32 locations.
    """
    n, k, h, w = heatmaps.shape
    logs = np.log(np.clip(gaussian_modulate(heatmaps, kernel), 1e-3, 50.0))
    padded = np.pad(logs.reshape(n * k, h, w), ((0, 0), (1, 1), (1, 1)), mode="edge").ravel()
    flat = locs.reshape(-1, 2)
    index = (flat[:, 0] + 1 + (flat[:, 1] + 1) * (w + 2)).astype(np.int64)
    index = (index + (w + 2) * (h + 2) * np.arange(n * k)).reshape(-1, 1)
    i_ = padded[index]
    ix1, ix1_ = padded[index + 1], padded[index - 1]
    iy1, iy1_ = padded[index + w + 2], padded[index - 2 - w]
    ix1y1, ix1_y1_ = padded[index + w + 3], padded[index - w - 3]
    derivative = np.concatenate([0.5 * (ix1 - ix1_), 0.5 * (iy1 - iy1_)], axis=1).reshape(-1, 2, 1)
    dxx = ix1 - 2 * i_ + ix1_
    dyy = iy1 - 2 * i_ + iy1_
    dxy = 0.5 * (ix1y1 - ix1 - iy1 + i_ + i_ - ix1_ - iy1_ + ix1_y1_)
    hessian = np.concatenate([dxx, dxy, dxy, dyy], axis=1).reshape(-1, 2, 2)
    hessian = np.linalg.inv(hessian + np.finfo(np.float32).eps * np.eye(2))
    offset = np.einsum("imn,ink->imk", hessian, derivative)[..., 0]
    return (flat - offset).astype(np.float32).reshape(n, k, 2)


# ---------------------------------------------------------------- codecs

@dataclass(frozen=True)
class MSRAHeatmap:
    """MMPose ``MSRAHeatmap``: argmax + quarter-pixel shift, or DARK when ``unbiased``."""

    input_size: tuple[int, int]  # (w, h)
    heatmap_size: tuple[int, int]  # (W, H)
    unbiased: bool = False
    blur_kernel_size: int = 11

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, K, H, W) -> keypoints (N, K, 2) float32 crop pixels, scores (N, K) float32."""
        locs, scores = heatmap_maximum(heatmaps)
        if self.unbiased:
            locs = refine_dark(locs, heatmaps, self.blur_kernel_size)
        else:
            locs = refine_quarter_offset(locs, heatmaps)
        scale = (np.array(self.input_size) / self.heatmap_size).astype(np.float32)
        return locs * scale, scores


@dataclass(frozen=True)
class UDPHeatmap:
    """MMPose ``UDPHeatmap`` (gaussian): argmax + UDP DARK refinement, scaled by ``input / (heatmap - 1)``."""

    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    blur_kernel_size: int = 11

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, K, H, W) -> keypoints (N, K, 2) float64 crop pixels, scores (N, K) float32."""
        locs, scores = heatmap_maximum(heatmaps)
        locs = refine_dark_udp(locs, heatmaps, self.blur_kernel_size)
        w, h = self.heatmap_size
        return locs / [w - 1, h - 1] * np.asarray(self.input_size), scores


@dataclass(frozen=True)
class HRNetHeatmap:
    """The HRNet repo's ``get_final_preds`` (sithu31296/pose-estimation): argmax + quarter-pixel shift.

    Unlike MMPose, both axes move only when ``1 < x < W-1 and 1 < y < H-1``.
    """

    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, K, H, W) -> keypoints (N, K, 2) float32 crop pixels, scores (N, K) float32."""
        n, k, h, w = heatmaps.shape
        locs, scores = heatmap_maximum(heatmaps)
        maps = heatmaps.reshape(n * k, h, w)
        xy = np.floor(locs.reshape(-1, 2) + 0.5).astype(int)
        x, y = xy[:, 0], xy[:, 1]
        diff = np.stack([_pick(maps, y, x + 1) - _pick(maps, y, x - 1),
                         _pick(maps, y + 1, x) - _pick(maps, y - 1, x)], axis=-1)
        inside = ((1 < x) & (x < w - 1) & (1 < y) & (y < h - 1))[:, None]
        step = np.where(inside, np.sign(diff) * np.float32(0.25), np.float32(0)).astype(np.float32)
        locs = locs + step.reshape(n, k, 2)
        scale = (np.array(self.input_size) / self.heatmap_size).astype(np.float32)
        return locs * scale, scores
