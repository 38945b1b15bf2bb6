"""Drawing keypoints and skeletons on an image: a pure function, OpenCV only.

The drawer walks the keypoint set's tables (links with their colours, keypoints with theirs); it never
guesses a layout from the number of keypoints. Table colours are RGB; images are BGR.
"""
from __future__ import annotations

import numpy as np

from poseapp.results import Poses

BOX_COLOR = (0, 255, 0)  # BGR
UNTRACKED_COLOR = (160, 160, 160)  # BGR: an instance with no confirmed track yet, drawn by track
DENSE_SET = 50  # keypoints; sets at least this large get half the default radius
COLOR_BY = ("keypoint", "track")


def track_color(track_id: int) -> tuple[int, int, int]:
    """A BGR colour of its own for each track ID (hues a golden angle apart, so neighbours differ)."""
    import colorsys

    if track_id < 0:
        return UNTRACKED_COLOR
    r, g, b = colorsys.hsv_to_rgb((track_id * 0.618034) % 1.0, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def default_radius(height: int, width: int, num_keypoints: int) -> int:
    """Keypoint radius in pixels for an image of this size (halved for dense sets such as faces)."""
    radius = max(1, round(min(height, width) / 200))
    return max(1, radius // 2) if num_keypoints >= DENSE_SET else radius


def default_thickness(height: int, width: int) -> int:
    """Link and box line thickness in pixels for an image of this size."""
    return max(1, round(min(height, width) / 300))


def _bgr(rgb: np.ndarray) -> tuple[int, int, int]:
    return int(rgb[2]), int(rgb[1]), int(rgb[0])


def drawable_mask(keypoints: np.ndarray, scores: np.ndarray, height: int, width: int, kpt_thr: float) -> np.ndarray:
    """(N, K) bool, which keypoints are drawn: score >= kpt_thr, finite, and inside the (height, width) image
    (not the annotation visibility of ``evaluation.keypoint_metrics.visible_mask``).

    Args:
        keypoints: (N, K, 2) x, y image pixels.
        scores: (N, K) confidences.
    """
    x, y = keypoints[..., 0], keypoints[..., 1]
    finite = np.isfinite(x) & np.isfinite(y) & np.isfinite(scores)
    with np.errstate(invalid="ignore"):
        inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        return finite & inside & (scores >= kpt_thr)


def _check(image: np.ndarray, poses: Poses) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"draw needs an (H, W, 3) uint8 BGR image, got {image.shape} {image.dtype}")
    k = poses.keypoint_set.num_keypoints
    if len(poses) and poses.keypoints.shape[1:] != (k, 2):
        raise ValueError(f"poses have keypoints {poses.keypoints.shape} but keypoint set "
                         f"'{poses.keypoint_set.name}' has {k}")


def draw(image: np.ndarray, poses: Poses, *, kpt_thr: float = 0.3, radius: int | None = None,
         thickness: int | None = None, draw_bbox: bool = False, color_by: str | None = None) -> np.ndarray:
    """Draw the poses on a copy of ``image``.

    Args:
        image: (H, W, 3) uint8 BGR; not modified.
        poses: N instances of K keypoints following ``poses.keypoint_set``.
        kpt_thr: keypoints scoring below it are not drawn, nor links touching them.
        radius: keypoint radius in pixels (default from the image size, see :func:`default_radius`).
        thickness: link and box thickness in pixels (default from the image size).
        draw_bbox: also draw each instance's box and box score.
        color_by: ``keypoint`` (the keypoint set's colours) or ``track`` (one colour per track ID, the ID
            written by the box); None: ``track`` when the poses carry track IDs.

    Returns:
        A new (H, W, 3) uint8 BGR image.
    """
    import cv2

    _check(image, poses)
    out = image.copy()
    h, w = out.shape[:2]
    kset = poses.keypoint_set
    radius = default_radius(h, w, kset.num_keypoints) if radius is None else radius
    thickness = default_thickness(h, w) if thickness is None else thickness
    if color_by is None:
        color_by = "track" if poses.track_ids is not None else "keypoint"
    if color_by not in COLOR_BY:
        raise ValueError(f"color_by must be one of {', '.join(COLOR_BY)} (got {color_by!r})")
    if color_by == "track" and poses.track_ids is None:
        raise ValueError("color_by='track' needs poses with track IDs (a run with tracking on)")
    if len(poses) == 0:
        return out
    visible = drawable_mask(poses.keypoints, poses.scores, h, w, kpt_thr)
    points = np.zeros(poses.keypoints.shape, np.int64)
    points[visible] = np.round(poses.keypoints[visible]).astype(np.int64)
    for i in range(len(poses)):
        track = -1 if poses.track_ids is None else int(poses.track_ids[i])
        own = track_color(track) if color_by == "track" else None
        label = [f"#{track}"] if track >= 0 else []
        if draw_bbox:
            label.append(f"{float(poses.box_scores[i]):.2f}")
        if label:
            _draw_box(out, poses.boxes[i], " ".join(label), thickness, own or BOX_COLOR, outline=draw_bbox)
        for (a, b), color in zip(kset.skeleton, kset.link_colors):
            if visible[i, a] and visible[i, b]:
                cv2.line(out, tuple(points[i, a].tolist()), tuple(points[i, b].tolist()), own or _bgr(color),
                         thickness, cv2.LINE_AA)
        for k in np.flatnonzero(visible[i]):
            cv2.circle(out, tuple(points[i, k].tolist()), radius, own or _bgr(kset.keypoint_colors[k]), -1,
                       cv2.LINE_AA)
    return out


def _draw_box(out: np.ndarray, box: np.ndarray, label: str, thickness: int, color: tuple[int, int, int], *,
              outline: bool = True) -> None:
    """Draw one xyxy box (``outline``) and its label (the track ID, the box score) in place on ``out`` (the copy
    draw() owns)."""
    import cv2

    if not np.all(np.isfinite(box)):
        return
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    if outline:
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
    scale = max(0.4, min(out.shape[:2]) / 1000)
    cv2.putText(out, label, (x1, max(y1 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, scale, color,
                max(1, thickness // 2), cv2.LINE_AA)
