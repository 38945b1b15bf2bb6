"""The YOLOv5 network (ultralytics/yolov5 v5.0-v7.0), built from a checkpoint's own architecture description
(its yaml dict) with poseapp's modules: the layer types those versions' detectors use, with yolov5's
state-dict names, so a classic checkpoint's weights load into it key for key.

Nothing here reads a file: ``build_yolov5(yaml)`` takes the description as data and refuses a layer type or
an activation it does not know (a yaml's ``activation`` is Python code to yolov5, evaluated; here it is
looked up in a table).
"""
from __future__ import annotations

import math
import threading
from typing import Any, Sequence

import torch
from torch import nn

BN_EPS, BN_MOMENTUM = 1e-3, 0.03  # yolov5's initialize_weights sets these on every BatchNorm2d
STRIDES = (8, 16, 32)


def _pad(k: int | Sequence[int], p: int | None = None) -> int | list[int]:
    """'same' padding (yolov5 ``autopad``)."""
    if p is not None:
        return p
    return k // 2 if isinstance(k, int) else [x // 2 for x in k]


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class Conv(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + activation."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1,
                 act: nn.Module | bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, _pad(k, p), groups=g, bias=False)
        self.bn = _bn(c2)
        self.act = (_ACTIVATION() if act is True else act) if act is not False else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the BatchNorm into the convolution (yolov5's ``fuse_conv_and_bn``, which its ``attempt_load``
        applies): the same function, computed as the reference computes it."""
        conv, bn = self.conv, self.bn
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          conv.dilation, conv.groups, bias=True).to(conv.weight.device)
        scale = torch.diag(bn.weight.div(torch.sqrt(bn.eps + bn.running_var)))
        fused.weight.copy_(torch.mm(scale, conv.weight.clone().view(conv.out_channels, -1)).view(fused.weight.shape))
        shift = bn.bias - bn.weight.mul(bn.running_mean).div(torch.sqrt(bn.running_var + bn.eps))
        bias = torch.zeros(conv.weight.size(0), device=conv.weight.device)
        fused.bias.copy_(torch.mm(scale, bias.reshape(-1, 1)).reshape(-1) + shift)
        self.conv, self.bn = fused, nn.Identity()


class Bottleneck(nn.Module):
    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class BottleneckCSP(nn.Module):
    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = nn.Conv2d(c1, c_, 1, 1, bias=False)
        self.cv3 = nn.Conv2d(c_, c_, 1, 1, bias=False)
        self.cv4 = Conv(2 * c_, c2, 1, 1)
        self.bn = _bn(2 * c_)
        self.act = _ACTIVATION()
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.cv3(self.m(self.cv1(x)))
        return self.cv4(self.act(self.bn(torch.cat((y1, self.cv2(x)), 1))))


class C3(nn.Module):
    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPP(nn.Module):
    def __init__(self, c1: int, c2: int, k: Sequence[int] = (5, 9, 13)) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * (len(k) + 1), c2, 1, 1)
        self.m = nn.ModuleList([nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [m(x) for m in self.m], 1))


class SPPF(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Focus(nn.Module):
    """Space to depth (every other pixel, four ways), then a Conv."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1,
                 act: nn.Module | bool = True) -> None:
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p, g, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1))


class Concat(nn.Module):
    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)


