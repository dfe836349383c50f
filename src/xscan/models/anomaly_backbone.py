"""A small convolutional feature extractor for anomaly models, trained on X-ray scans.

No ImageNet weights can be downloaded, so xscan's anomaly models use a compact CNN that is
either left at its seeded random initialisation (a fair and surprisingly strong baseline for
patch-level nearest-neighbour scoring) or loaded from local weights (``train.init_weights``:
a state dict, or an xscan detector checkpoint whose backbone matches by name and shape). No
self-supervised pretraining is implemented (``train.extra.pretrain`` is refused).

Shapes: input ``(B, C, H, W)`` float32 in [0, 1]; normalisation by ``mean``/``std`` happens
inside (so it is part of the exported graph). ``forward`` returns the feature maps of the
stages named in ``layers`` as a list, stride 4 -> ``(B, 48, H/4, W/4)``, stride 8 ->
``(B, 96, H/8, W/8)``, stride 16 -> ``(B, 192, H/16, W/16)``.

:class:`DetectorBackbone` is the alternative: the MobileNetV3-Small multi-scale backbone of
xscan's detector (:func:`xscan.models.backbone.build_backbone`, the same builder), cut after the
deepest stage used, meant to carry the weights of an xscan detector trained on X-ray scans
(``train.init_weights``: the ``backbone.*`` tensors of the checkpoint's ``model`` state). Same
interface: stage ``i`` has stride ``2 ** (i + 1)``; channels 16 (stride 4), 24 (8), 48 (16)
at width 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

STAGE_CHANNELS = (24, 48, 96, 192)  # strides 2, 4, 8, 16
STAGE_STRIDES_MNV3 = (2, 4, 8, 16, 32)  # DetectorBackbone's stages


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _StagedBackbone(nn.Module):
    """Normalisation by ``mean``/``std`` inside the network, then ``self.stages`` in turn;
    ``forward`` returns the outputs of the stages listed in ``self.layers``."""

    def _setup(
        self,
        in_channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        layers: Sequence[int],
        n_stages: int,
    ) -> None:
        name = type(self).__name__
        if len(mean) != in_channels or len(std) != in_channels:
            raise ValueError(
                f"{name}: mean/std need {in_channels} values, got {len(mean)}/{len(std)}"
            )
        if not layers or any(i not in range(n_stages) for i in layers):
            raise ValueError(f"{name}: layers must be in 0..{n_stages - 1}, got {list(layers)}")
        self.layers = tuple(sorted(layers))
        self.strides = tuple(2 ** (i + 1) for i in self.layers)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images - self.mean) / self.std
        feats = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.layers:
                feats.append(x)
        return feats


class XrayBackbone(_StagedBackbone):
    """Four stages of two 3x3 conv-BN-ReLU blocks; the first of each stage has stride 2."""

    def __init__(
        self,
        in_channels: int = 3,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.25, 0.25, 0.25),
        layers: Sequence[int] = (1, 2),
        width: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self._setup(in_channels, mean, std, layers, len(STAGE_CHANNELS))
        chans = [max(8, int(round(c * width))) for c in STAGE_CHANNELS]
        self.channels = tuple(chans[i] for i in self.layers)
        stages = []
        cin = in_channels
        for c in chans[: self.layers[-1] + 1]:
            stages.append(nn.Sequential(_conv_bn(cin, c, 2), _conv_bn(c, c, 1)))
            cin = c
        self.stages = nn.ModuleList(stages)
        self._init(seed)

    def _init(self, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                with torch.no_grad():
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)


DETECTOR_BACKBONE = "mobilenet_v3_small"


class DetectorBackbone(_StagedBackbone):
    """The detector's MobileNetV3-Small stages (``build_backbone``), normalisation inside.

    ``layers`` index the stages as in :class:`XrayBackbone` (stage ``i`` at stride
    ``2 ** (i + 1)``, 0..4); stages after the deepest one used are not built. ``width`` is
    torchvision's ``width_mult`` and must match the weights loaded. Parameter names
    (``stages.<i>...``) are those of the detector's ``backbone.`` prefix, so an xscan detector
    checkpoint loads by name. Without loaded weights the stages keep a seeded random init.
    """

    def __init__(
        self,
        in_channels: int = 3,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.25, 0.25, 0.25),
        layers: Sequence[int] = (1, 2),
        width: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        from xscan.models.backbone import build_backbone

        self._setup(in_channels, mean, std, layers, len(STAGE_STRIDES_MNV3))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_backbone(DETECTOR_BACKBONE, in_channels, self.strides, float(width))
        if list(net.stage_strides[: len(STAGE_STRIDES_MNV3)]) != list(STAGE_STRIDES_MNV3):
            raise ValueError(f"DetectorBackbone: unexpected stage strides {net.stage_strides}")
        self.stages = nn.ModuleList(list(net.stages)[: self.layers[-1] + 1])
        self.channels = tuple(net.out_channels)


def build_anomaly_backbone(
    kind: str,
    in_channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    layers: Sequence[int],
    width: float,
    seed: int,
) -> XrayBackbone | DetectorBackbone:
    """``kind`` ``"xray"`` (:class:`XrayBackbone`) or ``"detector"`` (:class:`DetectorBackbone`)."""
    if kind == "xray":
        return XrayBackbone(in_channels, mean, std, layers, width, seed)
    if kind == "detector":
        return DetectorBackbone(in_channels, mean, std, layers, width, seed)
    raise ValueError(f"model.arch_params.backbone: expected 'xray' or 'detector', got {kind!r}")


def load_backbone_weights(backbone: nn.Module, path: str) -> None:
    """Load local weights (a state dict, or a checkpoint with a ``model``/``backbone`` key).

    Keys may carry a ``backbone.`` prefix; shapes must match. Raises ``ValueError`` naming the
    file when nothing matches. A :class:`DetectorBackbone` loads strictly: every stage tensor
    must be present with its shape, and a checkpoint's spec must have the same mean/std.
    """
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: init_weights file not found")
    state = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(backbone, DetectorBackbone):
        _load_detector_backbone(backbone, state, p)
        return
    if isinstance(state, dict) and "backbone" in state and isinstance(state["backbone"], dict):
        state = state["backbone"]
    elif isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    own = backbone.state_dict()
    matched = {}
    for k, v in state.items():
        key = k[len("backbone.") :] if k.startswith("backbone.") else k
        if key in own and own[key].shape == v.shape:
            matched[key] = v
    if not matched:
        raise ValueError(f"{p}: no tensor matches the anomaly backbone (names/shapes differ)")
    backbone.load_state_dict(matched, strict=False)


def _load_detector_backbone(backbone: DetectorBackbone, state: dict, p) -> None:
    """Every stage tensor of ``backbone`` from the ``backbone.*`` tensors of a detector
    checkpoint's ``model`` state (or a plain state dict); a missing or misshapen tensor, or a
    detector normalised differently from the anomaly spec, is an error naming the file."""
    spec = state.get("spec") if isinstance(state, dict) else None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ValueError(f"{p}: init_weights: expected a state dict or an xscan checkpoint")
    own = {k: v for k, v in backbone.state_dict().items() if k.startswith("stages.")}
    missing, wrong = [], []
    matched = {}
    for k, v in own.items():
        src = state.get(f"backbone.{k}", state.get(k))
        if src is None:
            missing.append(k)
        elif src.shape != v.shape:
            wrong.append(f"{k} {tuple(src.shape)} vs {tuple(v.shape)}")
        else:
            matched[k] = src
    if missing or wrong:
        raise ValueError(
            f"{p}: init_weights does not hold the detector backbone the anomaly model builds "
            f"({DETECTOR_BACKBONE}, layers {list(backbone.layers)}): {len(missing)} tensor(s) "
            f"missing (first: {missing[:2]}), {len(wrong)} misshapen (first: {wrong[:2]}); "
            "check model.arch_params.width against the detector's width_mult"
        )
    if isinstance(spec, dict):
        for key in ("mean", "std"):
            theirs = spec.get(key)
            ours = getattr(backbone, key).flatten().tolist()
            if theirs is not None and not torch.allclose(
                torch.tensor([float(t) for t in theirs]), torch.tensor(ours)
            ):
                raise ValueError(
                    f"{p}: the detector was trained with {key} {list(theirs)} but the anomaly "
                    f"spec has {ours}; set model.{key} to the detector's"
                )
    backbone.load_state_dict(matched, strict=False)


class MapSmoothing(nn.Module):
    """Fixed Gaussian smoothing of an anomaly map ``(B, 1, h, w)`` with edge padding.

    Patch scores are noisy at single-patch scale; smoothing (PatchCore uses sigma 4 at input
    resolution) makes the maximum a stable image score. ``sigma`` is in map pixels; 0 disables.
    """

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = float(sigma)
        radius = max(1, int(round(3 * self.sigma))) if self.sigma > 0 else 0
        x = torch.arange(-radius, radius + 1, dtype=torch.float32)
        k = torch.exp(-0.5 * (x / max(self.sigma, 1e-6)) ** 2)
        k = k / k.sum()
        self.radius = radius
        self.register_buffer("kx", k.view(1, 1, 1, -1), persistent=False)
        self.register_buffer("ky", k.view(1, 1, -1, 1), persistent=False)

    def forward(self, amap: torch.Tensor) -> torch.Tensor:
        if self.radius == 0:
            return amap
        r = self.radius
        x = nn.functional.pad(amap, (r, r, 0, 0), mode="replicate")
        x = nn.functional.conv2d(x, self.kx)
        x = nn.functional.pad(x, (0, 0, r, r), mode="replicate")
        return nn.functional.conv2d(x, self.ky)


def resample_to(feat: torch.Tensor, size: tuple[int, int], factor: int) -> torch.Tensor:
    """Bring a feature map to the map grid: average-pool finer maps by ``factor`` (> 1),
    upsample coarser ones bilinearly (``factor`` < 1 encoded as 0), keep equal ones."""
    if factor > 1:
        return nn.functional.avg_pool2d(feat, factor, factor)
    if factor == 1:
        return feat
    return nn.functional.interpolate(feat, size=size, mode="bilinear", align_corners=False)
