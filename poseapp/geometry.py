"""Pure geometry for top-down crops: box -> centre/scale, aspect fix, warp matrices, and the way back.

Two conventions are implemented bit for bit, because published accuracy depends on them:

* ``mmpose``: MMPose 1.x ``GetBBoxCenterScale`` + ``TopdownAffine`` (standard or UDP warp), keypoints
  mapped back as ``kpt / input_size * scale + center - scale / 2``. ``scale`` is the padded,
  aspect-fixed box size in pixels.
* ``hrnet``: the HRNet-repo convention of sithu31296/pose-estimation: box -> (cx, cy, w, h), aspect fix,
  ``/ 200 * 1.25`` ("pixel_std" units), a 3-point warp built along the y axis, and keypoints mapped
  back with ``kpt * scale * 200 / input_w + center - scale * 200 / 2``.

All arrays are float32 as in the references; shapes are in the docstrings. :data:`WARPS` names each
convention's functions, so a caller looks its convention up once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

PIXEL_STD = 200.0


def xywh_to_xyxy(xywh: "np.ndarray | list", dtype: type = np.float64) -> np.ndarray:
    """(..., 4) COCO ``[x, y, w, h]`` -> ``[x, y, x + w, y + h]`` in ``dtype``, the one conversion: float64 for
    boxes files and saved predictions (their callers round once to float32 after checking the range), float32
    where MMPose reads detections as float32 first (``_load_detection_results``); its numbers follow both."""
    b = np.asarray(xywh, dtype)
    if b.shape[-1:] != (4,):
        raise ValueError(f"a COCO box is 4 numbers [x, y, w, h], got shape {b.shape}")
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:]], axis=-1)


# ---------------------------------------------------------------- MMPose convention

def bbox_xyxy2cs(boxes: np.ndarray, padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) xyxy boxes -> centers (N, 2) and padded sizes (N, 2), as MMPose's ``bbox_xyxy2cs``."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scale = (boxes[:, 2:] - boxes[:, :2]) * padding
    center = (boxes[:, 2:] + boxes[:, :2]) * 0.5
    return center, scale


def fix_aspect_ratio(scale: np.ndarray, aspect_ratio: float) -> np.ndarray:
    """Grow (N, 2) box sizes (w, h) to the model's ``w / h`` ratio, never shrinking either side."""
    w, h = np.hsplit(np.asarray(scale), [1])
    return np.where(w > h * aspect_ratio, np.hstack([w, w / aspect_ratio]), np.hstack([h * aspect_ratio, h]))


def crop_center_scale(boxes: np.ndarray, input_size: tuple[int, int], padding: float) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) xyxy boxes -> (centers (N, 2), scales (N, 2)) of the crops a model with ``input_size`` (w, h) sees."""
    center, scale = bbox_xyxy2cs(boxes, padding)
    return center, fix_aspect_ratio(scale, input_size[0] / input_size[1])


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return b + np.r_[-d[1], d[0]]


def warp_matrix(center: np.ndarray, scale: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """2x3 affine matrix mapping the (2,) ``center`` / (2,) ``scale`` box onto an ``output_size`` (w, h) crop.

    MMPose's ``get_warp_matrix`` with no rotation and no shift (3-point construction, float32 points).
    """
    dst_w, dst_h = output_size
    src = np.zeros((3, 2), dtype=np.float32)
    src[0] = center
    src[1] = center + np.array([scale[0] * -0.5, 0.0])
    dst = np.zeros((3, 2), dtype=np.float32)
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = np.array([dst_w * 0.5, dst_h * 0.5]) + np.array([dst_w * -0.5, 0.0])
    src[2] = _third_point(src[0], src[1])
    dst[2] = _third_point(dst[0], dst[1])
    import cv2  # on first use: the box helpers above need only numpy

    return cv2.getAffineTransform(src, dst)


def udp_warp_matrix(center: np.ndarray, scale: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """2x3 float32 UDP affine matrix (MMPose ``get_udp_warp_matrix``, no rotation): pixel centres align."""
    image_size = center * 2
    sx = (output_size[0] - 1) / scale[0]
    sy = (output_size[1] - 1) / scale[1]
    m = np.zeros((2, 3), dtype=np.float32)
    m[0, 0] = sx
    m[0, 2] = sx * (-0.5 * image_size[0] + 0.5 * scale[0])
    m[1, 1] = sy
    m[1, 2] = sy * (-0.5 * image_size[1] + 0.5 * scale[1])
    return m


def crop_to_image(keypoints: np.ndarray, center: np.ndarray, scale: np.ndarray,
                  input_size: tuple[int, int]) -> np.ndarray:
    """Map (N, K, 2) crop-pixel keypoints back to the image (MMPose ``add_pred_to_datasample``).

    ``center``/``scale`` are (N, 2). The result keeps the dtype of ``keypoints`` (float32 for
    MSRA/DARK, float64 for UDP), like MMPose's in-place assignment does.
    """
    out = keypoints.copy()
    size = np.asarray(input_size)
    out[..., :2] = keypoints[..., :2] / size * scale[:, None] + center[:, None] - 0.5 * scale[:, None]
    return out


# ---------------------------------------------------------------- HRNet-repo convention

def hrnet_center_scale(boxes: np.ndarray, input_size: tuple[int, int], padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) xyxy -> centers (N, 2) and scales (N, 2) in 200-pixel units (sithu ``box_to_center_scale``)."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    center = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    r = input_size[0] / input_size[1]
    wide = w > h * r
    h = np.where(wide, w / r, h).astype(np.float32)
    w = np.where(wide, w, h * r).astype(np.float32)
    scale = np.stack([w, h], axis=1)
    scale /= np.float32(PIXEL_STD)
    scale *= np.float32(padding)
    return center, scale


def hrnet_warp_matrix(center: np.ndarray, scale: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """2x3 affine matrix of the HRNet repo's ``get_affine_transform`` (no rotation), 200-pixel units."""
    src_w = scale[0] * PIXEL_STD
    dst_w, dst_h = output_size
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = center
    src[1] = center + np.array([0.0, src_w * -0.5])
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = np.array([dst_w * 0.5, dst_h * 0.5]) + np.array([0, dst_w * -0.5], dtype=np.float32)
    src[2] = _third_point(src[0], src[1]).astype(np.float32)
    dst[2] = _third_point(dst[0], dst[1]).astype(np.float32)
    import cv2  # on first use: the box helpers above need only numpy

    return cv2.getAffineTransform(src, dst)