class Detect(nn.Module):
    """The anchor-based head: per level a 1x1 convolution to ``na * (nc + 5)`` channels, decoded (eval) to
    (B, N, nc + 5) rows of centre x, y, width, height in input pixels, objectness and class scores.

    ``anchors`` (a buffer, as in every yolov5 checkpoint) is in grid cells of its level; a v5.0 checkpoint's
    ``anchor_grid`` buffer (anchors in pixels) is the same thing and is not kept."""

    def __init__(self, nc: int, anchors: Sequence[Sequence[float]], ch: Sequence[int]) -> None:
        super().__init__()
        self.nc, self.no = nc, nc + 5
        self.nl, self.na = len(anchors), len(anchors[0]) // 2
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2))
        self.register_buffer("stride", torch.tensor(STRIDES[:self.nl], dtype=torch.float32), persistent=False)
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        state_dict.pop(prefix + "anchor_grid", None)  # v5.0 kept anchors * stride as a buffer too
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        out = []
        for i, x in enumerate(xs):
            x = self.m[i](x)
            bs, _, ny, nx = x.shape
            x = x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            yv, xv = torch.meshgrid(torch.arange(ny, device=x.device, dtype=x.dtype),
                                    torch.arange(nx, device=x.device, dtype=x.dtype), indexing="ij")
            grid = torch.stack((xv, yv), 2).view(1, 1, ny, nx, 2) - 0.5
            anchor_grid = (self.anchors[i] * self.stride[i]).view(1, self.na, 1, 1, 2)
            xy, wh, conf = x.sigmoid().split((2, 2, self.nc + 1), 4)
            xy = (xy * 2 + grid) * self.stride[i]
            wh = (wh * 2) ** 2 * anchor_grid
            out.append(torch.cat((xy, wh, conf), 4).view(bs, -1, self.no))
        return torch.cat(out, 1)


class YoloV5(nn.Module):
    """The network: ``model`` holds the layers in yaml order (yolov5's keys, ``model.{i}.*``); each layer's
    input is the previous one's output or the saved outputs its yaml ``from`` names."""

    def __init__(self, layers: nn.Sequential, sources: list[int | list[int]], save: set[int]) -> None:
        super().__init__()
        self.model = layers
        self.sources = sources
        self.save = save

    @property
    def detect(self) -> Detect:
        return self.model[-1]

    def fuse(self) -> "YoloV5":
        """Every Conv's BatchNorm folded into it, for inference (after the weights are loaded)."""
        for module in self.modules():
            if isinstance(module, Conv) and isinstance(module.bn, nn.BatchNorm2d):
                module.fuse()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1], H and W multiples of 32 -> (B, N, nc + 5) decoded rows."""
        saved: dict[int, torch.Tensor] = {}
        for i, (layer, f) in enumerate(zip(self.model, self.sources)):
            if f != -1:
                x = saved[f] if isinstance(f, int) else [x if j == -1 else saved[j] for j in f]
            x = layer(x)
            if i in self.save:
                saved[i] = x
        return x


_ACTIVATIONS = {"nn.SiLU()": nn.SiLU, "nn.LeakyReLU(0.1)": lambda: nn.LeakyReLU(0.1), "nn.ReLU()": nn.ReLU,
                "nn.Hardswish()": nn.Hardswish}
"""The ``activation`` values of yolov5's own yamls (default: SiLU, v4.0 on)."""
_ACTIVATION = nn.SiLU  # the activation Conv and BottleneckCSP make: set while a description is built
_BUILDING = threading.Lock()  # (one build at a time sets it)
_LAYERS = {"Conv": Conv, "Bottleneck": Bottleneck, "BottleneckCSP": BottleneckCSP, "C3": C3, "SPP": SPP,
           "SPPF": SPPF, "Focus": Focus, "Concat": Concat, "Detect": Detect, "nn.Upsample": nn.Upsample}
_MAX_LAYERS, _MAX_REPEATS, _MAX_CHANNELS = 128, 64, 4096  # a description's size is bounded before it allocates
_CONVS = (Conv, Bottleneck, BottleneckCSP, C3, SPP, SPPF, Focus)
_REPEATED = (BottleneckCSP, C3)


class ArchitectureError(ValueError):
    """A yaml description this builder cannot follow (unknown layer or activation, malformed entry)."""


def _divisible(x: float, divisor: int = 8) -> int:
    return math.ceil(x / divisor) * divisor


