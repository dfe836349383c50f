"""Procedural cargo scenes: a truck seen from the side by a linac scanner.

The beam crosses the vehicle sideways, so every path length is measured across its width
(``DEPTH_CM`` for a container). Walls, floor, roof and cross members parallel to the beam are
seen edge-on and carry long steel or wood paths; the container sides perpendicular to the beam
add a thin uniform layer. Loads are pallets of boxes (homogeneous or mixed contents: produce,
bottles, textiles, paper, machine parts), and anomalies are concealed compartments, bricks of
organic contraband inside loads, weapons and undeclared metal. Empty trucks come with or
without a few added items.

Scene coordinates: x along the truck (cm from its rear), y height above the ground (cm); they
are converted to the upright local frame of :class:`~xscan.synth.shapes.LocalShape` by
:class:`_Truck`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xscan.synth.scene import Scene
from xscan.synth.shapes import LocalShape, place

CARGO_ANOMALIES = ("concealed_compartment", "drugs_like", "firearm", "undeclared_metal")
DEPTH_CM = 235.0  # inner width of a container, along the beam
LOADS = ("produce", "bottles", "textiles", "paper", "machinery", "mixed", "empty")


@dataclass
class _Truck:
    """A truck of ``length`` × ``height`` cm drawn into one canvas; (x, y) are scene cm."""

    length: float
    height: float
    pixel_cm: float

    def __post_init__(self) -> None:
        self.shape = LocalShape(self.length, self.height, self.pixel_cm)

    def box(self, mat: str, x0: float, y0: float, x1: float, y1: float, depth: float) -> None:
        """Axis-aligned block from (x0, y0) to (x1, y1) with path ``depth`` cm along the beam."""
        cx, cy = (x0 + x1) / 2 - self.length / 2, self.height / 2 - (y0 + y1) / 2
        self.shape.box(mat, cx, cy, abs(x1 - x0), abs(y1 - y0), depth)

    def disc(self, mat: str, x: float, y: float, r: float, depth: float, inner: float = 0) -> None:
        self.shape.disc(mat, x - self.length / 2, self.height / 2 - y, r, depth, inner)


def _chassis(t: _Truck, rng: np.random.Generator, x0: float, x1: float, deck: float) -> None:
    """Frame rails and cross members under a deck at height ``deck``."""
    t.box("steel", x0, deck - 30, x1, deck - 5, 2 * 0.9)  # two longitudinal rails (webs)
    t.box("steel", x0, deck - 32, x1, deck - 30, 2 * 12)  # their flanges
    for x in np.arange(x0 + 20, x1 - 10, rng.uniform(45, 70)):  # cross members seen edge-on
        t.box("steel", x - 0.4, deck - 28, x + 0.4, deck - 6, 200)


def _wheel(t: _Truck, x: float, r: float = 50.0, dual: bool = True) -> None:
    """A wheel pair (both sides of the vehicle) with an axle seen end-on at ``x``."""
    n = 4 if dual else 2
    t.disc("rubber", x, r, r, 28 * n, inner=r * 0.62)
    t.disc("steel", x, r, r * 0.62, 1.2 * n, inner=r * 0.2)
    t.disc("steel", x, r, r * 0.25, 6 * n)
    t.disc("steel", x, r, 8, 200, inner=6.5)  # axle tube along the beam


def _loose_items(t: _Truck, rng: np.random.Generator, x0: float, x1: float, deck: float) -> None:
    """A few declared items on the floor of an otherwise empty container: a spare wheel, a
    toolbox, a gas cylinder."""
    for _ in range(int(rng.integers(1, 4))):
        x = rng.uniform(x0 + 80, x1 - 80)
        kind = rng.integers(3)
        if kind == 0:
            y = deck + 50
            t.disc("rubber", x, y, 50, 28, inner=31)
            t.disc("steel", x, y, 31, 1.2, inner=10)
        elif kind == 1:
            t.box("steel", x - 30, deck + 3, x + 30, deck + 33, 2 * 0.15)  # toolbox walls
            t.box("steel", x - 28, deck + 5, x + 28, deck + 25, rng.uniform(2, 6))  # tools
        else:
            t.box("steel", x - 60, deck + 3, x + 60, deck + 33, 2 * 0.6)  # cylinder shell
            t.box("steel", x + 60, deck + 13, x + 68, deck + 23, 8)  # valve


def _tractor(t: _Truck, rng: np.random.Generator, x0: float) -> None:
    """Cab-over tractor unit occupying x0 .. x0 + 600 cm."""
    t.box("steel", x0 + 20, 120, x0 + 250, 380, 2 * 0.15)  # cab sides
    t.box("steel", x0 + 20, 378, x0 + 250, 382, 220)  # roof edge-on
    t.box("steel", x0 + 248, 120, x0 + 252, 380, 20)  # front panel / windscreen frame
    t.box("glass", x0 + 150, 250, x0 + 250, 360, 0.5)
    t.box("abs", x0 + 40, 150, x0 + 200, 230, 80)  # seats, dashboard
    t.box("steel", x0 + 90, 60, x0 + 230, 150, 55)  # engine block
    t.box("aluminium", x0 + 100, 65, x0 + 220, 140, 25)
    t.box("steel", x0, 80, x0 + 90, 120, 40)  # gearbox
    t.box("aluminium", x0 + 260, 70, x0 + 420, 130, 0.6)  # fuel tank shell
    t.box("gasoline", x0 + 262, 72, x0 + 418, 100 + rng.uniform(0, 28), 60)  # diesel
    t.box("steel", x0 + 250, 85, x0 + 600, 115, 2 * 0.9)  # tractor frame
    _wheel(t, x0 + 170, dual=False)
    _wheel(t, x0 + 470)


def _container(t: _Truck, x0: float, x1: float, deck: float, top: float) -> None:
    """Container walls: sides (thin layer), floor, roof and ends edge-on, corner posts."""
    t.box("steel", x0, deck, x1, top, 2 * 0.2)  # corrugated side walls
    t.box("wood", x0, deck, x1, deck + 2.8, DEPTH_CM)  # plywood floor
    t.box("steel", x0, deck - 4, x1, deck, DEPTH_CM * 0.1)  # floor cross members (averaged)
    t.box("steel", x0, top - 0.3, x1, top, DEPTH_CM)  # roof sheet
    t.box("steel", x0, top - 10, x1, top, 2 * 1.2)  # top side rails
    t.box("steel", x0, deck - 15, x1, deck, 2 * 1.2)  # bottom side rails
    for xa, xb in ((x0, x0 + 1.0), (x1 - 0.5, x1)):
        t.box("steel", xa, deck, xb, top, DEPTH_CM)  # doors / front wall edge-on
    for xa in (x0, x1 - 15):
        t.box("steel", xa, deck, xa + 15, top, 2 * 1.5)  # corner posts


def _pallet_stack(
    t: _Truck, rng: np.random.Generator, x: float, deck: float, top: float, load: str
) -> float:
    """A pallet of boxes at ``x``; returns the pallet's length (cm)."""
    pl = 120.0 if rng.random() < 0.5 else 100.0
    t.box("wood", x, deck + 2.8, x + pl, deck + 17, DEPTH_CM * 0.45)
    height = rng.uniform(0.45, 0.95) * (top - deck - 20)
    y0, y1 = deck + 17, deck + 17 + height
    contents = {
        "produce": (("produce", 0.45),),
        "bottles": (("water", 0.45), ("glass", 0.08)),
        "textiles": (("cotton", 0.5),),
        "paper": (("paper", 0.55),),
        "machinery": (("steel", 0.05), ("aluminium", 0.05), ("abs", 0.1)),
    }[load]
    fill = rng.uniform(0.6, 1.0)
    for mat, frac in contents:
        t.box(mat, x + 2, y0, x + pl - 2, y1, DEPTH_CM * frac * fill)
    # cardboard: faces add a layer, walls parallel to the beam give the box grid
    t.box("cardboard", x + 2, y0, x + pl - 2, y1, 4 * 0.5)
    bw, bh = rng.uniform(25, 60), rng.uniform(20, 50)
    for bx in np.arange(x + 2, x + pl - 2, bw):
        t.box("cardboard", bx, y0, bx + 0.5, y1, DEPTH_CM * 0.8)
    for by in np.arange(y0, y1, bh):
        t.box("cardboard", x + 2, by, x + pl - 2, by + 0.5, DEPTH_CM * 0.8)
    t.box("polyethylene", x, y0, x + pl, y1, 0.2)  # stretch wrap
    return pl, y1


