"""normalize_observations=True, the shipped feature statistics, rgb_array rendering, small pickles."""

from __future__ import annotations

import json
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest

from oxide_env.chemistry.composition import formula_to_counts
from oxide_env.chemistry.elements import ELEMENT_INDEX
from oxide_env.chemistry.features import FEATURE_LABELS
from oxide_env.env import render_rgb
from predictors.envs import make_env
from oxide_env.normalization import (
    compute_feature_statistics,
    feature_statistics,
    normalize_features,
    stats_path,
)
from oxide_env.tasks import PREDICTOR_NAMES


def fake_predictors():
    return {name: (lambda c, k=i: c.sum(axis=1) * 0.1 + k) for i, name in enumerate(PREDICTOR_NAMES)}


def act(element: str, count: int) -> int:
    return 10 * ELEMENT_INDEX[element] + count


def test_shipped_statistics_match_the_features_and_a_fresh_estimate():
    data = json.loads(stats_path().read_text())
    assert data["labels"] == list(FEATURE_LABELS) and data["n_states"] > 50_000
    mean, std = feature_statistics()
    assert mean.shape == std.shape == (145,) and np.all(std > 0) and not mean.flags.writeable
    fresh = compute_feature_statistics(2_000, seed=1)  # another seed, 10x fewer episodes
    np.testing.assert_allclose(fresh["mean"], mean, rtol=0.1, atol=0.05 * std.max())
    np.testing.assert_allclose(fresh["std"], std, rtol=0.15, atol=1e-6)
    with pytest.raises(ValueError, match="n_episodes=1"):
        compute_feature_statistics(1)
    with pytest.raises(ValueError, match=r"shape \(3, 4\)"):
        normalize_features(np.zeros((3, 4)))


@pytest.mark.slow
def test_shipped_statistics_are_reproduced_by_their_command():
    data = json.loads(stats_path().read_text())
    assert compute_feature_statistics(data["n_episodes"], data["seed"]) == data


def test_normalized_observations_standardise_the_raw_ones_and_stay_in_bounds():
    raw = make_env(predictors=fake_predictors())
    norm = make_env(predictors=fake_predictors(), normalize_observations=True)
    rng = np.random.default_rng(0)
    mean, std = feature_statistics()
    zs = []
    for episode in range(40):
        o1, info = raw.reset(seed=episode)
        o2, _ = norm.reset(seed=episode)
        for _ in range(5):
            assert norm.observation_space.contains(o2) and raw.observation_space.contains(o1)
            np.testing.assert_allclose(o2[:145], (o1[:145] - mean) / std, rtol=1e-5, atol=1e-5)
            assert np.array_equal(o2[145:], o1[145:])
            if o1[:145].any():  # the statistics are those of non-empty compositions
                zs.append(o2[:145])
            action = int(rng.choice(np.flatnonzero(info["action_mask"])))
            o1, *_, info = raw.step(action)
            o2, *_ = norm.step(action)
        assert norm.observation_space.contains(o2)
    zs = np.array(zs)
    assert np.abs(zs).max() < 30 and np.abs(zs.mean(axis=0)).max() < 1.5  # of order 1, unlike raw (~3,800)
    # extremes: the heaviest and lightest compositions stay inside the transformed bounds
    norm.reset(seed=0)
    for a in (act("Am", 9), act("Am", 9), act("H", 9), act("Pu", 9), act("O", 9)):
        obs, *_ = norm.step(a)
        assert norm.observation_space.contains(obs)


def test_normalized_env_passes_the_checkers_and_rejects_bad_values():
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check(gym.make("OxideComposition-v0", predictors=fake_predictors(), normalize_observations=True).unwrapped)
        sb3_check(make_env(predictors=fake_predictors(), normalize_observations=True))
    with pytest.raises(ValueError, match="normalize_observations='yes'"):
        make_env(predictors=fake_predictors(), normalize_observations="yes")
    with pytest.raises(ValueError, match="render_mode='human'"):
        make_env(predictors=fake_predictors(), render_mode="human")


def test_normalized_observations_are_the_standardised_features():
    from oxide_env.chemistry.features import featurize
    from oxide_env.normalization import normalize_features

    env = make_env(predictors=fake_predictors(), normalize_observations=True)
    env.reset(seed=0)
    env.step(act("Ba", 1))
    obs, *_ = env.step(act("Ti", 1))
    expected = normalize_features(featurize(env.counts[None]).astype(np.float32))[0]
    np.testing.assert_allclose(obs[:145], expected, rtol=1e-6, atol=1e-6)
    assert obs[145:].tolist() == [0, 0, 1, 0, 0]
    assert not np.allclose(featurize(env.counts[None])[0], obs[:145])


def test_make_vec_env_does_not_warn_and_rgb_array_renders_the_composition():
    from stable_baselines3.common.env_util import make_vec_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SB3 passes render_mode="rgb_array" for a string id
        venv = make_vec_env("OxideComposition-v0", n_envs=2, seed=0, env_kwargs={"predictors": fake_predictors()})
        venv.reset()
    image = venv.envs[0].render()
    assert image.shape == (120, 216, 3) and image.dtype == np.uint8
    a, b = render_rgb(formula_to_counts("BaTiO3"), 5), render_rgb(formula_to_counts("BaTi2O3"), 5)
    assert not np.array_equal(a, b) and not np.array_equal(a, render_rgb(formula_to_counts("BaTiO3"), 4))
    env = make_env(predictors=fake_predictors(), render_mode="rgb_array")
    env.reset(seed=0)
    assert np.array_equal(env.render(), render_rgb(np.zeros(80, dtype=np.int64), 0))


def test_a_pickled_env_is_small_and_behaves_the_same():
    env = gym.make("OxideComposition-v0", task="bulk_modulus", normalize_observations=True)
    env.reset(seed=0)
    for a in (act("Ba", 1), act("Ti", 1), act("Mg", 0), act("Ca", 0)):
        env.step(a)
    blob = pickle.dumps(env)
    assert len(blob) < 100_000  # the shipped predictors pickle by name, the reward cache is dropped
    copy = pickle.loads(blob)
    _, r1, *_ = env.step(act("O", 3))
    _, r2, *_ = copy.step(act("O", 3))
    assert r1 == r2
