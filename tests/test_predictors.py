from __future__ import annotations

import json

import numpy as np
import pytest

import predictors
from oxide_env.chemistry.composition import formula_to_counts
from predictors.training import TrainConfig, regression_metrics, split_indices, train


@pytest.mark.parametrize("name", predictors.PREDICTOR_NAMES)
def test_shipped_predictors_load_and_predict(name):
    model = predictors.load(name)
    assert model.name == name and model.units == predictors.UNITS[name]
    formulas = ["MgO", "Al2O3", "CaTiO3", "Fe3O4", "BaTiO3"]
    y = model.predict(formulas)
    assert y.shape == (5,) and np.all(np.isfinite(y))
    counts = np.stack([formula_to_counts(f) for f in formulas])
    np.testing.assert_allclose(model.predict(counts), y, rtol=1e-5)
    np.testing.assert_allclose(model.predict("MgO"), y[:1], rtol=1e-5)
    std = model.predict_std(formulas)
    assert std.shape == (5,) and np.all(std >= 0)
    meta = model.metadata
    # calcination labels are noisier (a recipe's last calcination, not a material property): R2 0.66
    assert meta["n_train"] > 1000 and meta["test"]["r2"] > (0.6 if name == "calcination_temperature" else 0.8)


def test_predictions_are_physically_sensible():
    fe = predictors.load("formation_energy").predict(["Al2O3", "MgO", "Au2O3"])
    assert fe[0] < -3.0 and fe[1] < -2.5 and fe[2] > fe[0]  # alumina far more stable than gold oxide
    k = np.exp(predictors.load("bulk_modulus").predict(["Al2O3", "Cs2O"]))
    assert k[0] > 150 and k[1] < k[0]  # GPa
    s = predictors.load("sintering_temperature").predict(["BaTiO3"])
    assert 1000 < s[0] < 1500  # degC


def test_uncertainty_flags_compositions_unlike_the_training_data():
    model = predictors.load("formation_energy")
    typical = model.predict_std(["MgO", "Al2O3", "TiO2", "ZnO", "SiO2"]).mean()
    exotic = model.predict_std(["Am9Pu9Hg9Th9O", "Cs9Au9Pu9Am9O"]).mean()
    assert exotic > 2 * typical


def test_bad_input_is_named():
    model = predictors.load("bulk_modulus")
    with pytest.raises(ValueError, match="'XeF2'"):
        model.predict(["MgO", "XeF2"])
    with pytest.raises(ValueError, match="empty"):
        model.predict(np.zeros((1, 80), dtype=int))
    with pytest.raises(ValueError, match="Unknown predictor 'hardness'"):
        predictors.load("hardness")
    with pytest.raises(ValueError, match="'Mg\\)O'|Invalid formula"):
        model.predict(["Mg)O"])


def test_weights_are_safetensors_and_json_only():
    files = sorted(p.name for p in predictors.weights_dir().iterdir())
    assert all(f.endswith((".safetensors", ".json")) for f in files)
    total = sum(p.stat().st_size for p in predictors.weights_dir().iterdir())
    assert total <= 40e6  # five ensembles and their domain references (the E_f reference: 84k x 32 floats)
    for name in predictors.PREDICTOR_NAMES:
        meta = json.loads((predictors.weights_dir() / f"{name}.json").read_text())
        assert meta["architecture"]["in_dim"] == 145


def test_train_save_load_round_trip(tmp_path):
    model, report = train("bulk_modulus", TrainConfig(epochs=2, n_members=2, hidden=16, depth=1, seed=3))
    assert report["n_test"] == round(0.1 * report["n_total"])
    model.save(tmp_path)
    loaded = predictors.load_from(tmp_path, "bulk_modulus")
    np.testing.assert_array_equal(loaded.predict(["MgO", "BaTiO3"]), model.predict(["MgO", "BaTiO3"]))
    with pytest.raises(predictors.NotFittedError, match="train-predictors"):
        predictors.load_from(tmp_path / "missing", "bulk_modulus")
    # the same seed reproduces the same model on CPU
    model2, _ = train("bulk_modulus", TrainConfig(epochs=2, n_members=2, hidden=16, depth=1, seed=3))
    np.testing.assert_array_equal(model2.predict(["MgO"]), model.predict(["MgO"]))


def test_split_and_metrics():
    tr, te = split_indices(100, seed=0)
    assert len(tr) == 90 and len(te) == 10 and not set(tr) & set(te)
    assert np.array_equal(split_indices(100, seed=0)[1], te)
    m = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    assert m["mae"] == pytest.approx(1 / 3) and m["r2"] == pytest.approx(0.5)


def test_training_progress_bar_reaches_the_last_epoch(capsys):
    from predictors.training import TrainConfig, train

    train("bulk_modulus", TrainConfig(epochs=2, n_members=2, hidden=32), progress=True)
    assert "2/2" in capsys.readouterr().err  # a `break` after the last epoch used to leave it at 1/2


def test_calcination_task_rewards_low_predicted_calcination_temperature():
    import gymnasium as gym

    import oxide_env  # noqa: F401  (registers the env)
    from oxide_env.chemistry.composition import counts_to_formula

    env = gym.make("OxideComposition-v0", task="calcination_temperature")
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    terminated = False
    while not terminated:
        action = int(rng.choice(np.flatnonzero(env.unwrapped.action_masks())))
        obs, reward, terminated, truncated, info = env.step(action)
    formula = counts_to_formula(env.unwrapped.counts)
    expected = -predictors.load("calcination_temperature").predict([formula])[0]
    assert reward == pytest.approx(expected, rel=1e-4)
