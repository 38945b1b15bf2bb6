"""Top-down estimation: boxes -> crops -> network -> codec -> image-space keypoints. No I/O.

The estimator takes lists of images and their boxes, so crops of many frames can share a forward pass.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from poseapp import geometry
from poseapp.codecs import HRNetHeatmap, MSRAHeatmap, UDPHeatmap
from poseapp.keypoints import KeypointSet, get_keypoint_set
from poseapp.zoo import Recipe

log = logging.getLogger(__name__)


def build_codec(recipe: Recipe) -> MSRAHeatmap | UDPHeatmap | HRNetHeatmap:
    """The decoder a recipe names."""
    size, hm = recipe.input_size, recipe.heatmap_size
    if recipe.codec == "msra":
        return MSRAHeatmap(size, hm)
    if recipe.codec == "dark":
        return MSRAHeatmap(size, hm, unbiased=True)
    if recipe.codec == "udp":
        return UDPHeatmap(size, hm)
    if recipe.codec == "hrnet":
        return HRNetHeatmap(size, hm)
    raise ValueError(f"recipe {recipe.name}: unknown codec '{recipe.codec}'")


def output_keypoint_set(recipe: Recipe) -> KeypointSet:
    """The keypoint layout of the decoded output (a DeepFashion2 model keeps only its category's range)."""
    full = get_keypoint_set(recipe.keypoint_set)
    if recipe.keypoint_range is None:
        return full
    start, stop = recipe.keypoint_range
    return full.subset(start, stop, name=f"{full.name}/{recipe.category}")


@dataclass(frozen=True)
class Crops:
    """Crops cut from one or more images.

    Attributes:
        pixels: (M, h, w, 3) uint8 BGR crops.
        centers: (M, 2) float32 crop centres in image pixels.
        scales: (M, 2) float32 crop sizes (pixels for MMPose warps, 200-pixel units for the HRNet repo's).
    """

    pixels: np.ndarray
    centers: np.ndarray
    scales: np.ndarray


def make_crops(images: Sequence[np.ndarray], boxes: Sequence[np.ndarray], recipe: Recipe) -> Crops:
    """Cut the model-input crops for every (N_i, 4) xyxy box of every image, in order."""
    size = recipe.input_size
    w, h = size
    pixels, centers, scales = [], [], []
    for image, b in zip(images, boxes):
        b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
        if recipe.warp == "hrnet":
            c, s = geometry.hrnet_center_scale(b, size, recipe.bbox_padding)
            matrices = [geometry.hrnet_warp_matrix(ci, si, size) for ci, si in zip(c, s)]
        else:
            c, s = geometry.crop_center_scale(b, size, recipe.bbox_padding)
            warp = geometry.udp_warp_matrix if recipe.warp == "mmpose-udp" else geometry.warp_matrix
            matrices = [warp(ci, si, size) for ci, si in zip(c, s)]
        pixels += [geometry.warp_crop(image, m, size) for m in matrices]
        centers.append(c)
        scales.append(s)
    if not pixels:
        empty = np.zeros((0, 2), np.float32)
        return Crops(np.zeros((0, h, w, 3), np.uint8), empty, empty)
    return Crops(np.stack(pixels), np.concatenate(centers), np.concatenate(scales))


class TopDownEstimator:
    """A pose network with its recipe: ``estimator(images, boxes)`` -> keypoints per image.

    Args:
        model: network mapping normalised (B, 3, h, w) float tensors to (B, K, H, W) heatmaps.
        recipe: how to crop, normalise, flip and decode.
        device: torch device string (``cpu``, ``cuda``, ``cuda:1``).
        half: run the network in float16 (CUDA only).
        batch_size: crops per forward pass.
        flip_test: override the recipe's flip test (None keeps the recipe's).
    """

    def __init__(self, model, recipe: Recipe, *, device: str = "cpu", half: bool = False,
                 batch_size: int = 32, flip_test: bool | None = None) -> None:
        import torch

        self.recipe = recipe
        self.device = torch.device(device)
        self.half = bool(half)
        self.batch_size = max(1, int(batch_size))
        self.flip_test = recipe.flip_test if flip_test is None else bool(flip_test)
        self.codec = build_codec(recipe)
        self.keypoint_set = output_keypoint_set(recipe)
        self._full_set = get_keypoint_set(recipe.keypoint_set)
        if self._full_set.num_keypoints != recipe.num_keypoints:
            raise ValueError(f"recipe {recipe.name}: {recipe.num_keypoints} channels but keypoint set "
                             f"{recipe.keypoint_set} has {self._full_set.num_keypoints}")
        self.model = model.to(self.device).eval()
        if self.half:
            self.model = self.model.half()
        if recipe.warp == "hrnet":  # ToTensor (/255) then Normalize with 0-1 mean/std
            mean = np.array(recipe.mean) / 255.0
            std = np.array(recipe.std) / 255.0
        else:
            mean, std = np.array(recipe.mean), np.array(recipe.std)
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._flip_index = torch.as_tensor(self._full_set.flip_indices, device=self.device)

    # -------------------------------------------------------------- network side

    def _normalise(self, crops: np.ndarray):
        """(B, h, w, 3) uint8 BGR -> (B, 3, h, w) float tensor, exactly as the reference pre-processors."""
        import torch

        x = torch.from_numpy(crops).to(self.device).permute(0, 3, 1, 2)
        x = x[:, [2, 1, 0]].float()  # BGR -> RGB
        if self.recipe.warp == "hrnet":
            x = x.div(255)
        x = (x - self._mean) / self._std
        return x.half() if self.half else x

    def _flip_back(self, heatmaps):
        """Heatmaps of the mirrored crop -> aligned with the original (MMPose ``flip_heatmaps``)."""
        heatmaps = heatmaps.flip(-1)[:, self._flip_index]
        if self.recipe.shift_heatmap:
            heatmaps[..., 1:] = heatmaps[..., :-1].clone()
        return heatmaps

    def forward(self, crops: np.ndarray) -> np.ndarray:
        """(M, h, w, 3) uint8 crops -> (M, K, H, W) float32 heatmaps (flip test applied), in chunks."""
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(crops), self.batch_size):
                x = self._normalise(crops[i:i + self.batch_size])
                heatmaps = self.model(x).float()
                if self.flip_test:
                    heatmaps = (heatmaps + self._flip_back(self.model(x.flip(-1)).float())) * 0.5
                out.append(heatmaps.cpu().numpy())
        if not out:
            k = self.recipe.num_keypoints
            w, h = self.recipe.heatmap_size
            return np.zeros((0, k, h, w), np.float32)
        return np.concatenate(out)

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(M, K_all, H, W) heatmaps -> keypoints (M, K, 2) in crop pixels, scores (M, K), for the output set."""
        if self.recipe.keypoint_range is not None:
            start, stop = self.recipe.keypoint_range
            heatmaps = heatmaps[:, start:stop]
        return self.codec.decode(heatmaps)

    # -------------------------------------------------------------- public

    def __call__(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Keypoints for every box of every image.

        Args:
            images: BGR uint8 images (H, W, 3).
            boxes: per image, (N_i, 4) xyxy boxes in that image's pixels.

        Returns:
            per image, (keypoints (N_i, K, 2) image pixels, scores (N_i, K)).
        """
        crops = make_crops(images, boxes, self.recipe)
        keypoints, scores = self.decode(self.forward(crops.pixels))
        if self.recipe.warp == "hrnet":
            keypoints = geometry.hrnet_crop_to_image(keypoints, crops.centers, crops.scales, self.recipe.input_size)
        else:
            keypoints = geometry.crop_to_image(keypoints, crops.centers, crops.scales, self.recipe.input_size)
        counts = [len(np.asarray(b).reshape(-1, 4)) for b in boxes]
        splits = np.cumsum(counts)[:-1]
        return list(zip(np.split(keypoints, splits), np.split(scores, splits)))
