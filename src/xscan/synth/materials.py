"""Materials of scanned objects: elemental composition by mass, density and material class.

Compounds are given by formula, mixtures by mass fractions of elements or of other materials.
Densities are bulk densities of the object as it appears in luggage or cargo (g/cm³): e.g.
``cotton`` is folded textile (fibres plus air), ``cellulose`` the solid polymer. A scene gives
each material's path length in cm; areal density is ``length × density``.

``group`` is the screening class that the standard false-colour palette separates:
``organic`` (Z_eff ≲ 10), ``inorganic`` (10–18) and ``metal`` (above).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType

from xscan.synth.attenuation import atomic_number, atomic_weight

GROUPS = ("organic", "inorganic", "metal")
_TOKEN = re.compile(r"([A-Z][a-z]?|\(|\))(\d*\.?\d*)")


def parse_formula(formula: str) -> dict[str, float]:
    """Atom counts of a chemical formula, parentheses allowed: ``"Ca3(PO4)2"``."""
    stack: list[dict[str, float]] = [{}]
    pos = 0
    for m in _TOKEN.finditer(formula):
        if m.start() != pos:
            raise ValueError(f"cannot parse formula {formula!r} at position {pos}")
        pos = m.end()
        tok, num = m.group(1), m.group(2)
        count = float(num) if num else 1.0
        if tok == "(":
            if num:
                raise ValueError(f"formula {formula!r}: a number cannot follow '('")
            stack.append({})
        elif tok == ")":
            if len(stack) == 1:
                raise ValueError(f"formula {formula!r}: unbalanced ')'")
            group = stack.pop()
            for el, n in group.items():
                stack[-1][el] = stack[-1].get(el, 0.0) + n * count
        else:
            atomic_number(tok)  # validates the symbol
            stack[-1][tok] = stack[-1].get(tok, 0.0) + count
    if pos != len(formula) or len(stack) != 1 or not stack[0]:
        raise ValueError(f"cannot parse formula {formula!r}")
    return stack[0]


def formula_mass_fractions(formula: str) -> dict[str, float]:
    counts = parse_formula(formula)
    masses = {el: n * atomic_weight(el) for el, n in counts.items()}
    total = sum(masses.values())
    return {el: m / total for el, m in masses.items()}


@dataclass(frozen=True)
class Material:
    """A homogeneous material. ``composition``: element symbol -> mass fraction (sums to 1)."""

    name: str
    composition: MappingProxyType
    density: float
    group: str
    formula: str | None = None
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"material {self.name!r}: group must be one of {GROUPS}")
        if self.density <= 0:
            raise ValueError(f"material {self.name!r}: density must be > 0 g/cm³")
        total = sum(self.composition.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"material {self.name!r}: mass fractions sum to {total}, not 1")

    @classmethod
    def from_formula(
        cls, name: str, formula: str, density: float, group: str, description: str = ""
    ) -> Material:
        return cls(
            name, _freeze(formula_mass_fractions(formula)), density, group, formula, description
        )

    @classmethod
    def from_fractions(
        cls,
        name: str,
        fractions: dict[str, float],
        density: float,
        group: str,
        description: str = "",
    ) -> Material:
        """Mixture by mass: keys are element symbols, formulas or material names."""
        comp: dict[str, float] = {}
        total = sum(fractions.values())
        for key, w in fractions.items():
            if key in MATERIALS:
                part = dict(MATERIALS[key].composition)
            elif re.fullmatch(r"[A-Z][a-z]?", key):
                atomic_number(key)
                part = {key: 1.0}
            else:
                part = formula_mass_fractions(key)
            for el, f in part.items():
                comp[el] = comp.get(el, 0.0) + f * w / total
        return cls(name, _freeze(comp), density, group, None, description)

    @property
    def effective_z(self) -> float:
        """Power-law effective Z ``(Σ a_i Z_i^2.94)^(1/2.94)``, a_i electron fractions."""
        electrons = {
            el: w * atomic_number(el) / atomic_weight(el) for el, w in self.composition.items()
        }
        total = sum(electrons.values())
        s = sum(n / total * atomic_number(el) ** 2.94 for el, n in electrons.items())
        return s ** (1 / 2.94)


def _freeze(comp: dict[str, float]) -> MappingProxyType:
    total = sum(comp.values())
    return MappingProxyType({el: w / total for el, w in sorted(comp.items())})


MATERIALS: dict[str, Material] = {}


def _add(m: Material) -> None:
    MATERIALS[m.name] = m


F, M = Material.from_formula, Material.from_fractions
# --- organics -------------------------------------------------------------------------------
_add(
    M(
        "air",
        {"N": 0.755268, "O": 0.231781, "Ar": 0.012827, "C": 0.000124},
        0.001205,
        "organic",
        "dry air at sea level",
    )
)
_add(F("water", "H2O", 1.0, "organic"))
_add(F("polyethylene", "C2H4", 0.94, "organic"))
_add(F("polypropylene", "C3H6", 0.90, "organic"))
_add(F("polystyrene", "C8H8", 1.05, "organic"))
_add(F("pet", "C10H8O4", 1.38, "organic", "polyethylene terephthalate (bottles)"))
_add(F("abs", "C15H17N", 1.05, "organic", "acrylonitrile butadiene styrene (cases, housings)"))
_add(F("polycarbonate", "C16H14O3", 1.20, "organic"))
_add(F("nylon", "C12H22N2O2", 1.14, "organic", "nylon 6,6 (bag shells, straps)"))
_add(F("cellulose", "C6H10O5", 1.50, "organic", "solid cellulose"))
_add(F("cotton", "C6H10O5", 0.45, "organic", "folded cotton textile (fibre + air)"))
_add(F("paper", "C6H10O5", 0.80, "organic", "stacked paper, books"))
_add(F("cardboard", "C6H10O5", 0.20, "organic", "corrugated board (effective)"))
_add(F("wood", "C6H10O5", 0.60, "organic", "dry softwood"))
_add(
    M(
        "leather",
        {"C": 0.50, "H": 0.07, "N": 0.17, "O": 0.25, "S": 0.01},
        0.86,
        "organic",
        "tanned collagen",
    )
)
_add(
    M(
        "rubber",
        {"C5H8": 0.70, "C": 0.25, "S": 0.02, "ZnO": 0.03},
        1.15,
        "organic",
        "vulcanised rubber with carbon black (soles, wheels)",
    )
)
_add(F("ethanol", "C2H6O", 0.79, "organic"))
_add(F("gasoline", "C8H18", 0.74, "organic", "octane as a stand-in for fuel"))
_add(F("sugar", "C12H22O11", 1.59, "organic"))
_add(
    M(
        "produce",
        {"water": 0.85, "cellulose": 0.15},
        0.95,
        "organic",
        "fruit and vegetables (water + cellulose)",
    )
)
_add(
    M(
        "food",
        {"water": 0.60, "C6H10O5": 0.25, "C16H32O2": 0.12, "NaCl": 0.03},
        1.05,
        "organic",
        "mixed food (water, starch, fat, salt)",
    )
)
_add(
    M(
        "toiletry",
        {"water": 0.75, "C3H8O3": 0.15, "C18H35NaO2": 0.08, "TiO2": 0.02},
        1.05,
        "organic",
        "creams, gels, shampoo",
    )
)
# threats and contraband (organic)
_add(F("rdx", "C3H6N6O6", 1.82, "organic", "cyclotrimethylenetrinitramine"))
_add(F("petn", "C5H8N4O12", 1.77, "organic"))
_add(F("tnt", "C7H5N3O6", 1.65, "organic", "trinitrotoluene"))
_add(F("ammonium_nitrate", "NH4NO3", 1.72, "organic"))
_add(F("cocaine", "C17H21NO4", 1.20, "organic", "pressed powder"))
_add(F("heroin", "C21H23NO5", 1.20, "organic", "pressed powder"))
_add(F("fentanyl", "C22H28N2O", 1.10, "organic", "fentanyl-like synthetic opioid powder"))
_add(
    M(
        "pills",
        {"C6H10O5": 0.70, "C12H22O11": 0.25, "C18H35NaO2": 0.05},
        1.2,
        "organic",
        "tablets (cellulose and lactose-like excipients)",
    )
)
_add(M("black_powder", {"KNO3": 0.75, "C": 0.15, "S": 0.10}, 1.0, "inorganic", "gunpowder"))
# --- inorganics -----------------------------------------------------------------------------
_add(F("pvc", "C2H3Cl", 1.38, "inorganic", "polyvinyl chloride (Z_eff ≈ 14)"))
_add(
    M(
        "glass",
        {"SiO2": 0.73, "Na2O": 0.14, "CaO": 0.09, "MgO": 0.04},
        2.50,
        "inorganic",
        "soda-lime glass",
    )
)
_add(F("salt", "NaCl", 2.16, "inorganic"))
_add(F("silicon", "Si", 2.33, "inorganic"))
_add(
    M(
        "pcb",
        {"SiO2": 0.45, "C18H20O3": 0.40, "Cu": 0.12, "Br": 0.03},
        1.90,
        "inorganic",
        "FR-4 circuit board with copper layers",
    )
)
_add(
    M(
        "concrete",
        {
            "H": 0.010,
            "C": 0.001,
            "O": 0.529,
            "Na": 0.016,
            "Mg": 0.002,
            "Al": 0.034,
            "Si": 0.337,
            "K": 0.013,
            "Ca": 0.044,
            "Fe": 0.014,
        },
        2.30,
        "inorganic",
        "ordinary concrete (NIST)",
    )
)
_add(F("ceramic", "Al2O3", 3.9, "inorganic", "alumina ceramic"))
_add(F("aluminium", "Al", 2.699, "inorganic"))
# --- metals ---------------------------------------------------------------------------------
_add(F("titanium", "Ti", 4.51, "metal"))
_add(F("zirconia", "ZrO2", 6.0, "metal", "zirconia ceramic (ceramic knives)"))
_add(M("steel", {"Fe": 0.985, "C": 0.005, "Mn": 0.010}, 7.85, "metal", "carbon steel"))
_add(M("stainless_steel", {"Fe": 0.70, "Cr": 0.19, "Ni": 0.09, "Mn": 0.02}, 8.0, "metal"))
_add(F("iron", "Fe", 7.874, "metal"))
_add(F("nickel", "Ni", 8.9, "metal"))
_add(F("copper", "Cu", 8.96, "metal"))
_add(F("zinc", "Zn", 7.14, "metal"))
_add(M("brass", {"Cu": 0.65, "Zn": 0.35}, 8.50, "metal"))
_add(F("tin", "Sn", 7.31, "metal"))
_add(F("silver", "Ag", 10.49, "metal"))
_add(F("tungsten", "W", 19.3, "metal"))
_add(F("gold", "Au", 19.32, "metal"))
_add(F("lead", "Pb", 11.35, "metal"))
_add(
    M(
        "li_ion_cell",
        {
            "LiCoO2": 0.30,
            "C": 0.18,
            "Cu": 0.10,
            "Al": 0.06,
            "C3H4O3": 0.12,
            "LiPF6": 0.02,
            "C2H4": 0.04,
            "Fe": 0.18,
        },
        2.6,
        "metal",
        "cylindrical or pouch lithium-ion cell (cathode, graphite, foils, electrolyte, can)",
    )
)
_add(
    M(
        "alkaline_cell",
        {"Zn": 0.20, "MnO2": 0.35, "KOH": 0.05, "H2O": 0.10, "C": 0.05, "Fe": 0.25},
        3.0,
        "metal",
        "AA/AAA alkaline battery",
    )
)
del F, M


def get_material(name: str) -> Material:
    """The material called ``name``; the error lists the known names."""
    try:
        return MATERIALS[name]
    except KeyError:
        raise KeyError(
            f"unknown material {name!r}; known materials: {', '.join(sorted(MATERIALS))}"
        ) from None
