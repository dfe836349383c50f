"""Student-teacher anomaly model (STFPM-like): a student regresses a frozen teacher's features.

Wang et al., "Student-Teacher Feature Pyramid Matching for Anomaly Detection" (BMVC 2021).
The teacher is xscan's X-ray backbone (seeded random or locally trained weights), frozen; the
student has the same architecture and is trained on benign scans only to reproduce the
teacher's L2-normalised features at several scales. On unseen structures the student fails
to follow, and the per-pixel discrepancy is the anomaly map.

Shapes: ``forward(images (B, C, H, W) float32 in [0, 1]) -> (anomaly_map (B, 1, H/s, W/s),
scores (B,))`` with ``s = map_stride``; the map is the sum over scales of
``0.5 * ||t/|t| - s/|s|||^2`` (raw), the score is the maximum of the smoothed map.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from xscan.models.anomaly_backbone import MapSmoothing, XrayBackbone, resample_to
from xscan.models.registry import register_model
from xscan.spec import ModelSpec

ARCH = "anomaly_stfpm"

DEFAULTS: dict[str, Any] = {
    "layers": [0, 1, 2],
    "width": 1.0,
    "teacher_seed": 0,
    "student_seed": 1,
    "map_stride": 4,
    "smooth_sigma": 1.0,
}


def arch_params(spec: ModelSpec) -> dict[str, Any]:
    unknown = sorted(set(spec.arch_params) - set(DEFAULTS))
    if unknown:
        raise ValueError(
            f"model.arch_params: unknown key(s) {unknown} for {ARCH}; known: {sorted(DEFAULTS)}"
        )
    return {**DEFAULTS, **spec.arch_params}


def _normalise(f: torch.Tensor) -> torch.Tensor:
    return f / torch.sqrt((f * f).sum(1, keepdim=True) + 1e-6)


class StudentTeacher(nn.Module):
    """Frozen teacher + trainable student; see the module docstring for shapes."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        p = arch_params(spec)
        args = (spec.in_channels, spec.mean, spec.std, p["layers"], p["width"])
        self.teacher = XrayBackbone(*args, seed=int(p["teacher_seed"]))
        self.student = XrayBackbone(*args, seed=int(p["student_seed"]))
        for q in self.teacher.parameters():
            q.requires_grad_(False)
        self.map_stride = int(p["map_stride"])
        self.factors = [
            self.map_stride // s if s <= self.map_stride else 0 for s in self.teacher.strides
        ]
        self.smooth = MapSmoothing(float(p["smooth_sigma"]))

    def train(self, mode: bool = True) -> StudentTeacher:
        super().train(mode)
        self.teacher.eval()  # BN statistics of the teacher stay fixed
        return self

    def pair_features(self, images: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised (teacher, student) features per scale, ``(B, C_l, H/s_l, W/s_l)``."""
        with torch.no_grad():
            t = self.teacher(images)
        s = self.student(images)
        return [(_normalise(a), _normalise(b)) for a, b in zip(t, s, strict=True)]

    def loss(self, images: torch.Tensor) -> torch.Tensor:
        """Training loss on benign images: mean per-pixel discrepancy summed over scales."""
        return sum(0.5 * ((t - s) ** 2).sum(1).mean() for t, s in self.pair_features(images))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = images.shape[-2] // self.map_stride
        w = images.shape[-1] // self.map_stride
        amap = None
        for (t, s), factor in zip(self.pair_features(images), self.factors, strict=True):
            d = 0.5 * ((t - s) ** 2).sum(1, keepdim=True)
            d = resample_to(d, (h, w), factor)
            amap = d if amap is None else amap + d
        amap = self.smooth(amap)
        scores = amap.flatten(1).max(dim=1).values
        return amap, scores


@register_model(ARCH, task="anomaly")
def build_stfpm(spec: ModelSpec) -> StudentTeacher:
    return StudentTeacher(spec)
