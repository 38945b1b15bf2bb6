"""Top-down estimation: boxes -> crops -> network -> codec -> image-space keypoints. No I/O.

The estimator takes lists of images and their boxes, so crops of many frames can share a forward pass.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from poseapp import geometry
from poseapp.codecs.table import Codec, codec_spec
from poseapp.keypoints import KeypointSet, get_keypoint_set
from poseapp.zoo import Recipe

log = logging.getLogger(__name__)

RawOutputs = tuple[np.ndarray, ...]  # (heatmaps,), (coords,) or (simcc_x, simcc_y): one array per output


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
    return geometry.warp_for(recipe.warp).center_scale(b, recipe.input_size, recipe.bbox_padding)


def crop_areas(boxes: np.ndarray, recipe: Recipe) -> np.ndarray:
    """(N,) areas in pixels of those crops: the padded, aspect-fixed box (MMPose's OKS-NMS ``area``)."""
    _, scales = crop_center_scale(boxes, recipe)
    return np.prod(scales * geometry.warp_for(recipe.warp).pixels_per_unit, axis=1)


def make_crops(images: Sequence[np.ndarray], boxes: Sequence[np.ndarray], recipe: Recipe) -> Crops:
    """Cut the model-input crops for every (N_i, 4) xyxy box of every image, in order."""
    size = recipe.input_size
    w, h = size
    warp = geometry.warp_for(recipe.warp)
    pixels, centers, scales = [], [], []
    for image, b in zip(images, boxes):
        c, s = warp.center_scale(np.asarray(b, dtype=np.float32).reshape(-1, 4), size, recipe.bbox_padding)
        pixels += [geometry.warp_crop(image, warp.matrix(ci, si, size), size) for ci, si in zip(c, s)]
        centers.append(c)
        scales.append(s)
    if not pixels:
        empty = np.zeros((0, 2), np.float32)
        return Crops(np.zeros((0, h, w, 3), np.uint8), empty, empty)
    return Crops(np.stack(pixels), np.concatenate(centers), np.concatenate(scales))


class TopDownEstimator:
    """A pose network with its recipe: ``estimator(images, boxes)`` -> keypoints per image.

    Args:
        model: a runtime (``poseapp.runtimes``: torch, ONNX Runtime, OpenVINO), or a torch network mapping
            normalised (B, 3, h, w) float tensors to its raw output ((B, K, H, W) heatmaps, (B, K, D)
            regression coordinates, or a (x, y) pair of SimCC vectors), which runs in a torch runtime.
        recipe: how to crop, normalise, flip and decode.
        device: torch device string for a torch network (``cpu``, ``cuda``, ``cuda:1``); a runtime has its own.
        half: run a torch network in float16 (CUDA only).
        batch_size: crops per forward pass (with the flip test, each pass also takes their mirror images).
        flip_test: override the recipe's flip test (None keeps the recipe's).
    """

    def __init__(self, model, recipe: Recipe, *, device: str = "cpu", half: bool = False,
                 batch_size: int = 32, flip_test: bool | None = None) -> None:
        import torch

        self.recipe = recipe
        if isinstance(model, torch.nn.Module):
            from poseapp.runtimes.torch_runtime import TorchRuntime

            model = TorchRuntime(model, device=device, precision="fp16" if half else "fp32")
        self.runtime = model
        self.device = torch.device(model.device)
        self.batch_size = max(1, int(batch_size))
        self.flip_test = recipe.flip_test if flip_test is None else bool(flip_test)
        self.warp = geometry.warp_for(recipe.warp)  # looked up once per estimator, as the codec below
        spec = codec_spec(recipe)
        self.codec: Codec = spec.build(recipe)
        self._activate = spec.activate or (lambda outputs: outputs)
        self.keypoint_set = output_keypoint_set(recipe)
        self._full_set = get_keypoint_set(recipe.keypoint_set)
        if self._full_set.num_keypoints != recipe.num_keypoints:
            raise ValueError(f"recipe {recipe.name}: {recipe.num_keypoints} channels but keypoint set "
                             f"{recipe.keypoint_set} has {self._full_set.num_keypoints}")
        if self.warp.unit_range:  # ToTensor (/255) then Normalize with 0-1 mean/std
            mean = np.array(recipe.mean) / 255.0
            std = np.array(recipe.std) / 255.0
        else:
            mean, std = np.array(recipe.mean), np.array(recipe.std)
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._flip_index = torch.as_tensor(self._full_set.flip_indices, device=self.device)
        from poseapp.codecs.flip import flip_back_for

        self._flip_back = flip_back_for(spec.outputs, self._flip_index, shift_heatmap=recipe.shift_heatmap,
                                        shift_coords=recipe.shift_coords, input_width=recipe.input_size[0])

    @property
    def backend(self) -> str:
        return self.runtime.backend

    @property
    def precision(self) -> str:
        return self.runtime.precision

    # -------------------------------------------------------------- network side

    def _normalise(self, crops: np.ndarray):
        """(B, h, w, 3) uint8 BGR -> (B, 3, h, w) float32 tensor, exactly as the reference pre-processors."""
        import torch

        x = torch.from_numpy(crops).to(self.device).permute(0, 3, 1, 2)
        x = x[:, [2, 1, 0]].float()  # BGR -> RGB
        if self.warp.unit_range:
            x = x.div(255)
        return (x - self._mean) / self._std

    def _run(self, x) -> tuple:
        """The runtime on a normalised batch, as a float32 tuple through the codec's activation (RLE's
        sigma logits through the sigmoid; ``codecs.table``)."""
        return self._activate(tuple(t.float() for t in self.runtime(x)))

    def forward(self, crops: np.ndarray) -> RawOutputs:
        """(M, h, w, 3) uint8 crops -> the raw outputs for all of them (flip test applied), in chunks.

        With the flip test, a chunk and its mirror image go through the network as one batch.
        Returns one float32 array per network output: (heatmaps,), (coordinates,) or (simcc_x, simcc_y).
        """
        import torch

        chunks = []
        with torch.inference_mode():
            for i in range(0, len(crops), self.batch_size):
                x = self._normalise(crops[i:i + self.batch_size])
                if self.flip_test:
                    n = len(x)
                    both = self._run(torch.cat([x, x.flip(-1)]))
                    flipped = self._flip_back(tuple(t[n:] for t in both))
                    out = tuple((a[:n] + b) * 0.5 for a, b in zip(both, flipped))
                else:
                    out = self._run(x)
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
            per image, (keypoints (N_i, K, 2) float64 image pixels, scores (N_i, K) float64), for every codec.
        """
        _check_inputs(images, boxes)
        crops = make_crops(images, boxes, self.recipe)
        counts = [len(np.asarray(b).reshape(-1, 4)) for b in boxes]
        keypoints, scores = self.keypoints_of(crops)
        splits = np.cumsum(counts)[:-1]
        return list(zip(np.split(keypoints, splits), np.split(scores, splits)))

    def keypoints_of(self, crops: Crops) -> tuple[np.ndarray, np.ndarray]:
        """Crops (of any images) -> keypoints (M, K, 2) float64 image pixels and scores (M, K) float64."""
        if not len(crops.pixels):
            k = self.keypoint_set.num_keypoints
            return np.zeros((0, k, 2), np.float64), np.zeros((0, k), np.float64)
        keypoints, scores = self.decode(self.forward(crops.pixels))
        keypoints = self.warp.to_image(keypoints, crops.centers, crops.scales, self.recipe.input_size)
        return keypoints.astype(np.float64), scores.astype(np.float64)  # one dtype, whatever the codec


def _check_inputs(images: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> None:
    """ValueError, saying what is expected, for images and boxes the estimator cannot take."""
    if isinstance(images, np.ndarray) or not isinstance(images, Sequence):
        raise ValueError("images must be a list of (H, W, 3) uint8 BGR images (one image: [image])")
    if len(images) != len(boxes):
        raise ValueError(f"{len(images)} image(s) but boxes for {len(boxes)}: pass one (N, 4) array of xyxy "
                         "boxes per image")
    for i, (image, b) in enumerate(zip(images, boxes)):
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
            what = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"image {i} is {what}: the estimator takes (H, W, 3) uint8 BGR images (cv2.imread's)")
        shape = np.shape(b)
        if not (len(shape) == 2 and shape[1] == 4 or shape == (0,) or shape == (4,) and len(b)):
            raise ValueError(f"the boxes of image {i} have shape {shape}: pass (N, 4) xyxy boxes "
                             "(Detections.boxes; no score column)")
