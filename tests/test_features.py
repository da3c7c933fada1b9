from __future__ import annotations

import warnings

import numpy as np
import pytest
from pymatgen.core import Composition

from oxide_env import ELEMENTS, FEATURE_LABELS, featurize
from oxide_env.chemistry.composition import formula_to_counts
from tests.conftest import random_compositions


@pytest.fixture(scope="module")
def matminer_featurizer():
    from matminer.featurizers.base import MultipleFeaturizer
    from matminer.featurizers.composition import (
        ElementProperty,
        IonProperty,
        Stoichiometry,
        ValenceOrbital,
    )

    return MultipleFeaturizer(
        [
            Stoichiometry(),
            ElementProperty.from_preset("magpie"),
            ValenceOrbital(props=["avg"]),
            IonProperty(fast=True),
        ]
    )


def _reference(featurizer, amounts: np.ndarray) -> np.ndarray:
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for row in amounts:
            comp = Composition({ELEMENTS[i]: float(row[i]) for i in np.flatnonzero(row)})
            rows.append(featurizer.featurize(comp))
    return np.array(rows, dtype=np.float64)


def test_labels_match_matminer(matminer_featurizer):
    assert len(FEATURE_LABELS) == 145
    assert tuple(matminer_featurizer.feature_labels()) == FEATURE_LABELS


def test_matches_matminer_on_1000_random_compositions(matminer_featurizer):
    rng = np.random.default_rng(7)
    counts = random_compositions(600, seed=11)  # complete-looking, integer
    partial = random_compositions(200, seed=12, max_elements=4)  # partial states of an episode
    fractional = random_compositions(200, seed=13).astype(float) / rng.integers(1, 10, (200, 1))
    amounts = np.vstack([counts, partial, fractional])
    ours = featurize(amounts)
    ref = _reference(matminer_featurizer, amounts)
    assert ours.shape == ref.shape == (1000, 145)
    assert np.max(np.abs(ours - ref)) <= 1e-9


def test_golden_oxides_match_matminer(matminer_featurizer, golden_oxides):
    ours = featurize(golden_oxides)
    ref = _reference(matminer_featurizer, np.stack([formula_to_counts(f) for f in golden_oxides]))
    np.testing.assert_allclose(ours, ref, atol=1e-9, rtol=0)
    # a few hand-checkable values
    col = FEATURE_LABELS.index
    assert ours[0, col("0-norm")] == 2 and ours[2, col("0-norm")] == 3
    assert ours[1, col("MagpieData mean Number")] == pytest.approx((2 * 13 + 3 * 8) / 5)
    assert ours[4, col("MagpieData mode Number")] == 8  # oxygen is the most abundant in BaTiO3
    assert ours[3, col("compound possible")] == 0  # fast=True misses mixed-valence Fe3O4
    assert ours[0, col("compound possible")] == 1


def test_empty_composition_is_zeros_and_batches_are_rowwise():
    counts = random_compositions(20, seed=1)
    batch = np.vstack([np.zeros((1, 80), dtype=int), counts])
    out = featurize(batch)
    assert np.all(out[0] == 0)
    singles = np.vstack([featurize(row) for row in counts])
    np.testing.assert_allclose(out[1:], singles, rtol=0, atol=1e-12)
    assert featurize(np.zeros((0, 80))).shape == (0, 145)


def test_scale_invariance_and_input_forms():
    a = featurize("Fe2O3")
    np.testing.assert_allclose(a, featurize("Fe4O6"), atol=1e-12)
    np.testing.assert_array_equal(a, featurize(formula_to_counts("Fe2O3")))
    np.testing.assert_array_equal(a, featurize(["Fe2O3"]))


def test_bad_input():
    with pytest.raises(ValueError, match="expected \\(80,\\) or \\(n, 80\\)"):
        featurize(np.zeros((2, 79)))
    with pytest.raises(ValueError, match="finite and >= 0"):
        featurize(-np.ones(80))
    with pytest.raises(ValueError, match="'Xe' is not one of the 80"):
        featurize(["MgO", "XeO3"])


def test_single_row_fast_path_matches_matminer(matminer_featurizer):
    from oxide_env.chemistry.features import featurize_one

    rng = np.random.default_rng(21)
    amounts = np.vstack([random_compositions(150, seed=22),
                         random_compositions(50, seed=23).astype(float) / rng.integers(1, 7, (50, 1))])
    ref = _reference(matminer_featurizer, amounts)
    ours = np.stack([featurize_one(row) for row in amounts])
    assert np.max(np.abs(ours - ref)) <= 1e-9
    assert np.all(featurize_one(np.zeros(80)) == 0)


def test_feature_bounds_contain_features():
    from oxide_env.chemistry.features import feature_bounds

    low, high = feature_bounds()
    x = featurize(np.vstack([random_compositions(500, seed=31), np.zeros((1, 80), dtype=int)]))
    assert np.all(x >= low - 1e-9) and np.all(x <= high + 1e-9)


def test_meet_in_the_middle_equals_enumeration():
    # "compound possible" without matminer's exponential itertools.product: same answers
    import itertools

    from oxide_env.chemistry import features as F

    t = F._tables()
    multivalent = [i for i in range(80) if t.n_states[i] > 1]
    rng = np.random.default_rng(5)
    for trial in range(300):
        k = int(rng.integers(4, 8))
        els = rng.choice(multivalent, size=k, replace=False)
        amounts = rng.integers(1, 9, size=k).astype(float)
        if trial % 3 == 0:
            amounts = amounts / rng.integers(1, 5)  # fractional, as in training data
        choices = [[a * s for s in t.oxidation_states[i]] for a, i in zip(amounts, els)]
        fixed = float(rng.integers(-3, 4))
        brute = any(abs(fixed + sum(c)) <= 1e-8 for c in itertools.product(*choices))
        assert F._neutral_combination(fixed, choices) == brute


def test_many_multivalent_elements_match_matminer(matminer_featurizer):
    # 6-9 elements, most of them multivalent: matminer still enumerates these quickly
    from oxide_env.chemistry import features as F

    t = F._tables()
    multivalent = [i for i in range(80) if t.n_states[i] > 1]
    rng = np.random.default_rng(9)
    rows = np.zeros((40, 80))
    for r in range(40):
        k = int(rng.integers(6, 10))
        els = rng.choice(multivalent, size=k, replace=False)
        rows[r, els] = rng.integers(1, 7, size=k)
    ours = featurize(rows)
    ref = _reference(matminer_featurizer, rows)
    assert np.max(np.abs(ours - ref)) <= 1e-9
    assert 0 < ours[:, FEATURE_LABELS.index("compound possible")].sum() < 40  # both answers occur
