"""Codecs: raw model outputs -> keypoints in crop (model input) pixels + scores. Pure functions.

Every codec has ``decode(*outputs) -> (keypoints (N, K, 2), scores (N, K))`` and never mutates its input:
heatmap codecs take one (N, K, H, W) array, SimCC/SimDR codecs the x and y vectors, regression codecs
one (N, K, D) array. ``table`` says, per codec name, how its decoder is built, what it decodes and its
activation; ``flip`` holds the flip-test alignment of each output kind.
"""
from poseapp.codecs.heatmap import HRNetHeatmap, MSRAHeatmap, UDPHeatmap
from poseapp.codecs.regression import RegressionCodec
from poseapp.codecs.simcc import SimCCCodec, SimDRCodec
from poseapp.codecs.table import CODECS, CodecSpec, build_codec, codec_spec


def score_range(codec: str) -> tuple[float, float]:
    """The range a codec's keypoint scores fall in: [0, 1] for heatmap maxima (about), RLE's 1 - sigma,
    DeepPose's constant 1 and SimDR's softmax; SimCC (RTMPose) scores are maxima of unnormalised vectors,
    not probabilities, so any threshold is in range (``CodecSpec.scores``)."""
    return CODECS[codec].scores


__all__ = ["CODECS", "CodecSpec", "HRNetHeatmap", "MSRAHeatmap", "RegressionCodec", "SimCCCodec", "SimDRCodec",
           "UDPHeatmap", "build_codec", "codec_spec", "score_range"]
