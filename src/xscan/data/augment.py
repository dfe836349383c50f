"""X-ray-aware augmentation: albumentations pipelines that keep boxes and masks consistent.

Chosen for how X-ray scans form, not for photographs:

* flips and 90-degree rotations: a bag can lie any way round on the belt;
* scale and shift (``Affine``) with air (``spec.pad_value``, white = full transmission) filled
  in, never black, which would read as an impossibly dense object;
* transmission-domain gain and noise (:class:`TransmissionGainNoise`): a thicker or thinner
  object multiplies its attenuation ``-ln T`` in *every* channel by the same factor, and the
  detector counts photons, so noise is Poisson in the counts (drawn in its Gaussian limit).
  Both act on ``-ln T`` and map back, leaving the ratio of attenuations between channels,
  which is what encodes material, unchanged;
* optional training crops (``crop``): fixed-size windows of the input that each hold at least
  one object where the scan has any, for inputs far larger than their objects; the network is
  fully convolutional, so validation and inference still see whole inputs.

There is deliberately **no hue, saturation or colour jitter**: in a false-colour scan the hue
*is* the material class (orange organic, green mixed, blue metal), assigned by the scanner from
the dual-energy ratio. Shifting it would turn a steel blade's blue into an organic orange and
teach the detector that material colour means nothing. Brightness/contrast jitter is likewise
replaced by the physical gain above.

Configured by the experiment's ``data.augment`` mapping (see :data:`DEFAULTS`); randomness is
seeded per call, so an item is a function of ``(seed, epoch, index)``.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import numpy as np

from xscan.spec import ModelSpec

DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "hflip": 0.5,  # probability
    "vflip": 0.5,
    "rot90": 0.5,  # square inputs only (a rotation would change a non-square input's shape)
    "affine": 0.5,  # probability of scale/shift
    "scale": [0.75, 1.25],
    "translate": 0.1,  # fraction of the input size
    "gain": [0.8, 1.25],  # multiplies -ln T (object thickness)
    "gain_p": 0.5,
    "photons": [3000, 30000],  # detected photons per pixel in air: lower = noisier
    "noise_p": 0.3,
    "min_visibility": 0.3,  # boxes keeping less than this fraction of their area are dropped
    # [h, w]: train on crops of the input, each holding at least one object where the scan has
    # any (albumentations AtLeastOneBBoxRandomCrop); null: train on the whole input.
    "crop": None,
}
_EPS = 1e-4


class TransmissionGainNoise(A.ImageOnlyTransform):
    """Scale attenuation ``-ln T`` by a random gain and add photon (Poisson) noise.

    Works on float32 images in [0, 1] read as transmission (1 = air). ``channels`` limits it to
    the transmission channels (for ``raw_dual`` the third channel is effective Z, a material
    property that neither thickness nor photon noise changes).
    """

    def __init__(
        self,
        gain: tuple[float, float] = (0.8, 1.25),
        photons: tuple[float, float] = (3000, 30000),
        gain_p: float = 0.5,
        noise_p: float = 0.3,
        channels: tuple[int, ...] | None = None,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.gain, self.photons = tuple(gain), tuple(photons)
        self.gain_p, self.noise_p = float(gain_p), float(noise_p)
        self.channels = channels

    def get_params(self) -> dict[str, Any]:
        r = self.py_random
        g = r.uniform(*self.gain) if r.random() < self.gain_p else 1.0
        n = r.uniform(*self.photons) if r.random() < self.noise_p else 0.0
        return {"gain": g, "photons": n, "noise_seed": r.randrange(2**31)}

    def apply(
        self,
        img: np.ndarray,
        gain: float = 1.0,
        photons: float = 0.0,
        noise_seed: int = 0,
        **params: Any,
    ) -> np.ndarray:
        if gain == 1.0 and photons == 0.0:
            return img
        out = img.astype(np.float32, copy=True)
        ch = list(self.channels) if self.channels is not None else list(range(out.shape[2]))
        t = np.clip(out[:, :, ch], _EPS, 1.0)
        t = np.exp(np.log(t) * gain)  # -ln T' = gain * -ln T
        if photons > 0:
            # Poisson counts with a mean of thousands are Gaussian to within a fraction of a
            # percent, and the Gaussian draw is several times faster.
            rng = np.random.default_rng(noise_seed)
            z = rng.standard_normal(t.shape, dtype=np.float32)
            t = t + z * np.sqrt(t / np.float32(photons))
        out[:, :, ch] = np.clip(t, 0.0, 1.0)
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("gain", "photons", "gain_p", "noise_p", "channels")


class XrayAugment:
    """``(image (H, W, C) float32, boxes (N, 4) xyxy, labels (N,), masks (N, H, W)|None, seed)
    -> same``; objects pushed out of view (visibility < ``min_visibility``) are removed from
    boxes, labels and masks together."""

    uses_masks = False

    def __init__(self, compose: A.Compose) -> None:
        self.compose = compose

    def _seed(self, seed: int) -> None:
        # Compose.set_random_seed hands every child transform the *same* seed, which makes
        # their draws identical (hflip and vflip would always fire together): give each child
        # its own stream.
        self.compose.set_random_seed(seed)
        for k, t in enumerate(self.compose.transforms):
            child = np.random.SeedSequence([seed, k]).generate_state(1)[0]
            t.set_random_seed(int(child & 0x7FFFFFFF))

    def __call__(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        labels: np.ndarray,
        masks: np.ndarray | None = None,
        seed: int = 0,
    ):
        self._seed(int(seed))
        kw: dict[str, Any] = {
            "image": image,
            "bboxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "labels": list(np.asarray(labels).tolist()),
            "obj": list(range(len(labels))),
        }
        if masks is not None and len(masks):
            kw["masks"] = list(masks)
        out = self.compose(**kw)
        idx = [int(i) for i in out["obj"]]
        new_boxes = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
        new_labels = np.asarray(out["labels"], np.int64).reshape(-1)
        new_masks = masks
        if masks is not None:
            h, w = out["image"].shape[:2]
            new_masks = (
                np.stack([np.asarray(out["masks"][i]) for i in idx]).astype(np.uint8)
                if idx and len(masks)
                else np.zeros((0, h, w), np.uint8)
            )
        return out["image"].astype(np.float32), new_boxes, new_labels, new_masks


def resolve(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """``data.augment`` merged over :data:`DEFAULTS`; unknown keys are an error."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"data.augment: unknown key(s) {unknown}; known: {sorted(DEFAULTS)}")
    return {**DEFAULTS, **cfg}


