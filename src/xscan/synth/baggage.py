"""Procedural baggage scenes: a suitcase or soft bag with clutter and, optionally, threats.

The bag is a shell (top and bottom faces, side walls seen edge-on, which give the dense
outline of real scans), trolley handle rails, wheels and zips. Clutter items are benign
objects built from materials (folded clothing, shoes, books, bottles, toiletries, laptops and
phones with cells and boards, chargers, cables, keys, coins, umbrellas). Laptops, phones,
loose cells, power banks and large liquid containers are annotated as non-threat objects
(``is_threat=False``, as in the canonical taxonomy); other clutter is not annotated.
Threats come from :mod:`xscan.synth.threats`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from xscan.synth.scene import Scene
from xscan.synth.shapes import LocalShape, Placed, place, rotate_points
from xscan.synth.threats import (
    BAGGAGE_RESTRICTED,
    BAGGAGE_THREAT_WEIGHTS,
    BAGGAGE_THREATS,
    build_threat,
    liquid_container,
    power_bank,
    rounded_rect,
)

CLUTTER_ITEMS = {"low": (8, 12), "medium": (17, 27), "high": (28, 40)}
# Non-threat classes of the taxonomy that baggage scans annotate.
BENIGN_ANNOTATED = ("laptop", "phone", "battery", *BAGGAGE_RESTRICTED)


@dataclass(frozen=True)
class BagFrame:
    """Where the bag lies in the image: centre (px), in-plane angle (deg), half sizes (px)."""

    cx: float
    cy: float
    angle: float
    half_l: float
    half_w: float

    def sample_point(self, rng: np.random.Generator, margin: float = 0.85) -> tuple[float, float]:
        """A random pixel inside the bag (``margin`` of the half sizes)."""
        u = rng.uniform(-1, 1) * self.half_l * margin
        v = rng.uniform(-1, 1) * self.half_w * margin
        p = rotate_points(np.array([[u, v]]), self.angle)[0]
        return float(self.cx + p[0]), float(self.cy + p[1])

    def fit_inside(self, placed: Placed, margin: float = 0.96) -> Placed:
        """Shift ``placed`` (whole pixels) so its outline stays within the bag where it can."""
        if placed.corners is None:
            return placed
        local = rotate_points(placed.corners - [self.cx, self.cy], -self.angle)
        shift = []
        for axis, half in ((0, self.half_l * margin), (1, self.half_w * margin)):
            lo, hi = local[:, axis].min(), local[:, axis].max()
            if hi - lo >= 2 * half:
                shift.append(-(lo + hi) / 2)
            else:
                shift.append(min(0.0, half - hi) + max(0.0, -half - lo))
        d = rotate_points(np.array([shift]), self.angle)[0]
        placed.shift(int(round(d[0])), int(round(d[1])))
        return placed


# ---- the bag itself -----------------------------------------------------------------------
def _shell(rng: np.random.Generator, pc: float, L: float, W: float, angle: float) -> LocalShape:
    """Suitcase shell (length along its x axis), ``L × W`` cm, drawn rotated by ``angle``.

    The fan beam projects the bag's top and bottom faces with an offset, so a bag shows two
    outlines joined at the corners; the side walls, seen edge-on, are the dense lines.
    """
    shape = LocalShape(L + 18, W + 18, pc, angle)
    hard = rng.random() < 0.5
    depth = rng.uniform(18, 28)
    # luggage plastics and coated fabrics often carry PVC or mineral fillers (Z_eff > 10)
    faces = ("polycarbonate", "abs", "polycarbonate", "pvc") if hard else ("nylon", "nylon", "pvc")
    face = faces[rng.integers(len(faces))]
    r = rng.uniform(3, 8)
    off = np.array([rng.uniform(-1, 1), rng.uniform(-1, 1)]) * [L, W] * rng.uniform(0.02, 0.06)
    outline = rounded_rect(L, W, r)
    face_t = rng.uniform(0.12, 0.25) if hard else rng.uniform(0.06, 0.15)
    for sign in (-0.5, 0.5):
        o = outline + off * sign
        shape.polygon(face, o, face_t)
        shape.band(face, np.vstack([o, o[:1]]), 0.15, depth * 0.25)
        if hard or rng.random() < 0.5:  # frame profile round the opening
            shape.band("aluminium", rounded_rect(L - 0.6, W - 0.6, r) + off * sign, 0.2, 1.5)
    for k in range(0, len(outline), len(outline) // 4):  # walls at the corners, edge-on
        p = outline[k + len(outline) // 8]
        shape.wire(face, np.array([p - off / 2, p + off / 2]), 1.0)
    # where lid and base meet: a seam and the zip running round it
    inner = rounded_rect(L - 2.0, W - 2.0, r)
    shape.band(face, inner, 0.15, depth * 0.15)
    shape.wire("steel", np.vstack([inner, inner[:1]]) * 0.99, rng.uniform(0.1, 0.18))
    for _ in range(int(rng.integers(1, 4))):  # lining pockets with their zips
        pw, ph = L * rng.uniform(0.25, 0.6), W * rng.uniform(0.2, 0.5)
        px, py = rng.uniform(-1, 1) * (L - pw) / 2 * 0.9, rng.uniform(-1, 1) * (W - ph) / 2 * 0.9
        pocket = rounded_rect(pw, ph, 1.5, px, py)
        shape.band("nylon", np.vstack([pocket, pocket[:1]]), 0.1, 3.0)
        shape.wire(
            "steel",
            np.array([[px - pw / 2 + 1, py - ph / 2 + 1], [px + pw / 2 - 1, py - ph / 2 + 1]]),
            0.15,
        )
    _trolley(shape, rng, L, W)
    # carry handle on the long side, feet on the other
    shape.polygon("nylon", rounded_rect(12, 2.5, 1.0, 0, -W / 2 - 1.8), 2.5)
    shape.wire(
        "steel",
        np.array(
            [[-6.0, -W / 2 - 0.5], [-6.0, -W / 2 - 3], [6.0, -W / 2 - 3], [6.0, -W / 2 - 0.5]]
        ),
        0.3,
    )
    for x in (-L / 4, L / 4):
        shape.box("steel", x, -W / 2 - 0.5, 1.2, 1.0, 0.4)
        shape.box("polyethylene", x, W / 2 + 0.8, 3.0, 1.8, 2.0)
    # lining with metal parts (rivets, clips, strap buckles)
    n = int(rng.integers(8, 20))
    xy = rng.uniform(-0.475, 0.475, (n, 2)) * [L, W]
    rivet = rng.random(n) < 0.6
    shape.discs("steel", xy[rivet], rng.uniform(0.2, 0.5, int(rivet.sum())), 0.4)
    for x, y in xy[~rivet]:
        shape.box("steel", x, y, rng.uniform(1, 4), rng.uniform(0.3, 1.5), 0.2)
    return shape


def _trolley(shape: LocalShape, rng: np.random.Generator, L: float, W: float) -> None:
    """Telescopic handle rails (steel or aluminium tubes or profiles) and wheels at one end."""
    if rng.random() > 0.85:
        return
    mat = "steel" if rng.random() < 0.6 else "aluminium"
    wall = 0.12 if mat == "steel" else 0.2
    rail_l = L * rng.uniform(0.75, 0.95)
    x = -L / 2 + rail_l / 2 + 1
    off = W * rng.uniform(0.18, 0.3)
    flat = rng.random() < 0.5  # rectangular profiles (wide bands) or round tubes
    pw, ph = rng.uniform(2.2, 3.6), rng.uniform(1.0, 1.6)
    for y in (-off, off):
        if flat:
            for k, (length, w) in enumerate(((rail_l, pw), (rail_l * 0.7, pw * 0.8))):
                shape.box(mat, x, y, length, w, 2 * wall)  # top and bottom of the profile
                for side in (-1, 1):  # its side walls, seen edge-on
                    shape.box(mat, x, y + side * (w / 2 - wall / 2), length, wall, ph - 0.2 * k)
        else:
            shape.cylinder(mat, x, y, rail_l, 1.1, 1.1 - wall)
            shape.cylinder(mat, x, y, rail_l * 0.7, 0.85, 0.85 - wall)
    shape.box("nylon", -L / 2 - 0.5, 0, 3.0, 2 * off + 3, 2.5)
    shape.box("steel", -L / 2 + 2, 0, 1.0, 2 * off + 2, 0.3)
    shape.box(mat, L / 2 - 6, 0, 0.8, 2 * off, 0.8)  # cross bar
    for y in (-off, off):  # wheels at the rail end
        yw = y + np.sign(y) * 4
        shape.disc("polyethylene", -L / 2 - 1.5, yw, 3.5, 4.0, inner=2.0)
        shape.disc("rubber", -L / 2 - 2.5, yw, 2.8, 2.2)
        shape.disc("steel", -L / 2 - 2.5, yw, 0.5, 4.0)
        shape.box("steel", -L / 2 + 0.5, yw, 4.0, 0.6, 0.4)


# ---- benign clutter -----------------------------------------------------------------------
def _clothing(rng: np.random.Generator, pc: float) -> LocalShape:
    """Folded garment: layered textile (bulk density), sometimes buttons, a zip or rivets."""
    w, h = rng.uniform(15, 38), rng.uniform(12, 28)
    shape = LocalShape(w + 4, h + 4, pc)
    mat = "cotton" if rng.random() < 0.75 else "nylon"
    t = rng.uniform(0.5, 2.0) * (1.0 if mat == "cotton" else 0.3)
    shape.polygon(mat, rounded_rect(w, h, rng.uniform(1, 5)), t)
    for _ in range(int(rng.integers(1, 5))):  # folds and sleeves give layered density
        fw, fh = w * rng.uniform(0.2, 0.8), h * rng.uniform(0.15, 0.6)
        cx, cy = rng.uniform(-w, w) * 0.3, rng.uniform(-h, h) * 0.3
        shape.polygon(mat, rounded_rect(fw, fh, 2, cx, cy), t * rng.uniform(0.4, 1.2))
    n_creases = int(rng.integers(2, 7))  # creases and seams: ridges of extra fabric
    creases = rng.uniform(-0.45, 0.45, (n_creases, 2, 2)) * [w, h]
    shape.wires(mat, list(creases), rng.uniform(0.4, 1.5))
    extra = rng.random()
    if extra < 0.25:  # buttons
        n = int(rng.integers(3, 8))
        mat_b = "polyethylene" if rng.random() < 0.6 else "steel"
        for i in range(n):
            shape.disc(mat_b, -w / 4, -h / 2 + (i + 0.5) * h / n, 0.5, 0.3)
    elif extra < 0.5:  # a zip with its pull
        x = rng.uniform(-w, w) * 0.3
        shape.wire("steel", np.array([[x, -h / 2 + 1], [x, h / 2 - 1]]), 0.3)
        shape.box("steel", x, -h / 2 + 2, 0.8, 2.0, 0.15)
    elif extra < 0.65:  # jeans rivets and a button
        for _ in range(int(rng.integers(3, 7))):
            shape.disc("copper", rng.uniform(-w, w) * 0.4, rng.uniform(-h, h) * 0.4, 0.35, 0.3)
    return shape


def _pouch(rng: np.random.Generator, pc: float) -> LocalShape:
    """PVC wash bag, rain cover or document sleeve, with a zip and some contents."""
    w, h = rng.uniform(14, 30), rng.uniform(10, 22)
    shape = LocalShape(w + 2, h + 2, pc)
    shape.polygon("pvc", rounded_rect(w, h, 1.5), rng.uniform(0.1, 0.4))
    shape.wire("steel", np.array([[-w / 2 + 1, -h / 2 + 1], [w / 2 - 1, -h / 2 + 1]]), 0.2)
    for _ in range(int(rng.integers(0, 4))):
        cx, cy = rng.uniform(-w, w) * 0.3, rng.uniform(-h, h) * 0.3
        shape.cylinder("aluminium", cx, cy, rng.uniform(5, 12), rng.uniform(1, 2.5), 0.0)
    return shape


def _can(rng: np.random.Generator, pc: float) -> LocalShape:
    """Drink or aerosol can (aluminium) lying flat, or a glass jar."""
    L, r = rng.uniform(10, 17), rng.uniform(2.5, 3.4)
    shape = LocalShape(L + 1, 2 * r + 1, pc)
    if rng.random() < 0.7:
        shape.cylinder("aluminium", 0, 0, L, r, r - 0.02)
        shape.cylinder(("water", "toiletry")[rng.integers(2)], 0, 0, L * 0.95, r - 0.02)
    else:
        shape.cylinder("glass", 0, 0, L * 0.7, r * 1.2, r * 1.2 - 0.3)
        shape.cylinder("food", 0, 0, L * 0.65, r * 1.2 - 0.3)
        shape.cylinder("steel", L * 0.38, 0, 1.0, r * 1.1, r * 1.1 - 0.05)
    return shape


def _hardware(rng: np.random.Generator, pc: float) -> LocalShape:
    """Small metal odds and ends: hair clips, safety pins, tape measure, screws, hooks."""
    shape = LocalShape(12, 12, pc)
    for _ in range(int(rng.integers(2, 8))):
        x, y = rng.uniform(-4.5, 4.5, 2)
        k = rng.integers(4)
        if k == 0:
            shape.wire(
                "steel", np.array([[x, y], [x + rng.uniform(2, 5), y + rng.uniform(-1, 1)]]), 0.15
            )
        elif k == 1:
            shape.ring("steel", x, y, rng.uniform(0.4, 1.2), 0.15)
        elif k == 2:
            shape.disc("steel", x, y, rng.uniform(1.5, 3), 0.25, inner=0.6)
            shape.disc("abs", x, y, rng.uniform(1.5, 3) + 0.3, 1.5)
        else:
            shape.box("steel", x, y, rng.uniform(1, 4), 0.3, 0.3)
    return shape


def _belt(rng: np.random.Generator, pc: float) -> LocalShape:
    L = rng.uniform(20, 35)
    shape = LocalShape(L + 6, 12, pc)
    t = np.linspace(0, 1, 12)
    pts = np.stack([(t - 0.5) * L, 3 * np.sin(t * rng.uniform(2, 6))], 1)
    shape.wire("leather", pts, 3.5)
    shape.ring("steel", pts[-1, 0] + 2, pts[-1, 1], 1.8, 0.4)
    shape.box("steel", pts[-1, 0] + 2, pts[-1, 1], 0.3, 3.6, 0.4)
    return shape


def _pens(rng: np.random.Generator, pc: float) -> LocalShape:
    shape = LocalShape(16, 10, pc)
    for _ in range(int(rng.integers(1, 5))):
        y = rng.uniform(-3.5, 3.5)
        shape.cylinder("polyethylene", 0, y, 14, 0.5, 0.35)
        shape.cylinder("brass" if rng.random() < 0.5 else "steel", 1.5, y, 10, 0.12)
        shape.box("steel", -6, y - 0.6, 3, 0.2, 0.2)  # clip
    return shape


def _glasses(rng: np.random.Generator, pc: float) -> LocalShape:
    shape = LocalShape(16, 8, pc)
    shape.polygon("polyethylene", rounded_rect(16, 6.5, 2), 0.2)  # case
    for x in (-3.3, 3.3):
        shape.ellipsoid("polycarbonate", x, 0, 2.6, 2.0, 0.2)
        shape.ring("steel", x, 0, 2.4, 0.15)
    shape.wire("steel", np.array([[-6, -1], [-7.5, -1.2]]), 0.2)
    shape.wire("steel", np.array([[6, -1], [7.5, -1.2]]), 0.2)
    return shape


def _earphones(rng: np.random.Generator, pc: float) -> LocalShape:
    shape = LocalShape(16, 16, pc)
    for _ in range(2):
        n = 14
        pts = np.cumsum(rng.normal(0, 1.3, (n, 2)), 0)
        pts -= pts.mean(0)
        pts = np.clip(pts, -7, 7)
        shape.wire("pvc", pts, 0.25)
        shape.wire("copper", pts, 0.05)
        shape.disc("abs", pts[0, 0], pts[0, 1], 1.0, 1.5)
        shape.disc("steel", pts[0, 0], pts[0, 1], 0.4, 0.5)  # magnet
    return shape


def _gadget(rng: np.random.Generator, pc: float) -> LocalShape:
    """Small electronics (shaver, speaker, camera, hair clipper): case, board, cell, motor."""
    w, h = rng.uniform(4, 9), rng.uniform(8, 16)
    shape = LocalShape(w + 1, h + 1, pc)
    shape.polygon("abs", rounded_rect(w, h, 1.0), rng.uniform(0.3, 0.6))
    shape.box("pcb", 0, -h * 0.2, w * 0.7, h * 0.3, 0.16)
    shape.box(
        "li_ion_cell" if rng.random() < 0.5 else "alkaline_cell",
        0,
        h * 0.2,
        w * 0.5,
        h * 0.35,
        w * 0.35,
    )
    shape.disc("copper", 0, -h * 0.38, w * 0.22, w * 0.3)  # motor / speaker coil
    shape.disc("steel", 0, -h * 0.38, w * 0.12, w * 0.4)
    for _ in range(int(rng.integers(2, 6))):
        shape.disc("steel", rng.uniform(-w, w) * 0.4, rng.uniform(-h, h) * 0.4, 0.2, 0.6)
    return shape


def _shoe(rng: np.random.Generator, pc: float) -> LocalShape:
    L, W = rng.uniform(24, 31), rng.uniform(8, 11)
    shape = LocalShape(L + 2, W + 2, pc)
    x = np.linspace(-1, 1, 20)
    half = W / 2 * (0.75 + 0.25 * np.cos(x * 2.4)) * np.sqrt(np.clip(1 - x**8, 0, 1))
    sole = np.concatenate([np.stack([x * L / 2, half], 1), np.stack([x * L / 2, -half], 1)[::-1]])
    shape.polygon("rubber", sole, rng.uniform(1.5, 3.0))
    shape.ellipsoid(
        "leather" if rng.random() < 0.5 else "cotton", L * 0.1, 0, L * 0.38, W * 0.42, 4.0
    )
    if rng.random() < 0.5:
        shape.box("steel", -L * 0.1, 0, 8, 1.2, 0.15)  # shank
    for i in range(int(rng.integers(0, 6))):
        shape.disc("steel", L * 0.15 + i * 1.4, 0, 0.3, 0.5)  # eyelets
    return shape


def _book(rng: np.random.Generator, pc: float) -> LocalShape:
    w, h = rng.uniform(12, 22), rng.uniform(18, 30)
    shape = LocalShape(w + 1, h + 1, pc)
    shape.box("paper", 0, 0, w, h, rng.uniform(1.0, 4.5))
    shape.box("paper", -w / 2 + 0.4, 0, 0.8, h, 2.0)
    return shape


def _bottle(rng: np.random.Generator, pc: float) -> LocalShape:
    L, r = rng.uniform(8, 16), rng.uniform(1.5, 3.0)
    shape = LocalShape(L + 1, 2 * r + 1, pc)
    shape.cylinder("pet", 0, 0, L * 0.8, r, r - 0.08)
    shape.cylinder(
        ["water", "toiletry", "food"][rng.integers(3)],
        -L * 0.05,
        0,
        L * 0.7 * rng.uniform(0.5, 1.0),
        r - 0.08,
    )
    shape.cylinder("polyethylene", L * 0.45, 0, L * 0.2, r * 0.5)
    return shape


def _toiletries(rng: np.random.Generator, pc: float) -> LocalShape:
    shape = LocalShape(22, 16, pc)
    shape.polygon("polyethylene", rounded_rect(20, 14, 2), 0.1)  # wash bag
    for _ in range(int(rng.integers(2, 6))):
        cx, cy = rng.uniform(-7, 7), rng.uniform(-4, 4)
        kind = rng.integers(3)
        if kind == 0:  # aerosol can
            shape.cylinder("aluminium", cx, cy, 12, 2.3, 2.2)
            shape.cylinder("toiletry", cx, cy, 11, 2.2 * rng.uniform(0.3, 1.0))
        elif kind == 1:  # toothbrush / razor
            shape.box("polyethylene", cx, cy, 17, 1.0, 1.2)
            shape.box("steel", cx + 7.5, cy, 2.0, 1.0, 0.1)
        else:  # cream tube
            shape.ellipsoid("toiletry", cx, cy, 6, 1.8, 1.0)
            shape.box("aluminium", cx - 6, cy, 1.0, 3.0, 0.2)
    return shape


def _laptop(rng: np.random.Generator, pc: float) -> LocalShape:
    w, h = rng.uniform(28, 36), rng.uniform(19, 25)
    shape = LocalShape(w + 1, h + 1, pc)
    case = "aluminium" if rng.random() < 0.6 else "abs"
    shape.polygon(case, rounded_rect(w, h, 1.0), 0.25 if case == "aluminium" else 0.8)
    shape.box("glass", 0, 0, w * 0.95, h * 0.95, 0.12)  # display
    shape.box("pcb", -w * 0.05, -h * 0.3, w * 0.6, h * 0.2, 0.16)  # main board
    for i in range(int(rng.integers(2, 6))):
        shape.box("silicon", -w * 0.3 + i * 2.5, -h * 0.3, 1.2, 1.2, 0.1)
    shape.box("li_ion_cell", 0, h * 0.28, w * 0.7, h * 0.25, 0.7)
    shape.disc("aluminium", w * 0.3, -h * 0.25, 2.5, 0.6)  # fan + heat sink
    shape.box("copper", w * 0.15, -h * 0.25, 6, 0.8, 0.3)
    shape.box("steel", 0, 0, w * 0.9, 0.4, 0.1)  # hinge bar
    for x, y in ((-0.45, -0.45), (0.45, -0.45), (-0.45, 0.45), (0.45, 0.45)):
        shape.disc("steel", x * w, y * h, 0.25, 0.5)
    return shape


def _phone(rng: np.random.Generator, pc: float) -> LocalShape:
    w, h = rng.uniform(6.5, 7.8), rng.uniform(13.5, 16.5)
    shape = LocalShape(w + 1, h + 1, pc)
    shape.polygon("glass", rounded_rect(w, h, 0.9), 0.15)
    shape.band("aluminium", rounded_rect(w, h, 0.9), 0.3, 0.8)
    shape.box("li_ion_cell", 0, h * 0.12, w * 0.8, h * 0.5, 0.45)
    shape.box("pcb", 0, -h * 0.3, w * 0.8, h * 0.25, 0.1)
    shape.disc("steel", w * 0.25, -h * 0.4, 0.6, 0.4)  # camera
    return shape


def _battery(rng: np.random.Generator, pc: float) -> LocalShape:
    L, r = (6.5, 0.9) if rng.random() < 0.5 else (5.0, 0.72)
    shape = LocalShape(L + 1, 2 * r + 1, pc)
    shape.cylinder("li_ion_cell" if L > 6 else "alkaline_cell", 0, 0, L, r)
    return shape


def _charger(rng: np.random.Generator, pc: float) -> LocalShape:
    shape = LocalShape(30, 30, pc)
    shape.polygon("pvc", rounded_rect(5, 5, 0.8), 2.8)
    shape.box("copper", 0, 0, 2.0, 1.5, 0.9)
    shape.box("steel", 0, 0, 2.4, 2.0, 0.4)
    shape.box("brass", -0.8, -3.2, 0.3, 1.8, 0.2)
    shape.box("brass", 0.8, -3.2, 0.3, 1.8, 0.2)
    _draw_cable(shape, rng, (0, 2.5), 12)
    return shape


def _draw_cable(shape: LocalShape, rng: np.random.Generator, start, span: float) -> None:
    """A smooth random cable (copper core in a PVC jacket) starting at ``start`` (cm)."""
    n = 8
    steps = rng.normal(0, 1, (n, 2))
    steps = np.cumsum(steps / np.linalg.norm(steps, axis=1, keepdims=True) * span / n * 1.5, 0)
    pts = np.asarray(start) + steps
    pts = np.clip(pts, -span, span)
    t = np.linspace(0, n - 1, n * 6)
    smooth = np.stack(
        [np.interp(t, np.arange(n), pts[:, 0]), np.interp(t, np.arange(n), pts[:, 1])], 1
    )
    shape.wire("pvc", smooth, 0.45)
    shape.wire("copper", smooth, 0.12)


def _cable(rng: np.random.Generator, pc: float) -> LocalShape:
    shape = LocalShape(36, 36, pc)
    _draw_cable(shape, rng, (0, 0), 16)
    if rng.random() < 0.5:
        shape.box("steel", 0, 0, 1.2, 2.0, 0.5)  # plug
    return shape


def _keys(rng: np.random.Generator, pc: float) -> LocalShape:
    shape = LocalShape(14, 14, pc)
    shape.ring("steel", 0, 0, 1.3, 0.2)
    for _ in range(int(rng.integers(1, 5))):
        a = rng.uniform(0, 2 * np.pi)
        L = rng.uniform(4, 6.5)
        key = np.array(
            [
                [0, -1.2],
                [1.6, -1.2],
                [1.6, -0.4],
                [L, -0.4],
                [L, 0.2],
                [L - 0.5, 0.5],
                [L - 1.0, 0.2],
                [L - 1.5, 0.5],
                [1.6, 0.5],
                [1.6, 1.2],
                [0, 1.2],
            ]
        )
        key = rotate_points(key + [1.2, 0], np.degrees(a))
        shape.polygon("brass" if rng.random() < 0.5 else "steel", key, 0.2)
    return shape


def _coins(rng: np.random.Generator, pc: float) -> LocalShape:
    shape = LocalShape(10, 10, pc)
    for _ in range(int(rng.integers(1, 7))):
        mat = ["copper", "brass", "steel"][rng.integers(3)]
        shape.disc(mat, rng.uniform(-3, 3), rng.uniform(-3, 3), rng.uniform(0.8, 1.3), 0.2)
    return shape


def _umbrella(rng: np.random.Generator, pc: float) -> LocalShape:
    L = rng.uniform(22, 30)
    shape = LocalShape(L + 2, 8, pc)
    shape.ellipsoid("nylon", 0, 0, L * 0.45, 2.5, 1.0)
    shape.cylinder("steel", 0, 0, L, 0.45, 0.38)
    for y in np.linspace(-1.6, 1.6, int(rng.integers(4, 8))):
        shape.wire("aluminium", np.array([[-L * 0.4, y * 0.3], [L * 0.4, y]]), 0.2)
    shape.polygon("abs", rounded_rect(3.0, 2.6, 0.8, -L / 2 - 0.5, 0), 2.4)
    return shape


CLUTTER_BUILDERS = {
    "clothing": (_clothing, 6.0),
    "pouch": (_pouch, 1.0),
    "can": (_can, 0.8),
    "hardware": (_hardware, 2.5),
    "belt": (_belt, 0.6),
    "pens": (_pens, 0.8),
    "glasses": (_glasses, 0.4),
    "earphones": (_earphones, 0.8),
    "gadget": (_gadget, 1.5),
    "shoe": (_shoe, 1.2),
    "book": (_book, 1.0),
    "bottle": (_bottle, 1.0),
    "toiletries": (_toiletries, 1.2),
    "laptop": (_laptop, 0.5),
    "phone": (_phone, 0.8),
    "battery": (_battery, 0.4),
    "charger": (_charger, 1.0),
    "cable": (_cable, 2.5),
    "keys": (_keys, 1.5),
    "coins": (_coins, 1.2),
    "umbrella": (_umbrella, 0.5),
    "power_bank": (power_bank, 0.4),
    "liquid_container": (liquid_container, 0.5),
}


def _pick(rng: np.random.Generator, names, weights) -> str:
    """One of ``names`` drawn with probability proportional to ``weights``."""
    cum = np.cumsum(weights, dtype=np.float64)
    return names[
        min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(names) - 1)
    ]


def _tilt(rng: np.random.Generator) -> float:
    """Out-of-plane tilt (deg): mostly lying flat, sometimes standing at an angle."""
    return float(rng.uniform(0, 25) if rng.random() < 0.7 else rng.uniform(25, 70))


SMALLS = {"low": (10, 20), "medium": (30, 50), "high": (50, 80)}


def _smalls(shape: LocalShape, rng: np.random.Generator, L: float, W: float, n: int) -> None:
    """Many small odds and ends drawn straight into the bag's frame (no resampling): pins and
    short wires, rivets and screw heads, split rings, plastic bits, zip pulls, cable ends and
    coins. Items of one kind are rasterised together."""
    pts = rng.uniform(-0.47, 0.47, (n, 2)) * [L, W]
    kinds = rng.integers(0, 8, n)
    sizes = rng.uniform(0.5, 1.5, n)
    ang = rng.uniform(0, np.pi, n)
    d = np.stack([np.cos(ang), np.sin(ang)], 1)
    perp = d[:, ::-1] * [1, -1]
    sel = {k: kinds == k for k in range(8)}
    k0 = sel[0]
    pins = np.stack([pts[k0], pts[k0] + d[k0] * sizes[k0, None] * 4], 1)
    shape.wires("steel", list(pins[sizes[k0] < 1]), 0.15)
    shape.wires("copper", list(pins[sizes[k0] >= 1]), 0.25)
    shape.discs("steel", pts[sel[1]], 0.2 + 0.2 * sizes[sel[1]], 0.3)
    t = np.linspace(0, 2 * np.pi, 13)[:, None]
    circ = np.concatenate([np.cos(t), np.sin(t)], 1)
    rings = [p + (0.4 * sz + 0.2) * circ for p, sz in zip(pts[sel[2]], sizes[sel[2]], strict=True)]
    shape.wires("steel", rings, 0.12)
    k3 = sel[3]
    s3 = sizes[k3, None]
    tri = np.stack([pts[k3] - d[k3] * s3 * 2, pts[k3] + d[k3] * s3 * 2, pts[k3] + perp[k3] * s3], 1)
    shape.polygons("abs", list(tri), 0.5)
    k4 = sel[4]
    a4, b4 = d[k4] * (0.3 * sizes[k4, None] + 0.2), perp[k4] * (0.6 * sizes[k4, None] + 0.2)
    pulls = np.stack(
        [pts[k4] - a4 - b4, pts[k4] + a4 - b4, pts[k4] + a4 + b4, pts[k4] - a4 + b4], 1
    )
    shape.polygons("steel", list(pulls), 0.15)
    k5 = sel[5]
    s5 = sizes[k5, None]
    ends = list(
        np.stack([pts[k5], pts[k5] + d[k5] * s5 * 3, pts[k5] + d[k5] * s5 * 5 + perp[k5] * s5], 1)
    )
    shape.wires("pvc", ends, 0.35)
    shape.wires("copper", ends, 0.08)
    k6 = sel[6]
    shape.discs(
        ("copper", "brass", "steel")[int(rng.integers(3))], pts[k6], 0.8 + 0.3 * sizes[k6], 0.18
    )
    k7 = sel[7]
    for p, sz in zip(pts[k7], sizes[k7], strict=True):  # plastic buckles or caps
        shape.disc("polyethylene", p[0], p[1], 0.5 + 0.6 * sz, 0.8, inner=0.3 * sz)


def _texture(scene: Scene, rng: np.random.Generator) -> None:
    """Folds and weave make textiles and paper uneven: modulate their path lengths by ±35 %
    smooth noise (a few pixels in scale), so flat regions show the texture real scans have."""
    names = [m for m in ("cotton", "paper", "nylon", "leather") if m in scene.maps]
    if not names:
        return
    h, w = scene.height, scene.width
    small = rng.standard_normal((h // 4 + 1, w // 4 + 1)).astype(np.float32)
    noise = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)[:h, :w]
    np.clip(noise, -2.5, 2.5, out=noise)
    noise *= np.float32(0.14)
    noise += np.float32(1.0)
    for m in names:
        scene.maps[m] *= noise


def build_baggage(
    rng: np.random.Generator,
    size_hw: tuple[int, int],
    with_threat: bool,
    clutter: str = "medium",
    annotate_benign: bool = True,
    threats_per_scan: tuple[int, int] | None = None,
) -> Scene:
    """A baggage scene of ``size_hw`` pixels; threats only when ``with_threat``.

    The bag (55–78 cm long) fills most of the image at any size; ``pixel_cm`` follows. A
    threat scan holds 1 threat (60 %), 2 (33 %) or 3 (7 %), or, with ``threats_per_scan =
    (lo, hi)``, a uniform draw from lo..hi (denser training scenes: more threat instances per
    image for the same compute).
    """
    if clutter not in CLUTTER_ITEMS:
        raise ValueError(f"clutter: expected one of {sorted(CLUTTER_ITEMS)}, got {clutter!r}")
    H, W = size_hw
    L, Wd = rng.uniform(52, 75), rng.uniform(38, 55)
    angle = float(
        rng.choice([0.0, 90.0]) + rng.normal(0, 12) if rng.random() < 0.8 else rng.uniform(-60, 60)
    )
    a = math.radians(angle)
    ext_x = abs(L * math.cos(a)) + abs(Wd * math.sin(a)) + 8
    ext_y = abs(L * math.sin(a)) + abs(Wd * math.cos(a)) + 8
    pc = max(ext_x / (W * rng.uniform(0.98, 1.1)), ext_y / (H * rng.uniform(0.98, 1.1)))
    cx = W / 2 + rng.uniform(-0.04, 0.04) * W
    cy = H / 2 + rng.uniform(-0.04, 0.04) * H
    scene = Scene(H, W, pc)
    shell = _shell(rng, pc, L, Wd, angle)
    lo, hi = SMALLS[clutter]
    _smalls(shell, rng, L * 0.95, Wd * 0.95, int(rng.integers(lo, hi + 1)))
    scene.add(place(shell, (cx, cy)))  # drawn rotated already: pasted without resampling
    frame = BagFrame(cx, cy, angle, L / 2 / pc, Wd / 2 / pc)

    lo, hi = CLUTTER_ITEMS[clutter]
    names = list(CLUTTER_BUILDERS)
    weights = [CLUTTER_BUILDERS[n][1] for n in names]
    for _ in range(int(rng.integers(lo, hi + 1))):
        name = _pick(rng, names, weights)
        shape = CLUTTER_BUILDERS[name][0](rng, pc)
        item_angle = angle + (
            rng.choice([0, 90]) + rng.normal(0, 15) if rng.random() < 0.6 else rng.uniform(0, 360)
        )
        center = frame.sample_point(rng)
        placed = place(shape, center, float(item_angle), _tilt(rng), bool(rng.random() < 0.5))
        frame.fit_inside(placed)
        annotate = annotate_benign and name in BENIGN_ANNOTATED
        scene.add(placed, category=name if annotate else None, is_threat=False)

    _texture(scene, rng)
    if with_threat:
        if threats_per_scan is None:
            n = 1 + int(rng.random() < 0.3) + int(rng.random() < 0.1)
        else:
            n = int(rng.integers(threats_per_scan[0], threats_per_scan[1] + 1))
        for _ in range(n):
            cat = _pick(rng, BAGGAGE_THREATS, BAGGAGE_THREAT_WEIGHTS)
            shape = build_threat(cat, rng, pc)
            center = frame.sample_point(rng, 0.7)
            angle_t = float(rng.uniform(0, 360))
            placed = place(shape, center, angle_t, _tilt(rng) * 0.8, bool(rng.random() < 0.5))
            frame.fit_inside(placed)
            scene.add(placed, category=cat, is_threat=True)
    return scene
