"""The inference module: images in, final detections out; what gets exported to ONNX."""

from __future__ import annotations

import torch
from torch import nn

from xscan.models.peak_decode import PeakDecoder
from xscan.spec import ModelSpec


class DetectorInference(nn.Module):
    """``forward(images (B, C, H, W) float32 in [0, 1])`` -> ``(boxes (B, K, 4) float32 xyxy
    input pixels, scores (B, K) float32, classes (B, K) int64, num_dets (B,) int64)`` with
    ``K = spec.max_detections``; the first ``num_dets[b]`` rows are valid, sorted by score."""

    def __init__(self, model: nn.Module, decoder: nn.Module):
        super().__init__()
        self.model = model
        self.decoder = decoder

    def forward(
        self, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(images)
        return self.decoder(out["heatmap"], out["ltrb"])


def build_decoder(
    model: nn.Module, spec: ModelSpec, score_threshold: float | None = None
) -> PeakDecoder:
    """The decode for ``model``; ``score_threshold`` defaults to ``spec.score_threshold``."""
    thr = spec.score_threshold if score_threshold is None else score_threshold
    return PeakDecoder(model.stride, spec.num_classes, spec.input_size, spec.max_detections, thr)


def build_inference_module(model: nn.Module, spec: ModelSpec) -> nn.Module:
    """Wrap a detector (in eval mode) with its export-ready decode.

    Anomaly models (``spec.task == "anomaly"``) are their own inference modules and are
    returned unchanged.
    """
    if spec.task != "detect":
        return model.eval()
    return DetectorInference(model, build_decoder(model, spec)).eval()
