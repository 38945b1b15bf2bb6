"""ResNet backbone (MMPose ``ResNet``, style='pytorch': stride on the 3x3 conv) and the models built on it:
SimpleBaseline (heatmaps), DeepPose and RLE (regression).

State-dict keys match MMPose 1.x: ``conv1``, ``bn1``, ``layer{1..4}.{i}.{conv,bn}{1..3}``,
``layer{n}.0.downsample.{0,1}``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .heads import HeatmapHead, RegressionHead, RLEHead
from .registry import TopdownModel, register_arch

# ---------------------------------------------------------------------------------------------- config
# depth -> (block kind, blocks per stage)
RESNET_DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


# --------------------------------------------------------------------------------------------- modules
def _downsample(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    """1x1 conv + BN on the identity path when the shape changes (keys ``downsample.{0,1}``)."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual. ``out_channels`` is the block's output width (expansion 1)."""

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 with a residual. ``out_channels`` = 4 x the inner width."""

    expansion = 4

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        mid = out_channels // self.expansion
        self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


def make_layer(
    block: type[nn.Module], in_channels: int, out_channels: int, num_blocks: int, stride: int = 1
) -> nn.Sequential:
    """``num_blocks`` blocks; the first one changes width/stride (and gets the downsample path)."""
    layers = [block(in_channels, out_channels, stride)]
    layers += [block(out_channels, out_channels) for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """MMPose ResNet: 7x7/2 conv stem + 3x3/2 max-pool, four stages at strides 4, 8, 16, 32.

    Input (N, 3, H, W); returns a tuple with the outputs of the stages in ``out_indices`` (default the
    last: (N, 2048, H/32, W/32) for depth >= 50).
    """

    def __init__(self, depth: int, in_channels: int = 3, out_indices: Sequence[int] = (3,)) -> None:
        super().__init__()
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"unsupported ResNet depth {depth} (use one of {sorted(RESNET_DEPTHS)})")
        kind, stage_blocks = RESNET_DEPTHS[depth]
        block = BLOCKS[kind]
        self.out_indices = tuple(out_indices)
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        self.stage_names: list[str] = []
        for i, num_blocks in enumerate(stage_blocks):
            out_channels = 64 * 2**i * block.expansion
            name = f"layer{i + 1}"
            self.add_module(name, make_layer(block, channels, out_channels, num_blocks, stride=1 if i == 0 else 2))
            self.stage_names.append(name)
            channels = out_channels
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i, name in enumerate(self.stage_names):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


# -------------------------------------------------------------------------------------- architectures
def simple_baseline(depth: int, num_keypoints: int) -> TopdownModel:
    """SimpleBaseline: ResNet-``depth`` + HeatmapHead with three 4x4 deconvs (256 ch) -> stride-4 heatmaps."""
    backbone = ResNet(depth)
    return TopdownModel(backbone, HeatmapHead(backbone.out_channels, num_keypoints))


@register_arch("resnet50")
def resnet50(num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    return simple_baseline(50, num_keypoints)


@register_arch("resnet101")
def resnet101(num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    return simple_baseline(101, num_keypoints)


@register_arch("resnet152")
def resnet152(num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    return simple_baseline(152, num_keypoints)


def deeppose(depth: int, num_keypoints: int) -> TopdownModel:
    """DeepPose: ResNet-``depth`` + global average pooling + RegressionHead -> (N, K, 2) normalised [x, y]."""
    backbone = ResNet(depth)
    return TopdownModel(backbone, RegressionHead(backbone.out_channels, num_keypoints))


def rle(depth: int, num_keypoints: int) -> TopdownModel:
    """RLE: ResNet-``depth`` + global average pooling + RLEHead -> (N, K, 4) [x, y, sigma logits]."""
    backbone = ResNet(depth)
    return TopdownModel(backbone, RLEHead(backbone.out_channels, num_keypoints))


@register_arch("resnet50-deeppose")
def resnet50_deeppose(num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    return deeppose(50, num_keypoints)


@register_arch("resnet101-deeppose")
def resnet101_deeppose(num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    return deeppose(101, num_keypoints)


@register_arch("resnet152-deeppose")
def resnet152_deeppose(num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    return deeppose(152, num_keypoints)


@register_arch("resnet50-rle")
def resnet50_rle(num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    return rle(50, num_keypoints)


@register_arch("resnet101-rle")
def resnet101_rle(num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    return rle(101, num_keypoints)


@register_arch("resnet152-rle")
def resnet152_rle(num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    return rle(152, num_keypoints)
