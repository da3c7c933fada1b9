from __future__ import annotations

import json
import math

import numpy as np
import pytest

from oxide_env import ELEMENTS
from oxide_env.chemistry.baseline import random_oxide_counts, random_oxides
from oxide_env.chemistry.composition import counts_to_formula, formula_to_counts
from oxide_env.chemistry.elements import OXYGEN_INDEX
from oxide_env.chemistry.metrics import (
    design_checks,
    composition_keys,
    elmd,
    elmd_pairwise,
    evaluate,
    pct_new,
    pct_novel,
    pct_unique,
)
from tests.conftest import random_compositions


def test_mod_petti_table_matches_elmd_package():
    import ElMD
    from importlib import resources

    shipped = json.loads(resources.files("oxide_env").joinpath("data/mod_petti.json").read_text())
    path = resources.files(ElMD).joinpath("el_lookup/mod_petti.json")
    reference = json.loads(path.read_text())
    assert shipped["position"] == {e: reference[e] for e in ELEMENTS}


def test_elmd_matches_elmd_package_on_300_pairs():
    from ElMD import ElMD

    counts = random_compositions(600, seed=5)
    formulas = [counts_to_formula(row) for row in counts]
    ours = np.array([elmd(formulas[2 * i], formulas[2 * i + 1]) for i in range(300)])
    ref = np.array(
        [ElMD(formulas[2 * i], metric="mod_petti").elmd(ElMD(formulas[2 * i + 1], metric="mod_petti"))
         for i in range(300)]
    )  # fmt: skip
    assert np.max(np.abs(ours - ref)) <= 1e-9


def test_pairwise_matches_single_pairs():
    formulas = random_oxides(30, seed=2)
    d = elmd_pairwise(formulas)
    k = 0
    for i in range(30):
        for j in range(i + 1, 30):
            assert d[k] == pytest.approx(elmd(formulas[i], formulas[j]), abs=1e-12)
            k += 1
    assert elmd("CaTiO3", "CaTiO3") == 0.0
    with pytest.raises(ValueError, match="empty composition"):
        elmd_pairwise(np.zeros((2, 80)))


def test_unique_and_novel_use_reduced_formulas():
    assert pct_unique(["TiO2", "Ti2O4", "MgO", "CaO"]) == 75.0
    assert pct_novel(["Ti2O4", "Os5WO5"], reference=["TiO2", "MgO"]) == 50.0
    assert composition_keys(["LiCo2O4"]) == composition_keys(["Li0.5CoO2"])
    assert math.isnan(pct_unique([]))


def test_pct_new_counts_distinct_novel_keepers_only():
    designs = ["MgAl2O4", "Mg2Al4O8", "TiO2", "CaTiO3", "BaTiO3"]
    keep = [True, True, True, False, True]
    # MgAl2O4 twice counts once, TiO2 is known, CaTiO3 is not kept: 2 of 5
    assert pct_new(designs, keep, ["TiO2"]) == 40.0
    assert pct_new(designs, keep, set(composition_keys(["TiO2"]))) == 40.0
    assert pct_new(designs, [False] * 5, []) == 0.0
    assert math.isnan(pct_new([], [], []))
    with pytest.raises(ValueError, match="one flag per design"):
        pct_new(designs, [True], [])


def test_evaluate_golden(golden_oxides):
    m = evaluate(golden_oxides, reference=["MgO", "Al2O3"])
    assert m["n"] == 5
    # SMACT gives every element one oxidation state, so mixed-valence Fe3O4 is not neutral
    assert m["pct_charge_neutral"] == 80.0
    assert m["pct_electronegativity_balanced"] == 80.0
    assert m["pct_unique"] == 100.0
    assert m["pct_novel"] == 60.0
    d = elmd_pairwise(golden_oxides)
    assert m["elmd_mean"] == pytest.approx(d.mean()) and m["elmd_std"] == pytest.approx(d.std())
    # count matrix input gives the same answer
    counts = np.stack([formula_to_counts(f) for f in golden_oxides])
    assert evaluate(counts, reference=["MgO", "Al2O3"]) == m


