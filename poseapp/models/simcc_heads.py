"""SimCC heads (1-D x / y classification vectors) and the SimCC models on ResNet and HRNet backbones.

* ``RTMCCHead`` (RTMPose): 7x7 conv to K maps, flatten, ScaleNorm + Linear to 256-d tokens, one gated
  attention unit (``RTMCCBlock``) across the K keypoint tokens, then ``cls_x`` / ``cls_y``.
* ``SimCCHead`` (MMPose SimCC, and sithu31296's SimDR, which is the same head without deconvs):
  optional HeatmapHead (``deconv_head.*``) or a 1x1 conv (``final_layer``), flatten, ``mlp_head_x`` /
  ``mlp_head_y`` Linear layers.

Both return a tuple (x logits (N, K, Wx), y logits (N, K, Wy)) with Wx = int(w * split ratio) and
Wy = int(h * split ratio) for a (w, h) model input; softmax/argmax is decoding, not the network.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .heads import HeatmapHead
from .hrnet import HRNET_CFGS, HRNet
from .registry import TopdownModel, register_arch
from .resnet import ResNet

SIMCC_SPLIT_RATIO = 2.0  # every SimCC/RTMPose/SimDR model in the zoo: 2 bins per input pixel


def simcc_lengths(input_size: tuple[int, int], split_ratio: float = SIMCC_SPLIT_RATIO) -> tuple[int, int]:
    """(Wx, Wy): the x and y vector lengths for a (w, h) model input (MMPose: ``int(w * split_ratio)``)."""
    w, h = input_size
    return int(w * split_ratio), int(h * split_ratio)


def strided_size(input_size: tuple[int, int], stride: int) -> tuple[int, int]:
    """(w, h) of a backbone's stride-``stride`` map for a (w, h) input: each stride-2 step (3x3 conv with
    padding 1, 7x7 with padding 3, or 3x3 max-pool with padding 1) gives ceil(size / 2)."""
    w, h = input_size
    for _ in range(int(math.log2(stride))):
        w, h = math.ceil(w / 2), math.ceil(h / 2)
    return w, h


# ------------------------------------------------------------------------------------------ RTMCC head
class ScaleNorm(nn.Module):
    """x / max(||x||_2 / sqrt(dim), eps) * g over the last dimension (one learnt scalar ``g``)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.scale = dim**-0.5
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True) * self.scale
        return x / norm.clamp(min=self.eps) * self.g