def build_yolov5(yaml: dict[str, Any]) -> YoloV5:
    """The network a yolov5 model yaml (as a checkpoint stores it in ``model.yaml``) describes, as yolov5's
    ``parse_model`` builds it (depth and width multiples, ``from`` indices, the Detect head's channels).

    Raises:
        ArchitectureError: a layer type or activation outside the table, or a malformed entry.
    """
    try:
        nc, anchors = int(yaml["nc"]), yaml["anchors"]
        gd, gw = float(yaml.get("depth_multiple", 1.0)), float(yaml.get("width_multiple", 1.0))
        entries = list(yaml["backbone"]) + list(yaml["head"])
    except (KeyError, TypeError, ValueError) as e:
        raise ArchitectureError(f"not a yolov5 model description ({e})") from e
    activation = yaml.get("activation")
    if activation is not None and activation not in _ACTIVATIONS:
        raise ArchitectureError(f"activation {activation!r} is not one of {', '.join(_ACTIVATIONS)}")
    if isinstance(anchors, int) or not (1 <= nc <= 10000 and 1 <= len(anchors) <= len(STRIDES)):
        raise ArchitectureError(f"nc={nc}, anchors={anchors!r}: not the anchors of a 3-level yolov5 head")
    if not (0 < gd <= 2 and 0 < gw <= 2 and 1 <= len(entries) <= _MAX_LAYERS):
        raise ArchitectureError(f"depth_multiple {gd}, width_multiple {gw} and {len(entries)} layers: not a "
                                f"yolov5 detector (multiples up to 2, at most {_MAX_LAYERS} layers)")
    no = len(anchors[0]) // 2 * (nc + 5)
    with _BUILDING:
        return _build(entries, nc, anchors, gd, gw, no, _ACTIVATIONS.get(activation, nn.SiLU))


def _build(entries: list, nc: int, anchors: list, gd: float, gw: float, no: int, activation: Any) -> YoloV5:
    global _ACTIVATION
    previous, _ACTIVATION = _ACTIVATION, activation
    i, entry = 0, None
    try:
        layers, sources, save, ch = [], [], set(), [3]
        for i, entry in enumerate(entries):
            f, n, name, args = entry
            kind = _LAYERS.get(name)
            if kind is None:
                raise ArchitectureError(f"layer {i} is a {name!r}: poseapp builds {', '.join(_LAYERS)}")
            args = [nc if a == "nc" else anchors if a == "anchors" else a for a in args]
            n = max(round(n * gd), 1) if n > 1 else n
            c2 = ch[f] if isinstance(f, int) else None
            if kind in _CONVS:
                c1, c2 = ch[f], args[0]
                if c2 != no:
                    c2 = _divisible(c2 * gw)
                args = [c1, c2, *args[1:]]
                if kind in _REPEATED:
                    args.insert(2, n)
                    n = 1
            elif kind is Concat:
                c2 = sum(ch[x] for x in f)
            elif kind is Detect:
                args.append([ch[x] for x in f])
            if not (isinstance(n, int) and 1 <= n <= _MAX_REPEATS) or (c2 is not None and not 0 < c2 <= _MAX_CHANNELS):
                raise ArchitectureError(f"layer {i} ({entry!r}): {n} repeats of {c2} channels is beyond a yolov5 "
                                        f"detector (at most {_MAX_REPEATS} and {_MAX_CHANNELS})")
            layer = nn.Sequential(*(kind(*args) for _ in range(n))) if n > 1 else kind(*args)
            layers.append(layer)
            sources.append(f)
            save.update(x % i for x in ([f] if isinstance(f, int) else f) if x != -1)
            if i == 0:
                ch = []
            ch.append(c2)
    except (TypeError, ValueError, IndexError) as e:
        if isinstance(e, ArchitectureError):
            raise
        raise ArchitectureError(f"layer {i} ({entry!r}) cannot be built: {e}") from e
    finally:
        _ACTIVATION = previous
    if not isinstance(layers[-1], Detect):
        raise ArchitectureError("the last layer is not a Detect head")
    return YoloV5(nn.Sequential(*layers), sources, save).eval()
