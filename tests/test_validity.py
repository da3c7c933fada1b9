"""Tests for oxide_env.chemistry.validity against SMACT's own smact_validity."""

from __future__ import annotations

import re

import numpy as np
import pytest
from smact.screening import smact_validity

from oxide_env.chemistry import validity
from oxide_env.chemistry.composition import counts_to_formula, formula_to_counts
from oxide_env.chemistry.elements import ELEMENT_INDEX, ELEMENTS, N_ELEMENTS, OXYGEN_INDEX
from oxide_env.chemistry.validity import charge_neutral, electronegativity_balanced

N_UNIFORM = 10_000
N_POLICY = 3_000
SEED = 20240607


def smact_reference(formula: str, pauling: bool) -> bool:
    return bool(
        smact_validity(
            formula,
            use_pauling_test=pauling,
            include_alloys=False,
            oxidation_states_set="smact14",
        )
    )


def random_uniform_counts(rng: np.random.Generator, n: int) -> np.ndarray:
    """1-5 distinct elements out of the 80, counts 1-9 each."""
    counts = np.zeros((n, N_ELEMENTS), dtype=np.int64)
    for row in counts:
        k = rng.integers(1, 6)
        idx = rng.choice(N_ELEMENTS, size=k, replace=False)
        row[idx] = rng.integers(1, 10, size=k)
    return counts


def random_policy_counts(rng: np.random.Generator, n: int) -> np.ndarray:
    """The paper's random policy: 4 steps of (uniform element, count 0-9), then O 1-9."""
    counts = np.zeros((n, N_ELEMENTS), dtype=np.int64)
    for row in counts:
        for _ in range(4):
            row[rng.integers(N_ELEMENTS)] += rng.integers(0, 10)
        row[OXYGEN_INDEX] += rng.integers(1, 10)
    return counts


@pytest.fixture(scope="module")
def random_set() -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Random count matrix, its reduced formulas, and SMACT's two verdicts on them."""
    rng = np.random.default_rng(SEED)
    counts = np.concatenate(
        [random_uniform_counts(rng, N_UNIFORM), random_policy_counts(rng, N_POLICY)]
    )
    formulas = [counts_to_formula(row, reduce=True) for row in counts]
    neutral = np.array([smact_reference(f, pauling=False) for f in formulas])
    balanced = np.array([smact_reference(f, pauling=True) for f in formulas])
    return counts, formulas, neutral, balanced


def _mismatches(got: np.ndarray, want: np.ndarray, formulas: list[str]) -> list[str]:
    return [f"{f}: got {g}, smact {w}" for f, g, w in zip(formulas, got, want) if g != w]


# ------------------------------------------------------------------------- golden values
@pytest.mark.parametrize(
    ("formula", "neutral", "balanced"),
    [
        ("MgO", True, True),
        ("Al2O3", True, True),
        ("CaTiO3", True, True),
        ("BaTiO3", True, True),
        ("TiO2", True, True),
        ("Ti2O4", True, True),
        ("Fe2O3", True, True),
        # SMACT gives each element one oxidation state: no mixed valence.
        ("Fe3O4", False, False),
        ("NaO5", False, False),
        ("BaLa", False, False),  # only cations
        ("LiNa", True, False),  # Li+ Na- neutral, but Li is more electronegative than Na
        ("HRu", True, False),  # H+ Ru- neutral, equal electronegativity 2.2 fails (strict)
        # single elements are valid in SMACT, whatever their oxidation states
        ("O", True, True),
        ("O2", True, True),
        ("Fe", True, True),
    ],
)
def test_golden_values(formula: str, neutral: bool, balanced: bool) -> None:
    assert smact_reference(formula, pauling=False) is neutral
    assert smact_reference(formula, pauling=True) is balanced
    assert charge_neutral(formula).tolist() == [neutral]
    assert electronegativity_balanced(formula).tolist() == [balanced]


def test_reduction() -> None:
    for fn in (charge_neutral, electronegativity_balanced):
        assert fn(["Ti2O4", "TiO2", "Ti3O6"]).tolist() == [True, True, True]
    assert charge_neutral(formula_to_counts("Ti2O4")).tolist() == charge_neutral("TiO2").tolist()


def test_empty_composition_is_false() -> None:
    empty = np.zeros(N_ELEMENTS, dtype=np.int64)
    assert charge_neutral(empty).tolist() == [False]
    assert electronegativity_balanced(empty).tolist() == [False]
    mixed = np.stack([empty, formula_to_counts("MgO"), empty])
    assert charge_neutral(mixed).tolist() == [False, True, False]
    assert electronegativity_balanced(mixed).tolist() == [False, True, False]


def test_output_shapes_and_dtype() -> None:
    one = formula_to_counts("MgO")
    for fn in (charge_neutral, electronegativity_balanced):
        for arg in ("MgO", ["MgO"], one, one[None, :], one.tolist(), [one.tolist()]):
            out = fn(arg)
            assert out.shape == (1,) and out.dtype == bool and out[0]
        assert fn([]).shape == (0,)
        assert fn(np.zeros((0, N_ELEMENTS), dtype=np.int64)).shape == (0,)
        assert fn(np.array(["MgO", "NaO5"])).tolist() == [True, False]


def test_tables_come_from_smact() -> None:
    import smact

    for i, symbol in enumerate(ELEMENTS):
        element = smact.Element(symbol)
        assert set(validity.OXIDATION_STATES[i]) == set(element.oxidation_states_smact14)
        assert validity.PAULING_ELECTRONEGATIVITY[i] == element.pauling_eneg


