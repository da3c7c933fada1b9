"""The hull distance against pymatgen's PhaseDiagram built independently, and the domain model."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition

from oxide_env.chemistry.hull import FormationHull

SYSTEM = {"Mg", "Al", "Ti", "O"}


@pytest.fixture(scope="module")
def known() -> tuple[list[str], np.ndarray]:
    from predictors.data import load_table

    table = load_table("formation_energy")
    keep = [
        i for i, f in enumerate(table["formula"])
        if {str(e) for e in Composition(f).elements} <= SYSTEM and len(Composition(f).elements) > 1
    ]
    return table["formula"].iloc[keep].tolist(), table["target"].to_numpy()[keep]


def test_matches_pymatgen(known) -> None:
    formulas, energies = known
    assert len(formulas) > 20
    hull = FormationHull(formulas, energies)
    entries = [PDEntry(Composition(f), e * Composition(f).num_atoms) for f, e in zip(formulas, energies)]
    entries += [PDEntry(Composition(el), 0.0) for el in SYSTEM]
    diagram = PhaseDiagram(entries)
    rng = np.random.default_rng(0)
    queries = ["MgAl2O4", "MgTiO3", "Al2TiO5", "Mg2TiO4", "TiO", "MgO", "Mg", "AlTi3"]
    queries += [
        "".join(f"{el}{n}" for el, n in zip(sorted(SYSTEM), rng.integers(0, 6, 4)) if n) or "MgO"
        for _ in range(40)
    ]
    want = np.array([diagram.get_hull_energy_per_atom(Composition(q)) for q in queries])
    np.testing.assert_allclose(hull.hull_energy(queries), want, atol=1e-9)
    # a known compound's own energy is on or above the hull, as pymatgen says
    e_known = hull.e_above_hull(formulas, energies)
    want_known = [diagram.get_e_above_hull(entry) for entry in entries[: len(formulas)]]
    np.testing.assert_allclose(e_known, want_known, atol=1e-9)


def test_lowest_energy_per_composition_and_errors() -> None:
    hull = FormationHull(["MgO", "Mg2O2", "MgO"], [-2.0, -3.0, -2.5])
    assert len(hull) == 1
    assert hull.hull_energy(["MgO"])[0] == pytest.approx(-3.0)
    assert np.isnan(hull.e_above_hull([np.zeros(80)], [0.0])[0])
    assert np.isnan(hull.e_above_hull(["MgO"], [np.nan])[0])
    with pytest.raises(ValueError, match="2 compositions but 1 energies"):
        FormationHull(["MgO", "CaO"], [1.0])
    with pytest.raises(ValueError, match="not finite"):
        FormationHull(["MgO"], [np.inf])


def test_domain_model_round_trip_and_behaviour(tmp_path) -> None:
    from predictors.domain import fit_domain, load_domain

    shipped = load_domain("bulk_modulus")
    assert shipped.in_domain(["MgO", "Al2O3", "SrTiO3"]).all()
    assert not shipped.in_domain(["Os8Re10H9O7", "Au3I5Br2O2"]).any()
    assert np.isnan(shipped.score([np.zeros(80)])[0])
    refit = fit_domain("bulk_modulus")
    assert refit.threshold == pytest.approx(shipped.threshold, rel=1e-6)
    path = refit.save(tmp_path)
    assert path.is_file()
    with pytest.raises(ValueError, match="Unknown predictor"):
        load_domain("nope")


def test_domain_score_is_the_exact_nearest_neighbour_distance() -> None:
    from oxide_env.chemistry.baseline import random_oxides
    from oxide_env.chemistry.features import featurize
    from predictors.data import load_table
    from predictors.domain import load_domain

    domain = load_domain("bulk_modulus")
    formulas = random_oxides(300, seed=5) + load_table("bulk_modulus").formula.tolist()[:300]
    features = featurize(formulas)
    q = domain.project(features).astype(np.float64)
    ref = domain.reference.astype(np.float64)
    exact = np.sqrt(((q[:, None, :] - ref[None, :, :]) ** 2).sum(axis=2).min(axis=1))  # float64 brute force
    assert np.allclose(domain.score_features(features), exact, rtol=0, atol=1e-4)
    assert ((domain.score_features(features) <= domain.threshold) == (exact <= domain.threshold)).all()


def _oxygen_line_queries(n_states: int = 150) -> np.ndarray:
    """What the last-step lookahead asks: the 9 oxygen completions of random Mg-Al-Ti states."""
    from oxide_env.chemistry.elements import ELEMENTS

    rng = np.random.default_rng(1)
    els = sorted(SYSTEM)
    base = rng.integers(0, 7, size=(n_states, 4))
    base[:, els.index("O")] = 0
    queries = np.zeros((n_states * 9, 80))
    queries[:, [ELEMENTS.index(e) for e in els]] = np.repeat(base, 9, axis=0)
    queries[:, ELEMENTS.index("O")] = np.tile(np.arange(1, 10), n_states)
    return queries


def test_compiled_simplex_equals_the_linear_programme(known) -> None:
    """The compiled simplex gives scipy's (HiGHS) lowest-energy mixture, composition by composition."""
    formulas, energies = known
    queries = _oxygen_line_queries()
    hull = FormationHull(formulas, energies)
    got = hull.hull_energy(queries)
    assert hull.n_linear_programs == 0 and 0 < hull.n_systems <= 15  # compounds gathered once per system
    present = queries > 0
    want = [hull._linear_program(frozenset(np.flatnonzero(p).tolist()), q[p] / q[p].sum())
            for p, q in zip(present, queries)]
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert (got <= 0).all() and (got < 0).mean() > 0.9
    again = hull.hull_energy(queries[::-1])  # remembered systems, any order
    np.testing.assert_array_equal(again, got[::-1])


