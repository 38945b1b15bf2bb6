"""Architecture registry: a name -> builder table, plus the backbone + head container every builder returns.

Builders live next to their backbone (``resnet.py``, ``hrnet.py``) and register themselves with
``@register_arch("name")``. A name can be registered once; an unknown name raises an error that
suggests the closest known names.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from poseapp.errors import suggest

Builder = Callable[[int, tuple[int, int]], nn.Module]

_ARCHS: dict[str, Builder] = {}


class TopdownModel(nn.Module):
    """``head(backbone(x))``: the state-dict keys are ``backbone.*`` and ``head.*`` as in MMPose 1.x.

    The backbone returns a tuple of feature maps; the head reads what it needs (usually the last).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) float32, normalised -> the head's raw output (heatmaps: (N, K, H/4, W/4))."""
        return self.head(self.backbone(x))


def register_arch(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(num_keypoints, input_size) -> nn.Module`` under ``name``.

    ``input_size`` is the model input (w, h): heads whose weights depend on it (SimCC/RTMCC vectors,
    flattened feature maps) read it; the others ignore it. A duplicate name raises.
    """

    def decorate(builder: Builder) -> Builder:
        if name in _ARCHS:
            raise ValueError(f"architecture '{name}' is already registered (by {_ARCHS[name].__module__})")
        _ARCHS[name] = builder
        return builder

    return decorate


def available_archs() -> list[str]:
    """The registered architecture names, sorted."""
    return sorted(_ARCHS)


def build_model(arch: str, num_keypoints: int, input_size: tuple[int, int] = (192, 256)) -> nn.Module:
    """Build the network ``arch`` with ``num_keypoints`` outputs for (w, h) ``input_size`` inputs,
    randomly initialised, in eval() mode.

    Raises UnknownNameError (with close names) for an unknown ``arch``.
    """
    if arch not in _ARCHS:
        raise suggest(arch, available_archs(), "architecture")
    if isinstance(num_keypoints, bool) or not isinstance(num_keypoints, int) or num_keypoints < 1:
        raise ValueError(f"num_keypoints must be a positive int, got {num_keypoints!r}")
    w, h = (int(v) for v in input_size)
    return _ARCHS[arch](num_keypoints, (w, h)).eval()