def _anomaly(rng: np.random.Generator, kind: str, pc: float) -> tuple[LocalShape, str]:
    """One anomaly as its own shape (cm, upright) and its main material."""
    if kind == "concealed_compartment":
        w, h = rng.uniform(40, 90), rng.uniform(60, 180)
        s = LocalShape(w + 2, h + 2, pc)
        s.box("steel", 0, 0, w, h, 2 * 0.4)
        s.box("steel", -w / 2, 0, 1.0, h, DEPTH_CM * 0.9)  # false wall seen edge-on
        s.box("steel", w / 2, 0, 1.0, h, DEPTH_CM * 0.9)
        if rng.random() < 0.7:
            s.box(
                ["cocaine", "polyethylene", "cotton"][rng.integers(3)],
                0,
                0,
                w - 4,
                h - 4,
                DEPTH_CM * rng.uniform(0.2, 0.6),
            )
        return s, "steel"
    if kind == "drugs_like":
        nx, ny = int(rng.integers(2, 6)), int(rng.integers(2, 6))
        s = LocalShape(nx * 20 + 2, ny * 10 + 2, pc)
        mat = "cocaine" if rng.random() < 0.7 else "fentanyl"
        for i in range(nx):
            for j in range(ny):
                s.box(
                    mat,
                    -nx * 10 + 10 + i * 20,
                    -ny * 5 + 5 + j * 10,
                    19,
                    9,
                    DEPTH_CM * rng.uniform(0.15, 0.5),
                )
        return s, mat
    if kind == "firearm":
        L = rng.uniform(80, 110)
        s = LocalShape(L + 2, 30, pc)
        n = int(rng.integers(2, 10))  # rifles stacked across the crate
        s.box("steel", 10, -3, L - 25, 3, 4.0 * n)  # barrels and receivers
        s.box("steel", 0, 0, 25, 8, 5.0 * n)
        s.box("wood", -L / 2 + 15, 3, 30, 10, 5.0 * n)  # stocks
        s.box("steel", 5, 7, 5, 12, 3.0 * n)  # magazines
        s.box("wood", 0, 0, L + 1, 28, 4.0)  # the crate
        return s, "steel"
    r = rng.uniform(10, 35)
    s = LocalShape(2 * r + 2, 2 * r + 2, pc)
    if rng.random() < 0.5:
        s.disc("steel", 0, 0, r, DEPTH_CM * rng.uniform(0.1, 0.4))  # coil / drum
    else:
        s.box("steel", 0, 0, 2 * r, r, DEPTH_CM * rng.uniform(0.1, 0.3))  # block
        s.box("copper", 0, 0, r, r * 0.5, 20)
    return s, "steel"


