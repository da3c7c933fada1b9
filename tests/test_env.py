from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oxide_env
from oxide_env.chemistry.elements import ELEMENT_INDEX, OXYGEN_INDEX
from oxide_env.env import N_ACTIONS
from predictors.envs import make_env as make_oxide_env
from oxide_env.tasks import PREDICTOR_NAMES, make_task

O = OXYGEN_INDEX


def fake_predictors():
    """Cheap deterministic stand-ins (tests of the env mechanics, not of the models)."""
    return {name: (lambda c, k=i: c.sum(axis=1) * 0.1 + k) for i, name in enumerate(PREDICTOR_NAMES)}


def make(**kwargs):
    kwargs.setdefault("predictors", fake_predictors())
    return make_oxide_env(**kwargs)


def act(element: str, count: int) -> int:
    return 10 * ELEMENT_INDEX[element] + count


def test_registration_and_spaces():
    env = gym.make("OxideComposition-v0", predictors=fake_predictors())
    assert env.action_space == gym.spaces.Discrete(800)
    assert env.observation_space.shape == (150,) and env.observation_space.dtype == np.float32
    env2 = gym.make("oxide_env:OxideComposition-v0", predictors=fake_predictors(), render_mode=None)
    obs, info = env2.reset(seed=0)
    assert obs.shape == (150,) and np.all(obs[:145] == 0) and obs[145] == 1
    assert env2.get_wrapper_attr("action_masks")().shape == (800,)


def test_gymnasium_and_sb3_env_checkers_pass_without_warnings():
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check(gym.make("OxideComposition-v0", predictors=fake_predictors()).unwrapped)
        sb3_check(make())


def test_episode_dynamics_and_info():
    env = make(render_mode="ansi")
    obs, info = env.reset(seed=1)
    assert info["formula"] == "" and info["step"] == 0
    for a in (act("Fe", 2), act("Fe", 3), act("Ti", 0), act("Ca", 1)):
        obs, r, term, trunc, info = env.step(a)
        assert r == 0.0 and not term and not trunc
    assert info["formula"] == "CaFe5"  # repeated elements add up, count 0 adds nothing
    mask = env.action_masks()
    assert mask.sum() == 9 and np.all(np.flatnonzero(mask) // 10 == O)
    obs, r, term, trunc, info = env.step(act("O", 4))
    assert term and not trunc
    assert info["formula"] == "CaFe5O4"
    assert info["composition"][ELEMENT_INDEX["Fe"]] == 5
    assert set(info["properties"]) == set(PREDICTOR_NAMES)
    assert r == pytest.approx(info["properties"]["bulk_modulus"])
    assert isinstance(info["charge_neutral"], bool) and isinstance(info["electronegativity_balanced"], bool)
    assert np.all(obs[145:] == 0)  # terminal observation has no step one-hot
    assert "CaFe5O4" in env.render()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(act("O", 1))


def test_cannot_end_with_oxygen_alone():
    env = make()
    env.reset(seed=0)
    for a in (act("O", 3), act("Fe", 0), act("O", 1)):
        env.step(a)
    mask = env.action_masks()
    assert not mask[O * 10 : O * 10 + 10].any()
    assert not mask[0::10].any()
    assert mask.sum() == 79 * 9


def test_masked_action_ends_episode_with_worst_reward():
    env = make(invalid_action_reward=-7.0)
    env.reset(seed=0)
    for a in (act("Mg", 1),) * 4:
        env.step(a)
    obs, r, term, trunc, info = env.step(act("Mg", 1))  # step 5 must be oxygen
    assert term and r == -7.0 and info["invalid_action"]
    assert info["formula"] == "Mg4"  # composition unchanged
    assert env.action_masks().any()


def test_out_of_range_action_raises():
    env = make()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="800"):
        env.step(800)


def test_same_seed_same_rollout():
    def rollout(seed):
        env = make(task="sintering_bulk", lam=62.5)
        obs, info = env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        trace = [obs.tobytes()]
        for _ in range(5):
            a = rng.choice(np.flatnonzero(info["action_mask"]))
            obs, r, term, trunc, info = env.step(a)
            trace += [obs.tobytes(), r, info["formula"]]
        return trace

    assert rollout(3) == rollout(3)


