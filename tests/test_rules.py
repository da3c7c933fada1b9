"""The validity rules beyond SMACT 2014, each against its reference.

* ``icsd24`` states: :func:`charge_neutral` / :func:`electronegativity_balanced` with
  ``oxidation_states="icsd24"`` vs ``smact_validity(..., oxidation_states_set="icsd24")``;
* the oxide rule vs a brute force over SMACT's own ``neutral_ratios`` and ``pauling_test``
  on the restricted states (oxygen −2, pymatgen metals non-negative);
* the paper's rule vs the 2019 ``smact_validity`` logic (unreduced ``stoichs``, the gcd filter
  of ``neutral_ratios``) and vs the authors' printed fractions on their own generated lists.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import smact
from pymatgen.core.periodic_table import Element
from smact.screening import pauling_test, smact_validity

from oxide_env.chemistry.composition import counts_to_formula, formulas_to_counts
from oxide_env.chemistry.elements import ELEMENTS, N_ELEMENTS, OXYGEN_INDEX
from oxide_env.chemistry.validity import (
    IS_METAL,
    charge_neutral,
    charge_neutral_paper_rule,
    electronegativity_balanced,
    electronegativity_balanced_paper_rule,
    oxide_rule,
    state_table,
)

SEED = 20261202
ROOT = Path(__file__).resolve().parents[1]
PAPER_LISTS = ROOT.parent / "shared" / "datasets" / "paper_generated"


def _random_counts(rng: np.random.Generator, n: int, policy: bool) -> np.ndarray:
    counts = np.zeros((n, N_ELEMENTS), dtype=np.int64)
    for row in counts:
        if policy:  # the paper's random policy: 4 x (element, 0-9), then O 1-9
            for _ in range(4):
                row[rng.integers(N_ELEMENTS)] += rng.integers(0, 10)
            row[OXYGEN_INDEX] += rng.integers(1, 10)
        else:
            k = rng.integers(1, 6)
            row[rng.choice(N_ELEMENTS, size=k, replace=False)] = rng.integers(1, 10, size=k)
    return counts


def _generated_formulas() -> list[str]:
    """Formulas our agents generated in the committed Table 1 runs (one file per task/method)."""
    formulas: list[str] = []
    for path in sorted((ROOT / "benchmarks" / "results" / "table1_runs").glob("*/*/seed0/formulas.csv")):
        formulas += pd.read_csv(path, na_filter=False)["formula"].tolist()[:100]
    return formulas


@pytest.fixture(scope="module", params=[pytest.param(1500, id="1500"), pytest.param(None, id="all", marks=pytest.mark.slow)])
def compositions(request) -> tuple[np.ndarray, list[str]]:
    """>= 5,000 compositions: random uniform, the random policy, and generated ones (reduced).

    The default run checks an evenly spread 1,500 of them; ``-m slow`` checks all.
    """
    rng = np.random.default_rng(SEED)
    generated = _generated_formulas()
    generated = generated[:: max(1, len(generated) // 2000)][:2000]  # evenly spread, whatever runs are committed
    counts = np.concatenate(
        [
            _random_counts(rng, 2000, policy=False),
            _random_counts(rng, 5000 - 2000 - len(generated), policy=True),
            formulas_to_counts(generated),
        ]
    )
    counts = counts[counts.sum(axis=1) > 0]
    assert len(counts) >= 4900
    if request.param is not None:
        counts = counts[np.linspace(0, len(counts) - 1, request.param).astype(int)]
    return counts, [counts_to_formula(row, reduce=True) for row in counts]


def _mismatches(got, want, formulas) -> list[str]:
    return [f"{f}: got {g}, reference {w}" for f, g, w in zip(formulas, got, want) if g != w]


# ----------------------------------------------------------------------------- icsd24
def test_icsd24_table_is_smacts() -> None:
    table = state_table("icsd24")
    for i, symbol in enumerate(ELEMENTS):
        assert set(table[i]) == set(smact.Element(symbol).oxidation_states_icsd24 or ())


@pytest.mark.parametrize("pauling", [False, True])
def test_icsd24_matches_smact(compositions, pauling: bool) -> None:
    counts, formulas = compositions
    fn = electronegativity_balanced if pauling else charge_neutral
    got = fn(counts, oxidation_states="icsd24")
    want = np.array([
        smact_validity(f, use_pauling_test=pauling, include_alloys=False, oxidation_states_set="icsd24")
        for f in formulas
    ])
    assert not _mismatches(got, want, formulas)
    assert 0.2 < want.mean() < 0.9  # both verdicts are well represented


def test_unknown_state_set() -> None:
    with pytest.raises(ValueError, match="oxidation_states='icsd16'.*smact14"):
        charge_neutral("MgO", oxidation_states="icsd16")


# -------------------------------------------------------------------------- oxide rule
def _icsd_share(symbol: str, state: int) -> float | None:
    """The share of the element's charged sites in pymatgen's ICSD bond-valence data with this state."""
    from pymatgen.analysis.bond_valence import ICSD_BV_DATA
    from pymatgen.core import Species

    total = sum(d["n_data_pts"] for sp, d in ICSD_BV_DATA.items() if sp.symbol == symbol and sp.oxi_state)
    if not total:
        return None
    return ICSD_BV_DATA.get(Species(symbol, state), {"n_data_pts": 0})["n_data_pts"] / total


def _oxide_reference(formula: str, common_only: bool = True) -> bool:
    """Brute force with SMACT's functions on the restricted icsd24 states."""
    amounts = {str(el): int(n) for el, n in __import__("pymatgen.core", fromlist=["Composition"])
               .Composition(formula).get_el_amt_dict().items()}
    if "O" not in amounts or len(amounts) < 2:
        return False
    symbols = list(amounts)
    ox_sets = []
    for s in symbols:
        states = smact.Element(s).oxidation_states_icsd24 or []
        pmg = Element(s).icsd_oxidation_states or Element(s).common_oxidation_states
        if common_only:  # only states pymatgen also counts as common, and not rare in its ICSD statistics
            states = [x for x in states if x in pmg and (s == "O" or _icsd_share(s, x) is None
                                                          or _icsd_share(s, x) >= 0.03)]
        if s == "O":
            states = [x for x in states if x == -2]
        elif Element(s).is_metal:
            states = [x for x in states if x >= 0]
        if not states:
            return False
        ox_sets.append(states)
    stoichs = [(amounts[s],) for s in symbols]
    enegs = [smact.Element(s).pauling_eneg for s in symbols]
    for ox in itertools.product(*ox_sets):
        if smact.neutral_ratios(ox, stoichs=stoichs, threshold=max(amounts.values())):
            if None not in enegs and pauling_test(ox, enegs):
                return True
    return False


