from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Composition

from oxide_env import ELEMENTS
from oxide_env.chemistry.composition import (
    counts_to_formula,
    formula_to_amounts,
    formula_to_counts,
    formulas_to_counts,
    reduce_counts,
    reduced_formula,
    validate_counts,
)
from oxide_env.chemistry.elements import ELEMENT_INDEX, OXYGEN_INDEX
from tests.conftest import random_compositions


def test_element_set_is_the_papers_80_in_pinned_order():
    from pymatgen.core import Element

    expected = [Element.from_Z(z).symbol for z in range(1, 84)]
    for gone in ("He", "Ne", "Ar", "Kr", "Xe", "Tc", "Pm"):
        expected.remove(gone)
    expected += ["Th", "U", "Pu", "Am"]
    assert ELEMENTS == tuple(expected)
    assert len(ELEMENTS) == 80
    # the action encoding depends on these positions
    assert (ELEMENTS[0], ELEMENTS[OXYGEN_INDEX], ELEMENTS[22], ELEMENTS[79]) == ("H", "O", "Fe", "Am")
    assert OXYGEN_INDEX == 6 and ELEMENT_INDEX["Bi"] == 75


@pytest.mark.parametrize(
    ("formula", "expected"),
    [("MgO", "MgO"), ("Al2O3", "Al2O3"), ("CaTiO3", "CaTiO3"), ("Fe3O4", "Fe3O4"),
     ("BaTiO3", "BaTiO3"), ("O3TiBa", "BaTiO3"), ("Ba(TiO3)2", "BaTi2O6")],
)  # fmt: skip
def test_round_trip(formula, expected):
    assert counts_to_formula(formula_to_counts(formula)) == expected


def test_reduction():
    assert reduced_formula("Ti2O4") == "TiO2"
    assert counts_to_formula(formula_to_counts("Fe4O6"), reduce=True) == "Fe2O3"
    m = reduce_counts(formulas_to_counts(["Ti2O4", "Fe3O4"]))
    assert m[0, ELEMENT_INDEX["Ti"]] == 1 and m[1, ELEMENT_INDEX["Fe"]] == 3
    assert counts_to_formula(np.zeros(80, dtype=int)) == ""


def test_matches_pymatgen_reduced_formula_on_random_compositions():
    counts = random_compositions(500, seed=3)
    for row in counts:
        comp = Composition({ELEMENTS[i]: int(row[i]) for i in np.flatnonzero(row)})
        if len(comp) == 1:
            continue  # pymatgen writes elemental formulas specially (O2, H2, ...)
        ours = formula_to_counts(reduced_formula(row))
        theirs = formula_to_counts(comp.reduced_formula)
        assert np.array_equal(ours, theirs)


def test_fractional_amounts():
    a = formula_to_amounts("Li0.5CoO2")
    assert a[ELEMENT_INDEX["Li"]] == 0.5 and a[ELEMENT_INDEX["O"]] == 2.0
    assert counts_to_formula(a) == "Li0.5CoO2"


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("XeO3", "'Xe' is not one of the 80"),
        ("TcO2", "'Tc' is not one of the 80"),
        ("Fe2O3$", "only element symbols"),
        ("Qq2O", "Invalid formula"),
        ("MO2", "Invalid formula"),
    ],
)
def test_bad_formulas(bad, match):
    with pytest.raises(ValueError, match=match):
        formula_to_amounts(bad)


def test_non_string_formula_is_a_type_error():
    with pytest.raises(TypeError, match="formula=3: expected a string"):
        formula_to_amounts(3)
    with pytest.raises(TypeError, match="decode"):
        formula_to_amounts(b"Fe2O3")


def test_non_integer_counts_rejected():
    with pytest.raises(ValueError, match="must be integers"):
        formula_to_counts("Li0.5CoO2")


def test_validate_counts_errors():
    with pytest.raises(ValueError, match="expected \\(80,\\)"):
        validate_counts(np.zeros(79, dtype=int))
    with pytest.raises(ValueError, match=">= 0"):
        validate_counts(-np.ones(80, dtype=int))
    with pytest.raises(ValueError, match="integers"):
        validate_counts(np.full(80, 0.5))
    with pytest.raises(ValueError, match="empty"):
        validate_counts(np.zeros((2, 80), dtype=int), allow_empty=False)