def test_tasks_as_data_and_errors():
    assert make_task("sintering_bulk", lam=250).terms == (("sintering_temperature", -1.0), ("bulk_modulus", 250.0))
    env = make(task={"bulk_modulus": 1.0, "sintering_temperature": -1.0})
    env.reset(seed=0)
    for a in (act("Ba", 1), act("Ti", 1), act("Ti", 0), act("Ti", 0), act("O", 3)):
        _, r, *_ , info = env.step(a)
    p = info["properties"]
    assert r == pytest.approx(p["bulk_modulus"] - p["sintering_temperature"])
    env = make(task=lambda counts: -counts.sum(axis=1).astype(float))
    env.reset(seed=0)
    for a in (act("Ba", 1), act("Ti", 1), act("Ti", 0), act("Ti", 0), act("O", 3)):
        _, r, *_ = env.step(a)
    assert r == -5.0
    with pytest.raises(ValueError, match="Unknown task 'bulk'.*bulk_modulus"):
        make(task="bulk")
    with pytest.raises(ValueError, match="Unknown predictor 'hardness'"):
        make(task={"hardness": 1.0})
    with pytest.raises(TypeError, match="lam='big'"):
        make(task="sintering_bulk", lam="big")
    with pytest.raises(ValueError, match="only applies"):
        make(task="bulk_modulus", lam=10.0)
    with pytest.raises(ValueError, match="constraint_oracles"):
        make(constraint_oracles=[3])
    with pytest.raises(ValueError, match="exact_masks"):
        make(exact_masks="neutral")


def test_oracles_mask_and_never_empty():
    def no_iron(obs, actions):
        return np.where(actions // 10 == ELEMENT_INDEX["Fe"], 0.0, 1.0)

    def reject_all(obs, actions):
        return np.zeros(len(actions))

    env = make(constraint_oracles=no_iron)
    _, info = env.reset(seed=0)
    assert not info["action_mask"][ELEMENT_INDEX["Fe"] * 10 : ELEMENT_INDEX["Fe"] * 10 + 10].any()
    assert info["action_mask"].sum() == 790
    _, _, _, _, info = env.step(act("Fe", 2))  # oracle-masked but legal: executed, flagged
    assert info["masked_action"] and not info["invalid_action"] and info["formula"] == "Fe2"
    env = make(constraint_oracles=[reject_all])
    _, info = env.reset(seed=0)
    assert info["action_mask"].all() and info["mask_fallback"]


@pytest.mark.parametrize("constraint", ["charge_neutral", "electronegativity_balanced"])
def test_exact_masks_guarantee_the_constraint(constraint):
    env = make(exact_masks=constraint)
    rng = np.random.default_rng(0)
    for ep in range(40):
        _, info = env.reset(seed=ep)
        done = False
        while not done:
            assert info["action_mask"].any()
            a = rng.choice(np.flatnonzero(info["action_mask"]))
            _, r, done, _, info = env.step(a)
        assert info[constraint] and info["charge_neutral"]


def test_reward_shaping_hooks():
    base = make(task="bulk_modulus")
    shaped = make(task="bulk_modulus", invalid_penalty=2.0)
    for env in (base, shaped):
        env.reset(seed=0)
        for a in (act("Na", 1), act("Na", 0), act("Na", 0), act("Na", 0)):
            env.step(a)
    _, r0, *_, i0 = base.step(act("O", 5))
    _, r1, *_, i1 = shaped.step(act("O", 5))
    assert not i0["charge_neutral"] and r1 == pytest.approx(r0 - 4.0)
    with pytest.raises(ValueError, match="invalid_penalty"):
        make(invalid_penalty=-1)


def test_make_vec_sync():
    envs = gym.make_vec("OxideComposition-v0", num_envs=3, vectorization_mode="sync",
                        predictors=fake_predictors())
    obs, info = envs.reset(seed=0)
    assert obs.shape == (3, 150)
    obs, r, term, trunc, info = envs.step(np.array([act("Mg", 1)] * 3))
    assert obs.shape == (3, 150) and not term.any()
    envs.close()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, N_ACTIONS - 1), min_size=5, max_size=5), st.integers(0, 3))
def test_invariants_under_masked_play(choices, exact):
    """Never more than 5 additions, always ends with oxygen, never oxygen alone, finite rewards."""
    exact_masks = [None, None, "charge_neutral", "electronegativity_balanced"][exact]
    env = make(exact_masks=exact_masks)
    _, info = env.reset(seed=0)
    n_additions = 0
    for c in choices:
        mask = info["action_mask"]
        assert mask.any()
        allowed = np.flatnonzero(mask)
        a = int(allowed[c % len(allowed)])
        n_additions += a % 10 > 0
        _, r, term, _, info = env.step(a)
        assert np.isfinite(r)
    assert term and n_additions <= 5
    counts = info["composition"]
    assert counts[O] >= 1 and counts.sum() > counts[O]


# ---------------------------------------------------------------- Stable-Baselines3 ecosystem
def _vec(n_envs=4, **kwargs):
    from stable_baselines3.common.env_util import make_vec_env

    kwargs.setdefault("predictors", fake_predictors())
    return make_vec_env(make_oxide_env, n_envs=n_envs, seed=0, env_kwargs=kwargs)