def test_metals_are_pymatgens() -> None:
    assert IS_METAL == tuple(bool(Element(s).is_metal) for s in ELEMENTS)
    assert not IS_METAL[ELEMENTS.index("Si")] and IS_METAL[ELEMENTS.index("Os")]


def test_oxide_rule_matches_brute_force(compositions) -> None:
    counts, formulas = compositions
    got = oxide_rule(counts)
    want = np.array([_oxide_reference(f) for f in formulas])
    assert not _mismatches(got, want, formulas)
    assert want.sum() > len(want) // 10
    loose = np.array([_oxide_reference(f, common_only=False) for f in formulas])
    assert not _mismatches(oxide_rule(counts, common_only=False), loose, formulas)
    assert (loose >= want).all() and loose.sum() > want.sum()  # the common states only remove passes


def test_oxide_rule_implies_pymatgen_assignment(compositions) -> None:
    """Every composition the oxide rule passes has a charge-balanced assignment by pymatgen's
    ``oxi_state_guesses`` (its default, ICSD-based states; oxygen at -2, metals >= 0)."""
    from pymatgen.core import Composition

    counts, formulas = compositions
    passed = [f for f, ok in zip(formulas, oxide_rule(counts)) if ok]
    assert len(passed) > 100
    override = {"O": [-2]}
    failing = []
    for f in passed:
        comp = Composition(f)
        ov = dict(override)
        for el in comp.elements:
            e = Element(el.symbol)
            if e.is_metal:
                ov[el.symbol] = [x for x in (e.icsd_oxidation_states or e.common_oxidation_states) if x >= 0]
        if not comp.oxi_state_guesses(oxi_states_override=ov, max_sites=-50):
            failing.append(f)
    assert not failing, failing[:10]


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("MgO", True), ("Al2O3", True), ("CaTiO3", True), ("BaTiO3", True), ("MgAl2O4", True),
        ("Fe2O3", True), ("SiO2", True), ("NaNO3", True), ("Ca(OH)2", True),
        ("Fe3O4", False),  # one state per element: no mixed valence
        ("Re10Os8O7", False),  # needed Os-2 under smact14
        ("Os7W9O", False), ("B9Pt5O2", False),  # Os-1, Pt-1
        ("Au3I5Br2O2", False),  # needed O-1
        ("ZnO", True), ("Zn2O3", False),  # Zn+3: in icsd24, not common by pymatgen
        ("KMnO4", False), ("SrFeO3", False),  # Mn+7, Fe+4: real but rare, the rule's documented price
        ("LaO", False), ("La2O3", True),  # La+2: under 3 % of La's ICSD sites
        ("CaF2", False),  # no oxygen: not an oxide
        ("O2", False),  # oxygen alone
    ],
)
def test_oxide_rule_golden(formula: str, expected: bool) -> None:
    assert oxide_rule(formula).tolist() == [expected]
    assert _oxide_reference(formula) == expected


