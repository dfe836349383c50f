"""Backbones from ``torchvision.models`` returning multi-scale feature maps.

Weights are always initialised randomly here (``weights=None``: nothing is downloaded);
``train.init_weights`` loads local weights when a user has them. The first convolution is
rebuilt when the modality does not have three channels.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torchvision
from torch import nn

BACKBONES = (
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "resnet18",
    "resnet34",
    "regnet_x_400mf",
    "regnet_y_400mf",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
)


def _replace_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    if conv.in_channels == in_channels:
        return conv
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=conv.bias is not None,
    )


class MultiScaleBackbone(nn.Module):
    """A sequence of stages; ``forward`` returns the outputs of the stages whose stride is in
    ``strides`` as an ordered dict ``{"s8": (B, C8, H/8, W/8), ...}``."""

    def __init__(self, stages: list[nn.Module], stage_strides: list[int], strides: tuple[int, ...]):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.stage_strides = list(stage_strides)
        self.strides = tuple(strides)
        missing = set(strides) - set(stage_strides)
        if missing:
            raise ValueError(f"backbone has no stage at stride(s) {sorted(missing)}")
        self.out_channels: list[int] = []

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for stage, stride in zip(self.stages, self.stage_strides, strict=True):
            x = stage(x)
            if stride in self.strides:
                out[f"s{stride}"] = x
        return out


def _mobilenet_stages(name: str, in_channels: int, width_mult: float) -> tuple[list, list]:
    ctor = getattr(torchvision.models, name)
    net = ctor(weights=None, width_mult=width_mult)
    feats = net.features
    feats[0][0] = _replace_first_conv(feats[0][0], in_channels)
    # Split the feature sequence at each downsampling block, found by a dry run.
    stages, strides, current, stride = [], [], [], 1
    x = torch.zeros(1, in_channels, 64, 64)
    with torch.no_grad():
        for block in feats:
            y = block(x)
            if y.shape[-1] < x.shape[-1] and current:
                stages.append(nn.Sequential(*current))
                strides.append(stride)
                current = []
            stride = 64 // y.shape[-1]
            current.append(block)
            x = y
    stages.append(nn.Sequential(*current))
    strides.append(stride)
    return stages, strides


def _resnet_stages(name: str, in_channels: int) -> tuple[list, list]:
    net = getattr(torchvision.models, name)(weights=None)
    net.conv1 = _replace_first_conv(net.conv1, in_channels)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
    return [stem, net.layer2, net.layer3, net.layer4], [4, 8, 16, 32]


def _regnet_stages(name: str, in_channels: int) -> tuple[list, list]:
    net = getattr(torchvision.models, name)(weights=None)
    net.stem[0] = _replace_first_conv(net.stem[0], in_channels)
    t = net.trunk_output
    return [nn.Sequential(net.stem, t.block1), t.block2, t.block3, t.block4], [4, 8, 16, 32]


def _shufflenet_stages(name: str, in_channels: int) -> tuple[list, list]:
    net = getattr(torchvision.models, name)(weights=None)
    net.conv1[0] = _replace_first_conv(net.conv1[0], in_channels)
    stem = nn.Sequential(net.conv1, net.maxpool)
    return [stem, net.stage2, net.stage3, nn.Sequential(net.stage4, net.conv5)], [4, 8, 16, 32]


def build_backbone(
    name: str, in_channels: int, strides: tuple[int, ...] = (8, 16, 32), width_mult: float = 1.0
) -> MultiScaleBackbone:
    """Backbone ``name`` (one of :data:`BACKBONES`) returning features at ``strides``."""
    if name not in BACKBONES:
        raise ValueError(f"model.arch_params.backbone: expected one of {BACKBONES}, got {name!r}")
    if name.startswith("mobilenet_v3"):
        stages, stage_strides = _mobilenet_stages(name, in_channels, width_mult)
    elif name.startswith("resnet"):
        stages, stage_strides = _resnet_stages(name, in_channels)
    elif name.startswith("regnet"):
        stages, stage_strides = _regnet_stages(name, in_channels)
    else:
        stages, stage_strides = _shufflenet_stages(name, in_channels)
    backbone = MultiScaleBackbone(stages, stage_strides, strides)
    with torch.no_grad():
        feats = backbone(torch.zeros(1, in_channels, 64, 64))
    backbone.out_channels = [f.shape[1] for f in feats.values()]
    return backbone