# ----------------------------------------------------------------- cross-check with SMACT
def test_charge_neutral_matches_smact(random_set) -> None:
    counts, formulas, neutral, _ = random_set
    assert len(formulas) >= 10_000
    assert 0.2 < neutral.mean() < 0.8  # the sample exercises both answers
    assert _mismatches(charge_neutral(counts), neutral, formulas) == []


def test_electronegativity_balanced_matches_smact(random_set) -> None:
    counts, formulas, neutral, balanced = random_set
    assert 0.2 < balanced.mean() < neutral.mean()  # some neutral ones fail Pauling
    assert _mismatches(electronegativity_balanced(counts), balanced, formulas) == []


def test_strings_and_counts_agree(random_set) -> None:
    counts, formulas, neutral, balanced = random_set
    some = slice(0, 2000)
    for fn, want in ((charge_neutral, neutral), (electronegativity_balanced, balanced)):
        from_strings = fn(formulas[some])
        np.testing.assert_array_equal(from_strings, fn(counts[some]))
        np.testing.assert_array_equal(from_strings, want[some])
        # unreduced counts (x3) give the same answers
        np.testing.assert_array_equal(fn(3 * counts[some]), want[some])


def test_large_counts_use_exact_fallback() -> None:
    # Totals above the bitset limit go through the set-based path; compare with SMACT.
    formulas = [
        "Fe100000O150000",
        "Fe100001O150000",
        "Li70001Na70000",
        "Ba65537Ti65537O196611",
        "Ba65537Ti65537O196612",
        "Mn100003Cl100001O99999",
    ]
    for f in formulas:
        counts = formula_to_counts(f)
        assert charge_neutral(counts)[0] == smact_reference(f, pauling=False), f
        assert electronegativity_balanced(counts)[0] == smact_reference(f, pauling=True), f


def test_set_fallback_equals_bitsets(random_set) -> None:
    counts, _, neutral, balanced = random_set
    keys = validity._keys(counts[:3000])
    for key, n, b in zip(keys, neutral, balanced):
        if len(key) > 2:
            assert validity._neutral_sets(key) == n
            pairs = sorted(
                zip(key[::2], key[1::2]), key=lambda p: validity._EN_SORT[p[0]]
            )
            assert (n and validity._balanced_sets(pairs)) == b


# --------------------------------------------------------------------------- error paths
@pytest.mark.parametrize("fn", [charge_neutral, electronegativity_balanced])
def test_bad_shape(fn) -> None:
    with pytest.raises(ValueError, match=r"shape \(79,\)"):
        fn(np.ones(79, dtype=np.int64))
    with pytest.raises(ValueError, match=r"shape \(2, 3, 80\)"):
        fn(np.ones((2, 3, 80), dtype=np.int64))


@pytest.mark.parametrize("fn", [charge_neutral, electronegativity_balanced])
def test_negative_count(fn) -> None:
    counts = np.zeros((2, N_ELEMENTS), dtype=np.int64)
    counts[1, ELEMENT_INDEX["Fe"]] = -2
    with pytest.raises(ValueError, match="must be >= 0"):
        fn(counts)


@pytest.mark.parametrize("fn", [charge_neutral, electronegativity_balanced])
def test_non_integer_count(fn) -> None:
    counts = np.zeros(N_ELEMENTS)
    counts[OXYGEN_INDEX] = 1.5
    with pytest.raises(ValueError, match="must be integers"):
        fn(counts)


@pytest.mark.parametrize("fn", [charge_neutral, electronegativity_balanced])
def test_unknown_element(fn) -> None:
    with pytest.raises(ValueError, match=r"'XeO3'.*'Xe' is not one of the 80"):
        fn(["MgO", "XeO3"])


@pytest.mark.parametrize("fn", [charge_neutral, electronegativity_balanced])
@pytest.mark.parametrize("formula", ["Fe2O3)", "Fe-2O3", "fe2o3", ""])
def test_malformed_formula(fn, formula: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"Invalid formula={formula!r}")):
        fn(formula)


@pytest.mark.parametrize("fn", [charge_neutral, electronegativity_balanced])
def test_mixed_strings_and_counts(fn) -> None:
    with pytest.raises(ValueError, match="mixes formula strings"):
        fn(["MgO", [0] * N_ELEMENTS])


def test_compiled_batch_equals_the_keyed_tests() -> None:
    """Count batches are decided in one compiled pass; every state table gives the memoised keys' answers."""
    rng = np.random.default_rng(5)
    counts = np.zeros((3000, N_ELEMENTS), dtype=np.int64)
    for row in counts:
        k = rng.integers(0, 7)
        row[rng.choice(N_ELEMENTS, k, replace=False)] = rng.integers(1, rng.choice([3, 10, 40]), k)
        if rng.random() < 0.5:
            row[OXYGEN_INDEX] = rng.integers(1, 12)
    counts[:2] = 0  # the empty composition and a single element
    counts[1, ELEMENT_INDEX["Fe"]] = 4
    keys = validity._keys(counts)
    stateless = [() if i % 7 == 3 else states for i, states in enumerate(validity.OXIDATION_STATES)]
    rules = [validity.StateRule(stateless)]  # elements without states make a composition invalid
    for name in validity.OXIDATION_STATE_SETS:
        rules += [validity._rule(name), validity._rule(name, True), validity._rule(name, True, False)]
    checked = 0
    for rule in rules:
        for balanced in (False, True):
            want = np.array([(rule.balanced if balanced else rule.neutral)(k) for k in keys])
            assert 0.05 < want.mean() < 0.95
            np.testing.assert_array_equal(rule.batch(counts, balanced), want)
            checked += 1
    assert checked == 14
    for fn in (charge_neutral, electronegativity_balanced, validity.oxide_rule):  # batches and single rows agree
        np.testing.assert_array_equal(fn(counts[:300]), np.concatenate([fn(row) for row in counts[:300]]))