# ------------------------------------------------------------------------- paper's rule
def _paper_reference(formula: str, pauling: bool) -> bool:
    """The 2019 smact_validity: stoichs are the amounts as given, neutral_ratios keeps gcd 1."""
    from pymatgen.core import Composition

    amounts = {str(el): int(n) for el, n in Composition(formula).get_el_amt_dict().items()}
    symbols = list(amounts)
    if len(symbols) == 1:
        return True
    ox_sets = [smact.Element(s).oxidation_states_smact14 for s in symbols]
    if any(not o for o in ox_sets):
        return False
    enegs = [smact.Element(s).pauling_eneg for s in symbols]
    stoichs = [(amounts[s],) for s in symbols]
    for ox in itertools.product(*ox_sets):
        if smact.neutral_ratios(ox, stoichs=stoichs, threshold=max(amounts.values())):
            if not pauling or (None not in enegs and pauling_test(ox, enegs)):
                return True
    return False


def test_paper_rule_matches_2019_logic(compositions) -> None:
    counts, _ = compositions
    counts = counts * np.random.default_rng(SEED).integers(1, 3, size=(len(counts), 1))  # some gcd 2
    formulas = [counts_to_formula(row) for row in counts]
    for pauling, fn in ((False, charge_neutral_paper_rule), (True, electronegativity_balanced_paper_rule)):
        want = np.array([_paper_reference(f, pauling) for f in formulas])
        assert not _mismatches(fn(counts), want, formulas)
        assert not _mismatches(fn(formulas), want, formulas)


def test_paper_rule_golden() -> None:
    assert charge_neutral_paper_rule(["TiO2", "Ti2O4", "Re7O7", "Os6Re1Os6Ru5O5"]).tolist() == [
        True, False, False, charge_neutral("Os12ReRu5O5")[0]
    ]
    assert charge_neutral(["Ti2O4"]).tolist() == [True]  # ours reduces first


@pytest.mark.skipif(not PAPER_LISTS.is_dir(), reason="the paper's generated lists (../shared) are absent")
def test_paper_rule_reproduces_the_authors_figures() -> None:
    reported = json.loads((PAPER_LISTS / "reported_metrics.json").read_text())["runs"]
    checked = 0
    for name, metrics in reported.items():
        path = PAPER_LISTS / f"{name}.txt"
        if not path.is_file():
            continue
        formulas = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        cn = 100 * charge_neutral_paper_rule(formulas).mean()
        en = 100 * electronegativity_balanced_paper_rule(formulas).mean()
        assert math.isclose(cn, 100 * metrics["charge_neutral_trained"], abs_tol=0.1 + 1e-9), name
        assert math.isclose(en, 100 * metrics["electronegativity_balanced_trained"], abs_tol=0.1 + 1e-9), name
        checked += 1
    assert checked >= 20


def test_shipped_frequent_states_equal_pymatgens_icsd_statistics() -> None:
    """The oxide rule's frequent states ship as JSON (read in ~1 ms; pymatgen's statistics take ~1.2 s
    to import); they must equal what pymatgen's ICSD bond-valence statistics give today."""
    from oxide_env.chemistry.validity import RARE_STATE_SHARE, frequent_states, frequent_states_from_pymatgen

    reference = frequent_states_from_pymatgen(RARE_STATE_SHARE)
    shipped = frequent_states()
    assert len(shipped) == N_ELEMENTS
    for symbol, states in zip(ELEMENTS, shipped):
        assert (None if states is None else sorted(states)) == reference[symbol], symbol
    assert shipped[ELEMENTS.index("La")] == frozenset({3}) and shipped[ELEMENTS.index("Os")] is None
