"""Mass attenuation against NIST XCOM reference values, materials and the shipped table."""

from __future__ import annotations

import numpy as np
import pytest

from xscan.synth.attenuation import atomic_weight, element_mass_attenuation, mass_attenuation
from xscan.synth.materials import MATERIALS, Material, get_material, parse_formula

# NIST XCOM total attenuation with coherent scattering, cm²/g.
NIST = [
    ("water", 100.0, 0.1707),
    ("Fe", 100.0, 0.3717),
    ("Pb", 100.0, 5.549),
    ("water", 6000.0, 0.02771),
    ("Fe", 6000.0, 0.03057),
    ("Pb", 6000.0, 0.04355),
    ("water", 20.0, 0.8096),
    ("Al", 1000.0, 0.06146),
    ("Cu", 10000.0, 0.03155),
]


@pytest.mark.parametrize(("what", "energy", "ref"), NIST)
def test_nist_reference_points(what: str, energy: float, ref: float) -> None:
    got = float(mass_attenuation(what, energy))
    assert got == pytest.approx(ref, rel=0.02)


def test_absorption_edge_is_a_jump() -> None:
    # Lead's K edge at 88.0 keV: photoelectric absorption jumps by ~ 4.
    below, above = element_mass_attenuation("Pb", [87.9, 88.1])
    assert above / below > 3.0
    # Uranium's K edge (restored in the builder where the packaged table lacked it).
    below, above = element_mass_attenuation(92, [115.4, 115.8])
    assert above / below > 3.0


def test_range_1kev_to_beyond_10mev() -> None:
    e = np.geomspace(1.0, 20000.0, 300)
    mu = mass_attenuation("steel", e)
    assert mu.shape == e.shape and np.all(np.isfinite(mu)) and np.all(mu > 0)
    # Pair production makes μ/ρ of lead rise again above ~ 3.5 MeV.
    lead = mass_attenuation("lead", [3000.0, 10000.0])
    assert lead[1] > lead[0]
    with pytest.raises(ValueError, match="keV"):
        mass_attenuation("water", 0.5)


def test_mixture_rule_and_formula() -> None:
    e = np.array([30.0, 80.0, 500.0])
    h, o = element_mass_attenuation("H", e), element_mass_attenuation("O", e)
    w_h = 2 * atomic_weight("H") / (2 * atomic_weight("H") + atomic_weight("O"))
    np.testing.assert_allclose(mass_attenuation("water", e), w_h * h + (1 - w_h) * o, rtol=1e-9)
    assert parse_formula("Ca3(PO4)2") == {"Ca": 3.0, "P": 2.0, "O": 8.0}
    with pytest.raises(ValueError, match="Xx"):
        parse_formula("Xx2O")


def test_required_materials_exist_with_sane_properties() -> None:
    required = (
        "air water polyethylene nylon cellulose cotton paper wood pvc rubber glass aluminium "
        "steel copper brass lead li_ion_cell rdx tnt ammonium_nitrate cocaine fentanyl"
    ).split()
    for name in required:
        m = get_material(name)
        assert isinstance(m, Material) and m.density > 0
        assert sum(m.composition.values()) == pytest.approx(1.0)
    assert MATERIALS["polyethylene"].effective_z < MATERIALS["water"].effective_z
    assert MATERIALS["water"].effective_z < MATERIALS["aluminium"].effective_z
    assert MATERIALS["aluminium"].effective_z < MATERIALS["steel"].effective_z
    assert {m.group for m in MATERIALS.values()} == {"organic", "inorganic", "metal"}


def test_unknown_material_lists_known_names() -> None:
    with pytest.raises(KeyError, match="polyethylene"):
        get_material("unobtainium")
