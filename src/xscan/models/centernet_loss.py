"""Training targets and loss for :class:`~xscan.models.centernet.CenterNet`.

Targets follow TTFNet (Liu et al., 2020): each object puts an elliptical Gaussian, shaped like
its box, on its class's heatmap; box regression is trained at every location of a (narrower)
Gaussian region with GIoU loss, weighted by the Gaussian and by the log of the box area, so
large and small objects both matter and training converges in few epochs.

Coordinates: target boxes are ``(N, 4) float32 xyxy`` in input pixels; feature location
``(i, j)`` sits at input pixel ``((j + 0.5) * stride, (i + 0.5) * stride)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import generalized_box_iou_loss


def _gaussians(boxes: torch.Tensor, h: int, w: int, stride: int, alpha: float) -> torch.Tensor:
    """``(N, h, w)`` elliptical Gaussians peaking at exactly 1 on each box's centre cell."""
    cx = ((boxes[:, 0] + boxes[:, 2]) / (2 * stride)).floor().clamp(0, w - 1)
    cy = ((boxes[:, 1] + boxes[:, 3]) / (2 * stride)).floor().clamp(0, h - 1)
    sx = (alpha * (boxes[:, 2] - boxes[:, 0]) / (6 * stride)).clamp(min=0.3)
    sy = (alpha * (boxes[:, 3] - boxes[:, 1]) / (6 * stride)).clamp(min=0.3)
    xs = torch.arange(w, dtype=torch.float32, device=boxes.device)
    ys = torch.arange(h, dtype=torch.float32, device=boxes.device)
    gx = torch.exp(-((xs[None] - cx[:, None]) ** 2) / (2 * sx[:, None] ** 2))  # (N, w)
    gy = torch.exp(-((ys[None] - cy[:, None]) ** 2) / (2 * sy[:, None] ** 2))  # (N, h)
    return gy[:, :, None] * gx[:, None, :]


def build_targets(
    targets: list[dict[str, torch.Tensor]],
    num_classes: int,
    feat_hw: tuple[int, int],
    stride: int,
    alpha: float = 0.54,
    beta: float = 0.54,
) -> dict[str, torch.Tensor]:
    """Dense targets for a batch.

    Returns ``heatmap`` (B, K, h, w) in [0, 1], ``boxes`` (B, 4, h, w) xyxy input pixels and
    ``weight`` (B, h, w) regression weights (zero outside object regions).
    """
    h, w = feat_hw
    b = len(targets)
    heat = torch.zeros(b, num_classes, h, w)
    reg = torch.zeros(b, 4, h, w)
    weight = torch.zeros(b, h, w)
    for i, t in enumerate(targets):
        boxes = t["boxes"].float().reshape(-1, 4).cpu()
        labels = t["labels"].long().reshape(-1).cpu()
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, labels = boxes[keep], labels[keep]
        if len(boxes) == 0:
            continue
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(
                f"target labels must lie in 0..{num_classes - 1}, got {labels.tolist()}"
            )
        g = _gaussians(boxes, h, w, stride, alpha)
        for k in range(len(boxes)):
            heat[i, labels[k]] = torch.maximum(heat[i, labels[k]], g[k])
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        gb = _gaussians(boxes, h, w, stride, beta) if beta != alpha else g
        # Larger boxes first so that smaller ones overwrite them where regions overlap.
        for k in torch.argsort(area, descending=True).tolist():
            region = gb[k] > 0.05
            region_w = gb[k] * region
            norm = region_w.sum().clamp(min=1e-6)
            reg[i][:, region] = boxes[k][:, None]
            weight[i][region] = (region_w[region] / norm) * math.log(max(area[k].item(), 2.0))
    return {"heatmap": heat, "boxes": reg, "weight": weight}


def centernet_focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, normalised by the number of object centres."""
    logits = logits.float()
    pos = target.eq(1).float()
    log_p = F.logsigmoid(logits)
    log_1mp = F.logsigmoid(-logits)
    p = torch.sigmoid(logits)
    pos_loss = (log_p * (1 - p) ** 2 * pos).sum()
    neg_loss = (log_1mp * p**2 * (1 - target) ** 4 * (1 - pos)).sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp(min=1.0)


def location_grid(h: int, w: int, stride: int, device: torch.device) -> torch.Tensor:
    """``(2, h, w)`` input-pixel x, y of each feature location."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * stride
    return torch.stack([xs[None].expand(h, w), ys[:, None].expand(h, w)])


def ltrb_to_boxes(ltrb: torch.Tensor, stride: int) -> torch.Tensor:
    """``(B, 4, h, w)`` side distances -> ``(B, 4, h, w)`` xyxy boxes in input pixels."""
    h, w = ltrb.shape[-2:]
    grid = location_grid(h, w, stride, ltrb.device).to(ltrb.dtype)
    return torch.cat([grid - ltrb[:, :2], grid + ltrb[:, 2:]], dim=1)


class CenterNetLoss(nn.Module):
    """``forward(outputs, targets) -> {"loss", "loss_heatmap", "loss_box"}`` (scalar tensors).

    ``outputs`` is what :class:`CenterNet` returns; ``targets`` a list of dicts with ``boxes``
    (N, 4) xyxy input pixels and ``labels`` (N,) int64 in ``0..num_classes-1``.
    """

    def __init__(self, num_classes: int, stride: int, box_weight: float = 5.0):
        super().__init__()
        self.num_classes = num_classes
        self.stride = stride
        self.box_weight = box_weight

    def forward(
        self, outputs: dict[str, torch.Tensor], targets: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        heat_logits = outputs["heatmap"].float()
        ltrb = outputs["ltrb"].float()
        dev = heat_logits.device
        t = build_targets(targets, self.num_classes, tuple(heat_logits.shape[-2:]), self.stride)
        loss_heat = centernet_focal_loss(heat_logits, t["heatmap"].to(dev))
        weight = t["weight"].to(dev)
        mask = weight > 0
        if mask.any():
            pred = ltrb_to_boxes(ltrb, self.stride).permute(0, 2, 3, 1)[mask]
            tgt = t["boxes"].to(dev).permute(0, 2, 3, 1)[mask]
            giou = generalized_box_iou_loss(pred, tgt, reduction="none")
            loss_box = (giou * weight[mask]).sum() / weight[mask].sum().clamp(min=1e-6)
        else:
            loss_box = ltrb.sum() * 0.0
        loss = loss_heat + self.box_weight * loss_box
        return {"loss": loss, "loss_heatmap": loss_heat.detach(), "loss_box": loss_box.detach()}


def build_criterion(model: nn.Module) -> nn.Module:
    """The training loss that goes with ``model``."""
    return CenterNetLoss(model.num_classes, model.stride)
