"""Codecs: raw model outputs -> keypoints in crop (model input) pixels + scores. Pure functions.

Every codec has ``decode(outputs) -> (keypoints (N, K, 2), scores (N, K))`` and never mutates its input.
"""
from poseapp.codecs.heatmap import HRNetHeatmap, MSRAHeatmap, UDPHeatmap

__all__ = ["MSRAHeatmap", "UDPHeatmap", "HRNetHeatmap"]