def hrnet_crop_to_image(keypoints: np.ndarray, center: np.ndarray, scale: np.ndarray,
                        input_size: tuple[int, int]) -> np.ndarray:
    """Map (N, K, 2) crop-pixel keypoints back to the image (HRNet repo ``transform_preds``), float32."""
    s = (scale * np.float32(PIXEL_STD)).astype(np.float32)[:, None]  # (N, 1, 2) box size in pixels
    k = keypoints.astype(np.float32)
    out = np.empty_like(k)
    out[..., 0] = k[..., 0] * (s[..., 0] / input_size[0]) + center[:, None, 0] - s[..., 0] * 0.5
    out[..., 1] = k[..., 1] * (s[..., 1] / input_size[1]) + center[:, None, 1] - s[..., 1] * 0.5
    return out


# ---------------------------------------------------------------- shared

def warp_crop(image: np.ndarray, matrix: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """Warp ``image`` (H, W, 3) with a 2x3 ``matrix`` into an (h, w, 3) crop, bilinear, black border."""
    import cv2

    return cv2.warpAffine(image, matrix, (int(output_size[0]), int(output_size[1])), flags=cv2.INTER_LINEAR)


# ---------------------------------------------------------------- the table of conventions


@dataclass(frozen=True)
class Warp:
    """One crop convention (a recipe's ``warp``): box -> (centre, scale), the warp matrix, and the way back.

    ``pixels_per_unit`` turns its scales into pixels (1, or the HRNet repo's 200-pixel units);
    ``unit_range``: its normalisation divides the pixels by 255 first (the HRNet repo's ToTensor)."""

    center_scale: Callable[[np.ndarray, tuple[int, int], float], tuple[np.ndarray, np.ndarray]]
    matrix: Callable[[np.ndarray, np.ndarray, tuple[int, int]], np.ndarray]
    to_image: Callable[[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]], np.ndarray]
    pixels_per_unit: float = 1.0
    unit_range: bool = False


WARPS: dict[str, Warp] = {
    "mmpose": Warp(crop_center_scale, warp_matrix, crop_to_image),
    "mmpose-udp": Warp(crop_center_scale, udp_warp_matrix, crop_to_image),
    "hrnet": Warp(hrnet_center_scale, hrnet_warp_matrix, hrnet_crop_to_image, PIXEL_STD, True),
}


def warp_for(name: str) -> Warp:
    """The convention ``name`` (``mmpose``, ``mmpose-udp``, ``hrnet``); ValueError for another."""
    try:
        return WARPS[name]
    except KeyError:
        raise ValueError(f"unknown warp '{name}' (known: {', '.join(WARPS)})") from None
