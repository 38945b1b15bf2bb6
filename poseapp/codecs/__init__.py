"""Codecs: raw model outputs -> keypoints in crop (model input) pixels + scores. Pure functions.

Every codec has ``decode(*outputs) -> (keypoints (N, K, 2), scores (N, K))`` and never mutates its input:
heatmap codecs take one (N, K, H, W) array, SimCC/SimDR codecs the x and y vectors, regression codecs
one (N, K, D) array. ``flip`` holds the flip-test alignment of each output kind.
"""
from poseapp.codecs.heatmap import HRNetHeatmap, MSRAHeatmap, UDPHeatmap
from poseapp.codecs.regression import RegressionCodec
from poseapp.codecs.simcc import SimCCCodec, SimDRCodec



def score_range(codec: str) -> tuple[float, float]:
    """The range a codec's keypoint scores fall in: [0, 1] for heatmap maxima (about), RLE's 1 - sigma,
    DeepPose's constant 1 and SimDR's softmax; SimCC (RTMPose) scores are maxima of unnormalised vectors,
    not probabilities, so any threshold is in range."""
    if codec == "simcc":
        return float("-inf"), float("inf")
    return 0.0, 1.0


__all__ = ["HRNetHeatmap", "MSRAHeatmap", "RegressionCodec", "SimCCCodec", "SimDRCodec", "UDPHeatmap",
           "score_range"]