def _crop_size(crop: Any, h: int, w: int) -> tuple[int, int]:
    if not (isinstance(crop, (list, tuple)) and len(crop) == 2):
        raise ValueError(f"data.augment.crop: expected [height, width] or null, got {crop!r}")
    ch, cw = int(crop[0]), int(crop[1])
    if not (0 < ch <= h and 0 < cw <= w):
        raise ValueError(f"data.augment.crop: {[ch, cw]} must lie within the input size {[h, w]}")
    return ch, cw


def build_augment(
    cfg: dict[str, Any] | None, spec: ModelSpec, masks: bool = False
) -> XrayAugment | None:
    """The training pipeline for ``spec`` from a ``data.augment`` mapping (``None`` when
    ``enabled: false``). ``masks=True`` makes the dataset pass per-object masks through it."""
    c = resolve(cfg)
    if not c["enabled"]:
        return None
    h, w = spec.input_size
    fill = float(spec.pad_value)
    steps: list[Any] = [A.HorizontalFlip(p=c["hflip"]), A.VerticalFlip(p=c["vflip"])]
    if h == w and c["rot90"] > 0:
        steps.append(A.RandomRotate90(p=c["rot90"]))
    if c["affine"] > 0:
        steps.append(
            A.Affine(
                scale=tuple(c["scale"]),
                translate_percent=(-c["translate"], c["translate"]),
                fill=fill,
                fill_mask=0,
                p=c["affine"],
            )
        )
    if c["crop"] is not None:
        ch, cw = _crop_size(c["crop"], h, w)
        steps.append(A.AtLeastOneBBoxRandomCrop(height=ch, width=cw, p=1.0))
    channels = (0, 1) if spec.modality == "raw_dual" else None
    steps.append(
        TransmissionGainNoise(
            tuple(c["gain"]), tuple(c["photons"]), c["gain_p"], c["noise_p"], channels, p=1.0
        )
    )
    compose = A.Compose(
        steps,
        bbox_params=A.BboxParams(
            format="pascal_voc",
            label_fields=["labels", "obj"],
            min_visibility=c["min_visibility"],
            clip=True,
        ),
        seed=0,
    )
    aug = XrayAugment(compose)
    aug.uses_masks = bool(masks)
    return aug
