"""The inference module: images in, final detections out; what gets exported to ONNX.

With ``spec.scan_views`` > 1 the module runs the network once on a batch of the input's
views (mirrored, upside down, turned by 90 degrees: :func:`view_tensor`), maps each view's
heatmap and box distances back onto the input (:func:`unview_map`), and decodes the mean of
them: one set of detections from all views, in the input's own pixels. It also returns each
view's top heatmap score (``view_scores``, ``(B, V)``), from which the scan score is formed
(the runtime and :func:`xscan.train.engine.predict` average them). Everything happens inside
the exported graph, so the ONNX file carries the views with the rest of its contract.
"""

from __future__ import annotations

import torch
from torch import nn

from xscan.models.peak_decode import PeakDecoder
from xscan.spec import ModelSpec


def view_tensor(x: torch.Tensor, k: int) -> torch.Tensor:
    """View ``k`` (0..7) of ``(..., H, W)`` tensors, as :func:`xscan.preprocess.scan_view`:
    bit 0 mirrors left to right, bit 1 upside down, bit 2 then turns by 90 degrees."""
    if k & 1:
        x = torch.flip(x, dims=(-1,))
    if k & 2:
        x = torch.flip(x, dims=(-2,))
    if k & 4:
        x = torch.rot90(x, 1, dims=(-2, -1))
    return x.contiguous()


def unview_map(m: torch.Tensor, k: int, ltrb: bool = False) -> torch.Tensor:
    """An output map ``(B, C, h, w)`` of view ``k`` back on the input's grid. ``ltrb``: the
    channels are box-side distances (left, top, right, bottom), which the view permutes."""
    if k & 4:  # undo the turn; a view's (l, t, r, b) is the input's (t, r, b, l)
        m = torch.rot90(m, -1, dims=(-2, -1))
        if ltrb:
            m = m[:, [3, 0, 1, 2]]
    if k & 2:
        m = torch.flip(m, dims=(-2,))
        if ltrb:
            m = m[:, [0, 3, 2, 1]]
    if k & 1:
        m = torch.flip(m, dims=(-1,))
        if ltrb:
            m = m[:, [2, 1, 0, 3]]
    return m


class DetectorInference(nn.Module):
    """``forward(images (B, C, H, W) float32 in [0, 1])`` -> ``(boxes (B, K, 4) float32 xyxy
    input pixels, scores (B, K) float32, classes (B, K) int64, num_dets (B,) int64)`` with
    ``K = spec.max_detections``; the first ``num_dets[b]`` rows are valid, sorted by score.
    With ``views`` > 1 (module docstring) a fifth output, ``view_scores (B, views)``."""

    def __init__(self, model: nn.Module, decoder: PeakDecoder, views: int = 1):
        super().__init__()
        self.model = model
        self.decoder = decoder
        self.views = int(views)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.views == 1:
            out = self.model(images)
            return self.decoder(out["heatmap"], out["ltrb"])
        v = self.views
        out = self.model(torch.cat([view_tensor(images, k) for k in range(v)]))
        heat = torch.sigmoid(out["heatmap"].float())
        ltrb = out["ltrb"].float()
        # (V * B, C, h, w) -> (V, B, C, h, w); static sizes keep the batch axis dynamic.
        heat = heat.reshape(v, -1, *heat.shape[1:])
        ltrb = ltrb.reshape(v, -1, *ltrb.shape[1:])
        view_scores = heat.flatten(2).amax(dim=2).transpose(0, 1)  # (B, V)
        merged_heat = torch.stack([unview_map(heat[k], k) for k in range(v)]).mean(dim=0)
        merged_ltrb = torch.stack([unview_map(ltrb[k], k, ltrb=True) for k in range(v)]).mean(0)
        return (*self.decoder.decode(merged_heat, merged_ltrb), view_scores)


def build_decoder(
    model: nn.Module, spec: ModelSpec, score_threshold: float | None = None
) -> PeakDecoder:
    """The decode for ``model``; ``score_threshold`` defaults to ``spec.score_threshold``."""
    thr = spec.score_threshold if score_threshold is None else score_threshold
    return PeakDecoder(model.stride, spec.num_classes, spec.input_size, spec.max_detections, thr)


def build_inference_module(
    model: nn.Module, spec: ModelSpec, score_threshold: float | None = None
) -> nn.Module:
    """Wrap a detector (in eval mode) with its export-ready decode and ``spec.scan_views``
    views (``score_threshold``: the decode's, default ``spec.score_threshold``).

    Anomaly models (``spec.task == "anomaly"``) are their own inference modules and are
    returned unchanged.
    """
    if spec.task != "detect":
        return model.eval()
    decoder = build_decoder(model, spec, score_threshold)
    return DetectorInference(model, decoder, spec.scan_views).eval()
