"""The batched episode core and the vector envs over it: the same trajectories as single envs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import oxide_env  # noqa: F401  (registers the env)
from oxide_env.chemistry.episode import N_ACTIONS
from oxide_env.core import EpisodeBatch
from oxide_env.tasks import PREDICTOR_NAMES, RewardModel, make_task
from oxide_env.vector import OxideCompositionVectorEnv
from predictors.envs import make_env, reward_model


def fake_predictors():
    """Cheap deterministic stand-ins (tests of the env mechanics, not of the models)."""
    return {name: (lambda c, k=i: c.sum(axis=1) * 0.1 + k) for i, name in enumerate(PREDICTOR_NAMES)}


class CountingModel(RewardModel):
    """A reward model that counts its batched calls."""

    calls: list[int]

    def evaluate(self, counts):
        self.calls.append(len(counts))
        return super().evaluate(counts)


def counting_model(**kwargs) -> CountingModel:
    model = CountingModel(make_task("bulk_modulus"), fake_predictors(), **kwargs)
    model.calls = []
    return model


def choose(masks: np.ndarray, rng: np.random.Generator, p_invalid: float = 0.0) -> np.ndarray:
    """A random allowed action per row; with probability ``p_invalid`` a random (maybe invalid) one."""
    actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
    wild = rng.random(len(actions)) < p_invalid
    actions[wild] = rng.integers(0, N_ACTIONS, int(wild.sum()))
    return actions


@pytest.mark.parametrize("exact_masks", [None, "electronegativity_balanced"])
def test_vector_env_equals_n_single_envs(exact_masks):
    """Gymnasium next-step autoreset, invalid actions included (copies fall out of step)."""
    n, rng = 6, np.random.default_rng(0)
    vec = gym.make_vec("OxideComposition-v0", num_envs=n, predictors=fake_predictors(), exact_masks=exact_masks)
    assert isinstance(vec, OxideCompositionVectorEnv)
    singles = [gym.make("OxideComposition-v0", predictors=fake_predictors(), exact_masks=exact_masks)
               for _ in range(n)]
    obs, info = vec.reset(seed=0)
    pairs = [env.reset(seed=i) for i, env in enumerate(singles)]
    np.testing.assert_array_equal(obs, np.stack([p[0] for p in pairs]))
    restart = np.zeros(n, dtype=bool)
    finished = 0
    for _ in range(40):
        masks = info["action_mask"]
        np.testing.assert_array_equal(masks, np.stack(vec.call("action_masks")))
        actions = choose(masks, rng, p_invalid=0.05)
        obs, rewards, terminated, truncated, info = vec.step(actions)
        assert not truncated.any()
        for i, env in enumerate(singles):
            if restart[i]:  # next-step autoreset: this step only reset copy i
                o, single_info = env.reset()
                r, t = 0.0, False
            else:
                o, r, t, _, single_info = env.step(actions[i])
            np.testing.assert_array_equal(obs[i], o)
            np.testing.assert_array_equal(info["action_mask"][i], single_info["action_mask"])
            assert terminated[i] == t and rewards[i] == pytest.approx(r, rel=1e-6)
            assert info["invalid_action"][i] == single_info.get("invalid_action", False)
            if t and not single_info["invalid_action"]:
                finished += 1
                assert info["_formula"][i] and info["formula"][i] == single_info["formula"]
                assert info["charge_neutral"][i] == single_info["charge_neutral"]
                for name in PREDICTOR_NAMES:
                    assert info["properties"][name][i] == pytest.approx(single_info["properties"][name], rel=1e-6)
        restart = terminated.copy()
    assert finished > 20


def test_same_step_autoreset_returns_the_first_observation_and_keeps_the_last():
    n, rng = 4, np.random.default_rng(1)
    vec = gym.make_vec("OxideComposition-v0", num_envs=n, predictors=fake_predictors(), autoreset_mode="same_step")
    first, info = vec.reset(seed=0)
    for _ in range(5):
        obs, rewards, terminated, _, info = vec.step(choose(info["action_mask"], rng))
    assert terminated.all() and info["_final_obs"].all()
    np.testing.assert_array_equal(obs, first)  # every copy already started its next episode
    assert all(o[145:].sum() == 0 for o in info["final_obs"])  # terminal observations: no step one-hot
    assert info["final_info"]["formula"].tolist() == [f for f in info["final_info"]["formula"]]
    assert (info["step"] == 0).all() and info["action_mask"].all(axis=1).all()


def test_one_reward_batch_per_vector_step():
    model = counting_model()
    vec = OxideCompositionVectorEnv(8, model)
    _, info = vec.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        _, _, terminated, _, info = vec.step(choose(info["action_mask"], rng))
    assert model.calls[-1] == 8 and terminated.all()  # the probe batch, then one call for all 8 copies


def test_bad_vector_arguments():
    model = counting_model()
    with pytest.raises(ValueError, match="autoreset_mode"):
        OxideCompositionVectorEnv(2, model, autoreset_mode="sometimes")
    with pytest.raises(ValueError, match="num_envs"):
        OxideCompositionVectorEnv(0, model)
    with pytest.raises(ValueError, match="render_mode"):
        OxideCompositionVectorEnv(2, model, render_mode="human")
    with pytest.raises(TypeError, match="reward_model"):
        EpisodeBatch(2, object())
    with pytest.raises(ValueError, match="either reward_model"):
        make_env(reward_model=model, task="bulk_modulus")
    vec = OxideCompositionVectorEnv(2, model)
    vec.reset()
    with pytest.raises(ValueError, match="expected \\(2,\\)"):
        vec.step(np.zeros(3, dtype=int))
    with pytest.raises(AttributeError, match="no attribute"):
        vec.call("_core")


def test_episode_core_refuses_bad_actions_and_finished_rows():
    batch = EpisodeBatch(2, counting_model())
    with pytest.raises(ValueError, match="Invalid action"):
        batch.step(np.array([0, 800]))
    with pytest.raises(ValueError, match="Invalid action"):
        batch.step(np.array([0.5, 1]))
    for _ in range(4):
        batch.step(np.array([1, 1]))
    result = batch.step(np.array([61, 62]))  # O1, O2
    assert result.terminated.all() and len(result.finished) == 2
    with pytest.raises(RuntimeError, match="reset"):
        batch.step(np.array([1, 1]))


def test_sb3_vec_env_equals_dummy_vec_env_of_single_envs():
    """Same observations, dones, terminal observations and Monitor statistics; rewards to float32 rounding."""
    from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.vec_env import OxideVecEnv, make_oxide_vec_env

    a = make_oxide_vec_env(4, seed=0, predictors=fake_predictors())
    assert isinstance(a, OxideVecEnv) and is_masking_supported(a)
    b = DummyVecEnv([lambda: Monitor(make_env(predictors=fake_predictors())) for _ in range(4)])
    np.testing.assert_array_equal(a.reset(), b.reset())
    rng = np.random.default_rng(0)
    episodes = 0
    for _ in range(23):
        masks = get_action_masks(a)
        np.testing.assert_array_equal(masks, np.stack(b.env_method("action_masks")))
        actions = choose(masks, rng, p_invalid=0.05)
        (oa, ra, da, ia), (ob, rb, db, ib) = a.step(actions), b.step(actions)
        np.testing.assert_array_equal(oa, ob)
        np.testing.assert_allclose(ra, rb, rtol=1e-6)
        np.testing.assert_array_equal(da, db)
        for x, y in zip(ia, ib):
            np.testing.assert_array_equal(x["action_mask"], y["action_mask"])
            if "terminal_observation" in y:
                np.testing.assert_array_equal(x["terminal_observation"], y["terminal_observation"])
                assert x["episode"]["r"] == pytest.approx(y["episode"]["r"], rel=1e-6)
                assert x["episode"]["l"] == y["episode"]["l"]
                episodes += 1
    assert episodes >= 12
    assert a.get_attr("exact_masks") == [None] * 4
    with pytest.raises(AttributeError, match="no method"):
        a.env_method("render")


def test_maskable_ppo_trains_on_the_sb3_vec_env():
    from sb3_contrib import MaskablePPO

    from agents.vec_env import make_oxide_vec_env

    venv = make_oxide_vec_env(4, seed=0, predictors=fake_predictors(), exact_masks="charge_neutral")
    model = MaskablePPO("MlpPolicy", venv, n_steps=20, batch_size=40, n_epochs=1, seed=0,
                        policy_kwargs={"net_arch": [16]})
    model.learn(total_timesteps=160)
    assert len(model.ep_info_buffer) > 0  # Monitor-style episode statistics reached SB3's logger


def test_shared_reward_model_memo_is_per_object():
    a, b = reward_model("bulk_modulus"), reward_model("bulk_modulus")
    from oxide_env.chemistry.composition import formulas_to_counts

    a.evaluate(formulas_to_counts(["MgO"]))
    assert len(a.cache_state()["rewards"]) == 1 and len(b.cache_state()["rewards"]) == 0


def test_exact_oxide_rule_masks_make_every_design_pass_the_oxide_rule():
    from oxide_env.chemistry.validity import oxide_rule

    vec = OxideCompositionVectorEnv(50, counting_model(), exact_masks="oxide_rule", autoreset_mode="same_step")
    _, info = vec.reset(seed=0)
    rng = np.random.default_rng(3)
    finals = []
    for _ in range(15):
        _, _, terminated, _, info = vec.step(choose(info["action_mask"], rng))
        if terminated.any():
            finals += [f for f, done in zip(info["final_info"]["formula"], terminated) if done]
    assert len(finals) == 150 and oxide_rule(finals).all()
    assert not info["mask_fallback"].any()