def test_linear_programme_where_the_simplex_does_not_finish(known, monkeypatch) -> None:
    from oxide_env.chemistry import hull as module

    formulas, energies = known
    queries = _oxygen_line_queries(20)
    want = FormationHull(formulas, energies).hull_energy(queries)

    monkeypatch.setattr(module, "_SIMPLEX_BUDGET", 0)  # no pivot allowed: no programme finishes
    hull = FormationHull(formulas, energies)
    np.testing.assert_allclose(hull.hull_energy(queries), want, atol=1e-9)
    assert hull.n_linear_programs == int((np.count_nonzero(queries, axis=1) > 1).sum())


def test_simplex_on_a_degenerate_system() -> None:
    """Collinear compounds and ties (many optimal bases) do not make Bland's simplex cycle or err."""
    formulas = ["MgO", "Mg2O2", "Mg3O3", "MgO2", "Mg2O", "AlO", "Al2O3", "AlMgO2", "Al2MgO4", "AlMg2O3"]
    energies = [-3.0, -2.9, -2.8, -2.0, -2.0, -2.5, -3.4, -3.2, -3.2, -3.1]
    hull = FormationHull(formulas, energies)
    entries = [PDEntry(Composition(f), e * Composition(f).num_atoms) for f, e in zip(formulas, energies)]
    diagram = PhaseDiagram(entries + [PDEntry(Composition(el), 0.0) for el in ("Mg", "Al", "O")])
    queries = ["MgAl2O4", "Mg2Al2O5", "MgAlO2", "Mg3Al2O6", "MgO", "Al2O3", "Mg5Al3O9", "Mg2AlO", "MgAl9O2"]
    want = [diagram.get_hull_energy_per_atom(Composition(q)) for q in queries]
    np.testing.assert_allclose(hull.hull_energy(queries), want, atol=1e-12)
    assert hull.n_linear_programs == 0


def test_systems_without_compounds_below_zero() -> None:
    hull = FormationHull(["MgO", "AlTi", "CaO"], [-3.0, 0.2, -3.1])
    np.testing.assert_allclose(hull.hull_energy(["AlTi", "Al3Ti", "Mg", "MgO2", "CaMgO2"]),
                               [0.0, 0.0, 0.0, -2.0, -3.05], atol=1e-12)
    assert np.isnan(hull.hull_energy([np.zeros(80)])[0]) and hull.hull_energy([]).shape == (0,)


def test_compiled_pass_equals_the_python_path_bit_for_bit(monkeypatch) -> None:
    """Systems of up to 7 elements are gathered and solved in one compiled pass; larger ones in Python.
    Both give the same bits (the same compounds in the same order, the same fractions, the same
    simplex), on the project's known compounds, integer and fractional amounts of 2-9 elements."""
    import copy

    from oxide_env.chemistry import hull as module
    from oxide_env.chemistry.elements import ELEMENTS
    from predictors.data import known_hull

    hull = copy.copy(known_hull())  # a copy without the subsystem table
    common = [ELEMENTS.index(e) for e in ("O", "Mg", "Al", "Ti", "Ca", "Sr", "Ba", "La", "Fe", "Ni", "Zn", "Li",
                                          "Na", "Si", "Y", "Zr", "Nb", "Mn")]
    rng = np.random.default_rng(5)
    queries = np.zeros((1500, 80))
    for row in queries:
        k = int(rng.integers(2, 10))
        els = rng.choice(common if rng.random() < 0.8 else np.arange(80), size=k, replace=False)
        row[els] = rng.integers(1, 10, size=k) if rng.random() < 0.5 else rng.random(k) * 3
    got = hull.hull_energy(queries)
    assert hull._table is not None and np.isfinite(got).all()
    monkeypatch.setattr(module, "_KERNEL_ELEMENTS", 1)  # every system through the Python path
    np.testing.assert_array_equal(hull.hull_energy(queries), got)
    assert (got < 0).mean() > 0.5


def test_pickled_hull_drops_its_cache_and_answers_the_same(known) -> None:
    import pickle

    formulas, energies = known
    hull = FormationHull(formulas, energies)
    queries = ["MgAl2O4", "Mg2TiO4", "Al2TiO5", "MgAl4O7"]
    want = hull.hull_energy(queries)
    copy = pickle.loads(pickle.dumps(hull))
    assert hull._table is not None and copy._table is None
    np.testing.assert_allclose(copy.hull_energy(queries), want, atol=1e-12)


def test_domain_blocks_pick_the_row_one_argmin_over_all_rows_picks() -> None:
    """The scan in blocks of training rows returns the same nearest rows (bit for bit) as one argmin
    of |r|^2 - 2 q.r over all of them, the formation-energy domain's 84k rows included."""
    from oxide_env.chemistry.baseline import random_oxides
    from oxide_env.chemistry.features import featurize
    from predictors.domain import load_domain

    domain = load_domain("formation_energy")
    assert len(domain.reference) > 16384  # several blocks
    features = featurize(random_oxides(200, seed=6))
    q = domain.project(features)
    x = q @ domain.reference.T
    x *= -2.0
    x += domain._reference_norms
    nearest = domain.reference[x.argmin(axis=1)].astype(np.float64)
    want = np.sqrt(((q.astype(np.float64) - nearest) ** 2).sum(axis=1))
    assert np.array_equal(domain.score_features(features), want)
