"""A vectorized OxideComposition env whose terminal rewards are predicted in one batch.

All copies of the environment finish their 5-step episodes at the same vector step, so
before stepping them this ``DummyVecEnv`` subclass gathers the final compositions of every
copy about to finish and fills the shared reward cache with one batched predictor call;
each copy's own ``step`` then finds its reward there. Results are identical to a plain
``DummyVecEnv`` (same envs, same order), only faster.

Example:
    >>> from agents.vec_env import make_oxide_vec_env
    >>> venv = make_oxide_vec_env(n_envs=4, seed=0, task="bulk_modulus")
    >>> venv.reset().shape
    (4, 150)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from oxide_env.env import N_COUNTS, N_STEPS, OxideCompositionEnv


class BatchedRewardVecEnv(DummyVecEnv):
    """``DummyVecEnv`` of :class:`~oxide_env.env.OxideCompositionEnv` with batched terminal rewards."""

    def step_async(self, actions: np.ndarray) -> None:
        super().step_async(actions)
        finals, rewarder = [], None
        for env, action in zip(self.envs, np.asarray(actions).reshape(-1)):
            core = env.unwrapped
            if isinstance(core, OxideCompositionEnv) and core.step_index == N_STEPS - 1 and core._hard_mask[action]:
                counts = core.counts.copy()
                counts[int(action) // N_COUNTS] += int(action) % N_COUNTS
                finals.append(counts)
                rewarder = core.rewarder
        if finals and rewarder is not None:
            rewarder.evaluate(np.stack(finals))


def make_oxide_vec_env(n_envs: int = 100, seed: int | None = None, *, monitor: bool = True,
                       **env_kwargs: Any) -> BatchedRewardVecEnv:
    """``n_envs`` copies of ``OxideComposition-v0`` (each wrapped in SB3's ``Monitor``), seeded.

    Args:
        n_envs: number of copies.
        seed: seeds copy ``i`` with ``seed + i`` (as SB3's ``make_vec_env``).
        monitor: wrap each copy in ``Monitor`` (episode rewards in the SB3 logger).
        **env_kwargs: forwarded to :class:`~oxide_env.env.OxideCompositionEnv`.
    """
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
        raise ValueError(f"Invalid n_envs={n_envs!r}: expected an integer >= 1.")

    def factory(rank: int):
        def make():
            env = OxideCompositionEnv(**env_kwargs)
            return Monitor(env) if monitor else env
        return make

    venv = BatchedRewardVecEnv([factory(i) for i in range(n_envs)])
    if seed is not None:
        venv.seed(seed)
    return venv