def build_cargo(rng: np.random.Generator, size_hw: tuple[int, int], with_threat: bool) -> Scene:
    """A truck scene of ``size_hw`` pixels; anomalies only when ``with_threat``.

    The truck (tractor + 20 ft or 40 ft container trailer) fills the image width; pixel size
    follows (about 0.8–1 cm at 2048 px).
    """
    H, W = size_hw
    cont = 1200.0 if rng.random() < 0.65 else 600.0
    length = cont + 650.0
    height = 420.0
    pc = max(length * 1.04 / W, height * 1.08 / H)
    scene = Scene(H, W, pc)
    t = _Truck(length, height, pc)
    deck, top = rng.uniform(115, 135), 0.0
    top = deck + rng.uniform(240, 270)
    cx0 = 10.0
    _chassis(t, rng, cx0, cx0 + cont, deck)
    for k in range(3 if cont > 1000 else 2):
        _wheel(t, cx0 + 80 + k * 130)
    _container(t, cx0, cx0 + cont, deck, top)
    _tractor(t, rng, cx0 + cont + 30)

    load = LOADS[int(rng.choice(len(LOADS), p=[0.2, 0.15, 0.15, 0.1, 0.1, 0.15, 0.15]))]
    slots: list[tuple[float, float, float]] = []  # (x, length, top) of pallets: hiding places
    if load != "empty":
        x = cx0 + 5
        end = cx0 + cont * rng.uniform(0.55, 1.0) - 5
        while x + 120 < end:
            kind = load if load != "mixed" else LOADS[int(rng.integers(5))]
            pl, ytop = _pallet_stack(t, rng, x, deck, top, kind)
            slots.append((x, pl, ytop))
            x += pl + rng.uniform(2, 15)
    elif rng.random() < 0.5:  # an empty truck with a few added items
        _loose_items(t, rng, cx0, cx0 + cont, deck)

    # the truck is drawn upright at the image centre-bottom (no resampling)
    cxp = W / 2
    cyp = H - (height / 2) / pc - 0.02 * H
    scene.add(place(t.shape, (cxp, cyp)))

    def to_px(x: float, y: float) -> tuple[float, float]:
        return cxp + (x - length / 2) / pc, cyp + (height / 2 - y) / pc

    if with_threat:
        for _ in range(1 + int(rng.random() < 0.25)):
            kind = CARGO_ANOMALIES[int(rng.integers(len(CARGO_ANOMALIES)))]
            shape, _ = _anomaly(rng, kind, pc)
            hy = shape.h * pc / 2
            if slots and rng.random() < 0.8:  # hidden inside a pallet of the load
                sx, sl, ytop = slots[int(rng.integers(len(slots)))]
                x = sx + sl / 2 + rng.uniform(-0.3, 0.3) * sl
                lo, hi = deck + 17 + hy, ytop - hy
                y = rng.uniform(lo, hi) if hi > lo else (deck + 17 + ytop) / 2
            else:  # on the floor
                x = cx0 + rng.uniform(0.1, 0.9) * cont
                y = deck + 3 + hy
            scene.add(place(shape, to_px(x, y)), category=kind, is_threat=True)
    return scene
