"""Top-down estimation: boxes -> crops -> network -> codec -> image-space keypoints. No I/O.

The estimator takes lists of images and their boxes, so crops of many frames can share a forward pass.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from poseapp import geometry
from poseapp.codecs import HRNetHeatmap, MSRAHeatmap, RegressionCodec, SimCCCodec, SimDRCodec, UDPHeatmap
from poseapp.codecs.flip import flip_coordinates, flip_heatmaps, flip_vectors
from poseapp.keypoints import KeypointSet, get_keypoint_set
from poseapp.zoo import Recipe

log = logging.getLogger(__name__)

Codec = MSRAHeatmap | UDPHeatmap | HRNetHeatmap | RegressionCodec | SimCCCodec | SimDRCodec
RawOutputs = tuple[np.ndarray, ...]  # (heatmaps,), (coords,) or (simcc_x, simcc_y): one array per output

HEATMAP_CODECS = ("msra", "dark", "udp", "hrnet")
VECTOR_CODECS = ("simcc", "simdr")
COORDINATE_CODECS = ("regression", "rle")


def as_outputs(out) -> tuple:
    """A network's output as a tuple: a tensor (heatmaps, coordinates) becomes a 1-tuple, SimCC's (x, y)
    pair stays a pair."""
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def build_codec(recipe: Recipe) -> Codec:
    """The decoder a recipe names."""
    size, hm = recipe.input_size, recipe.heatmap_size
    blur = int(recipe.codec_params.get("blur_kernel_size", 11))  # DARK and UDP refinement
    if recipe.codec in HEATMAP_CODECS and hm is None:
        raise ValueError(f"recipe {recipe.name}: codec '{recipe.codec}' needs a heatmap_size")
    if recipe.codec == "msra":
        return MSRAHeatmap(size, hm)
    if recipe.codec == "dark":
        return MSRAHeatmap(size, hm, unbiased=True, blur_kernel_size=blur)
    if recipe.codec == "udp":
        return UDPHeatmap(size, hm, blur_kernel_size=blur)
    if recipe.codec == "hrnet":
        return HRNetHeatmap(size, hm)
    if recipe.codec in COORDINATE_CODECS:
        return RegressionCodec(size)
    if recipe.codec == "simcc":
        return SimCCCodec(recipe.simcc_split_ratio)
    if recipe.codec == "simdr":
        return SimDRCodec(recipe.simcc_split_ratio)
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


def crop_center_scale(boxes: np.ndarray, recipe: Recipe) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) xyxy boxes -> the (centers, scales) of the crops the recipe's model sees (``Crops`` units)."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if recipe.warp == "hrnet":
        return geometry.hrnet_center_scale(b, recipe.input_size, recipe.bbox_padding)
    return geometry.crop_center_scale(b, recipe.input_size, recipe.bbox_padding)


def crop_areas(boxes: np.ndarray, recipe: Recipe) -> np.ndarray:
    """(N,) areas in pixels of those crops: the padded, aspect-fixed box (MMPose's OKS-NMS ``area``)."""
    _, scales = crop_center_scale(boxes, recipe)
    if recipe.warp == "hrnet":
        scales = scales * geometry.PIXEL_STD
    return np.prod(scales, axis=1)


def make_crops(images: Sequence[np.ndarray], boxes: Sequence[np.ndarray], recipe: Recipe) -> Crops:
    """Cut the model-input crops for every (N_i, 4) xyxy box of every image, in order."""
    size = recipe.input_size
    w, h = size
    if recipe.warp == "hrnet":
        warp = geometry.hrnet_warp_matrix
    else:
        warp = geometry.udp_warp_matrix if recipe.warp == "mmpose-udp" else geometry.warp_matrix
    pixels, centers, scales = [], [], []
    for image, b in zip(images, boxes):
        c, s = crop_center_scale(b, recipe)
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
        model: network mapping normalised (B, 3, h, w) float tensors to its raw output: (B, K, H, W)
            heatmaps, (B, K, D) regression coordinates, or a (x, y) pair of SimCC vectors.
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

    def _run(self, x) -> tuple:
        """The network on a normalised batch, as an activated float32 tuple (see ``_activate``)."""
        return self._activate(tuple(t.float() for t in as_outputs(self.model(x))))

    def _activate(self, outputs: tuple) -> tuple:
        """Raw head outputs -> what the flip average and codec take: RLE sigma logits pass through the
        sigmoid (MMPose ``RLEHead.predict`` does so before the flip average); others are unchanged."""
        if self.recipe.codec != "rle":
            return outputs
        coords = outputs[0].clone()
        coords[..., 2:] = coords[..., 2:].sigmoid()
        return (coords,)

    def _flip_back(self, outputs: tuple) -> tuple:
        """Outputs for the mirrored crop -> aligned with the original's, for the recipe's output kind."""
        codec = self.recipe.codec
        if codec in HEATMAP_CODECS:
            return (flip_heatmaps(outputs[0], self._flip_index, self.recipe.shift_heatmap),)
        if codec in VECTOR_CODECS:
            return flip_vectors(outputs[0], outputs[1], self._flip_index)
        return (flip_coordinates(outputs[0], self._flip_index, self.recipe.shift_coords, self.recipe.input_size[0]),)

    def forward(self, crops: np.ndarray) -> RawOutputs:
        """(M, h, w, 3) uint8 crops -> the raw outputs for all of them (flip test applied), in chunks.

        Returns one float32 array per network output: (heatmaps,), (coordinates,) or (simcc_x, simcc_y).
        """
        import torch

        chunks = []
        with torch.inference_mode():
            for i in range(0, len(crops), self.batch_size):
                x = self._normalise(crops[i:i + self.batch_size])
                out = self._run(x)
                if self.flip_test:
                    flipped = self._flip_back(self._run(x.flip(-1)))
                    out = tuple((a + b) * 0.5 for a, b in zip(out, flipped))
                chunks.append(tuple(t.cpu().numpy() for t in out))
        return tuple(np.concatenate(parts) for parts in zip(*chunks))

    def decode(self, outputs: RawOutputs) -> tuple[np.ndarray, np.ndarray]:
        """Raw outputs of M crops -> keypoints (M, K, 2) in crop pixels, scores (M, K), for the output set."""
        if self.recipe.keypoint_range is not None:
            start, stop = self.recipe.keypoint_range
            outputs = tuple(a[:, start:stop] for a in outputs)
        return self.codec.decode(*outputs)

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
        counts = [len(np.asarray(b).reshape(-1, 4)) for b in boxes]
        if not len(crops.pixels):
            k = self.keypoint_set.num_keypoints
            return [(np.zeros((0, k, 2), np.float32), np.zeros((0, k), np.float32)) for _ in counts]
        keypoints, scores = self.decode(self.forward(crops.pixels))
        if self.recipe.warp == "hrnet":
            keypoints = geometry.hrnet_crop_to_image(keypoints, crops.centers, crops.scales, self.recipe.input_size)
        else:
            keypoints = geometry.crop_to_image(keypoints, crops.centers, crops.scales, self.recipe.input_size)
        splits = np.cumsum(counts)[:-1]
        return list(zip(np.split(keypoints, splits), np.split(scores, splits)))
