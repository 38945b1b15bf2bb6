"""CSPNeXt backbone (mmdet ``CSPNeXt``, arch P5, as MMPose's RTMPose and CSPNeXt-UDP configs use it) and the
RTMPose / CSPNeXt-heatmap models.

State-dict keys match MMPose 1.x / mmdet: ``stem.{0,1,2}``, ``stage{1..4}.0`` (the strided 3x3 conv),
``stage4.1`` (SPP bottleneck), ``stage{n}.{1|2}`` (CSP layer: ``main_conv``, ``short_conv``,
``final_conv``, ``blocks.{i}.conv1`` / ``blocks.{i}.conv2.{depthwise,pointwise}_conv``, ``attention.fc``).
Every conv is an mmcv ``ConvModule`` (keys ``conv`` + ``bn``, no conv bias) followed by SiLU.

BatchNorm eps: mmdet's own default is 1e-3 (momentum 0.03), but every MMPose config overrides the backbone's
``norm_cfg`` with ``dict(type='SyncBN')``, i.e. PyTorch's default eps 1e-5, which is what the published
weights were trained and tested with. ``bn_eps`` defaults to that.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .heads import HeatmapHead
from .registry import TopdownModel, register_arch
from .simcc_heads import RTMCCHead, simcc_lengths, strided_size

# ---------------------------------------------------------------------------------------------- config
# arch P5, per stage: (in channels, out channels, blocks, add_identity, use_spp), before widen/deepen factors
P5_STAGES: tuple[tuple[int, int, int, bool, bool], ...] = (
    (64, 128, 3, True, False),
    (128, 256, 6, True, False),
    (256, 512, 6, True, False),
    (512, 1024, 3, False, True),
)

# size -> (deepen_factor, widen_factor), from the RTMPose configs
CSPNEXT_SIZES: dict[str, tuple[float, float]] = {
    "t": (0.167, 0.375),
    "s": (0.33, 0.5),
    "m": (0.67, 0.75),
    "l": (1.0, 1.0),
}

BN_EPS = 1e-5  # SyncBN (PyTorch default) as set by the MMPose configs; mmdet's own default would be 1e-3


# --------------------------------------------------------------------------------------------- modules
class ConvModule(nn.Module):
    """mmcv ``ConvModule``: conv (no bias) -> BatchNorm -> SiLU, 'same' padding. Keys ``conv``, ``bn``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
        bn_eps: float = BN_EPS,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps)
        self.activate = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


class DepthwiseSeparableConv(nn.Module):
    """mmcv ``DepthwiseSeparableConvModule``: depthwise k x k ConvModule, then pointwise 1x1 ConvModule
    (both with BN + SiLU)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bn_eps: float = BN_EPS) -> None:
        super().__init__()
        self.depthwise_conv = ConvModule(in_channels, in_channels, kernel, groups=in_channels, bn_eps=bn_eps)
        self.pointwise_conv = ConvModule(in_channels, out_channels, 1, bn_eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


class CSPNeXtBlock(nn.Module):
    """3x3 ConvModule, then a 5x5 depthwise-separable conv; residual when ``add_identity``."""

    def __init__(self, channels: int, add_identity: bool, kernel: int = 5, bn_eps: float = BN_EPS) -> None:
        super().__init__()
        self.conv1 = ConvModule(channels, channels, 3, bn_eps=bn_eps)
        self.conv2 = DepthwiseSeparableConv(channels, channels, kernel, bn_eps=bn_eps)
        self.add_identity = add_identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class ChannelAttention(nn.Module):
    """mmdet ``ChannelAttention``: global average pool -> 1x1 conv (with bias) -> hard sigmoid -> x * weights."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(channels, channels, 1, bias=True)
        self.act = nn.Hardsigmoid()  # relu6(x + 3) / 6, not the logistic sigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.act(self.fc(self.global_avgpool(x)))


class CSPLayer(nn.Module):
    """Cross Stage Partial layer with CSPNeXt blocks: ``main_conv`` -> blocks, concatenated with
    ``short_conv``, channel attention, then ``final_conv`` (all 1x1 convs at half the width)."""

    def __init__(
        self, in_channels: int, out_channels: int, num_blocks: int, add_identity: bool,
        expand_ratio: float = 0.5, channel_attention: bool = True, bn_eps: float = BN_EPS,
    ) -> None:
        super().__init__()
        mid = int(out_channels * expand_ratio)
        self.main_conv = ConvModule(in_channels, mid, 1, bn_eps=bn_eps)
        self.short_conv = ConvModule(in_channels, mid, 1, bn_eps=bn_eps)
        self.final_conv = ConvModule(2 * mid, out_channels, 1, bn_eps=bn_eps)
        self.blocks = nn.Sequential(*(CSPNeXtBlock(mid, add_identity, bn_eps=bn_eps) for _ in range(num_blocks)))
        self.attention = ChannelAttention(2 * mid) if channel_attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat((self.blocks(self.main_conv(x)), self.short_conv(x)), dim=1)
        if self.attention is not None:
            out = self.attention(out)
        return self.final_conv(out)


