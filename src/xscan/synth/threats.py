"""Threat object builders: handguns and gun parts, knives, tools, batons, lighters, power
banks, liquids, drug-like packets and explosive-like blocks.

Each builder takes a seeded ``np.random.Generator`` and the pixel size ``pixel_cm`` and returns
a :class:`~xscan.synth.shapes.LocalShape` drawn upright in centimetres (sizes follow real
objects; materials are names from :mod:`xscan.synth.materials`). Placement, rotation and tilt
happen later (:func:`xscan.synth.shapes.place`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from xscan.synth.shapes import LocalShape

Builder = Callable[[np.random.Generator, float], LocalShape]

# Prohibited items (``is_threat=True``; the canonical taxonomy marks the same classes).
BAGGAGE_THREATS = (
    "firearm",
    "firearm_part",
    "knife",
    "scissors",
    "pliers",
    "wrench",
    "hammer",
    "baton",
    "lighter",
    "drugs_like",
    "explosive_like",
)
# Share of each class among threats placed in baggage (guns and knives dominate real
# screening data sets such as SIXray).
BAGGAGE_THREAT_WEIGHTS = (3, 1, 3, 1.5, 1.5, 1.5, 1, 1, 1, 1.5, 1)
# Restricted but not prohibited: annotated with ``is_threat=False`` wherever they appear.
BAGGAGE_RESTRICTED = ("power_bank", "liquid_container")


_ARC = {
    n: (np.cos(np.linspace(0, np.pi / 2, n)), np.sin(np.linspace(0, np.pi / 2, n))) for n in (6,)
}


def rounded_rect(w: float, h: float, r: float, cx: float = 0.0, cy: float = 0.0, n: int = 6):
    """``(4n, 2)`` outline of a ``w × h`` rectangle with corner radius ``r`` (cm), centred at
    ``(cx, cy)``."""
    r = min(r, w / 2, h / 2)
    if n not in _ARC:
        _ARC[n] = (np.cos(np.linspace(0, np.pi / 2, n)), np.sin(np.linspace(0, np.pi / 2, n)))
    c, s = _ARC[n]
    ax, ay = w / 2 - r, h / 2 - r
    xs = np.concatenate([ax + r * s, ax + r * c, -ax - r * s, -ax - r * c]) + cx
    ys = np.concatenate([-ay - r * c, ay + r * s, ay + r * c, -ay - r * s]) + cy
    return np.stack([xs, ys], 1)


# ---- firearms -----------------------------------------------------------------------------
def handgun(rng: np.random.Generator, pc: float) -> LocalShape:
    """Semi-automatic pistol (steel slide and barrel, polymer or steel frame, loaded magazine)
    or a revolver (steel frame and cylinder, wooden grip)."""
    s = rng.uniform(0.85, 1.15)
    if rng.random() < 0.25:
        return _revolver(rng, pc, s)
    L, sh = 18.5 * s, 3.0 * s
    shape = LocalShape(L + 2, 14 * s + 2, pc)
    top = -5.0 * s
    frame = "nylon" if rng.random() < 0.6 else "steel"
    shape.box("steel", 0, top, L, sh, 2.6 * s)  # slide
    shape.cylinder("steel", 0.3 * s, top + 0.2 * s, L - 1.0, 0.55 * s, 0.45 * s)  # barrel
    shape.box(frame, 0.8 * s, top + sh / 2 + 0.7 * s, L - 3.5 * s, 1.6 * s, 2.4 * s)
    # grip: a slanted quadrilateral at the rear
    gx = L / 2 - 4.6 * s
    grip = np.array(
        [
            [gx - 1.6 * s, top + sh / 2],
            [gx + 3.7 * s, top + sh / 2],
            [gx + 5.6 * s, top + 11.5 * s],
            [gx + 0.6 * s, top + 11.5 * s],
        ]
    )
    shape.polygon(frame, grip, 3.0 * s)
    mag = np.array(
        [
            [gx - 0.3 * s, top + sh / 2 + 0.8 * s],
            [gx + 2.2 * s, top + sh / 2 + 0.8 * s],
            [gx + 3.9 * s, top + 11.3 * s],
            [gx + 1.4 * s, top + 11.3 * s],
        ]
    )
    shape.polygon("steel", mag, 0.5 * s)
    shape.polygon("brass", mag * [1, 0.97] + [0.3 * s, 0], 0.9 * s)
    # trigger guard and trigger
    t = np.linspace(0.2, np.pi - 0.2, 12)
    guard = np.stack(
        [gx - 2.5 * s + 2.0 * s * np.cos(t), top + sh / 2 + 1.5 * s + 2.0 * s * np.sin(t)], 1
    )
    shape.wire(frame, guard, 0.5 * s)
    shape.box("steel", gx - 2.3 * s, top + sh / 2 + 2.2 * s, 0.4 * s, 1.6 * s, 0.6 * s)
    return shape


def _revolver(rng: np.random.Generator, pc: float, s: float) -> LocalShape:
    bl = rng.uniform(5, 15) * s
    L = bl + 13 * s
    shape = LocalShape(L + 2, 15 * s + 2, pc)
    x0 = -L / 2
    shape.cylinder("steel", x0 + bl / 2, -4 * s, bl, 1.0 * s, 0.45 * s)  # barrel
    shape.box("steel", x0 + bl + 2.2 * s, -3.4 * s, 4.4 * s, 3.8 * s, 3.6 * s)  # cylinder drum
    shape.box("steel", x0 + bl + 5.5 * s, -3.0 * s, 3.5 * s, 3.2 * s, 2.6 * s)  # frame
    grip = np.array(
        [
            [x0 + bl + 5 * s, -1.8 * s],
            [x0 + bl + 8.3 * s, -2.4 * s],
            [x0 + bl + 11.5 * s, 6.5 * s],
            [x0 + bl + 8 * s, 7.0 * s],
        ]
    )
    shape.polygon("wood", grip, 3.0 * s)
    shape.polygon("steel", grip * [1, 0.9] + [0.4 * s, 0], 0.5 * s)
    t = np.linspace(0.2, np.pi - 0.2, 10)
    shape.wire(
        "steel",
        np.stack([x0 + bl + 3 * s + 1.8 * s * np.cos(t), -1.2 * s + 1.8 * s * np.sin(t)], 1),
        0.45 * s,
    )
    return shape


def firearm_part(rng: np.random.Generator, pc: float) -> LocalShape:
    """A barrel, a slide, or a loaded magazine on its own."""
    kind = rng.integers(3)
    if kind == 0:
        L, r = rng.uniform(9, 15), rng.uniform(0.55, 0.8)
        shape = LocalShape(L + 1, 2 * r + 1, pc)
        shape.cylinder("steel", 0, 0, L, r, r * 0.55)
        shape.cylinder("steel", L / 2 - 1.0, 0, 2.0, r * 1.3, r * 0.55)
    elif kind == 1:
        L = rng.uniform(16, 20)
        shape = LocalShape(L + 1, 4, pc)
        shape.box("steel", 0, 0, L, 3.0, 2.5)
        shape.box("steel", -L / 2 + 4, 0.2, 3.2, 1.4, -1.6)  # ejection port (less steel)
        np.clip(shape.layers["steel"], 0, None, out=shape.layers["steel"])
    else:
        L = rng.uniform(10, 13)
        shape = LocalShape(3.5, L + 1, pc)
        shape.box("steel", 0, 0, 2.4, L, 0.45)
        for i in range(int(L / 1.1) - 1):
            shape.cylinder("brass", 0, -L / 2 + 1.0 + i * 1.05, 2.0, 0.45)
    return shape


# ---- blades and tools ---------------------------------------------------------------------
_BLADE_KINDS = ("drop_point", "clip_point", "tanto", "chef", "dagger", "serrated", "curved")


def _blade_outline(kind: str, L: float, W: float) -> np.ndarray:
    """Blade outline ``(N, 2)`` cm, tang at x=0, tip at x=L, spine at y=-W/2."""
    x = np.linspace(0, 1, 24)
    spine = np.full_like(x, -W / 2)
    edge = W / 2 - W * np.clip((x - 0.6) / 0.4, 0, 1) ** 2
    if kind == "clip_point":
        spine = np.where(
            x > 0.65, -W / 2 + W * 0.9 * (np.clip(x - 0.65, 0, None) / 0.35) ** 1.3, spine
        )
    elif kind == "drop_point":
        spine = -W / 2 + W * np.clip((x - 0.7) / 0.3, 0, 1) ** 2 * 0.9
    elif kind == "tanto":
        edge = np.where(x > 0.8, W / 2 - W * (x - 0.8) / 0.2 * 0.95, W / 2)
    elif kind == "chef":
        edge = W / 2 - W * 0.95 * np.clip((x - 0.3) / 0.7, 0, 1) ** 2.2
    elif kind == "dagger":
        half = W / 2 * np.minimum(1.0, (1 - x) / 0.45)
        spine, edge = -half, half
    elif kind == "serrated":
        edge = edge - 0.12 * W * (np.arange(x.size) % 2) * (x < 0.6)
    elif kind == "curved":
        bend = W * 0.8 * x**2
        spine, edge = spine + bend, edge + bend * 0.6
    top = np.stack([x * L, spine], 1)
    bottom = np.stack([x * L, np.maximum(edge, spine + 0.02)], 1)[::-1]
    return np.concatenate([top, bottom])


def knife(rng: np.random.Generator, pc: float) -> LocalShape:
    """Knife with one of several blade shapes; handle of wood, polymer, rubber or steel."""
    kind = _BLADE_KINDS[rng.integers(len(_BLADE_KINDS))]
    L = rng.uniform(7, 22)
    W = rng.uniform(1.6, 4.5) if kind != "dagger" else rng.uniform(2.0, 3.4)
    HL, HW = rng.uniform(8.5, 12.5), rng.uniform(1.8, 2.8)
    total = L + HL + 0.8
    shape = LocalShape(total + 1, max(W, HW) * 1.8 + 1, pc)
    x0 = -total / 2 + HL + 0.8
    blade = _blade_outline(kind, L, W) + [x0, 0]
    shape.polygon("steel", blade, rng.uniform(0.15, 0.4))
    handle_mat = ["wood", "nylon", "rubber", "steel", "polyethylene"][rng.integers(5)]
    depth = 0.4 if handle_mat == "steel" else rng.uniform(1.2, 2.0)
    shape.polygon(handle_mat, rounded_rect(HL, HW, HW * 0.4, x0 - 0.8 - HL / 2, 0), depth)
    if handle_mat != "steel":
        shape.box("steel", x0 - 0.8 - HL / 2, 0, HL * 0.95, 0.5, 0.3)  # tang
    if rng.random() < 0.5:
        shape.box("steel", x0 - 0.4, 0, 0.8, max(W, HW) * 1.4, 1.0)  # guard / bolster
    return shape


def scissors(rng: np.random.Generator, pc: float) -> LocalShape:
    """Two crossed steel blades on a pivot with finger loops of plastic or steel."""
    L = rng.uniform(7, 13)
    open_deg = rng.uniform(3, 30)
    shape = LocalShape(L + 10, L * 0.9 + 6, pc)
    loop_mat = "nylon" if rng.random() < 0.7 else "steel"
    for sign in (-1, 1):
        a = np.radians(sign * open_deg / 2)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        bw = rng.uniform(0.8, 1.2)
        blade = np.array([[0, -bw], [L, -0.12], [L, 0.12], [0, bw], [-2.5, 0.6], [-2.5, -0.6]])
        shape.polygon("steel", blade @ rot.T, 0.25)
        c = np.array([-5.0, sign * 1.8]) @ rot.T
        shape.ring(loop_mat, c[0], c[1], 1.5, 0.8 if loop_mat == "nylon" else 0.4)
    shape.disc("steel", 0, 0, 0.4, 0.6)
    return shape


def pliers(rng: np.random.Generator, pc: float) -> LocalShape:
    """Steel pliers with plastic-coated handles, jaws slightly open."""
    L = rng.uniform(14, 22)
    jaw = L * 0.3
    shape = LocalShape(L + 2, L * 0.55, pc)
    spread = rng.uniform(0.1, 0.35)
    grip = ["pvc", "rubber", "nylon"][rng.integers(3)]
    for sign in (-1, 1):
        handle = np.array(
            [
                [0, sign * 0.3],
                [0, sign * 1.1],
                [-(L - jaw), sign * (1.0 + spread * L)],
                [-(L - jaw), sign * (0.2 + spread * L)],
            ]
        ) + [L / 2 - jaw, 0]
        shape.polygon("steel", handle, 0.9)
        shape.polygon(grip, handle * [0.85, 1.15] + [-(L / 2 - jaw) * 0.15 - 1.0, 0], 0.8)
        jaw_poly = np.array([[0, 0], [jaw, sign * 0.1], [jaw, sign * 0.5], [0, sign * 1.3]]) + [
            L / 2 - jaw,
            0,
        ]
        shape.polygon("steel", jaw_poly, 1.0)
    shape.disc("steel", L / 2 - jaw, 0, 0.9, 0.6)
    return shape


def wrench(rng: np.random.Generator, pc: float) -> LocalShape:
    """Combination spanner (open end + ring end) or an adjustable wrench."""
    L = rng.uniform(12, 28)
    W = L * 0.09 + 0.6
    shape = LocalShape(L + 4, W * 4, pc)
    shape.box("steel", 0, 0, L - 2 * W, W, 0.6)
    if rng.random() < 0.6:
        shape.disc("steel", L / 2 - W, 0, W * 1.2, 0.8, inner=W * 0.65)
        head = np.array(
            [
                [-W * 0.6, -W * 1.4],
                [W * 0.8, -W * 1.6],
                [W * 1.6, -W * 0.5],
                [W * 0.3, -W * 0.45],
                [W * 0.3, W * 0.45],
                [W * 1.6, W * 0.5],
                [W * 0.8, W * 1.6],
                [-W * 0.6, W * 1.4],
            ]
        ) + [-L / 2 + W * 0.6, 0]
        shape.polygon("steel", head, 0.75)
    else:
        head = rounded_rect(W * 2.4, W * 3.0, W * 0.6, L / 2 - W, -W * 0.4)
        shape.polygon("steel", head, 1.2)
        shape.box("steel", L / 2 - W * 0.2, -W * 1.4, W * 1.3, W * 0.4, -1.2)  # jaw gap
        np.clip(shape.layers["steel"], 0, None, out=shape.layers["steel"])
        shape.disc("steel", L / 2 - W * 1.2, W * 0.6, W * 0.4, 0.8)
    return shape


def hammer(rng: np.random.Generator, pc: float) -> LocalShape:
    """Steel head on a wooden, fibreglass-polymer or steel handle."""
    HL = rng.uniform(22, 33)
    head_w = rng.uniform(9, 13)
    shape = LocalShape(HL + 3, head_w + 2, pc)
    mat = ["wood", "nylon", "steel"][rng.integers(3)]
    shape.box(mat, -1.5, 0, HL - 3, rng.uniform(2.2, 3.0), 0.5 if mat == "steel" else 2.2)
    if mat == "steel":
        shape.box("rubber", -HL / 2 + 5, 0, 10, 3.0, 2.2)
    shape.box("steel", HL / 2 - 1.5, 0, 3.0, head_w * 0.55, 2.6)
    claw = np.array(
        [[HL / 2 - 3, 0], [HL / 2 - 1, 0], [HL / 2 - 3.5, head_w / 2], [HL / 2 - 4.5, head_w / 2]]
    )
    shape.polygon("steel", claw, 1.2)
    shape.polygon("steel", claw * [1, -1] + [0, 0], 1.2)
    return shape


def baton(rng: np.random.Generator, pc: float) -> LocalShape:
    """Telescopic steel baton (collapsed or extended) or a solid polymer baton."""
    if rng.random() < 0.6:
        n = 3
        seg = rng.uniform(15, 20)
        extended = rng.random() < 0.5
        L = seg * (n if extended else 1) + 2
        shape = LocalShape(L + 1, 4, pc)
        for i in range(n):
            r = 1.3 - 0.3 * i
            x = (-L / 2 + seg / 2 + i * seg * 0.98) if extended else -L / 2 + seg / 2 + 1
            shape.cylinder("steel", x, 0, seg, r, r - 0.12)
        shape.cylinder("rubber", -L / 2 + 6, 0, 11, 1.55, 1.3)
    else:
        L = rng.uniform(45, 60)
        shape = LocalShape(L + 1, 4, pc)
        shape.cylinder("nylon", 0, 0, L, 1.6)
    return shape


def lighter(rng: np.random.Generator, pc: float) -> LocalShape:
    """Disposable gas lighter (plastic body with butane, steel top) or a steel petrol lighter."""
    shape = LocalShape(5, 9, pc)
    if rng.random() < 0.7:
        shape.box("nylon", 0, 0.6, 2.4, 6.8, 0.25)
        shape.box("polyethylene", 0, 0.9, 2.1, 5.8, 0.9 * rng.uniform(0.2, 1.0))
        shape.box("steel", 0, -3.3, 2.2, 1.4, 1.1)
        shape.disc("steel", 0.5, -3.9, 0.45, 0.5)
    else:
        shape.box("steel", 0, 0, 3.8, 5.6, 0.3)
        shape.box("cotton", 0, 0.6, 3.2, 3.8, 0.9)
        shape.box("steel", 0, -2.3, 1.6, 1.0, 0.9)
    return shape


def power_bank(rng: np.random.Generator, pc: float) -> LocalShape:
    """Case with 18650 cells or a pouch cell, a circuit board and a USB socket."""
    n = int(rng.integers(1, 5))
    shape = LocalShape(2.0 * n + 3, 10, pc)
    case = "aluminium" if rng.random() < 0.5 else "abs"
    shape.polygon(case, rounded_rect(2.0 * n + 1, 9.0, 0.6), 0.25 if case == "aluminium" else 0.5)
    if rng.random() < 0.7:
        for i in range(n):
            x = -n + 1 + 2 * i
            shape.box("li_ion_cell", x, 0.5, 1.8 * 0.95, 6.5, 1.45)
    else:
        shape.box("li_ion_cell", 0, 0.5, 2.0 * n - 0.2, 6.5, 0.9)
    shape.box("pcb", 0, -3.6, 2.0 * n, 1.3, 0.16)
    shape.box("steel", 0, -4.2, 1.2, 0.5, 0.5)
    return shape


def liquid_container(rng: np.random.Generator, pc: float) -> LocalShape:
    """Bottle (plastic or glass) lying flat, more than 100 ml of liquid."""
    L = rng.uniform(14, 28)
    r = rng.uniform(2.8, 4.5)
    glass = rng.random() < 0.35
    wall_mat, wall = ("glass", 0.35) if glass else ("pet", 0.06)
    shape = LocalShape(L + 1, 2 * r + 1, pc)
    body = L * 0.78
    x0 = -L / 2 + body / 2
    shape.cylinder(wall_mat, x0, 0, body, r, r - wall)
    liquid = ["water", "water", "ethanol", "toiletry", "gasoline"][rng.integers(5)]
    fill = rng.uniform(0.6, 1.0)
    shape.cylinder(liquid, x0 - body * (1 - fill) / 2, 0, body * fill, r - wall)
    neck = L - body
    shape.cylinder(wall_mat, L / 2 - neck / 2, 0, neck, r * 0.35, r * 0.35 - wall)
    shape.cylinder("polyethylene", L / 2 - 0.9, 0, 1.8, r * 0.42, r * 0.3)
    return shape


def drugs_like(rng: np.random.Generator, pc: float) -> LocalShape:
    """A taped packet of powder, or a bag of pills (cocaine- or fentanyl-like organics)."""
    mat = "cocaine" if rng.random() < 0.6 else "fentanyl"
    if rng.random() < 0.65:
        a, b = rng.uniform(3, 8), rng.uniform(2.5, 6)
        shape = LocalShape(2 * a + 1, 2 * b + 1, pc)
        shape.ellipsoid(mat, 0, 0, a, b, rng.uniform(0.6, 1.8))
        shape.polygon("polyethylene", rounded_rect(2 * a, 2 * b, min(a, b) * 0.6), 0.02)
    else:
        w, h = rng.uniform(5, 9), rng.uniform(6, 12)
        shape = LocalShape(w + 1, h + 1, pc)
        shape.polygon("polyethylene", rounded_rect(w, h, 0.4), 0.02)
        n = int(rng.integers(8, 40))
        for _ in range(n):
            x, y = rng.uniform(-w / 2 + 0.6, w / 2 - 0.6), rng.uniform(-h / 2 + 0.6, h / 2 - 0.6)
            shape.disc("pills" if mat == "cocaine" else mat, x, y, 0.45, 0.4)
    return shape


def explosive_like(rng: np.random.Generator, pc: float) -> LocalShape:
    """A block (or sticks) of explosive-like organic with wires, a battery and a detonator."""
    mat = ["rdx", "tnt", "ammonium_nitrate"][rng.integers(3)]
    w, h = rng.uniform(8, 18), rng.uniform(5, 12)
    shape = LocalShape(w + 8, h + 4, pc)
    if rng.random() < 0.5:
        shape.polygon(mat, rounded_rect(w, h, 0.5), rng.uniform(2.5, 5))
    else:
        n = max(2, int(h / 3))
        for i in range(n):
            shape.cylinder(mat, 0, -h / 2 + 1.5 + i * (h - 3) / max(n - 1, 1), w, 1.5)
    shape.polygon("polyethylene", rounded_rect(w + 0.4, h + 0.4, 0.6), 0.05)
    bx = w / 2 + 2.5
    shape.box("steel", bx, -h / 4, 2.6, 4.6, 1.7 * 0.15)  # 9 V battery can
    shape.box("alkaline_cell", bx, -h / 4, 2.4, 4.4, 1.5)
    shape.cylinder("aluminium", -w / 4, 0, 4.0, 0.35, 0.3)  # detonator
    pts = np.array([[bx, -h / 4 + 2.3], [bx - 1, h / 2 + 1], [-w / 4 + 2, h / 2], [-w / 4 + 2, 0]])
    shape.wire("copper", pts, 0.08)
    shape.wire("pvc", pts + [0.2, 0.1], 0.2)
    return shape


THREAT_BUILDERS: dict[str, Builder] = {
    "firearm": handgun,
    "firearm_part": firearm_part,
    "knife": knife,
    "scissors": scissors,
    "pliers": pliers,
    "wrench": wrench,
    "hammer": hammer,
    "baton": baton,
    "lighter": lighter,
    "power_bank": power_bank,
    "liquid_container": liquid_container,
    "drugs_like": drugs_like,
    "explosive_like": explosive_like,
}


def build_threat(category: str, rng: np.random.Generator, pixel_cm: float) -> LocalShape:
    """Build one threat of ``category`` (a canonical class name)."""
    try:
        builder = THREAT_BUILDERS[category]
    except KeyError:
        raise ValueError(
            f"unknown threat category {category!r}; expected one of {sorted(THREAT_BUILDERS)}"
        ) from None
    return builder(rng, pixel_cm)
