"""Flip test: bring the outputs for a mirrored crop back in line with the original's (MMPose ``tta.py``).

Pure functions on torch tensors (they run on the network's device). ``flip_indices[k]`` is the keypoint
that k becomes in a mirror image (left <-> right).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch


def flip_heatmaps(heatmaps: torch.Tensor, flip_indices: Sequence[int] | torch.Tensor,
                  shift: bool) -> torch.Tensor:
    """(N, K, H, W) -> mirrored back, channels swapped; ``shift`` moves them one pixel right (MMPose
    ``shift_heatmap``, compensating the flip's half-pixel offset for non-UDP heatmaps)."""
    out = heatmaps.flip(-1)[:, flip_indices]
    if shift:
        out[..., 1:] = out[..., :-1].clone()
    return out


def flip_vectors(simcc_x: torch.Tensor, simcc_y: torch.Tensor,
                 flip_indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCC (N, K, Wx), (N, K, Wy): x reversed, channels swapped in both."""
    return simcc_x[:, flip_indices].flip(-1), simcc_y[:, flip_indices]


def flip_coordinates(coords: torch.Tensor, flip_indices: Sequence[int] | torch.Tensor, shift: bool,
                     input_width: int) -> torch.Tensor:
    """Normalised (N, K, D) regression outputs: x -> 1 - x (minus one input pixel if ``shift``), channels
    swapped. Other columns (RLE sigmas) are only swapped."""
    out = coords.clone()
    out[..., 0] = 1.0 - out[..., 0]
    if shift:
        out[..., 0] -= 1.0 / input_width
    return out[:, flip_indices]


def flip_back_for(outputs: str, flip_indices: Sequence[int] | torch.Tensor, *, shift_heatmap: bool,
                  shift_coords: bool, input_width: int) -> Callable[[tuple], tuple]:
    """The function that aligns a mirrored crop's outputs with the original's, for a codec that decodes
    ``outputs`` (``codecs.table``: heatmaps, vectors or coordinates); chosen once per estimator."""
    from poseapp.codecs.table import COORDINATES, HEATMAPS, VECTORS

    if outputs == HEATMAPS:
        return lambda out: (flip_heatmaps(out[0], flip_indices, shift_heatmap),)
    if outputs == VECTORS:
        return lambda out: flip_vectors(out[0], out[1], flip_indices)
    if outputs == COORDINATES:
        return lambda out: (flip_coordinates(out[0], flip_indices, shift_coords, input_width),)
    raise ValueError(f"no flip-back for outputs '{outputs}'")
