"""The codecs a recipe may name, as one table: how each decoder is built from the recipe, which outputs it
decodes (so the flip test knows how to mirror them back), and the activation its head's raw outputs take
first. An estimator looks its codec up once; nothing on the per-crop path compares codec names."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from poseapp.codecs.heatmap import HRNetHeatmap, MSRAHeatmap, UDPHeatmap
from poseapp.codecs.regression import RegressionCodec
from poseapp.codecs.simcc import SimCCCodec, SimDRCodec

Codec = MSRAHeatmap | UDPHeatmap | HRNetHeatmap | RegressionCodec | SimCCCodec | SimDRCodec

HEATMAPS, VECTORS, COORDINATES = "heatmaps", "vectors", "coordinates"
"""What a codec decodes: (N, K, H, W) heatmaps; SimCC/SimDR's x and y vectors; (N, K, D) regression outputs."""


def sigmoid_sigmas(outputs: tuple) -> tuple:
    """RLE: the sigma logits (columns 2:) through the sigmoid, as MMPose ``RLEHead.predict`` does before the
    flip average (torch tensors in, new tensors out)."""
    coords = outputs[0].clone()
    coords[..., 2:] = coords[..., 2:].sigmoid()
    return (coords,)


@dataclass(frozen=True)
class CodecSpec:
    """One row of :data:`CODECS`."""

    build: Callable[[Any], Codec]  # recipe -> decoder
    outputs: str  # HEATMAPS, VECTORS or COORDINATES
    activate: Callable[[tuple], tuple] | None = None  # raw head outputs -> what the flip average and decoder take
    scores: tuple[float, float] = (0.0, 1.0)  # the range its keypoint scores fall in (see ``score_range``)


def _blur(recipe: Any) -> int:
    return int(recipe.codec_params.get("blur_kernel_size", 11))  # DARK and UDP refinement


CODECS: dict[str, CodecSpec] = {
    "msra": CodecSpec(lambda r: MSRAHeatmap(r.input_size, r.heatmap_size), HEATMAPS),
    "dark": CodecSpec(lambda r: MSRAHeatmap(r.input_size, r.heatmap_size, unbiased=True, blur_kernel_size=_blur(r)),
                      HEATMAPS),
    "udp": CodecSpec(lambda r: UDPHeatmap(r.input_size, r.heatmap_size, blur_kernel_size=_blur(r)), HEATMAPS),
    "hrnet": CodecSpec(lambda r: HRNetHeatmap(r.input_size, r.heatmap_size), HEATMAPS),
    "regression": CodecSpec(lambda r: RegressionCodec(r.input_size), COORDINATES),
    "rle": CodecSpec(lambda r: RegressionCodec(r.input_size), COORDINATES, sigmoid_sigmas),
    "simcc": CodecSpec(lambda r: SimCCCodec(r.simcc_split_ratio), VECTORS, scores=(float("-inf"), float("inf"))),
    "simdr": CodecSpec(lambda r: SimDRCodec(r.simcc_split_ratio), VECTORS),
}


def codec_spec(recipe: Any) -> CodecSpec:
    """The table row of the recipe's codec (ValueError for a name not in it, or a heatmap codec without a
    heatmap size: a mistake in the zoo table)."""
    spec = CODECS.get(recipe.codec)
    if spec is None:
        raise ValueError(f"recipe {recipe.name}: unknown codec '{recipe.codec}'")
    if spec.outputs == HEATMAPS and recipe.heatmap_size is None:
        raise ValueError(f"recipe {recipe.name}: codec '{recipe.codec}' needs a heatmap_size")
    return spec


def build_codec(recipe: Any) -> Codec:
    """The decoder a recipe names."""
    return codec_spec(recipe).build(recipe)
