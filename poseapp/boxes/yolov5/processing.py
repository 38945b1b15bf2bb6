"""Before and after the YOLOv5 network, as the seed (sithu31296/pose-estimation ``infer.py``) does it: the
letterbox, non-maximum suppression, and the boxes back in image pixels. Pure functions."""
from __future__ import annotations

import numpy as np
import torch

PAD_VALUE = 114
MAX_WH = 4096  # class offset of the boxes, so one NMS call keeps classes apart
MAX_NMS, MAX_DET = 30000, 300


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` scaled to fit ``size`` x ``size`` (bilinear, aspect kept), then padded with grey 114 to the
    next multiple of 32 on each side (half the padding before, half after): the seed's ``letterbox``."""
    import cv2

    h, w = image.shape[:2]
    r = min(size / h, size / w)
    nh, nw = round(h * r), round(w * r)
    ph, pw = np.mod(size - nh, 32) / 2, np.mod(size - nw, 32) / 2
    if (h, w) != (nh, nw):
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(ph - 0.1), round(ph + 0.1)
    left, right = round(pw - 0.1), round(pw + 0.1)
    return cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)


def to_tensor(letterboxed: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(letterboxed.transpose(2, 0, 1))).float()[None] / 255.0


def non_max_suppression(rows: torch.Tensor, conf: float, iou: float,
                        classes: tuple[int, ...] | None = None) -> torch.Tensor:
    """(N, nc + 5) decoded rows of one image -> (M, 6) x1, y1, x2, y2, score, class, best first.

    As the seed's ``non_max_suppression``: candidates with objectness over ``conf``; score = objectness x
    class score, the best class per row; over ``conf`` again; ``classes`` kept; at most 30000 by score;
    torchvision NMS at ``iou`` with boxes offset by class x 4096 (classes never suppress each other); at
    most 300."""
    from torchvision import ops

    x = rows[rows[:, 4] > conf].clone()
    x[:, 5:] *= x[:, 4:5]
    box = torch.empty_like(x[:, :4])
    box[:, 0], box[:, 1] = x[:, 0] - x[:, 2] / 2, x[:, 1] - x[:, 3] / 2
    box[:, 2], box[:, 3] = x[:, 0] + x[:, 2] / 2, x[:, 1] + x[:, 3] / 2
    score, label = x[:, 5:].max(1, keepdim=True)
    x = torch.cat([box, score, label.float()], 1)[score.view(-1) > conf]
    if classes is not None:
        x = x[(x[:, 5:6] == torch.tensor(classes, device=x.device, dtype=x.dtype)).any(1)]
    if len(x) > MAX_NMS:
        x = x[x[:, 4].argsort(descending=True)[:MAX_NMS]]
    keep = ops.nms(x[:, :4] + x[:, 5:6] * MAX_WH, x[:, 4], iou)[:MAX_DET]
    return x[keep]


def to_image(boxes: torch.Tensor, image_shape: tuple[int, int], input_shape: tuple[int, int]) -> torch.Tensor:
    """(M, 4) xyxy boxes in the letterboxed input -> in the image (the padding removed, the scale undone,
    clipped to it), as the seed's ``scale_boxes`` computes them before it rounds them."""
    h, w = image_shape
    nh, nw = input_shape
    gain = min(nh / h, nw / w)
    pad_y, pad_x = (nh - h * gain) / 2, (nw - w * gain) / 2
    out = boxes.clone()
    out[:, ::2] -= pad_x
    out[:, 1::2] -= pad_y
    out /= gain
    out[:, ::2].clamp_(0, w)
    out[:, 1::2].clamp_(0, h)
    return out
