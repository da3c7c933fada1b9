"""Calibrated uncertainty: the fit, the shipped calibration and its one application point."""

from __future__ import annotations

import numpy as np
import pytest

import predictors
from predictors.calibration import ONE_SIGMA, TWO_SIGMA, calibrated_std, coverage, fit_std_calibration


def test_fit_recovers_a_gaussian_scale_and_floor():
    rng = np.random.default_rng(1)
    std = rng.uniform(0.0, 0.2, 20000)
    sigma = np.hypot(4.0 * std, 0.1)
    error = rng.normal(0.0, sigma)
    cal = fit_std_calibration(std, error)
    assert cal["scale"] == pytest.approx(4.0, rel=0.1) and cal["floor"] == pytest.approx(0.1, rel=0.1)
    fitted = calibrated_std(std, cal)
    assert coverage(error, fitted) == pytest.approx(ONE_SIGMA, abs=0.01)
    assert coverage(error, fitted, 2) == pytest.approx(TWO_SIGMA, abs=0.01)  # Gaussian errors: 2 sigma is right
    assert cal["z95"] == pytest.approx(2.0, abs=0.1)


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 20"):
        fit_std_calibration(np.ones(5), np.ones(5))
    with pytest.raises(ValueError, match="Invalid error of shape"):
        fit_std_calibration(np.ones(30), np.ones(29))
    with pytest.raises(ValueError, match="Invalid std"):
        fit_std_calibration(-np.ones(30), np.ones(30))
    with pytest.raises(ValueError, match="Invalid quantile"):
        fit_std_calibration(np.ones(30), np.ones(30), quantile=1.5)


def test_shipped_predictors_apply_their_calibration_everywhere():
    from oxide_env.chemistry.composition import formulas_to_counts
    from oxide_env.chemistry.features import featurize
    from predictors.envs import reward_model

    formulas = ["MgO", "Al2O3", "BaTiO3", "Am9Pu9Hg9Th9O"]
    for name in predictors.PREDICTOR_NAMES:
        model = predictors.load(name)
        cal = model.std_calibration
        assert cal is not None and cal["scale"] > 1 and cal["floor"] > 0 and cal["z95"] > 2
        raw = model.predict_members(formulas).std(axis=0)
        sigma = model.predict_std(formulas)
        np.testing.assert_allclose(sigma, np.hypot(cal["scale"] * raw, cal["floor"]))
        np.testing.assert_allclose(model.predict_with_std(formulas)[1], sigma)
        assert np.argsort(sigma).tolist() == np.argsort(raw).tolist()  # the ranking is the raw std's
    batch = reward_model("bulk_modulus").evaluate(formulas_to_counts(formulas))
    for name in predictors.PREDICTOR_NAMES:
        np.testing.assert_allclose(batch.property_std[name], predictors.load(name).predict_std(formulas), rtol=1e-6)
    bare = predictors.Predictor(name="bulk_modulus", units="ln(GPa)", net=predictors.load("bulk_modulus").net)
    x = featurize(formulas)
    np.testing.assert_allclose(bare.predict_std(formulas), bare.members_from_features(x).std(axis=0))


def test_split_rows_rebuild_the_shipped_test_split():
    from predictors.data import load_table
    from predictors.training import TrainConfig, split_rows

    model = predictors.load("bulk_modulus")
    table = load_table("bulk_modulus")
    fit, val, test = split_rows(len(table), TrainConfig(**model.metadata["config"]))
    assert len(np.intersect1d(fit, val)) == len(np.intersect1d(val, test)) == len(np.intersect1d(fit, test)) == 0
    assert len(fit) + len(val) + len(test) == len(table) and len(test) == model.metadata["n_test"]
    error = model.predict(table["formula"].to_numpy()[test].tolist()) - table["target"].to_numpy()[test]
    assert float(np.mean(np.abs(error))) == pytest.approx(model.metadata["test"]["mae"], rel=1e-5)