@pytest.mark.parametrize("algo", ["DQN", "PPO"])
def test_sb3_algorithms_run(algo):
    import stable_baselines3

    cls = getattr(stable_baselines3, algo)
    kwargs = {"learning_starts": 200} if algo == "DQN" else {"n_steps": 100, "batch_size": 100}
    model = cls("MlpPolicy", _vec(), policy_kwargs={"net_arch": [32]}, seed=0, **kwargs)
    model.learn(total_timesteps=2000)
    assert model.num_timesteps >= 2000


def test_maskable_ppo_never_takes_a_masked_action():
    from sb3_contrib import MaskablePPO

    env = _vec(exact_masks="charge_neutral")
    model = MaskablePPO("MlpPolicy", env, n_steps=100, batch_size=100, policy_kwargs={"net_arch": [32]}, seed=0)
    model.learn(total_timesteps=2000)
    obs = env.reset()
    n_done = 0
    for _ in range(200):
        masks = np.stack(env.env_method("action_masks"))
        actions, _ = model.predict(obs, action_masks=masks, deterministic=False)
        assert masks[np.arange(len(actions)), actions].all()
        obs, rewards, dones, infos = env.step(actions)
        for info, done in zip(infos, dones):
            if done:
                n_done += 1
                assert not info["masked_action"] and not info["invalid_action"]
                assert info["charge_neutral"]
    assert n_done >= 100


def test_reward_cache_full_never_loses_a_batch_entry():
    """A full cache evicts least recently used entries, never one the current batch still needs."""
    from oxide_env.tasks import RewardModel, make_task

    preds = {name: (lambda c, k=i: c.sum(axis=1) * 1.0 + k) for i, name in enumerate(PREDICTOR_NAMES)}
    model = RewardModel(make_task("bulk_modulus"), preds, cache_size=2)
    model._cache.clear()
    rows = np.zeros((4, 80), dtype=np.int64)
    rows[:, 6] = [1, 2, 3, 4]  # O1, O2, O3, O4: rewards 1 + 1, 2 + 1, ...
    assert model.rewards(rows[:2]).tolist() == [2.0, 3.0]
    # one hit (the oldest entry) and two new compositions in a batch larger than the cache
    assert model.rewards(rows[[0, 2, 3]]).tolist() == [2.0, 4.0, 5.0]
    assert len(model._cache) == 2
    assert model.rewards(rows).tolist() == [2.0, 3.0, 4.0, 5.0]


def test_arguments_checked_when_the_env_is_built():
    """Bad predictors, tasks and weights fail in the constructor, naming the value."""
    from oxide_env.tasks import MAX_WEIGHT

    with pytest.raises(ValueError, match="lam=-1"):
        make(task="sintering_bulk", lam=-1)
    assert make(task="sintering_bulk", lam=0).task.terms[1] == ("bulk_modulus", 0.0)
    with pytest.raises(TypeError, match="predictor 'bulk_modulus'=5"):
        make(predictors={**fake_predictors(), "bulk_modulus": 5})
    with pytest.raises(ValueError, match="weight of 'bulk_modulus'=1e\\+308"):
        make(task={"bulk_modulus": 1e308})
    with pytest.raises(ValueError, match="rewards must be finite"):
        make(task={"bulk_modulus": MAX_WEIGHT}, predictors={**fake_predictors(), "bulk_modulus": lambda c: np.full(len(c), 1e25)})
    # a callable task or predictor with the wrong number of values or a NaN fails at once
    with pytest.raises(ValueError, match="task '<lambda>' returned shape \\(1,\\) for a batch of 3"):
        make(task=lambda counts: np.zeros(1))
    with pytest.raises(ValueError, match="non-finite"):
        make(task=lambda counts: np.full(len(counts), np.nan))
    with pytest.raises(ValueError, match="predictor 'shear_modulus' returned shape \\(3, 2\\)"):
        make(predictors={**fake_predictors(), "shear_modulus": lambda c: np.zeros((len(c), 2))})
    with pytest.raises(TypeError, match="returned 'oops'"):
        make(task=lambda counts: "oops")
    with pytest.raises(ValueError, match="oracle_threshold=2"):
        make(oracle_threshold=2)
    with pytest.raises(TypeError, match="invalid_action_reward=None|invalid_action_reward='x'"):
        make(invalid_action_reward="x")


def test_unique_rows_equals_numpy_and_survives_hash_collisions(monkeypatch) -> None:
    from oxide_env import core

    rng = np.random.default_rng(3)
    counts = rng.integers(0, 3, size=(2000, 80)) * (rng.random((2000, 80)) < 0.04)
    want = np.unique(counts, axis=0)
    for _ in range(2):  # the hashed path, then every row colliding (falls back to np.unique)
        first, inverse = core.unique_rows(counts)
        assert (counts[first][inverse] == counts).all()
        assert len(first) == len(want) and len(np.unique(counts[first], axis=0)) == len(want)
        monkeypatch.setattr(core, "_ROW_HASH", np.zeros(80, dtype=np.int64))
