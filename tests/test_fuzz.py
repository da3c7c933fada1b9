"""Fuzzing the public chemistry functions and the predictors (issue 10 item 7, issue 15 item 4).

Whatever the input, only ``ValueError`` / ``TypeError`` may escape, and results are finite
numbers or booleans of the right shape. Derandomized (a fixed seed) so CI is reproducible;
a few seconds in the default suite.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import predictors
from oxide_env.chemistry.composition import formula_to_amounts, formula_to_counts, reduced_formula
from oxide_env.chemistry.elements import ELEMENTS
from oxide_env.chemistry.features import featurize
from oxide_env.chemistry.metrics import evaluate
from oxide_env.chemistry.validity import charge_neutral, electronegativity_balanced

FUZZ = settings(derandomize=True, max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

symbols = st.sampled_from([*ELEMENTS, "Xe", "A", "Q", "Tc", "e", "O"])
amount_text = st.one_of(
    st.just(""), st.integers(0, 10**20).map(str), st.floats(0, 1e30, allow_nan=False).map(repr),
    st.sampled_from(["1e400", "0.0", ".", "2e", "1.5", "9223372036854775808", "0"]),
)
token = st.one_of(
    st.tuples(symbols, amount_text).map("".join),
    st.sampled_from(["(", ")", ")2", "[", "]3", " ", "\t", "@", "-", "+", "·"]),
)
formulas = st.one_of(
    st.lists(token, max_size=30).map("".join),
    st.text(max_size=40),
    st.lists(st.tuples(st.sampled_from(ELEMENTS), st.integers(1, 9)).map(lambda p: f"{p[0]}{p[1]}"),
             min_size=1, max_size=24).map("".join),
)
scalars = st.one_of(
    st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.complex_numbers(max_magnitude=10), st.none(), st.binary(max_size=10),
)
rows = st.lists(st.one_of(st.integers(0, 12), scalars), min_size=80, max_size=80)
inputs = st.one_of(
    formulas,
    st.lists(formulas, max_size=4),
    st.dictionaries(st.one_of(symbols, st.integers(0, 100)), st.one_of(st.integers(-2, 2**64), scalars), max_size=6),
    rows,
    st.lists(rows, max_size=3),
    scalars,
    st.binary(max_size=40),
    st.lists(st.integers(0, 5), max_size=90),
)

PUBLIC = {
    "charge_neutral": charge_neutral,
    "electronegativity_balanced": electronegativity_balanced,
    "featurize": featurize,
    "evaluate": evaluate,
    "reduced_formula": reduced_formula,
    "formula_to_amounts": formula_to_amounts,
    "formula_to_counts": formula_to_counts,
}


def _check_result(name: str, result) -> None:
    if name in ("charge_neutral", "electronegativity_balanced"):
        assert result.dtype == bool and result.ndim == 1
    elif name == "featurize":
        assert result.ndim == 2 and result.shape[1] == 145 and np.all(np.isfinite(result))
    elif name == "evaluate":
        assert all(isinstance(v, (int, float)) for v in result.values())
        assert all(math.isnan(v) or math.isfinite(v) for v in result.values())
    elif name == "reduced_formula":
        assert isinstance(result, str)
    else:
        assert result.shape == (80,) and np.all(np.isfinite(result)) and np.all(result >= 0)


@pytest.mark.parametrize("name", sorted(PUBLIC))
@FUZZ
@given(value=inputs)
def test_public_functions_raise_only_value_or_type_errors(name, value):
    try:
        result = PUBLIC[name](value)
    except (ValueError, TypeError) as exc:
        assert str(exc)  # a message, and a short one: long inputs are truncated
        assert len(str(exc)) < 2000
        return
    _check_result(name, result)


@FUZZ
@given(value=inputs)
def test_predictors_raise_only_value_or_type_errors(value):
    model = predictors.load("formation_energy")
    try:
        result = model.predict(value)
    except (ValueError, TypeError) as exc:
        assert str(exc) and len(str(exc)) < 2000
        return
    assert result.ndim == 1 and np.all(np.isfinite(result))


@settings(derandomize=True, max_examples=30, deadline=None, database=None)
@given(st.lists(st.tuples(st.sampled_from(ELEMENTS), st.integers(1, 2**40)), min_size=1, max_size=20))
def test_valid_compositions_give_finite_answers(pairs):
    formula = "".join(f"{e}{n}" for e, n in pairs)
    try:
        counts = formula_to_counts(formula)
    except ValueError:  # a repeated element can add past int64 or over 20 elements: refused
        return
    try:
        neutral = charge_neutral(counts)
    except ValueError as exc:  # huge counts with many oxidation states: refused, documented
        assert "combinations of oxidation states" in str(exc)
        return
    assert neutral.shape == (1,)
    assert np.all(np.isfinite(featurize(counts)))
    assert np.isfinite(predictors.load("bulk_modulus").predict(counts)).all()
