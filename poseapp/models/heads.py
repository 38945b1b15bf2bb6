"""Pose heads. Parameter names follow MMPose 1.x (``head.deconv_layers.*``, ``head.final_layer.*``,
``head.fc.*``).

Every head takes the backbone's tuple of feature maps and uses the last one.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

# ConvTranspose2d(stride=2) kernel size -> (padding, output_padding) that exactly doubles H and W.
_DECONV_PADDING = {4: (1, 0), 3: (1, 1), 2: (0, 0)}


class HeatmapHead(nn.Module):
    """MMPose ``HeatmapHead``: [deconv (x2 upsample) + BN + ReLU] * n, then a conv to K heatmaps.

    Args:
        in_channels: channels of the backbone's last feature map.
        out_channels: number of keypoints K.
        deconv_out_channels: channels of each deconv layer (SimpleBaseline: (256, 256, 256));
            None for no deconv layers (HRNet: the backbone is already at stride 4).
        deconv_kernel_sizes: kernel size of each deconv layer (4, 3 or 2).
        final_kernel_size: kernel size of the final conv (1 in every zoo model).

    Input: tuple of feature maps, the last (N, in_channels, h, w). Output: (N, K, h * 2**n, w * 2**n).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        deconv_out_channels: Sequence[int] | None = (256, 256, 256),
        deconv_kernel_sizes: Sequence[int] | None = (4, 4, 4),
        final_kernel_size: int = 1,
    ) -> None:
        super().__init__()
        if deconv_out_channels:
            kernel_sizes = tuple(deconv_kernel_sizes or ())
            if len(kernel_sizes) != len(deconv_out_channels):
                raise ValueError("deconv_out_channels and deconv_kernel_sizes must have the same length")
            self.deconv_layers = _deconv_layers(in_channels, deconv_out_channels, kernel_sizes)
            in_channels = deconv_out_channels[-1]
        else:
            self.deconv_layers = nn.Identity()
        self.final_layer = nn.Conv2d(
            in_channels, out_channels, final_kernel_size, padding=(final_kernel_size - 1) // 2
        )

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """feats: tuple whose last item is (N, C, h, w) -> heatmaps (N, K, H', W')."""
        return self.final_layer(self.deconv_layers(feats[-1]))


def _deconv_layers(in_channels: int, out_channels: Sequence[int], kernel_sizes: Sequence[int]) -> nn.Sequential:
    """ConvTranspose2d(stride 2, no bias) + BN + ReLU per entry: indices 0,1,2 / 3,4,5 / ..."""
    layers: list[nn.Module] = []
    for channels, kernel in zip(out_channels, kernel_sizes):
        if kernel not in _DECONV_PADDING:
            raise ValueError(f"unsupported deconv kernel size {kernel} (use one of {sorted(_DECONV_PADDING)})")
        padding, output_padding = _DECONV_PADDING[kernel]
        layers += [
            nn.ConvTranspose2d(
                in_channels, channels, kernel, stride=2, padding=padding, output_padding=output_padding, bias=False
            ),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        ]
        in_channels = channels
    return nn.Sequential(*layers)



class _PooledLinearHead(nn.Module):
    """MMPose's ``GlobalAveragePooling`` neck + one ``fc`` layer: the shared body of the regression heads.

    The neck has no parameters, so it lives here: global average pooling of the last feature map,
    then ``fc`` = Linear(in_channels, K * values_per_keypoint), reshaped to (N, K, values_per_keypoint).
    """

    values_per_keypoint: int

    def __init__(self, in_channels: int, num_keypoints: int) -> None:
        super().__init__()
        self.num_keypoints = num_keypoints
        self.fc = nn.Linear(in_channels, num_keypoints * self.values_per_keypoint)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """feats: tuple whose last item is (N, C, h, w) -> (N, K, values_per_keypoint)."""
        pooled = torch.flatten(nn.functional.adaptive_avg_pool2d(feats[-1], 1), 1)  # the GAP neck: (N, C)
        return self.fc(pooled).reshape(-1, self.num_keypoints, self.values_per_keypoint)


class RegressionHead(_PooledLinearHead):
    """MMPose ``RegressionHead`` (DeepPose), with the GAP neck its configs put before it.

    Args:
        in_channels: channels of the backbone's last feature map (ResNet-50+: 2048).
        num_keypoints: number of keypoints K.

    Input: tuple of feature maps, the last (N, in_channels, h, w). Output: (N, K, 2), normalised
    [x, y] (1.0 = the crop's width / height; unbounded for untrained weights).
    """

    values_per_keypoint = 2


class RLEHead(_PooledLinearHead):
    """MMPose ``RLEHead`` (residual log-likelihood estimation), with the GAP neck its configs put before it.

    Args:
        in_channels: channels of the backbone's last feature map (ResNet-50+: 2048, MobileNetV2: 1280).
        num_keypoints: number of keypoints K.

    Input: tuple of feature maps, the last (N, in_channels, h, w). Output: (N, K, 4): normalised
    [x, y], then two sigma **logits**. Like MMPose's ``forward()`` this applies no sigmoid (MMPose
    does it in ``predict()``; here the codec does). The training-only flow model
    (``head.loss_module.flow_model.*``) is not part of the network: ``adapt_state_dict`` drops its keys.
    """

    values_per_keypoint = 4
