"""SimCC codecs: one classification vector per axis -> crop pixels.

``SimCCCodec`` is MMPose's ``SimCCLabel`` decode (SimCC heads and RTMPose): argmax of each vector,
score = the smaller of the two maxima (a location whose score is <= 0 becomes -1), divided by the split
ratio (bins per pixel). ``SimDRCodec`` is sithu31296/pose-estimation's ``get_simdr_final_preds``: a
softmax first, so its scores are probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def simcc_maximum(simcc_x: np.ndarray, simcc_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, Wx), (N, K, Wy) -> locations (N, K, 2) float32 in bins, values (N, K).

    The value is min(max_x, max_y); locations whose value is <= 0 are set to -1 (MMPose
    ``get_simcc_maximum``).
    """
    locs = np.stack([simcc_x.argmax(-1), simcc_y.argmax(-1)], axis=-1).astype(np.float32)
    vals = np.minimum(simcc_x.max(-1), simcc_y.max(-1))
    locs[vals <= 0] = -1
    return locs, vals


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in the input's dtype."""
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@dataclass(frozen=True)
class SimCCCodec:
    """MMPose ``SimCCLabel`` decoding (no DARK refinement: none of the zoo's configs uses it).

    Args:
        split_ratio: bins per input pixel (vector lengths are w * ratio and h * ratio).
    """

    split_ratio: float = 2.0

    def decode(self, simcc_x: np.ndarray, simcc_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, K, Wx), (N, K, Wy) logits -> keypoints (N, K, 2) float32 crop pixels, scores (N, K)."""
        locs, vals = simcc_maximum(simcc_x, simcc_y)
        return locs / self.split_ratio, vals


@dataclass(frozen=True)
class SimDRCodec:
    """sithu31296/pose-estimation's SimDR decoding: softmax per axis, argmax, / split ratio.

    The repo returns no scores; ours are min(max prob x, max prob y), in [0, 1].
    """

    split_ratio: float = 2.0

    def decode(self, simdr_x: np.ndarray, simdr_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, K, Wx), (N, K, Wy) logits -> keypoints (N, K, 2) float32 crop pixels, scores (N, K)."""
        px, py = softmax(simdr_x), softmax(simdr_y)
        locs = np.stack([px.argmax(-1), py.argmax(-1)], axis=-1).astype(np.float32)
        return locs / np.float32(self.split_ratio), np.minimum(px.max(-1), py.max(-1))
