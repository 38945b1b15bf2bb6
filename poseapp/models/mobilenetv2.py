"""MobileNetV2 backbone (MMPose ``MobileNetV2``) and the MobileNetV2 + RLE model.

State-dict keys match MMPose 1.x (mmcv ``ConvModule`` = ``conv`` + ``bn`` + a parameter-free ReLU6):
stem ``conv1.{conv,bn}``, stages ``layer{1..7}.{block}.conv.{j}.{conv,bn}`` (j = expand 1x1, depthwise
3x3, project 1x1; no expand conv when the expand ratio is 1), last ``conv2.{conv,bn}`` (1x1 to 1280).
Convs have no bias; BatchNorm uses PyTorch's defaults (eps 1e-5), as mmcv's ``dict(type='BN')``.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import nn

from .heads import RLEHead
from .registry import TopdownModel, register_arch


# ---------------------------------------------------------------------------------------------- config
class StageSetting(NamedTuple):
    """One stage of inverted residual blocks (MMPose ``arch_settings`` row)."""

    expand_ratio: int
    channels: int  # before the width multiplier
    num_blocks: int
    stride: int  # of the stage's first block


ARCH_SETTINGS: tuple[StageSetting, ...] = (
    StageSetting(1, 16, 1, 1),
    StageSetting(6, 24, 2, 2),
    StageSetting(6, 32, 3, 2),
    StageSetting(6, 64, 4, 2),
    StageSetting(6, 96, 3, 1),
    StageSetting(6, 160, 3, 2),
    StageSetting(6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280


def make_divisible(value: float, divisor: int, min_value: int | None = None, min_ratio: float = 0.9) -> int:
    """MMPose ``make_divisible``: round ``value`` to the nearest multiple of ``divisor`` (at least
    ``min_value``, default ``divisor``), adding one ``divisor`` if that lost more than 1 - ``min_ratio``."""
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < min_ratio * value:
        new_value += divisor
    return new_value


# --------------------------------------------------------------------------------------------- modules
class ConvBNAct(nn.Module):
    """mmcv ``ConvModule``: conv (no bias) + BN + optional ReLU6; keys ``conv.weight``, ``bn.*``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.activate = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand + ReLU6] -> 3x3 depthwise (stride) + ReLU6 -> 1x1 linear projection,
    plus the input when the stride is 1 and the width is unchanged."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.use_residual = stride == 1 and in_channels == out_channels
        hidden = int(round(in_channels * expand_ratio))
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden, 1))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride=stride, groups=hidden),
            ConvBNAct(hidden, out_channels, 1, act=False),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """MMPose MobileNetV2: 3x3/2 stem, seven stages of inverted residuals, 1x1 conv to 1280 channels.

    ``out_indices`` count the stages 0..6 (``layer1..7``) and 7 (``conv2``). Input (N, 3, H, W);
    returns a tuple with those outputs (default (7,): (N, 1280, H/32, W/32) for widen_factor <= 1).
    """

    def __init__(self, widen_factor: float = 1.0, out_indices: Sequence[int] = (7,)) -> None:
        super().__init__()
        if any(i not in range(len(ARCH_SETTINGS) + 1) for i in out_indices):
            raise ValueError(f"out_indices must lie in 0..{len(ARCH_SETTINGS)}, got {tuple(out_indices)}")
        self.out_indices = tuple(out_indices)
        channels = make_divisible(STEM_CHANNELS * widen_factor, 8)
        self.conv1 = ConvBNAct(3, channels, 3, stride=2)
        self.stage_names: list[str] = []
        for i, stage in enumerate(ARCH_SETTINGS):
            out_channels = make_divisible(stage.channels * widen_factor, 8)
            blocks = [
                InvertedResidual(channels if b == 0 else out_channels, out_channels,
                                 stage.stride if b == 0 else 1, stage.expand_ratio)
                for b in range(stage.num_blocks)
            ]
            name = f"layer{i + 1}"
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            channels = out_channels
        # MMPose widens the last conv only for widen_factor > 1.
        self.out_channels = int(LAST_CHANNELS * widen_factor) if widen_factor > 1.0 else LAST_CHANNELS
        self.conv2 = ConvBNAct(channels, self.out_channels, 1)
        self.stage_names.append("conv2")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.conv1(x)
        outs = []
        for i, name in enumerate(self.stage_names):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


# -------------------------------------------------------------------------------------- architectures
@register_arch("mobilenetv2-rle")
def mobilenetv2_rle(num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    """MobileNetV2 (widen 1.0) + global average pooling + RLEHead -> (N, K, 4) [x, y, sigma logits]."""
    backbone = MobileNetV2()
    return TopdownModel(backbone, RLEHead(backbone.out_channels, num_keypoints))
