"""A Stable-Baselines3 ``VecEnv`` of ``OxideComposition-v0`` over the batched episode core.

:class:`OxideVecEnv` steps all copies with one :class:`~oxide_env.core.EpisodeBatch` (one numpy
pass, one reward batch per step; all copies share one reward model and its memo). It follows
SB3's conventions: a copy whose episode ends is reset in the same step, the last observation
is in ``info["terminal_observation"]``, and ``info["episode"]`` carries Monitor-style episode
statistics (``r`` return, ``l`` length, ``t`` seconds since the env was made) so SB3's logger
reports ``rollout/ep_rew_mean``. Masks come from ``env_method("action_masks")`` (what
sb3-contrib's ``get_action_masks`` and ``MaskablePPO`` call) and ``info["action_mask"]``.

Example:
    >>> from agents.vec_env import make_oxide_vec_env
    >>> venv = make_oxide_vec_env(n_envs=4, seed=0, task="bulk_modulus")
    >>> venv.reset().shape
    (4, 150)
    >>> from sb3_contrib.common.maskable.utils import get_action_masks
    >>> get_action_masks(venv).shape
    (4, 800)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from oxide_env.chemistry.checks import check_number
from oxide_env.chemistry.episode import N_ACTIONS
from oxide_env.core import EpisodeBatch, observation_space

__all__ = ["OxideVecEnv", "make_oxide_vec_env"]

_SHARED = ("exact_masks", "constraint_lookahead", "normalize_observations", "reward_model", "invalid_action_reward",
           "oracle_threshold")


class OxideVecEnv(VecEnv):
    """``n_envs`` copies of ``OxideComposition-v0`` as an SB3 ``VecEnv`` (see the module docstring).

    Args:
        n_envs: number of copies.
        reward_model: the injected rewards (``predictors.envs.reward_model(...)``).
        monitor: add Monitor-style ``info["episode"]`` at the end of each episode.
        **core_kwargs: ``exact_masks``, ``constraint_lookahead``, ``constraint_oracles``, ``oracle_threshold``,
            ``invalid_action_reward``, ``normalize_observations`` (as the single env).
    """

    def __init__(self, n_envs: int, reward_model: Any, *, monitor: bool = True, **core_kwargs: Any) -> None:
        check_number(n_envs, "n_envs", integer=True, minimum=1)
        self.core = EpisodeBatch(int(n_envs), reward_model, **core_kwargs)
        super().__init__(int(n_envs), observation_space(self.core.normalize_observations), spaces.Discrete(N_ACTIONS))
        self.monitor = bool(monitor)
        self._actions: np.ndarray | None = None
        self._returns = np.zeros(self.num_envs, dtype=np.float64)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._t0 = time.time()

    # ------------------------------------------------------------------ attributes
    @property
    def reward_model(self) -> Any:
        return self.core.reward_model

    @property
    def exact_masks(self) -> str | None:
        return self.core.exact_masks

    @property
    def constraint_lookahead(self) -> bool:
        return self.core.constraint_lookahead

    @property
    def normalize_observations(self) -> bool:
        return self.core.normalize_observations

    @property
    def invalid_action_reward(self) -> float:
        return self.core.invalid_action_reward

    @property
    def oracle_threshold(self) -> float:
        return self.core.oracle_threshold

    def action_masks(self) -> np.ndarray:
        """Allowed actions of every copy, ``bool (n_envs, 800)``."""
        return self.core.masks.copy()

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, (int, np.integer)):
            return [int(indices)]
        return [int(i) for i in indices]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        rows = self._indices(indices)
        if attr_name == "action_masks":
            return [lambda i=i: self.core.masks[i].copy() for i in rows]
        if attr_name not in _SHARED and attr_name != "render_mode":
            raise AttributeError(f"OxideVecEnv copies have no attribute {attr_name!r}; shared ones: "
                                 f"{', '.join(_SHARED)}, action_masks.")
        value = None if attr_name == "render_mode" else getattr(self, attr_name)
        return [value for _ in rows]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"Cannot set {attr_name!r} on an OxideVecEnv: its settings are fixed when it is made.")

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        rows = self._indices(indices)
        if method_name == "action_masks":
            masks = self.core.masks.copy()  # one copy; the rows are views of it
            return [masks[i] for i in rows]
        raise AttributeError(f"OxideVecEnv copies have no method {method_name!r} (only action_masks).")

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    # ------------------------------------------------------------------ stepping
    def reset(self) -> np.ndarray:
        self.core.reset()
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self._reset_seeds()
        self._reset_options()
        return self.core.obs.copy()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(-1)

    def step_wait(self):
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async(); call step(actions).")
        core = self.core
        result = core.step(self._actions)
        self._actions = None
        rewards = result.rewards
        dones = result.terminated
        self._returns += rewards
        self._lengths += 1
        masks = core.masks.copy()
        infos: list[dict[str, Any]] = [{"action_mask": masks[i]} for i in range(self.num_envs)]
        for i in np.flatnonzero(result.invalid):
            infos[i]["invalid_action"] = True
        if result.terminal is not None:
            for k, extra in zip(result.rows[result.finished].tolist(), result.terminal.infos()):
                infos[k].update(extra)
        ended = np.flatnonzero(dones)
        if ended.size:
            last_obs = core.obs[ended].copy()
            compositions = core.counts[ended].copy()
            for j, i in enumerate(ended):
                info = infos[i]
                info["terminal_observation"] = last_obs[j]
                info["composition"] = compositions[j]
                info["TimeLimit.truncated"] = False
                if self.monitor:
                    info["episode"] = {"r": float(self._returns[i]), "l": int(self._lengths[i]),
                                       "t": round(time.time() - self._t0, 6)}
            self._returns[ended] = 0.0
            self._lengths[ended] = 0
            core.reset(ended)
            masks[ended] = core.masks[ended]
        return core.obs.copy(), rewards.astype(np.float32), dones.copy(), infos

    def close(self) -> None:
        pass

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]


def make_oxide_vec_env(n_envs: int = 100, seed: int | None = None, *, monitor: bool = True,
                       reward_model: Any = None, **env_kwargs: Any) -> OxideVecEnv:
    """``n_envs`` copies of ``OxideComposition-v0`` as an SB3 ``VecEnv`` over one episode core.

    Args:
        n_envs: number of copies.
        seed: seeds the action and observation spaces (the env itself is deterministic).
        monitor: Monitor-style ``info["episode"]`` statistics.
        reward_model: a ready reward model; otherwise one is built from the reward's arguments in
            ``env_kwargs`` (``task``, ``lam``, ``predictors``, ``constraints``, ...) with the shipped
            predictors (:func:`predictors.envs.reward_model`).
        **env_kwargs: the reward's arguments and the env's own (``exact_masks``,
            ``constraint_oracles``, ``normalize_observations``, ...).
    """
    from predictors.envs import REWARD_ARGUMENTS
    from predictors.envs import reward_model as build_reward_model

    check_number(n_envs, "n_envs", integer=True, minimum=1)
    reward_kwargs = {k: env_kwargs.pop(k) for k in REWARD_ARGUMENTS if k in env_kwargs}
    if reward_model is None:
        reward_model = build_reward_model(**reward_kwargs)
    elif reward_kwargs:
        raise ValueError(f"Give either reward_model= or the reward's arguments ({', '.join(reward_kwargs)}), not both.")
    env_kwargs.pop("render_mode", None)
    venv = OxideVecEnv(int(n_envs), reward_model, monitor=monitor, **env_kwargs)
    if seed is not None:
        venv.seed(seed)
        venv.action_space.seed(seed)
        venv.observation_space.seed(seed)
    return venv
