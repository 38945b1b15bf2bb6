"""Pose networks (PyTorch re-implementations with MMPose 1.x state-dict keys) and checkpoint loading.

    model = build_model("hrnet-w32", num_keypoints=17)   # eval() mode, random weights
    meta = load_weights(model, "weights/x.pth")          # strict; CheckpointError on any mismatch
    heatmaps = model(x)                                  # (N, 3, H, W) normalised -> (N, K, H/4, W/4)
"""
from __future__ import annotations

from . import hrnet, resnet  # noqa: F401  (register the architectures)
from . import mobilenetv2  # noqa: F401  (MobileNetV2 + RLE)
from . import cspnext, simcc_heads  # noqa: F401  (RTMPose, CSPNeXt, SimCC and SimDR architectures)
from .checkpoint import adapt_state_dict, load_weights, read_checkpoint
from .registry import available_archs, build_model, register_arch

__all__ = ["adapt_state_dict", "available_archs", "build_model", "load_weights", "read_checkpoint", "register_arch"]
