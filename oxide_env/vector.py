"""The native Gymnasium vector env of ``OxideComposition-v0``: all copies in one numpy pass.

``gym.make_vec("OxideComposition-v0", num_envs=N, ...)`` returns an
:class:`OxideCompositionVectorEnv` (through the registration's ``vector_entry_point``). Every
copy is a row of one :class:`~oxide_env.core.EpisodeBatch`: a vector step applies all actions,
computes all observations and masks at once and predicts the terminal rewards of every copy
that finishes in one batch (all copies share one reward model and its memo). The same seeds
and actions give exactly the trajectories of ``N`` single environments.

Autoreset (Gymnasium 1.x, ``metadata["autoreset_mode"]``):

* ``"next_step"`` (default, as ``SyncVectorEnv``): the step after a copy's episode ended resets
  that copy — its action is ignored, it returns the first observation with reward 0 and
  ``terminated = False``.
* ``"same_step"``: a copy that ends is reset within the same step; the returned observation is
  the new episode's first one, the last one is in ``info["final_obs"]`` and its terminal info
  in ``info["final_info"]``.

Infos follow Gymnasium's vector convention: arrays over copies, and for keys present only for
some copies a boolean ``info["_key"]``. Every step has ``action_mask`` ``(N, 800)``,
``composition`` ``(N, 80)``, ``step``, ``mask_fallback``, ``invalid_action`` and
``masked_action``; the copies that finish add ``formula``, ``charge_neutral``,
``electronegativity_balanced``, ``properties`` and ``property_std`` (dicts of arrays) and one
bool per design constraint.

Example:
    >>> import gymnasium as gym, numpy as np, oxide_env
    >>> envs = gym.make_vec("OxideComposition-v0", num_envs=8, task="bulk_modulus")
    >>> obs, info = envs.reset(seed=0)
    >>> rng = np.random.default_rng(0)
    >>> for _ in range(5):
    ...     masks = info["action_mask"]
    ...     actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
    ...     obs, rewards, terminated, truncated, info = envs.step(actions)
    >>> terminated.all(), info["formula"].shape, np.stack(envs.call("action_masks")).shape
    (np.True_, (8,), (8, 800))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from oxide_env.chemistry.checks import check_number, describe
from oxide_env.chemistry.episode import N_ACTIONS
from oxide_env.core import EpisodeBatch, ExactMask, Oracle, StepResult, observation_space

__all__ = ["OxideCompositionVectorEnv", "terminal_infos"]


def terminal_infos(result: StepResult, n: int, formulas: Sequence[str]) -> dict[str, Any]:
    """Gymnasium-style vector infos of the copies that finished in ``result`` (``n`` copies)."""
    out: dict[str, Any] = {}
    if result.terminal is None:
        return out
    rows = result.rows[result.finished]
    present = np.zeros(n, dtype=bool)
    present[rows] = True
    formula = np.full(n, None, dtype=object)
    formula[rows] = list(formulas)
    out["formula"], out["_formula"] = formula, present
    t = result.terminal
    for key, values in (("charge_neutral", t.charge_neutral), ("electronegativity_balanced",
                                                                t.electronegativity_balanced), *t.flags.items()):
        full = np.zeros(n, dtype=bool)
        full[rows] = values
        out[key], out["_" + key] = full, present
    for key, table in (("properties", t.properties), ("property_std", t.property_std)):
        nested: dict[str, np.ndarray] = {}
        for name, values in table.items():
            full = np.zeros(n, dtype=np.float64)
            full[rows] = values
            nested[name], nested["_" + name] = full, present
        out[key], out["_" + key] = nested, present
    return out


class OxideCompositionVectorEnv(VectorEnv):
    """``num_envs`` copies of ``OxideComposition-v0`` stepped together (see the module docstring).

    Args:
        num_envs: number of copies.
        reward_model: the injected rewards (``predictors.envs.reward_model(...)``; ``gym.make_vec``
            builds it from the reward's arguments).
        autoreset_mode: ``"next_step"`` (default) or ``"same_step"``.
        exact_masks, constraint_lookahead, constraint_oracles, oracle_threshold, invalid_action_reward,
        normalize_observations:
            as :class:`~oxide_env.env.OxideCompositionEnv`.
        render_mode: ``None`` only (render a single env to look at episodes).
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int, reward_model: Any, *, autoreset_mode: str | AutoresetMode = "next_step",
                 exact_masks: ExactMask | None = None, constraint_lookahead: bool = False,
                 constraint_oracles: Oracle | Sequence[Oracle] | None = None, oracle_threshold: float = 0.5,
                 invalid_action_reward: float | None = None, normalize_observations: bool = False,
                 render_mode: str | None = None) -> None:
        check_number(num_envs, "num_envs", integer=True, minimum=1)
        modes = {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP,
                 AutoresetMode.NEXT_STEP: AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP: AutoresetMode.SAME_STEP}
        mode = modes.get(autoreset_mode) if isinstance(autoreset_mode, (str, AutoresetMode)) else None
        if mode is None:
            raise ValueError(f"Invalid autoreset_mode={describe(autoreset_mode)}; choose 'next_step' or 'same_step' "
                             "(or gymnasium.vector.AutoresetMode.NEXT_STEP / SAME_STEP).")
        if render_mode is not None:
            raise ValueError(f"Invalid render_mode={describe(render_mode)}: the vector env does not render; make a "
                             "single env with gym.make('OxideComposition-v0', render_mode=...).")
        self.num_envs = int(num_envs)
        self.core = EpisodeBatch(self.num_envs, reward_model, exact_masks=exact_masks,
                                 constraint_lookahead=constraint_lookahead, constraint_oracles=constraint_oracles,
                                 oracle_threshold=oracle_threshold, invalid_action_reward=invalid_action_reward,
                                 normalize_observations=normalize_observations)
        self.reward_model = reward_model
        self.exact_masks = exact_masks
        self.constraint_lookahead = self.core.constraint_lookahead
        self.normalize_observations = self.core.normalize_observations
        self.metadata = {**self.metadata, "autoreset_mode": mode}
        self.render_mode = None
        self.single_action_space = spaces.Discrete(N_ACTIONS)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.single_observation_space = observation_space(self.normalize_observations)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)

    # ------------------------------------------------------------------ masks
    def action_masks(self) -> np.ndarray:
        """Allowed actions of every copy, ``bool (num_envs, 800)``."""
        return self.core.masks.copy()

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """One result per copy, as ``SyncVectorEnv.call``: ``call("action_masks")`` gives the masks.

        Other names are attributes shared by all copies (``exact_masks``, ``reward_model``, ...).
        """
        if name == "action_masks":
            return tuple(self.core.masks.copy())
        if name.startswith("_") or not hasattr(self, name):
            raise AttributeError(f"OxideCompositionVectorEnv has no attribute {name!r} to call.")
        value = getattr(self, name)
        value = value(*args, **kwargs) if callable(value) else value
        return tuple(value for _ in range(self.num_envs))

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """An attribute of every copy (all copies share their settings)."""
        if name.startswith("_") or not hasattr(self, name):
            raise AttributeError(f"OxideCompositionVectorEnv has no attribute {name!r}.")
        return tuple(getattr(self, name) for _ in range(self.num_envs))

    # ------------------------------------------------------------------ API
    def _infos(self, result: StepResult | None) -> dict[str, Any]:
        core = self.core
        info: dict[str, Any] = {"action_mask": core.masks.copy(), "composition": core.counts.copy(),
                                "step": core.steps.copy(), "mask_fallback": core.fallback.copy()}
        invalid = np.zeros(self.num_envs, dtype=bool)
        masked = np.zeros(self.num_envs, dtype=bool)
        if result is not None:
            invalid[result.rows], masked[result.rows] = result.invalid, result.masked
            rows = result.rows[result.finished]
            info.update(terminal_infos(result, self.num_envs, core.formulas(rows)))
        info["invalid_action"], info["masked_action"] = invalid, masked
        return info

    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None):
        """Start every copy's episode; ``seed`` seeds the vector env's generator (the env itself is deterministic)."""
        if isinstance(seed, Sequence):
            seed = seed[0] if seed else None
        super().reset(seed=seed)
        if seed is not None:
            self.action_space.seed(seed)
        self.core.reset()
        self._autoreset[:] = False
        return self.core.obs.copy(), self._infos(None)

    def step(self, actions: np.ndarray):
        actions = np.asarray(actions).reshape(-1)
        if actions.shape != (self.num_envs,):
            raise ValueError(f"Invalid actions of shape {np.shape(actions)}: expected ({self.num_envs},).")
        core = self.core
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=bool)
        if self.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP:
            restart = np.flatnonzero(self._autoreset)
            core.reset(restart)
            active = np.flatnonzero(~self._autoreset)
            result = core.step(actions[active], active) if active.size else None
            if result is not None:
                rewards[active], terminated[active] = result.rewards, result.terminated
            info = self._infos(result)
            self._autoreset = terminated.copy()
            return core.obs.copy(), rewards, terminated, np.zeros(self.num_envs, dtype=bool), info
        result = core.step(actions)
        rewards[:], terminated[:] = result.rewards, result.terminated
        ended = np.flatnonzero(terminated)
        info = self._infos(result)
        if ended.size:
            final_obs = np.full(self.num_envs, None, dtype=object)
            final_info = {k: v for k, v in info.items()}
            for i in ended:
                final_obs[i] = core.obs[i].copy()
            core.reset(ended)
            info = self._infos(None) | {k: v for k, v in final_info.items()
                                        if k not in ("action_mask", "composition", "step", "mask_fallback")}
            info["final_obs"], info["_final_obs"] = final_obs, terminated.copy()
            info["final_info"], info["_final_info"] = final_info, terminated.copy()
        return core.obs.copy(), rewards, terminated, np.zeros(self.num_envs, dtype=bool), info
