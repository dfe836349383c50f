"""An anchor-free, NMS-free detector: torchvision backbone + FPN + CenterNet-style head.

The head predicts, on one feature map at ``head_stride``, a per-class centre heatmap (logits)
and, at every location, the distances to the four box sides (left, top, right, bottom) in input
pixels (the TTFNet variant of CenterNet, which trains faster than size+offset regression).
Loss (:mod:`xscan.models.centernet_loss`) and decode (:mod:`xscan.models.peak_decode`) live
apart from the network.

Input: ``images`` float32 ``(B, C, H, W)`` in [0, 1]; normalisation by ``spec.mean``/``spec.std``
happens inside :meth:`CenterNet.forward`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FeaturePyramidNetwork

from xscan.models.backbone import build_backbone
from xscan.models.registry import register_model
from xscan.spec import ModelSpec

PRIOR_PROB = 0.01


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class CenterNetHead(nn.Module):
    """Two conv towers: ``heatmap`` logits (B, num_classes, h, w) and ``ltrb`` (B, 4, h, w)."""

    def __init__(self, in_channels: int, num_classes: int, channels: int, depth: int, stride: int):
        super().__init__()
        self.stride = stride

        def tower() -> nn.Sequential:
            layers = [_conv_bn_relu(in_channels, channels)]
            layers += [_conv_bn_relu(channels, channels) for _ in range(depth - 1)]
            return nn.Sequential(*layers)

        self.cls_tower, self.box_tower = tower(), tower()
        self.heatmap = nn.Conv2d(channels, num_classes, 1)
        self.ltrb = nn.Conv2d(channels, 4, 1)
        nn.init.constant_(self.heatmap.bias, -math.log((1 - PRIOR_PROB) / PRIOR_PROB))
        nn.init.normal_(self.ltrb.weight, std=0.01)
        nn.init.zeros_(self.ltrb.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        heat = self.heatmap(self.cls_tower(x))
        # softplus keeps distances positive without dead units; scaled to input pixels.
        ltrb = F.softplus(self.ltrb(self.box_tower(x))) * (4.0 * self.stride)
        return {"heatmap": heat, "ltrb": ltrb}


class CenterNet(nn.Module):
    """Backbone -> FPN -> head on the FPN level at ``head_stride``.

    ``forward(images (B, C, H, W) float in [0, 1])`` returns
    ``{"heatmap": (B, K, H/s, W/s) logits, "ltrb": (B, 4, H/s, W/s) pixels}``.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        backbone: str = "mobilenet_v3_large",
        width_mult: float = 1.0,
        fpn_channels: int = 64,
        head_channels: int = 64,
        head_depth: int = 2,
        head_stride: int = 8,
    ):
        super().__init__()
        if head_stride not in (4, 8):
            raise ValueError(f"model.arch_params.head_stride: expected 4 or 8, got {head_stride}")
        self.num_classes = num_classes
        self.stride = head_stride
        strides = tuple(s for s in (4, 8, 16, 32) if s >= head_stride)
        self.backbone = build_backbone(backbone, in_channels, strides, width_mult)
        self.fpn = FeaturePyramidNetwork(self.backbone.out_channels, fpn_channels)
        # Only the finest level feeds the head: the 3x3 output convs of the coarser levels
        # would be computed for nothing (and leave DDP with parameters that get no gradient).
        for i in range(1, len(self.fpn.layer_blocks)):
            self.fpn.layer_blocks[i] = nn.Identity()
        self.head = CenterNetHead(fpn_channels, num_classes, head_channels, head_depth, head_stride)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (images - self.mean) / self.std
        feats = self.fpn(OrderedDict(self.backbone(x)))
        return self.head(feats[f"s{self.stride}"])

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False):
        """Like :meth:`nn.Module.load_state_dict`, but a class-count mismatch is a clear error."""
        w = state_dict.get("head.heatmap.weight") if hasattr(state_dict, "get") else None
        if w is not None and w.shape[0] != self.num_classes:
            raise ValueError(
                f"weights were trained for {w.shape[0]} class(es) but the spec has "
                f"{self.num_classes} (len(spec.class_names)); use the spec stored with the weights"
            )
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


CENTERNET_PARAMS = (
    "backbone",
    "width_mult",
    "fpn_channels",
    "head_channels",
    "head_depth",
    "head_stride",
)


@register_model("centernet", task="detect")
def build_centernet(spec: ModelSpec) -> CenterNet:
    """CenterNet from ``spec``; ``spec.arch_params`` may set any of :data:`CENTERNET_PARAMS`."""
    unknown = sorted(set(spec.arch_params) - set(CENTERNET_PARAMS))
    if unknown:
        raise ValueError(
            f"model.arch_params: unknown key(s) {unknown} for centernet; known: {CENTERNET_PARAMS}"
        )
    h, w = spec.input_size
    stride = int(spec.arch_params.get("head_stride", 8))
    if h % 32 or w % 32:
        raise ValueError(f"model.input_size: centernet needs multiples of 32, got {(h, w)}")
    return CenterNet(
        num_classes=spec.num_classes,
        in_channels=spec.in_channels,
        mean=spec.mean,
        std=spec.std,
        **{**spec.arch_params, "head_stride": stride},
    )
