"""PatchCore-style anomaly model: a memory bank of benign patch features, nearest-neighbour scoring.

Roth et al., "Towards Total Recall in Industrial Anomaly Detection" (CVPR 2022), adapted to
X-ray: the backbone (``arch_params.backbone``) is xscan's own small CNN (``xray``, default: no
ImageNet weights, seeded random init unless ``train.init_weights`` loads some) or the
MobileNetV3-Small backbone of xscan's detector (``detector``, weights from a detector
checkpoint trained on X-ray scans via ``train.init_weights``), and the nearest-neighbour
search is written as a matmul plus ``argmin`` (``||b||^2 - 2 a.b``), so the ONNX export runs
in onnxruntime without ``cdist``.

The memory bank is a registered buffer of shape ``(spec.arch_params["memory_bank_size"], D)``,
so ``build_model(spec)`` creates it with the right shape before ``load_state_dict``.

Shapes: ``forward(images (B, C, H, W) float32 in [0, 1]) -> (anomaly_map (B, 1, H/s, W/s),
scores (B,))`` with ``s = map_stride``; map values are distances in feature space (raw, not
normalised), the score is the maximum of the smoothed map.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from xscan.models.anomaly_backbone import MapSmoothing, build_anomaly_backbone, resample_to
from xscan.models.registry import register_model
from xscan.spec import ModelSpec

ARCH = "anomaly_patchcore"

DEFAULTS: dict[str, Any] = {
    "backbone": "xray",  # or "detector" (the detector's MobileNetV3-Small stages)
    "layers": [1, 2],  # backbone stages (stage i at stride 2 ** (i + 1): strides 4 and 8)
    "width": 1.0,  # channel multiplier (detector: torchvision width_mult of the weights)
    "backbone_seed": 0,
    "map_stride": 8,
    "pool": 3,  # local neighbourhood aggregation (PatchCore's 3x3 average)
    # "zeros" (the backbone's own) or "replicate": border handling of every convolution and of
    # the neighbourhood average (see PatchFeatures)
    "padding": "zeros",
    "memory_bank_size": 1,  # set by fitting; >= 1 so an unfitted model still builds
    "smooth_sigma": 1.0,  # in map pixels
}


def arch_params(spec: ModelSpec) -> dict[str, Any]:
    """The spec's arch_params over the defaults; unknown keys are an error naming the field."""
    unknown = sorted(set(spec.arch_params) - set(DEFAULTS))
    if unknown:
        raise ValueError(
            f"model.arch_params: unknown key(s) {unknown} for {ARCH}; known: {sorted(DEFAULTS)}"
        )
    p = {**DEFAULTS, **spec.arch_params}
    if int(p["memory_bank_size"]) < 1:
        raise ValueError("model.arch_params.memory_bank_size: expected >= 1")
    if p["padding"] not in PADDINGS:
        raise ValueError(
            f"model.arch_params.padding: expected one of {list(PADDINGS)}, got {p['padding']!r}"
        )
    return p


PADDINGS = ("zeros", "replicate")


def replicate_padding(module: nn.Module) -> nn.Module:
    """Switch every padded ``Conv2d`` in ``module`` to edge (replicate) padding, in place.

    With zero padding, a patch near the input's border sees a dark frame that no interior patch
    sees: its features differ from the same content anywhere else, so the nearest benign patch
    is far and every tile's border lights up (on a uniform region of a 2048x1024 cargo scan,
    raw distance ~0.5 in the outer 3-4 map pixels of a tile against exactly 0 inside; the
    in-graph smoothing spreads that over ~100 px, and the stitched scan shows the tile grid).
    Edge padding continues the border pixels outwards, so a uniform region has the same
    features up to the border. Weights are unchanged: padding mode is not a parameter.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and any(int(v) > 0 for v in m.padding):
            m.padding_mode = "replicate"
    return module


class PatchFeatures(nn.Module):
    """Backbone + local aggregation + resampling to one grid: ``(B, D, H/s, W/s)``.

    ``padding: replicate`` (see :func:`replicate_padding`) also averages each neighbourhood over
    the pixels inside the input only (``count_include_pad=False``), so border patches are not
    scaled down by the zeros outside.
    """

    def __init__(self, spec: ModelSpec, p: dict[str, Any]) -> None:
        super().__init__()
        self.backbone = build_anomaly_backbone(
            str(p["backbone"]),
            spec.in_channels,
            spec.mean,
            spec.std,
            p["layers"],
            p["width"],
            p["backbone_seed"],
        )
        self.edge_padding = p["padding"] == "replicate"
        if self.edge_padding:
            replicate_padding(self.backbone)
        self.map_stride = int(p["map_stride"])
        self.pool = int(p["pool"])
        self.dim = sum(self.backbone.channels)
        self.factors = [
            self.map_stride // s if s <= self.map_stride else 0 for s in self.backbone.strides
        ]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(images)
        h = images.shape[-2] // self.map_stride
        w = images.shape[-1] // self.map_stride
        out = []
        for f, factor in zip(feats, self.factors, strict=True):
            if self.pool > 1:
                f = nn.functional.avg_pool2d(
                    f, self.pool, 1, self.pool // 2, count_include_pad=not self.edge_padding
                )
            out.append(resample_to(f, (h, w), factor))
        return torch.cat(out, dim=1)


def nearest_distance(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of each query ``(M, D)`` to its nearest bank row ``(N, D)`` -> ``(M,)``.

    The search is one ``Gemm`` and an ``ArgMin`` (plain ONNX ops, no ``cdist``): the nearest
    row minimises ``||b||^2 - 2 a.b`` (the query's own norm is the same for every row, so it
    is left out). The distance to the row found is then recomputed directly, because the
    expanded form cancels catastrophically for near-identical patches (benign air, where the
    true distance is ~0) and would make PyTorch and onnxruntime disagree there. With a bank of
    thousands of rows this search is most of a tile's arithmetic; as one ``Gemm`` (``transB``) the
    exported file holds the bank once, and a 2048x1024 cargo scan scored ~10 % faster than
    with the earlier ``topk`` form (docs/benchmarks.md).
    """
    bank_sq = (bank * bank).sum(1).unsqueeze(0)
    idx = torch.addmm(bank_sq, queries, bank.t(), beta=1.0, alpha=-2.0).argmin(dim=1)
    diff = queries - bank.index_select(0, idx)
    return torch.sqrt((diff * diff).sum(1))