def test_evaluate_properties_and_empty_policy():
    m = evaluate(["MgO", "CaO"], predictors={"n_atoms": lambda c: c.sum(axis=1)})
    assert m["n_atoms_mean"] == 2.0 and m["n_atoms_std"] == 0.0

    class Toy:
        name = "oxygen"

        def predict(self, counts):
            return counts[:, OXYGEN_INDEX]

    assert evaluate(["Al2O3", "MgO"], predictors=[Toy()])["oxygen_mean"] == 2.0
    empty = evaluate([], reference=["MgO"])
    assert empty["n"] == 0 and all(math.isnan(v) for k, v in empty.items() if k != "n")
    one = evaluate(["MgO"])
    assert math.isnan(one["elmd_mean"]) and one["pct_unique"] == 100.0


def test_evaluate_bad_formula_is_named():
    with pytest.raises(ValueError, match="'FeXx'"):
        evaluate(["MgO", "FeXx"])
    with pytest.raises(ValueError, match="integers"):
        evaluate(["Li0.5CoO2"])


def test_random_baseline_is_the_papers_policy():
    counts = random_oxide_counts(2000, seed=0)
    assert np.all(counts[:, OXYGEN_INDEX] >= 1)
    non_oxygen = np.delete(counts, OXYGEN_INDEX, axis=1)
    assert np.all((non_oxygen > 0).sum(axis=1) <= 4)
    assert counts.sum(axis=1).max() <= 4 * 9 + 9
    assert np.array_equal(counts, random_oxide_counts(2000, seed=0))
    assert not np.array_equal(counts, random_oxide_counts(2000, seed=1))
    assert random_oxides(5, seed=3) == random_oxides(5, seed=3)
    with pytest.raises(ValueError, match="n=-1"):
        random_oxides(-1, seed=0)


def test_random_baseline_figures():
    """10 seeds x 1,000: about 62 % CN, 43.5 % EN balanced, ElMD 20.0 +- 9.7 (see baseline.py)."""
    runs = [evaluate(random_oxide_counts(1000, seed=s)) for s in range(10)]
    cn = np.mean([r["pct_charge_neutral"] for r in runs])
    en = np.mean([r["pct_electronegativity_balanced"] for r in runs])
    elmd_mean = np.mean([r["elmd_mean"] for r in runs])
    elmd_std = np.mean([r["elmd_std"] for r in runs])
    assert 60.0 <= cn <= 64.0
    assert 41.5 <= en <= 45.5
    assert 19.5 <= elmd_mean <= 20.5 and 9.2 <= elmd_std <= 10.2
    assert min(r["pct_unique"] for r in runs) >= 99.0


def test_evaluate_reports_every_rule_and_plausibility() -> None:
    import predictors
    from predictors.data import known_hull
    from predictors.domain import load_domain

    formulas = ["MgO", "Al2O3", "Ba2Ti2O6", "Re10Os8O7", "Au3I5Br2O2", "MgAl2O4"]
    models = [predictors.load(n) for n in ("formation_energy", "bulk_modulus")]
    domains = [load_domain(n) for n in ("formation_energy", "bulk_modulus")]
    m = evaluate(formulas, predictors=models, hull=known_hull(), domains=domains)
    checks = design_checks(formulas, predictors=models, hull=known_hull(), domains=domains)
    assert checks["plausible"].tolist() == [True, True, True, False, False, True]
    assert checks["charge_neutral_paper_rule"].tolist()[2] is False  # unreduced Ba2Ti2O6
    assert m["pct_plausible"] == pytest.approx(400 / 6)
    assert m["pct_oxide_rule"] == pytest.approx(400 / 6)
    assert m["pct_charge_neutral_paper_rule"] < m["pct_charge_neutral"]
    assert m["pct_formation_energy_le_-0.5"] == pytest.approx(
        100 * np.mean(checks["formation_energy"] <= -0.5)
    )
    # known oxides sit on or near the hull of the known compounds
    assert np.all(np.abs(checks["e_above_hull"][[0, 1, 5]]) < 0.3)
    assert set(m) >= {"pct_in_domain", "pct_in_domain_formation_energy", "pct_icsd24", "median_e_above_hull"}
    assert "pct_new_plausible" not in m  # no reference: novelty unknown
    # plausible: MgO, Al2O3, Ba2Ti2O6, MgAl2O4; MgO and Al2O3 known, Ba2Ti2O6 = BaTiO3 known too
    known = evaluate(formulas, reference=["MgO", "Al2O3", "BaTiO3"], predictors=models, hull=known_hull(),
                     domains=domains)
    assert known["pct_new_plausible"] == pytest.approx(100 / 6)
    empty = evaluate([], predictors=models, hull=known_hull(), domains=domains)
    assert empty["n"] == 0 and np.isnan(empty["pct_plausible"])
