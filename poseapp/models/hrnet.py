"""HRNet backbone (MMPose ``HRNet``) and the HRNet + HeatmapHead models.

State-dict keys match MMPose 1.x: stem ``conv1/bn1/conv2/bn2``, ``layer1`` (stage 1), then
``transition{1,2,3}`` and ``stage{2,3,4}.{module}.branches.{b}.{block}.*`` /
``stage{n}.{module}.fuse_layers.{i}.{j}.*``. The last module of stage 4 fuses into the
highest-resolution branch only (MMPose's ``multiscale_output=False``), which is the output.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .heads import HeatmapHead
from .registry import TopdownModel, register_arch
from .resnet import BLOCKS, make_layer


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class StageCfg:
    """One HRNet stage: ``num_modules`` HRModules of ``len(num_channels)`` parallel branches."""

    num_modules: int
    block: str  # "basic" | "bottleneck"
    num_blocks: tuple[int, ...]
    num_channels: tuple[int, ...]  # per branch, before the block's expansion


def _hrnet_stages(w: int) -> tuple[StageCfg, ...]:
    """The standard HRNet-W``w`` (MMPose ``extra.stage1..stage4``)."""
    return (
        StageCfg(1, "bottleneck", (4,), (64,)),
        StageCfg(1, "basic", (4, 4), (w, 2 * w)),
        StageCfg(4, "basic", (4, 4, 4), (w, 2 * w, 4 * w)),
        StageCfg(3, "basic", (4, 4, 4, 4), (w, 2 * w, 4 * w, 8 * w)),
    )


HRNET_CFGS: dict[str, tuple[StageCfg, ...]] = {"w32": _hrnet_stages(32), "w48": _hrnet_stages(48)}


# --------------------------------------------------------------------------------------------- modules
def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _fuse_layer(channels: Sequence[int], j: int, i: int) -> nn.Module:
    """Maps branch ``j`` onto branch ``i``: 1x1 conv + BN + nearest upsample (j > i), identity (j == i),
    or i - j strided 3x3 conv + BN steps, ReLU between them but not after the last (j < i)."""
    if j == i:
        return nn.Identity()
    if j > i:
        return nn.Sequential(
            nn.Conv2d(channels[j], channels[i], 1, bias=False),
            nn.BatchNorm2d(channels[i]),
            nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
        )
    steps = [_conv_bn(channels[j], channels[j], 3, stride=2) for _ in range(i - j - 1)]
    steps.append(_conv_bn(channels[j], channels[i], 3, stride=2, relu=False))
    return nn.Sequential(*steps)


class HRModule(nn.Module):
    """Parallel branches, then every output branch sums all branches mapped to its resolution, + ReLU.

    Input/output: a list of (N, C_b, H / 2**b, W / 2**b) maps, one per branch (one output when
    ``multiscale_output`` is False: the highest resolution).
    """

    def __init__(
        self, block: str, num_blocks: Sequence[int], in_channels: Sequence[int], num_channels: Sequence[int],
        multiscale_output: bool = True,
    ) -> None:
        super().__init__()
        block_cls = BLOCKS[block]
        out_channels = [c * block_cls.expansion for c in num_channels]
        self.out_channels = out_channels
        self.branches = nn.ModuleList(
            make_layer(block_cls, cin, cout, n) for cin, cout, n in zip(in_channels, out_channels, num_blocks)
        )
        n = len(out_channels)
        if n == 1:
            self.fuse_layers = None
        else:
            self.fuse_layers = nn.ModuleList(
                nn.ModuleList(_fuse_layer(out_channels, j, i) for j in range(n))
                for i in range(n if multiscale_output else 1)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        x = [branch(t) for branch, t in zip(self.branches, x)]
        if self.fuse_layers is None:
            return x
        out = []
        for fuse in self.fuse_layers:
            y = fuse[0](x[0])
            for j in range(1, len(x)):  # same summation order as MMPose
                y = y + fuse[j](x[j])
            out.append(self.relu(y))
        return out


def _transition(pre: Sequence[int], cur: Sequence[int]) -> nn.ModuleList:
    """Between stages: adapt existing branches whose width changes (3x3 conv), and create each new branch
    from the lowest-resolution one with strided 3x3 convs (all with BN + ReLU)."""
    layers: list[nn.Module] = []
    for i, channels in enumerate(cur):
        if i < len(pre):
            layers.append(_conv_bn(pre[i], channels, 3) if channels != pre[i] else nn.Identity())
        else:
            steps = i + 1 - len(pre)
            layers.append(nn.Sequential(
                *(_conv_bn(pre[-1], channels if k == steps - 1 else pre[-1], 3, stride=2) for k in range(steps))
            ))
    return nn.ModuleList(layers)


class HRNet(nn.Module):
    """MMPose HRNet. Input (N, 3, H, W); returns a 1-tuple (N, C, H/4, W/4), C = the first branch's width
    (or one map per branch when ``multiscale_output``)."""

    def __init__(self, stages: Sequence[StageCfg], in_channels: int = 3, multiscale_output: bool = False) -> None:
        super().__init__()
        if len(stages) != 4:
            raise ValueError("HRNet takes 4 stage configs")
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)

        s1 = stages[0]
        block1 = BLOCKS[s1.block]
        channels = [s1.num_channels[0] * block1.expansion]
        self.layer1 = make_layer(block1, 64, channels[0], s1.num_blocks[0])

        for n, cfg in enumerate(stages[1:], start=2):
            cur = [c * BLOCKS[cfg.block].expansion for c in cfg.num_channels]
            self.add_module(f"transition{n - 1}", _transition(channels, cur))
            modules = []
            for m in range(cfg.num_modules):
                last = n == len(stages) and m == cfg.num_modules - 1
                module = HRModule(cfg.block, cfg.num_blocks, cur, cfg.num_channels,
                                  multiscale_output=multiscale_output or not last)
                modules.append(module)
                cur = module.out_channels
            self.add_module(f"stage{n}", nn.Sequential(*modules))
            channels = cur
        self.num_stages = len(stages)
        self.out_channels = channels[0]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        feats = [self.layer1(x)]
        for n in range(2, self.num_stages + 1):
            transition = getattr(self, f"transition{n - 1}")
            # existing branches keep their input; new ones start from the lowest resolution
            feats = [t(feats[min(i, len(feats) - 1)]) for i, t in enumerate(transition)]
            feats = getattr(self, f"stage{n}")(feats)
        return tuple(feats)


# -------------------------------------------------------------------------------------- architectures
def hrnet_heatmap(width: str, num_keypoints: int) -> TopdownModel:
    """HRNet-``width`` + a 1x1 conv HeatmapHead (no deconv): stride-4 heatmaps."""
    backbone = HRNet(HRNET_CFGS[width])
    return TopdownModel(backbone, HeatmapHead(backbone.out_channels, num_keypoints, deconv_out_channels=None))


@register_arch("hrnet-w32")
def hrnet_w32(num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    return hrnet_heatmap("w32", num_keypoints)


@register_arch("hrnet-w48")
def hrnet_w48(num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    return hrnet_heatmap("w48", num_keypoints)
