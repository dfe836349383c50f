"""Rasterising solid shapes to per-material path-length maps.

An object is first drawn upright in its own frame (:class:`LocalShape`): one ``(h, w) float32``
layer per material holding the length in **cm** that a ray parallel to the beam travels
through that material at each pixel. :func:`place` then rotates it in the image plane, applies
an out-of-plane tilt (the outline is foreshortened by ``cos(tilt)`` along the object's local y
axis and path lengths grow by ``1 / cos(tilt)``) and resamples it into the axis-aligned bounding
box it covers in the image. Only that box is ever computed; the scene adds it into full-size
maps (see :mod:`xscan.synth.scene`).

Coordinates: local drawing functions take centimetres with the origin at the canvas centre,
x to the right and y down; image positions are pixels ``(x, y)``; patches are indexed
``[row, col]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

# Path lengths below this (cm) do not count towards an object's mask.
MASK_EPS_CM = 0.02
_T16 = np.linspace(0, 2 * np.pi, 16, endpoint=False)
_UNIT_16GON = np.stack([np.cos(_T16), np.sin(_T16)], 1)


class LocalShape:
    """An object in its own frame: per-material path-length layers (cm).

    Args:
        width_cm, height_cm: extent of the object's frame (the object must fit inside).
        pixel_cm: size of one pixel in cm (the same scale as the target image).
        angle_deg: draw already rotated by this in-plane angle (the canvas grows to the
            rotated bounding box). Large shapes such as a bag shell are drawn this way and then
            placed without resampling; small objects are drawn upright and rotated by
            :func:`place`.
    """

    def __init__(
        self, width_cm: float, height_cm: float, pixel_cm: float, angle_deg: float = 0.0
    ) -> None:
        self.pixel_cm = float(pixel_cm)
        self.angle = float(angle_deg) % 360.0
        a = math.radians(self.angle)
        self._cos, self._sin = math.cos(a), math.sin(a)
        ext_w = abs(width_cm * self._cos) + abs(height_cm * self._sin)
        ext_h = abs(width_cm * self._sin) + abs(height_cm * self._cos)
        self.w = max(3, int(math.ceil(ext_w / pixel_cm)) + 2)
        self.h = max(3, int(math.ceil(ext_h / pixel_cm)) + 2)
        self.cx = (self.w - 1) / 2.0
        self.cy = (self.h - 1) / 2.0
        self.layers: dict[str, np.ndarray] = {}

    # -- helpers ---------------------------------------------------------------------------
    def layer(self, material: str) -> np.ndarray:
        """The ``(h, w) float32`` layer of ``material`` (created on first use)."""
        arr = self.layers.get(material)
        if arr is None:
            arr = np.zeros((self.h, self.w), np.float32)
            self.layers[material] = arr
        return arr

    def to_px(self, pts_cm: np.ndarray) -> np.ndarray:
        """``(N, 2)`` local cm ``(x, y)`` -> ``(N, 2)`` float canvas pixels."""
        pts = np.asarray(pts_cm, np.float64).reshape(-1, 2)
        if self.angle:
            c, s = self._cos, self._sin
            pts = pts @ np.array([[c, s], [-s, c]])
        return pts * (1.0 / self.pixel_cm) + (self.cx, self.cy)

    def _grid(self, x0: float, y0: float, x1: float, y1: float):
        """Window covering the local cm rectangle and the local ``(u, v)`` cm coordinates of
        its pixel centres: 1-D ``(xs, ys)`` when upright, 2-D arrays when drawn rotated."""
        if not self.angle:
            return self._window(x0, y0, x1, y1)
        px = self.to_px(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]))
        c0 = max(0, int(math.floor(px[:, 0].min())))
        c1 = max(c0, min(self.w, int(math.ceil(px[:, 0].max())) + 1))
        r0 = max(0, int(math.floor(px[:, 1].min())))
        r1 = max(r0, min(self.h, int(math.ceil(px[:, 1].max())) + 1))
        gx = (np.arange(c0, c1, dtype=np.float32) - self.cx) * self.pixel_cm
        gy = (np.arange(r0, r1, dtype=np.float32) - self.cy) * self.pixel_cm
        c, s = np.float32(self._cos), np.float32(self._sin)
        u = c * gx[None, :] + s * gy[:, None]
        v = c * gy[:, None] - s * gx[None, :]
        return slice(r0, r1), slice(c0, c1), u, v

    def _window(
        self, x0: float, y0: float, x1: float, y1: float
    ) -> tuple[slice, slice, np.ndarray, np.ndarray]:
        """Pixel window covering the local cm rectangle, with pixel-centre cm coordinates."""
        c0 = max(0, int(math.floor(x0 / self.pixel_cm + self.cx)))
        c1 = max(c0, min(self.w, int(math.ceil(x1 / self.pixel_cm + self.cx)) + 1))
        r0 = max(0, int(math.floor(y0 / self.pixel_cm + self.cy)))
        r1 = max(r0, min(self.h, int(math.ceil(y1 / self.pixel_cm + self.cy)) + 1))
        xs = (np.arange(c0, c1, dtype=np.float32) - self.cx) * self.pixel_cm
        ys = (np.arange(r0, r1, dtype=np.float32) - self.cy) * self.pixel_cm
        return slice(r0, r1), slice(c0, c1), xs, ys

    # -- primitives ------------------------------------------------------------------------
    def box(self, material: str, cx: float, cy: float, w: float, h: float, depth: float) -> None:
        """Rectangular block, axis-aligned in the local frame: constant path ``depth``."""
        rs, cs, u, v = self._grid(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        # partial coverage at the borders keeps thin plates visible at any resolution
        pc = self.pixel_cm
        fx = np.clip((w / 2 + pc / 2 - np.abs(u - cx)) / pc, 0, 1)
        fy = np.clip((h / 2 + pc / 2 - np.abs(v - cy)) / pc, 0, 1)
        if u.ndim == 1:
            self.layer(material)[rs, cs] += depth * fy[:, None] * fx[None, :]
        else:
            self.layer(material)[rs, cs] += depth * fy * fx

    def ellipsoid(self, material: str, cx: float, cy: float, a: float, b: float, c: float) -> None:
        """Ellipsoid with semi-axes ``a`` (x), ``b`` (y), ``c`` (along the beam): 2c·sqrt(1-…)."""
        rs, cs, u, v = self._grid(cx - a, cy - b, cx + a, cy + b)
        if u.ndim == 1:
            u, v = u[None, :], v[:, None]
        q = 1.0 - ((u - cx) / a) ** 2 - ((v - cy) / b) ** 2
        self.layer(material)[rs, cs] += 2.0 * c * np.sqrt(np.clip(q, 0, None))

    def cylinder(
        self, material: str, cx: float, cy: float, length: float, radius: float, inner: float = 0.0
    ) -> None:
        """Cylinder lying in the image plane along local x; ``inner`` > 0 makes it a tube.

        Path length across it is the chord ``2·sqrt(r² - y²)`` (minus the inner chord).
        """
        rs, cs, u, v = self._grid(cx - length / 2, cy - radius, cx + length / 2, cy + radius)
        dy2 = (v - cy) ** 2
        chord = 2.0 * np.sqrt(np.clip(radius**2 - dy2, 0, None))
        if inner > 0:
            chord -= 2.0 * np.sqrt(np.clip(inner**2 - dy2, 0, None))
        pc = self.pixel_cm
        fx = np.clip((length / 2 + pc / 2 - np.abs(u - cx)) / pc, 0, 1)
        if u.ndim == 1:
            self.layer(material)[rs, cs] += chord[:, None] * fx[None, :]
        else:
            self.layer(material)[rs, cs] += chord * fx

    def disc(
        self, material: str, cx: float, cy: float, radius: float, depth: float, inner: float = 0.0
    ) -> None:
        """Cylinder standing along the beam (coin, ring, cell seen end-on): path ``depth``."""
        rs, cs, u, v = self._grid(cx - radius, cy - radius, cx + radius, cy + radius)
        if u.ndim == 1:
            u, v = u[None, :], v[:, None]
        r = np.sqrt((u - cx) ** 2 + (v - cy) ** 2)
        cov = np.clip((radius - r) / self.pixel_cm + 0.5, 0, 1)
        if inner > 0:
            cov = cov * np.clip((r - inner) / self.pixel_cm + 0.5, 0, 1)
        self.layer(material)[rs, cs] += depth * cov

    def polygon(self, material: str, pts_cm, depth: float) -> None:
        """Flat plate with outline ``pts_cm`` ``(N, 2)`` extruded ``depth`` cm along the beam."""
        self._fill(material, [pts_cm], depth)

    def polygons(self, material: str, polys_cm: list, depth: float) -> None:
        """Several plates of the same material and depth (holes by even-odd are not used)."""
        self._fill(material, polys_cm, depth)

    def _raster_window(self, px: np.ndarray, pad: float) -> tuple[int, int, int, int]:
        """Canvas window ``(r0, r1, c0, c1)`` around pixel points ``px`` plus ``pad`` pixels."""
        (xmin, ymin), (xmax, ymax) = px.min(0), px.max(0)
        c0 = max(0, int(math.floor(xmin - pad)) - 1)
        c1 = min(self.w, int(math.ceil(xmax + pad)) + 2)
        r0 = max(0, int(math.floor(ymin - pad)) - 1)
        r1 = min(self.h, int(math.ceil(ymax + pad)) + 2)
        return r0, max(r0, r1), c0, max(c0, c1)

    def _draw(
        self, material: str, polys_px: list, value: float, line: int | None, closed: bool
    ) -> None:
        """Rasterise polygons (``line`` None) or polylines of ``line`` px into a window only."""
        if not polys_px:
            return
        allpx = np.concatenate(polys_px)
        r0, r1, c0, c1 = self._raster_window(allpx, (line or 0) / 2 + 1)
        if r1 <= r0 or c1 <= c0:
            return
        off = np.array([c0, r0], np.float64)
        hh, ww = r1 - r0, c1 - c0
        if line is None:
            # Exact area coverage for small parts: fill on a finer grid without anti-aliasing and
            # average it down (anti-aliased fills grow every outline by ~0.7 px, which matters
            # for a rivet, not for a folded shirt).
            ss = 4 if hh * ww <= 4_096 else 2 if hh * ww <= 16_384 else 1
            fine = np.zeros((hh * ss, ww * ss), np.uint8)
            pts = [(((p - off + 0.5) * ss - 0.5) * 16 + 0.5).astype(np.int32) for p in polys_px]
            cv2.fillPoly(fine, pts, 255, lineType=cv2.LINE_8 if ss > 1 else cv2.LINE_AA, shift=4)
            mask = fine if ss == 1 else cv2.resize(fine, (ww, hh), interpolation=cv2.INTER_AREA)
        else:
            mask = np.zeros((hh, ww), np.uint8)
            pts = [((p - off) * 16 + 0.5).astype(np.int32) for p in polys_px]
            cv2.polylines(mask, pts, closed, 255, thickness=line, lineType=cv2.LINE_AA, shift=4)
        win = self.layer(material)[r0:r1, c0:c1]
        win += mask.astype(np.float32) * np.float32(value / 255.0)

    def _fill(self, material: str, polys_cm: list, depth: float) -> None:
        self._draw(material, [self.to_px(p) for p in polys_cm], depth, None, True)

    def wire(self, material: str, pts_cm, diameter: float) -> None:
        """Round wire along the polyline ``pts_cm``; mean chord of a circle is π/4 · d."""
        thick = max(1, int(round(diameter / self.pixel_cm)))
        # a wire thinner than a pixel spreads its area over the pixel it crosses
        scale = (math.pi / 4) * diameter * min(1.0, diameter / (thick * self.pixel_cm))
        self._draw(material, [self.to_px(pts_cm)], scale, thick, False)

    def wires(self, material: str, polylines_cm: list, diameter: float) -> None:
        """Several wires of one material and diameter in a single rasterisation (where they
        cross, the path is that of one wire, not the sum)."""
        if not polylines_cm:
            return
        thick = max(1, int(round(diameter / self.pixel_cm)))
        scale = (math.pi / 4) * diameter * min(1.0, diameter / (thick * self.pixel_cm))
        self._draw(material, [self.to_px(p) for p in polylines_cm], scale, thick, False)

    def discs(self, material: str, centers_cm, radii_cm, depth: float) -> None:
        """Several small discs (coins, rivets, screw heads) of one material and depth as
        16-gons in a single rasterisation; for isolated small discs, cheaper than ``disc``."""
        centers = np.asarray(centers_cm, np.float64).reshape(-1, 2)
        if centers.size == 0:
            return
        radii = np.broadcast_to(np.asarray(radii_cm, np.float64), (len(centers),))
        polys = centers[:, None, :] + radii[:, None, None] * _UNIT_16GON[None, :, :]
        self._fill(material, list(polys), depth)

    def band(self, material: str, pts_cm, width: float, depth: float, closed: bool = True) -> None:
        """Wall seen edge-on along the polyline ``pts_cm``: path ``depth`` over ``width`` cm.

        A wall parallel to the beam (the side of a suitcase, a container wall) is thin in the
        image but long along the ray; bands narrower than a pixel keep their areal content.
        """
        thick = max(1, int(round(width / self.pixel_cm)))
        scale = depth * min(1.0, width / (thick * self.pixel_cm))
        self._draw(material, [self.to_px(pts_cm)], scale, thick, closed)

    def ring(self, material: str, cx: float, cy: float, radius: float, wire_d: float) -> None:
        """Torus lying flat (key ring, finger loop): a closed wire."""
        t = np.linspace(0, 2 * np.pi, 33)
        self.wire(material, np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], 1), wire_d)


@dataclass
class Placed:
    """An object placed in the image: per-material patches sharing one pixel box.

    ``layers[m]`` is ``(h, w) float32`` cm; the patch's top-left pixel is ``(x0, y0)`` in image
    coordinates and may lie partly outside the image (the scene clips when pasting).
    """

    x0: int
    y0: int
    h: int
    w: int
    layers: dict[str, np.ndarray] = field(default_factory=dict)
    corners: np.ndarray | None = None  # (4, 2) image (x, y) of the rotated canvas corners

    def shift(self, dx: int, dy: int) -> None:
        """Move the object by whole pixels (no resampling)."""
        self.x0 += int(dx)
        self.y0 += int(dy)
        if self.corners is not None:
            self.corners = self.corners + [dx, dy]

    def mask(self) -> np.ndarray:
        """``(h, w) bool``: where any layer has more than ``MASK_EPS_CM`` of material."""
        total = np.zeros((self.h, self.w), np.float32)
        for arr in self.layers.values():
            total += arr
        return total > MASK_EPS_CM


def rotate_points(pts: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate ``(N, 2)`` points about the origin by ``angle_deg`` (counter-clockwise on screen
    is negative because y points down; only consistency matters here)."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    return np.asarray(pts, np.float64) @ np.array([[c, s], [-s, c]])


def place(
    shape: LocalShape,
    center_xy: tuple[float, float],
    angle_deg: float = 0.0,
    tilt_deg: float = 0.0,
    flip: bool = False,
) -> Placed:
    """Rotate/tilt ``shape`` and resample it around image pixel ``center_xy``.

    ``tilt_deg`` turns the object about its local x axis out of the image plane: the outline
    shrinks by ``cos(tilt)`` along local y and path lengths grow by ``1/cos(tilt)`` (capped at
    3×, since a plate seen edge-on is bounded by its width). ``flip`` mirrors local x.
    """
    if angle_deg % 360.0 == 0.0 and tilt_deg == 0.0 and not flip:
        # upright: no resampling, the layers are used as they are (snapped to whole pixels)
        x0 = int(round(center_xy[0] - shape.cx))
        y0 = int(round(center_xy[1] - shape.cy))
        box = np.array(
            [[x0, y0], [x0 + shape.w, y0], [x0 + shape.w, y0 + shape.h], [x0, y0 + shape.h]]
        )
        return Placed(x0, y0, shape.h, shape.w, dict(shape.layers), box.astype(np.float64))
    ct = max(math.cos(math.radians(tilt_deg)), 0.05)
    a = math.radians(angle_deg)
    ca, sa = math.cos(a), math.sin(a)
    sx = -1.0 if flip else 1.0
    # local px (u, v) relative to canvas centre -> image: R(a) · diag(sx, ct) · (u, v)
    lin = np.array([[ca * sx, -sa * ct], [sa * sx, ca * ct]])
    corners = np.array(
        [[-shape.cx, -shape.cy], [shape.cx, -shape.cy], [shape.cx, shape.cy], [-shape.cx, shape.cy]]
    )
    img = corners @ lin.T + np.asarray(center_xy, np.float64)
    x0 = int(math.floor(img[:, 0].min())) - 1
    y0 = int(math.floor(img[:, 1].min())) - 1
    w = int(math.ceil(img[:, 0].max())) + 2 - x0
    h = int(math.ceil(img[:, 1].max())) + 2 - y0
    offset = (
        np.asarray(center_xy, np.float64)
        - np.array([x0, y0])
        - lin @ np.array([shape.cx, shape.cy])
    )
    m = np.hstack([lin, offset[:, None]]).astype(np.float64)
    gain = min(1.0 / ct, 3.0)
    out = Placed(x0=x0, y0=y0, h=h, w=w, corners=img)
    names = list(shape.layers)
    # warp up to four layers at once: one pass over a 4-channel image is ~2x faster
    for i in range(0, len(names), 4):
        group = names[i : i + 4]
        src = (
            shape.layers[group[0]]
            if len(group) == 1
            else np.dstack([shape.layers[n] for n in group])
        )
        warped = cv2.warpAffine(
            src, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
        if gain != 1.0:
            warped *= gain
        if len(group) == 1:
            out.layers[group[0]] = warped
        else:
            for j, name in enumerate(group):
                out.layers[name] = warped[:, :, j]
    return out