class SPPBottleneck(nn.Module):
    """mmdet ``SPPBottleneck`` (YOLOv3-SPP, parallel pools, not the chained SPPF): 1x1 conv to half width,
    concatenate it with its stride-1 max-pools (5, 9, 13), 1x1 conv back."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_sizes: Sequence[int] = (5, 9, 13), bn_eps: float = BN_EPS
    ) -> None:
        super().__init__()
        mid = in_channels // 2
        self.conv1 = ConvModule(in_channels, mid, 1, bn_eps=bn_eps)
        self.poolings = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernel_sizes)
        self.conv2 = ConvModule(mid * (len(kernel_sizes) + 1), out_channels, 1, bn_eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.poolings], dim=1))


class CSPNeXt(nn.Module):
    """mmdet CSPNeXt (arch P5, expand_ratio 0.5, channel attention, SiLU), scaled by ``deepen_factor``
    (blocks per CSP layer) and ``widen_factor`` (channels).

    Input (N, 3, H, W); returns a tuple with the outputs of the layers in ``out_indices`` (0 = stem,
    1..4 = stages; default the last: (N, 1024 * widen_factor, H/32, W/32)).
    """

    def __init__(
        self, deepen_factor: float = 1.0, widen_factor: float = 1.0, out_indices: Sequence[int] = (4,),
        expand_ratio: float = 0.5, channel_attention: bool = True, bn_eps: float = BN_EPS,
    ) -> None:
        super().__init__()
        stem_out = int(P5_STAGES[0][0] * widen_factor)
        half = int(P5_STAGES[0][0] * widen_factor // 2)
        self.stem = nn.Sequential(
            ConvModule(3, half, 3, stride=2, bn_eps=bn_eps),
            ConvModule(half, half, 3, bn_eps=bn_eps),
            ConvModule(half, stem_out, 3, bn_eps=bn_eps),
        )
        self.layer_names = ["stem"]
        for i, (cin, cout, blocks, add_identity, use_spp) in enumerate(P5_STAGES):
            cin, cout = int(cin * widen_factor), int(cout * widen_factor)
            layers: list[nn.Module] = [ConvModule(cin, cout, 3, stride=2, bn_eps=bn_eps)]
            if use_spp:
                layers.append(SPPBottleneck(cout, cout, bn_eps=bn_eps))
            layers.append(CSPLayer(
                cout, cout, max(round(blocks * deepen_factor), 1), add_identity,
                expand_ratio=expand_ratio, channel_attention=channel_attention, bn_eps=bn_eps,
            ))
            self.add_module(f"stage{i + 1}", nn.Sequential(*layers))
            self.layer_names.append(f"stage{i + 1}")
        self.out_indices = tuple(out_indices)
        self.out_channels = int(P5_STAGES[-1][1] * widen_factor)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        for i, name in enumerate(self.layer_names):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


# -------------------------------------------------------------------------------------- architectures
def cspnext(size: str) -> CSPNeXt:
    """CSPNeXt-``size`` (t, s, m, l) with the RTMPose settings, returning the stride-32 map only."""
    deepen, widen = CSPNEXT_SIZES[size]
    return CSPNeXt(deepen, widen)


def rtmpose(size: str, num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    """RTMPose-``size``: CSPNeXt + RTMCCHead (7x7 conv, GAU) -> SimCC vectors (N, K, 2w), (N, K, 2h)."""
    backbone = cspnext(size)
    head = RTMCCHead(
        backbone.out_channels, num_keypoints, simcc_lengths(input_size), feature_size=strided_size(input_size, 32)
    )
    return TopdownModel(backbone, head)


@register_arch("rtmpose-t")
def rtmpose_t(num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    return rtmpose("t", num_keypoints, input_size)


@register_arch("rtmpose-s")
def rtmpose_s(num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    return rtmpose("s", num_keypoints, input_size)


@register_arch("rtmpose-m")
def rtmpose_m(num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    return rtmpose("m", num_keypoints, input_size)


@register_arch("rtmpose-l")
def rtmpose_l(num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    return rtmpose("l", num_keypoints, input_size)


@register_arch("cspnext-m")
def cspnext_m_heatmap(num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    """CSPNeXt-m + HeatmapHead with three 4x4 deconvs (256 ch): stride-4 heatmaps (MMPose cspnext-m_udp)."""
    backbone = cspnext("m")
    return TopdownModel(backbone, HeatmapHead(backbone.out_channels, num_keypoints))
