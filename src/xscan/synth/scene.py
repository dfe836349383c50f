"""Scene and object records: full-size per-material path-length maps plus annotated objects.

A :class:`Scene` accumulates :class:`~xscan.synth.shapes.Placed` objects into one
``(H, W) float32`` map per material (cm of that material along each ray). Objects added with a
category are annotated: :meth:`Scene.annotate` computes each one's mask, tight box and
occlusion once the whole scene is built.

Occlusion of an object is the fraction of its mask where *other* material in the scene (other
objects, the bag or container) attenuates strongly on its own: ``Σ μ_eff,m · L_m > OCCLUSION_MU``
(−ln T > 0.7 at the scanner's high-energy channel, i.e. the rest of the scene alone lets
through less than half the beam there). Levels: 0 (< 0.1), 1 (< 0.35), 2 (< 0.7), 3 (≥ 0.7).

Conspicuity of an object is how far its own attenuation stands out of what it lies in: the mean
of its own ``−ln T`` (``Σ μ_eff,m · L_m`` over its materials) over its mask, divided by the
standard deviation of the rest of the scene's ``−ln T`` over the same pixels (floored at
``CLUTTER_SD_FLOOR``, so that an object on air stays finite). Below about 1 the object changes
the image by less than the clutter around it varies: a 1 cm packet of powder under clothing,
or a thin blade edge-on. Occlusion measures what lies over an object; conspicuity, whether
the object itself shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xscan.synth.shapes import MASK_EPS_CM, Placed

OCCLUSION_MU = 0.7
OCCLUSION_LEVELS = (0.1, 0.35, 0.7)
# Annotated objects with fewer visible pixels than this inside the image are dropped.
MIN_AREA_PX = 24
# −ln T floor of the clutter spread in the conspicuity ratio (an object on air has none).
CLUTTER_SD_FLOOR = 0.05


# Recycled full-size maps: allocating fresh ~1-8 MB arrays per material per scan costs more in
# page faults than the drawing itself. Scenes take zeroed buffers from here and give them back
# in :meth:`Scene.release`.
_POOL: dict[tuple[int, int], list[np.ndarray]] = {}
_POOL_MAX = 64


def _zeros(shape: tuple[int, int]) -> np.ndarray:
    free = _POOL.get(shape)
    if free:
        buf = free.pop()
        buf.fill(0)
        return buf
    return np.zeros(shape, np.float32)


def occlusion_level(occlusion: float) -> int:
    """0–3 from an occlusion fraction in [0, 1] (thresholds ``OCCLUSION_LEVELS``)."""
    return int(sum(occlusion >= t for t in OCCLUSION_LEVELS))


@dataclass
class SceneObject:
    """One annotated object of a scan.

    ``box`` is xyxy in float pixels, the tight bounds of ``mask`` (``(H, W) bool``, clipped to
    the image): ``x1 = max column + 1``. ``material`` is the object's main material (largest
    path-length volume).
    """

    category: str
    material: str
    box: tuple[float, float, float, float]
    mask: np.ndarray
    occlusion: float
    occlusion_level: int
    is_threat: bool
    area: int = 0
    conspicuity: float = 0.0


@dataclass
class _Entry:
    placed: Placed
    category: str | None
    is_threat: bool


@dataclass
class Scene:
    """Per-material path-length maps of an ``(H, W)`` image at ``pixel_cm`` cm per pixel."""

    height: int
    width: int
    pixel_cm: float
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    entries: list[_Entry] = field(default_factory=list)

    def add(self, placed: Placed, category: str | None = None, is_threat: bool = False) -> Placed:
        """Add an object's material into the maps; annotate it if ``category`` is given."""
        ys, xs, py, px = self._clip(placed)
        if ys is not None:
            for name, arr in placed.layers.items():
                dst = self.maps.get(name)
                if dst is None:
                    dst = _zeros((self.height, self.width))
                    self.maps[name] = dst
                dst[ys, xs] += arr[py, px]
        self.entries.append(_Entry(placed, category, is_threat))
        return placed

    def add_layer(self, material: str, arr: np.ndarray) -> None:
        """Add a full-size ``(H, W)`` path-length map (walls, uniform layers)."""
        dst = self.maps.get(material)
        if dst is None:
            dst = _zeros((self.height, self.width))
            self.maps[material] = dst
        dst += arr

    def release(self) -> None:
        """Give the maps back for reuse by later scenes; the scene is empty afterwards."""
        free = _POOL.setdefault((self.height, self.width), [])
        for arr in self.maps.values():
            if len(free) < _POOL_MAX:
                free.append(arr)
        self.maps = {}
        self.entries = []

    def _clip(self, p: Placed):
        y0, x0 = max(p.y0, 0), max(p.x0, 0)
        y1, x1 = min(p.y0 + p.h, self.height), min(p.x0 + p.w, self.width)
        if y1 <= y0 or x1 <= x0:
            return None, None, None, None
        return (
            slice(y0, y1),
            slice(x0, x1),
            slice(y0 - p.y0, y1 - p.y0),
            slice(x0 - p.x0, x1 - p.x0),
        )

    def path_lengths(self) -> dict[str, np.ndarray]:
        """``{material: (H, W) float32 cm}`` for the renderer (materials in sorted order)."""
        return {k: self.maps[k] for k in sorted(self.maps)}

    def attenuation(self, mu_eff: dict[str, float]) -> np.ndarray:
        """``(H, W) float32`` Σ μ_eff·L: an approximate −ln T of the whole scene."""
        total = np.zeros((self.height, self.width), np.float32)
        for name, arr in self.maps.items():
            total += np.float32(mu_eff[name]) * arr
        return total

    def materials(self) -> set[str]:
        """Every material name in the maps or in any added object."""
        names = set(self.maps)
        for e in self.entries:
            names.update(e.placed.layers)
        return names

    def annotate(
        self, mu_eff: dict[str, float], threshold: float = OCCLUSION_MU
    ) -> list[SceneObject]:
        """Masks, boxes, occlusion and conspicuity of the annotated objects, in insertion order.

        ``mu_eff``: per-material attenuation per cm; ``threshold``: the −ln T of the rest of
        the scene above which a pixel counts as occluded.

        Objects with fewer than ``MIN_AREA_PX`` mask pixels inside the image are dropped;
        fully hidden ones are kept with occlusion 1.0 (level 3).
        """
        out: list[SceneObject] = []
        for e in self.entries:
            if e.category is None:
                continue
            obj = self._annotate_one(e, mu_eff, threshold)
            if obj is not None:
                out.append(obj)
        return out

    def _annotate_one(self, e: _Entry, mu_eff: dict[str, float], threshold: float):
        p = e.placed
        ys, xs, py, px = self._clip(p)
        if ys is None:
            return None
        own = np.zeros((p.h, p.w), np.float32)
        volume: dict[str, float] = {}
        thick = np.zeros((p.h, p.w), np.float32)
        for name, arr in p.layers.items():
            own += np.float32(mu_eff[name]) * arr
            thick += arr
            volume[name] = float(arr.sum())
        local = (thick > MASK_EPS_CM)[py, px]
        area = int(local.sum())
        if area < MIN_AREA_PX:
            return None
        other = -own[py, px]
        for name, arr in self.maps.items():  # only inside the object's window
            other += np.float32(mu_eff[name]) * arr[ys, xs]
        occ = float((other[local] > threshold).mean())
        spread = max(float(other[local].std()), CLUTTER_SD_FLOOR)
        conspicuity = float(own[py, px][local].mean()) / spread
        mask = np.zeros((self.height, self.width), bool)
        mask[ys, xs] = local
        rows = np.flatnonzero(local.any(1))
        cols = np.flatnonzero(local.any(0))
        box = (
            float(xs.start + cols[0]),
            float(ys.start + rows[0]),
            float(xs.start + cols[-1] + 1),
            float(ys.start + rows[-1] + 1),
        )
        return SceneObject(
            category=e.category,
            material=max(volume, key=volume.get),
            box=box,
            mask=mask,
            occlusion=round(occ, 4),
            occlusion_level=occlusion_level(occ),
            is_threat=e.is_threat,
            area=area,
            conspicuity=round(conspicuity, 3),
        )