class PatchCore(nn.Module):
    """Memory-bank anomaly model; see the module docstring for shapes."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        p = arch_params(spec)
        self.features = PatchFeatures(spec, p)
        self.register_buffer(
            "memory_bank", torch.zeros(int(p["memory_bank_size"]), self.features.dim)
        )
        self.smooth = MapSmoothing(float(p["smooth_sigma"]))

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patch embeddings ``(B, h*w, D)`` used to fill the memory bank."""
        f = self.features(images)
        return f.flatten(2).transpose(1, 2)

    def set_memory_bank(self, bank: torch.Tensor) -> None:
        """Replace the bank ``(N, D)``; the caller records ``N`` in the spec."""
        if bank.ndim != 2 or bank.shape[1] != self.features.dim:
            raise ValueError(
                f"memory bank: expected (N, {self.features.dim}), got {tuple(bank.shape)}"
            )
        self.memory_bank = bank.detach().to(torch.float32).contiguous().clone()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(images)
        b, d, h, w = f.shape
        q = f.permute(0, 2, 3, 1).reshape(-1, d)
        dist = nearest_distance(q, self.memory_bank)
        amap = self.smooth(dist.reshape(b, 1, h, w))
        scores = amap.flatten(1).max(dim=1).values
        return amap, scores


def greedy_coreset(
    embeddings: torch.Tensor,
    n: int,
    proj_dim: int = 128,
    seed: int = 0,
    covered: torch.Tensor | None = None,
) -> torch.Tensor:
    """Indices ``(n,) int64`` of a greedy k-center coreset of ``embeddings (M, D)``.

    Distances are computed on a seeded Johnson-Lindenstrauss random projection to
    ``proj_dim`` dimensions (as PatchCore does), which keeps selection fast and close to the
    full-dimensional result. Each step adds the point farthest from the chosen set. With
    ``covered (C, D)`` (rows already in the bank) the selection continues from them: the first
    pick is the point farthest from ``covered``, and so on.
    """
    m = embeddings.shape[0]
    if n >= m:
        return torch.arange(m)
    g = torch.Generator().manual_seed(seed)
    x = embeddings.to(torch.float32)
    proj = None
    if proj_dim and proj_dim < x.shape[1]:
        proj = torch.randn(x.shape[1], proj_dim, generator=g) / proj_dim**0.5
        x = x @ proj
    x = x.contiguous()
    sq = (x * x).sum(1)
    chosen = torch.empty(n, dtype=torch.long)
    if covered is not None and len(covered):
        c = covered.to(torch.float32)
        c = c @ proj if proj is not None else c
        c_sq = (c * c).sum(1)
        min_d = torch.empty(m)
        for i in range(0, m, 8192):  # (8192, C) blocks: no (M, C) temporary
            blk = torch.addmm(c_sq[None], x[i : i + 8192], c.t(), alpha=-2.0)
            min_d[i : i + 8192] = sq[i : i + 8192] + blk.min(dim=1).values
        first = 0
    else:
        start = int(torch.randint(m, (1,), generator=g))
        chosen[0] = start
        # ||x - c||^2 = ||x||^2 + ||c||^2 - 2 x.c: one matrix-vector product per step, no (M, d)
        # temporary (the selection is memory-bound on large banks)
        min_d = sq + sq[start] - 2.0 * torch.mv(x, x[start])
        first = 1
    for i in range(first, n):
        idx = int(torch.argmax(min_d))
        chosen[i] = idx
        torch.minimum(min_d, sq + sq[idx] - 2.0 * torch.mv(x, x[idx]), out=min_d)
    return chosen


@register_model(ARCH, task="anomaly")
def build_patchcore(spec: ModelSpec) -> PatchCore:
    return PatchCore(spec)
