"""NMS-free decode of CenterNet outputs, written to export to ONNX.

Peaks are local maxima of the class heatmaps, found with a 3x3 max-pool (no NMS); the top K
over all classes and locations are kept. Every shape except the batch axis is static, and no
``%`` on dynamic sizes is used (it does not convert; ``idx - (idx // n) * n`` does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xscan.models.centernet_loss import ltrb_to_boxes


class PeakDecoder(nn.Module):
    """``forward(heatmap logits (B, C, h, w), ltrb (B, 4, h, w))`` ->
    ``boxes (B, K, 4) float32 xyxy input px, scores (B, K) float32, classes (B, K) int64,
    num_dets (B,) int64``.

    Rows are sorted by score; the first ``num_dets[b]`` rows have ``score >= score_threshold``.
    Rows after them carry the next-best candidates (scores below the threshold) or zeros when
    the map has fewer than K locations. Boxes are clipped to ``input_size`` ``(H, W)``.
    """

    def __init__(
        self,
        stride: int,
        num_classes: int,
        input_size: tuple[int, int],
        max_detections: int = 100,
        score_threshold: float = 0.0,
    ):
        super().__init__()
        self.stride = stride
        self.num_classes = num_classes
        self.input_size = tuple(input_size)
        self.max_detections = max_detections
        self.score_threshold = score_threshold

    def forward(
        self, heatmap: torch.Tensor, ltrb: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.decode(torch.sigmoid(heatmap.float()), ltrb)

    def decode(
        self, heat: torch.Tensor, ltrb: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`forward` for a heatmap of probabilities (after the sigmoid)."""
        # Static sizes (from the spec, not the traced shapes) keep the exported graph simple.
        c = self.num_classes
        hw = (self.input_size[0] // self.stride) * (self.input_size[1] // self.stride)
        peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat).to(heat.dtype)
        k = min(self.max_detections, c * hw)
        scores, idx = torch.topk(peaks.flatten(1), k, dim=1)
        classes = idx // hw
        pos = idx - classes * hw
        boxes = ltrb_to_boxes(ltrb.float(), self.stride).flatten(2)  # (B, 4, hw)
        boxes = torch.gather(boxes, 2, pos.unsqueeze(1).expand(-1, 4, -1)).transpose(1, 2)
        height, width = self.input_size
        boxes = torch.stack(
            [
                boxes[..., 0].clamp(0, width),
                boxes[..., 1].clamp(0, height),
                boxes[..., 2].clamp(0, width),
                boxes[..., 3].clamp(0, height),
            ],
            dim=-1,
        )
        pad = self.max_detections - k
        if pad > 0:
            boxes = F.pad(boxes, (0, 0, 0, pad))
            scores = F.pad(scores, (0, pad))
            classes = F.pad(classes, (0, pad))
        num_dets = (scores >= self.score_threshold).to(torch.int64).sum(dim=1)
        return boxes, scores, classes.to(torch.int64), num_dets