class Scale(nn.Module):
    """Element-wise learnt scale vector (key ``scale``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class RTMCCBlock(nn.Module):
    """MMPose ``RTMCCBlock``: a gated attention unit over tokens, as RTMPose configures it (self-attention,
    SiLU, no biases, no relative-position bias, no rotary encoding, no dropout / drop-path).

    x: (N, T, dims) -> (N, T, dims): ``res_scale(x) + o(u * (relu(q k^T / sqrt(s))^2 @ v))`` where
    ``u, v, base = split(silu(uv(ScaleNorm(x))))`` and q, k = ``base * gamma + beta``.
    """

    def __init__(self, dims: int = 256, expansion_factor: int = 2, s: int = 128, eps: float = 1e-5) -> None:
        super().__init__()
        self.s = s
        self.e = int(dims * expansion_factor)
        # registration order = the checkpoint's key order: gamma, beta, o, uv, ln, res_scale
        self.gamma = nn.Parameter(torch.ones(2, s))
        self.beta = nn.Parameter(torch.zeros(2, s))
        self.o = nn.Linear(self.e, dims, bias=False)
        self.uv = nn.Linear(dims, 2 * self.e + s, bias=False)
        self.ln = ScaleNorm(dims, eps=eps)
        self.res_scale = Scale(dims)
        self.act_fn = nn.SiLU(inplace=True)
        self.sqrt_s = math.sqrt(s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        uv = self.act_fn(self.uv(self.ln(x)))
        u, v, base = torch.split(uv, [self.e, self.e, self.s], dim=2)
        base = base.unsqueeze(2) * self.gamma[None, None, :] + self.beta  # (N, T, 2, s)
        q, k = torch.unbind(base, dim=2)
        kernel = torch.square(F.relu(torch.bmm(q, k.permute(0, 2, 1)) / self.sqrt_s))  # (N, T, T)
        out = self.o(u * torch.bmm(kernel, v))
        return self.res_scale(x) + out


class RTMCCHead(nn.Module):
    """MMPose ``RTMCCHead``.

    Args:
        in_channels: channels of the backbone's last feature map.
        num_keypoints: K.
        lengths: (Wx, Wy), the SimCC vector lengths (see ``simcc_lengths``).
        feature_size: (w, h) of the backbone's last feature map (RTMPose: input / 32).
        final_kernel_size: kernel of the conv to K maps (7 in every RTMPose config).
        hidden_dims, s, expansion_factor: the GAU's token width, attention width and expansion.

    Input: tuple of feature maps, the last (N, in_channels, h, w). Output: ((N, K, Wx), (N, K, Wy)).
    """

    def __init__(
        self, in_channels: int, num_keypoints: int, lengths: tuple[int, int], feature_size: tuple[int, int],
        final_kernel_size: int = 7, hidden_dims: int = 256, s: int = 128, expansion_factor: int = 2,
    ) -> None:
        super().__init__()
        flatten_dims = feature_size[0] * feature_size[1]
        self.final_layer = nn.Conv2d(
            in_channels, num_keypoints, final_kernel_size, padding=final_kernel_size // 2
        )
        self.mlp = nn.Sequential(ScaleNorm(flatten_dims), nn.Linear(flatten_dims, hidden_dims, bias=False))
        self.gau = RTMCCBlock(hidden_dims, expansion_factor=expansion_factor, s=s)
        self.cls_x = nn.Linear(hidden_dims, lengths[0], bias=False)
        self.cls_y = nn.Linear(hidden_dims, lengths[1], bias=False)

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """feats: tuple whose last item is (N, C, h, w) -> ((N, K, Wx), (N, K, Wy)) logits."""
        tokens = self.gau(self.mlp(torch.flatten(self.final_layer(feats[-1]), 2)))  # (N, K, hidden)
        return self.cls_x(tokens), self.cls_y(tokens)


# ------------------------------------------------------------------------------------------ SimCC head
class SimCCHead(nn.Module):
    """MMPose ``SimCCHead`` (deconv type 'heatmap'): K maps, flattened, two Linear layers.

    Args:
        in_channels: channels of the backbone's last feature map.
        num_keypoints: K.
        lengths: (Wx, Wy), the SimCC vector lengths (see ``simcc_lengths``).
        feature_size: (w, h) of the backbone's last feature map.
        deconv_out_channels / deconv_kernel_sizes: as HeatmapHead's (each deconv doubles the map); with
            None the K maps come from a 1x1 conv ``final_layer`` on the backbone map (sithu SimDR).

    Input: tuple of feature maps, the last (N, in_channels, h, w). Output: ((N, K, Wx), (N, K, Wy)).
    """

    def __init__(
        self, in_channels: int, num_keypoints: int, lengths: tuple[int, int], feature_size: tuple[int, int],
        deconv_out_channels: Sequence[int] | None = (256, 256, 256),
        deconv_kernel_sizes: Sequence[int] | None = (4, 4, 4),
    ) -> None:
        super().__init__()
        scale = 2 ** len(deconv_out_channels or ())
        flatten_dims = feature_size[0] * scale * feature_size[1] * scale
        if deconv_out_channels:
            self.deconv_head = HeatmapHead(in_channels, num_keypoints, deconv_out_channels, deconv_kernel_sizes)
            self.final_layer = None
        else:
            self.deconv_head = None
            self.final_layer = nn.Conv2d(in_channels, num_keypoints, 1)
        self.mlp_head_x = nn.Linear(flatten_dims, lengths[0])
        self.mlp_head_y = nn.Linear(flatten_dims, lengths[1])

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """feats: tuple whose last item is (N, C, h, w) -> ((N, K, Wx), (N, K, Wy)) logits."""
        maps = self.deconv_head(feats) if self.deconv_head is not None else self.final_layer(feats[-1])
        flat = torch.flatten(maps, 2)
        return self.mlp_head_x(flat), self.mlp_head_y(flat)


# -------------------------------------------------------------------------------------- architectures
@register_arch("resnet50-simcc")
def resnet50_simcc(num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    """MMPose simcc_res50: ResNet-50 + SimCCHead (three 4x4 deconvs -> stride-4 maps -> Linear)."""
    backbone = ResNet(50)
    head = SimCCHead(backbone.out_channels, num_keypoints, simcc_lengths(input_size), strided_size(input_size, 32))
    return TopdownModel(backbone, head)


def simdr(width: str, num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    """sithu31296 SimDR: HRNet-``width`` + 1x1 conv to K stride-4 maps, flattened, ``mlp_head_{x,y}``.

    sithu's SA-SimDR checkpoint is the same network (only its training labels differ): use simdr-w48.
    """
    backbone = HRNet(HRNET_CFGS[width])
    head = SimCCHead(
        backbone.out_channels, num_keypoints, simcc_lengths(input_size), strided_size(input_size, 4),
        deconv_out_channels=None,
    )
    return TopdownModel(backbone, head)


@register_arch("simdr-w32")
def simdr_w32(num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    return simdr("w32", num_keypoints, input_size)


@register_arch("simdr-w48")
def simdr_w48(num_keypoints: int, input_size: tuple[int, int]) -> TopdownModel:
    return simdr("w48", num_keypoints, input_size)
