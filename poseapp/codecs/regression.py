"""Regression codecs (MMPose ``RegressionLabel``): normalised crop coordinates -> crop pixels.

DeepPose heads predict (x, y) in [0, 1] of the model input; RLE heads add one sigma per axis (after the
sigmoid), and the keypoint score is the mean of (1 - sigma), as MMPose scores them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RegressionCodec:
    """DeepPose (``D = 2``) and RLE (``D = 4``: x, y, sigma_x, sigma_y) decoding.

    Args:
        input_size: (w, h) of the model input.
    """

    input_size: tuple[int, int]

    def decode(self, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, K, D) normalised coordinates -> keypoints (N, K, 2) float64 crop pixels, scores (N, K) float32.

        The keypoints come out in float64 because MMPose multiplies by an integer array; keeping that
        makes the mapping back to the image identical to its.
        """
        n, k, d = coords.shape
        if d == 2:
            scores = np.ones((n, k), np.float32)
        elif d == 4:
            scores = (1 - coords[..., 2:4]).mean(axis=-1)
        else:
            raise ValueError(f"regression output must have 2 or 4 values per keypoint, got {d}")
        return coords[..., :2] * np.array(self.input_size), scores
