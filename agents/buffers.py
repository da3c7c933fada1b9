"""A replay buffer that also stores next-state action masks and constraint labels.

Like ``sb3_contrib``'s maskable buffers, the sample NamedTuple is extended:
``next_action_masks`` let the Bellman target's max respect the next state's mask, and
``constraint_labels`` (the paper's c-hat: did the episode's *final* composition satisfy
constraint j?) train the constraint oracles. Labels are unknown (-1) until the episode ends,
then written back to every transition of that episode.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.vec_env import VecNormalize

DEFAULT_CONSTRAINTS: tuple[str, ...] = ("charge_neutral", "electronegativity_balanced")


class MaskedReplayBufferSamples(NamedTuple):
    observations: torch.Tensor
    actions: torch.Tensor
    next_observations: torch.Tensor
    dones: torch.Tensor
    rewards: torch.Tensor
    discounts: torch.Tensor | None
    next_action_masks: torch.Tensor
    constraint_labels: torch.Tensor
    holdout: torch.Tensor


class MaskedReplayBuffer(ReplayBuffer):
    """SB3 ``ReplayBuffer`` + next-state masks (from ``info["action_mask"]``) + constraint labels.

    Args:
        constraints: names of the boolean keys of the terminal ``info`` used as labels.
        holdout_every: every k-th stored transition is held out from oracle training to
            measure the oracles' accuracy / AUC (0: no holdout).
    """

    def __init__(self, buffer_size: int, observation_space: spaces.Space, action_space: spaces.Discrete,
                 device: torch.device | str = "auto", n_envs: int = 1, optimize_memory_usage: bool = False,
                 handle_timeout_termination: bool = True,
                 constraints: tuple[str, ...] = DEFAULT_CONSTRAINTS, holdout_every: int = 10) -> None:
        super().__init__(buffer_size, observation_space, action_space, device, n_envs=n_envs,
                         optimize_memory_usage=optimize_memory_usage,
                         handle_timeout_termination=handle_timeout_termination)
        self.constraints = tuple(constraints)
        n_actions = int(action_space.n)
        self.next_action_masks = np.ones((self.buffer_size, self.n_envs, n_actions), dtype=bool)
        self.constraint_labels = np.full((self.buffer_size, self.n_envs, len(self.constraints)), -1, dtype=np.int8)
        self.holdout_every = holdout_every
        self.holdout = np.zeros((self.buffer_size, self.n_envs), dtype=bool)
        self._episode_positions: list[list[int]] = [[] for _ in range(self.n_envs)]
        self._n_added = 0

    def add(self, obs: np.ndarray, next_obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
            done: np.ndarray, infos: list[dict[str, Any]]) -> None:
        pos = self.pos
        masks = [info.get("action_mask") for info in infos]
        if all(m is not None for m in masks):
            self.next_action_masks[pos] = np.stack(masks)
        else:
            for i, m in enumerate(masks):
                self.next_action_masks[pos, i] = True if m is None else m
        self.constraint_labels[pos] = -1
        self.holdout[pos] = bool(self.holdout_every) and (
            (self._n_added + np.arange(self.n_envs)) % max(self.holdout_every, 1) == 0)
        self._n_added += self.n_envs
        super().add(obs, next_obs, action, reward, done, infos)
        for i, info in enumerate(infos):
            self._episode_positions[i].append(pos)
            if done[i]:
                labels = [int(bool(info.get(name, False))) for name in self.constraints]
                for p in self._episode_positions[i]:
                    self.constraint_labels[p, i] = labels
                self._episode_positions[i] = []

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> MaskedReplayBufferSamples:
        env_indices = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        if self.optimize_memory_usage:
            next_obs = self.observations[(batch_inds + 1) % self.buffer_size, env_indices, :]
        else:
            next_obs = self.next_observations[batch_inds, env_indices, :]
        data = (
            self._normalize_obs(self.observations[batch_inds, env_indices, :], env),
            self.actions[batch_inds, env_indices, :],
            self._normalize_obs(next_obs, env),
            (self.dones[batch_inds, env_indices] * (1 - self.timeouts[batch_inds, env_indices])).reshape(-1, 1),
            self._normalize_reward(self.rewards[batch_inds, env_indices].reshape(-1, 1), env),
        )
        tensors = tuple(map(self.to_torch, data))
        return MaskedReplayBufferSamples(
            *tensors,
            None,
            torch.as_tensor(self.next_action_masks[batch_inds, env_indices], device=self.device),
            torch.as_tensor(self.constraint_labels[batch_inds, env_indices], device=self.device),
            torch.as_tensor(self.holdout[batch_inds, env_indices], device=self.device),
        )
