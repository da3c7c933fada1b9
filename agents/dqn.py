"""``ConstrainedDQN``: the paper's agent (Sections 2.1-2.3, Appendix A.3-A.4) as an SB3 ``DQN``.

What it changes in SB3's ``DQN`` (only hooks are overridden):

* ``_sample_action`` — warm-up, epsilon and policy in one place: before ``learning_starts`` a
  uniform action among the env's hard-rule mask (``action_masks()``), then :meth:`predict`.
* ``predict(obs, action_masks=..., deterministic=...)`` — the policy's rules
  (:meth:`ConstrainedDQNPolicy._predict <agents.policies.ConstrainedDQNPolicy._predict>`:
  mask AND ``C_j(s, a) >= oracle_threshold`` for every learned constraint oracle, falling
  back to the mask, and counting it, when the oracles would leave nothing; then greedy or
  uniform among the top ``top_n_pct`` % allowed actions by Q), plus epsilon exploration as
  SB3's ``DQN.predict`` has it: per row, with probability epsilon a uniform *allowed*
  action. All in torch on the policy's device, vectorized over environments.
* ``train`` — the Bellman target's max over next actions respects the next state's mask
  (stored by :class:`~agents.buffers.MaskedReplayBuffer`), terminal rows guarded; the oracles
  are trained alongside with binary cross-entropy on the final composition's constraint
  labels (c-hat), with accuracy and AUC on held-out transitions logged.
* ``_on_step`` — the paper's epsilon schedule: ``eps0 * decay ** iteration`` where an
  iteration is ``episodes_per_iteration`` episodes.

Paper defaults and how they map onto SB3 settings: an *iteration* = 100 episodes = 500
environment steps, realised as ``train_freq = (500 // n_envs, "step")`` (so 100 envs step 5
times) with ``gradient_steps`` updates of ``batch_size = 100`` samples; 500 iterations =
``total_timesteps = 250_000``; ``buffer_size = 50_000``; smooth L1 loss; Adam lr 0.01;
``gamma = 0.9``; target network refreshed once per iteration.
"""

from __future__ import annotations

import io
import math
import pickle
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from agents.buffers import DEFAULT_CONSTRAINTS, MaskedReplayBuffer
from agents.policies import ConstrainedDQNPolicy, ConstrainedMlpPolicy, check_policy_settings
from agents.sampling import distinct_rows, uniform_allowed
from oxide_env.chemistry.episode import N_STEPS

POLICY_SETTINGS = ("top_n_pct", "oracle_threshold", "merge_noops", "oracle_relative")
"""Arguments of :class:`ConstrainedDQN` that are settings of its policy (saved in ``policy_kwargs``)."""


def _policy_setting_property(name: str, doc: str) -> property:
    """A settable :class:`ConstrainedDQN` attribute that reads and writes its policy's setting ``name``."""
    return property(lambda self: self._policy_setting(name),
                    lambda self, value: self._set_policy_setting(name, value), doc=doc)


def _binary_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum formula (NaN if one class is absent)."""
    pos, neg = labels == 1, labels == 0
    if not pos.any() or not neg.any():
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    # average ranks of ties
    _, inv, counts = np.unique(scores, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    ranks = (sums / counts)[inv]
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * neg.sum()))


def _env_normalizes(env: Any) -> bool:
    """Whether ``env`` (an env, a wrapped env or a VecEnv) gives ``normalize_observations=True`` observations."""
    if isinstance(env, VecEnv):
        try:
            return bool(env.get_attr("normalize_observations")[0])
        except AttributeError:
            return False
    return bool(getattr(getattr(env, "unwrapped", env), "normalize_observations", False))


class ConstrainedDQN(DQN):
    """The paper's constrained DQN with learned constraint oracles and top-n% sampling.

    Args:
        policy: ``"PaperQPolicy"`` (default: the paper's Q-network and oracles,
            :class:`~agents.policies.ConstrainedDQNPolicy`), ``"MlpPolicy"`` (SB3 MLPs for the
            Q-network and oracles, any Discrete env: :class:`~agents.policies.ConstrainedMlpPolicy`)
            or a subclass of ``ConstrainedDQNPolicy``.
        env: the environment (``OxideComposition-v0`` or any Discrete env with ``action_masks()``;
            a VecEnv of many copies collects much faster).
        constraints: terminal-``info`` keys the oracles learn (empty: no oracles, the paper's
            DQN without constraints).
        top_n_pct: percentage of the best allowed actions to sample from (paper: 20). This,
            ``merge_noops`` and ``oracle_threshold`` are the policy's settings (``model.policy``),
            saved with it; ``model.top_n_pct`` etc. read and set them.
        merge_noops: rank the 80 count-0 ("add nothing") actions as one candidate, the best of
            them, in top-n% sampling and ε-exploration (:func:`agents.sampling.merge_noop_actions`;
            paper: False). Same reachable states and Q values; fewer collapsed generations.
        oracle_threshold: T, the oracles' acceptance threshold (paper: 0.5).
        oracle_relative: r in [0, 1]; in a state where no action reaches T, keep the actions at
            least r times as likely to succeed as the state's best instead of the whole mask (0:
            the whole mask, the paper's). For a rare constraint (e.g. the sintering domain, which
            few designs reach) the oracle stays below T everywhere; this still lets it steer.
        episodes_per_iteration: episodes per iteration (paper: 100).
        exploration_initial_eps, exploration_decay: epsilon = eps0 * decay ** iteration
            (paper: 0.99 and 0.99), never below ``exploration_final_eps``.
        oracle_batch_size, oracle_gradient_steps: oracle updates per training call.
        Other arguments are SB3 ``DQN``'s, with the paper's defaults.

    Example:
        >>> import gymnasium as gym, oxide_env
        >>> model = ConstrainedDQN(env=gym.make("OxideComposition-v0", task="bulk_modulus"), seed=0)
        >>> model.learn(total_timesteps=500).iteration  # 100 episodes of 5 steps
        1
        >>> mlp = ConstrainedDQN("MlpPolicy", gym.make("OxideComposition-v0", normalize_observations=True))
        >>> type(mlp.policy).__name__, mlp.policy.net_arch
        ('ConstrainedMlpPolicy', [64, 64])
    """

    policy_aliases: ClassVar[dict[str, type]] = {"MlpPolicy": ConstrainedMlpPolicy,
                                                 "PaperQPolicy": ConstrainedDQNPolicy}

    def __init__(
        self,
        policy: str | type[ConstrainedDQNPolicy] = "PaperQPolicy",
        env: GymEnv | str | None = None,
        learning_rate: float | Schedule = 0.01,
        buffer_size: int = 50_000,
        learning_starts: int = 500,
        batch_size: int = 100,
        tau: float = 1.0,
        gamma: float = 0.9,
        train_freq: int | tuple[int, str] | None = None,
        gradient_steps: int = 1,
        target_update_interval: int | None = None,
        exploration_initial_eps: float = 0.99,
        exploration_decay: float = 0.99,
        exploration_final_eps: float = 0.0,
        episodes_per_iteration: int = 100,
        top_n_pct: float = 20.0,
        merge_noops: bool = False,
        oracle_threshold: float = 0.5,
        oracle_relative: float = 0.0,
        constraints: tuple[str, ...] | list[str] = DEFAULT_CONSTRAINTS,
        oracle_batch_size: int = 256,
        oracle_gradient_steps: int = 1,
        max_grad_norm: float = 10.0,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: torch.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        if env is None and _init_setup_model:  # ``load`` builds the model without an env first
            raise ValueError("ConstrainedDQN needs an env, e.g. gym.make('OxideComposition-v0').")
        settings = dict(zip(POLICY_SETTINGS, check_policy_settings(top_n_pct, oracle_threshold, merge_noops,
                                                                   oracle_relative)))
        self.constraints = tuple(constraints)
        self.episodes_per_iteration = int(episodes_per_iteration)
        self.exploration_decay = float(exploration_decay)
        self.oracle_batch_size = int(oracle_batch_size)
        self.oracle_gradient_steps = int(oracle_gradient_steps)
        policy_kwargs = dict(policy_kwargs or {})
        policy_class = self.policy_aliases.get(policy, policy) if isinstance(policy, str) else policy
        if not (isinstance(policy_class, type) and issubclass(policy_class, ConstrainedDQNPolicy)):
            raise ValueError(f"Invalid policy={policy!r}: expected 'PaperQPolicy', 'MlpPolicy' or a subclass of "
                             "agents.policies.ConstrainedDQNPolicy (oracles and masked top-n% sampling live there).")
        policy_kwargs.setdefault("n_constraints", len(self.constraints))
        # the paper network standardises raw features itself; an env that already did must not be standardised twice
        normalized = env is not None and not isinstance(env, str) and _env_normalizes(env)
        if normalized and issubclass(policy_class, ConstrainedDQNPolicy):
            policy_kwargs.setdefault("normalized_observations", True)
        for name, value in settings.items():
            if policy_kwargs.setdefault(name, value) != value:
                raise ValueError(f"Invalid policy_kwargs[{name!r}]={policy_kwargs[name]!r}: pass {name}= to "
                                 f"ConstrainedDQN instead (it is {value!r} there).")
        replay_buffer_kwargs = dict(replay_buffer_kwargs or {})
        replay_buffer_kwargs.setdefault("constraints", self.constraints)
        n_envs = env.num_envs if isinstance(env, VecEnv) else 1
        steps_per_iteration = self.episodes_per_iteration * N_STEPS
        if train_freq is None:
            if steps_per_iteration % n_envs:
                raise ValueError(f"episodes_per_iteration * {N_STEPS} = {steps_per_iteration} must be divisible by "
                                 f"the number of envs ({n_envs}); pass train_freq explicitly otherwise.")
            train_freq = (steps_per_iteration // n_envs, "step")
        if target_update_interval is None:
            target_update_interval = steps_per_iteration
        super().__init__(
            policy, env, learning_rate=learning_rate, buffer_size=buffer_size, learning_starts=learning_starts,
            batch_size=batch_size, tau=tau, gamma=gamma, train_freq=train_freq, gradient_steps=gradient_steps,
            replay_buffer_class=MaskedReplayBuffer, replay_buffer_kwargs=replay_buffer_kwargs,
            target_update_interval=target_update_interval, exploration_initial_eps=exploration_initial_eps,
            exploration_final_eps=exploration_final_eps, max_grad_norm=max_grad_norm,
            tensorboard_log=tensorboard_log, policy_kwargs=policy_kwargs, verbose=verbose, seed=seed,
            device=device, _init_setup_model=False,
        )
        self.generation_settings: dict[str, Any] | None = self._env_generation_settings()
        if _init_setup_model:
            self._setup_model()

    # ----------------------------------------------------------------- set-up
    def _setup_model(self) -> None:
        for name in POLICY_SETTINGS:  # a file saved when these were the algorithm's attributes
            if name in self.__dict__:
                self.policy_kwargs.setdefault(name, self.__dict__.pop(name))
        for name in ("oracle_fallbacks", "oracle_decisions"):  # now counted by the policy
            self.__dict__.pop(name, None)
        super()._setup_model()
        if not isinstance(self.action_space, spaces.Discrete):
            raise ValueError(f"ConstrainedDQN needs a Discrete action space, got {self.action_space}.")
        self.exploration_rate = self.exploration_initial_eps  # ``load`` puts the saved rate back
        self._make_generator()

    def _make_generator(self) -> None:
        self._sampling_generator = torch.Generator(device=self.device)
        seed = self.seed if self.seed is not None else int(np.random.SeedSequence().entropy % (2**62))
        self._sampling_generator.manual_seed(int(seed))

    def set_random_seed(self, seed: int | None = None) -> None:
        super().set_random_seed(seed)
        if seed is not None and hasattr(self, "_sampling_generator"):
            self._sampling_generator.manual_seed(int(seed))

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_sampling_generator"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, variables = super()._get_torch_save_params()
        if getattr(self.policy, "oracle_optimizer", None) is None:  # no oracles (constraints=())
            return state_dicts, variables
        return [*state_dicts, "policy.oracle_optimizer"], variables

    def save(self, path: str | Path | io.BufferedIOBase, exclude: Iterable[str] | None = None,
             include: Iterable[str] | None = None) -> None:
        """Save to SB3's zip format plus ``oxide_rl.json`` (settings as plain JSON), atomically.

        The file loads back without unpickling anything (see :meth:`load`). ``.zip`` is added to
        a path without suffix, as SB3 does.
        """
        from agents.persistence import save_model

        if self.env is not None:
            self.generation_settings = self._env_generation_settings()
        save_model(self, path, super().save, exclude=exclude, include=include)

    @classmethod
    def _loadable_classes(cls) -> dict[str, type]:
        from stable_baselines3.dqn.policies import CnnPolicy, DQNPolicy, MlpPolicy, MultiInputPolicy

        from agents.persistence import _class_name

        # SB3's own policies stay loadable names, so that such a file is refused with a clear message
        classes = {ConstrainedDQNPolicy, MaskedReplayBuffer, DQNPolicy, MlpPolicy, CnnPolicy, MultiInputPolicy,
                   *cls.policy_aliases.values()}
        return {_class_name(c): c for c in classes}

    @classmethod
    def load(cls, path: str | Path | io.BufferedIOBase, env: GymEnv | None = None,  # type: ignore[override]
             device: torch.device | str = "auto", custom_objects: dict[str, Any] | None = None,
             print_system_info: bool = False, force_reset: bool = True, *, allow_pickle: bool = False,
             **kwargs: Any) -> ConstrainedDQN:
        """Load a model saved by :meth:`save`, never unpickling (unless ``allow_pickle=True``).

        Every setting SB3 stores as a pickled object is rebuilt from the file's plain JSON
        (``oxide_rl.json``) or from the model's own settings; weights are read with
        ``torch.load(weights_only=True)``.

        Args:
            path: the zip (``.zip`` may be left out) or a binary file object.
            env: the env to run on (its spaces are checked against the saved ones). Optional,
                as for SB3's ``DQN.load``: without one the spaces come from the file, and
                :meth:`generate` uses the exact-mask and normalization settings of the env the
                model was saved with (``generation_settings``).
            allow_pickle: also load files that need unpickling (plain SB3 or older files):
                only for files you trust, since unpickling runs code. Warns.
            Other arguments: as SB3's ``load``.

        Raises:
            ValueError: the file is missing or no zip, or it needs unpickling and ``allow_pickle`` is false.

        Example:
            >>> import gymnasium as gym, oxide_env, tempfile, os
            >>> model = ConstrainedDQN(env=gym.make("OxideComposition-v0"), seed=0)
            >>> path = os.path.join(tempfile.mkdtemp(), "agent.zip")
            >>> model.save(path)
            >>> loaded = ConstrainedDQN.load(path)  # no env needed
            >>> loaded.top_n_pct, loaded.generate(3, seed=0) == model.generate(3, seed=0)
            (20.0, True)
        """
        from agents.persistence import read_data_json, read_model_file, safe_custom_objects

        file, name = read_model_file(path)
        if allow_pickle:
            warnings.warn(f"Loading {name!r} with allow_pickle=True: unpickling runs any code the file holds; "
                          "do this only for files you trust, then save the model again.", UserWarning, stacklevel=2)
            objects = custom_objects
        else:
            objects = safe_custom_objects(file, name, cls._loadable_classes(), custom_objects)
        try:
            model = super().load(file, env=env, device=device, custom_objects=objects,
                                 print_system_info=print_system_info, force_reset=force_reset, **kwargs)
        except pickle.UnpicklingError as exc:  # torch.load(weights_only=True) met something other than tensors
            raise ValueError(f"Refusing to load {name!r}: its weights are not plain tensors ({str(exc)[:200]}).") \
                from None
        model.constraints = tuple(model.constraints)  # saved as a JSON list
        model._make_generator()
        # ``_setup_model`` reset epsilon to its initial value; the saved one is the one the next
        # action uses (it is recomputed only after that step), so an exactly resumed run needs it
        rate = read_data_json(file).get("exploration_rate")
        if isinstance(rate, float):
            model.exploration_rate = rate
        return model

    def learn(self, total_timesteps: int, callback: Any = None, log_interval: int | None = None,
              tb_log_name: str = "DQN", reset_num_timesteps: bool = True, progress_bar: bool = False):
        """SB3's ``DQN.learn``; ``log_interval`` (episodes between log dumps) defaults to one
        iteration (``episodes_per_iteration``) instead of SB3's 4.

        With 100 env copies finishing their episodes in the same step, SB3's default dumped the
        logger 25 times at the same timestep (tensorboard included): 4 % of a Table 1 run for
        25 copies of the same record.
        """
        if log_interval is None:
            log_interval = self.episodes_per_iteration
        return super().learn(total_timesteps=total_timesteps, callback=callback, log_interval=log_interval,
                             tb_log_name=tb_log_name, reset_num_timesteps=reset_num_timesteps,
                             progress_bar=progress_bar)

    # ----------------------------------------------------------------- acting
    @property
    def iteration(self) -> int:
        """Completed iterations (``episodes_per_iteration`` episodes each)."""
        return self._episode_num // self.episodes_per_iteration

    top_n_pct = _policy_setting_property("top_n_pct", "The policy's top-n% (``policy.top_n_pct``); settable.")
    oracle_threshold = _policy_setting_property(
        "oracle_threshold", "The policy's oracle threshold T (``policy.oracle_threshold``); settable.")
    oracle_relative = _policy_setting_property(
        "oracle_relative", "The policy's relative oracle fallback r (``policy.oracle_relative``); settable.")
    merge_noops = _policy_setting_property(
        "merge_noops", "Whether the policy ranks the count-0 actions as one (``policy.merge_noops``); settable.")

    def _policy_setting(self, name: str) -> Any:
        policy = self.__dict__.get("policy")
        if policy is not None:
            return getattr(policy, name)
        # a model saved before oracle_relative existed has no such key: 0, the behaviour it was trained with
        return self.policy_kwargs.get(name, 0.0) if name == "oracle_relative" else self.policy_kwargs[name]

    def _set_policy_setting(self, name: str, value: Any) -> None:
        current = {key: self._policy_setting(key) for key in POLICY_SETTINGS}
        current[name] = value
        checked = dict(zip(POLICY_SETTINGS, check_policy_settings(*current.values())))
        self.policy_kwargs[name] = checked[name]  # what save() writes and a rebuilt policy gets
        if self.__dict__.get("policy") is not None:
            setattr(self.policy, name, checked[name])

    @property
    def oracle_fallbacks(self) -> int:
        """States whose hard mask the oracles would have emptied (the policy's count)."""
        return int(getattr(self.policy, "oracle_fallbacks", 0))

    @property
    def oracle_decisions(self) -> int:
        """States the oracles filtered (the policy's count)."""
        return int(getattr(self.policy, "oracle_decisions", 0))

    def _env_masks(self, n: int) -> np.ndarray:
        """The training envs' masks ``(n, n_actions)``; ``ValueError`` if they have no ``action_masks()``."""
        batched = getattr(self.env, "action_masks", None)  # a native vector env's (n, n_actions) array in one copy
        if callable(batched):
            masks = np.asarray(batched(), dtype=bool)
            if masks.shape == (n, int(self.action_space.n)):
                return masks
        try:
            masks = self.env.env_method("action_masks")
        except AttributeError:
            raise ValueError(f"Invalid env {self.env!r}: ConstrainedDQN needs envs with action_masks() (the "
                             "sb3-contrib contract), e.g. OxideComposition-v0; add one that returns "
                             "np.ones(n_actions, bool) to allow every action.") from None
        return np.stack([np.asarray(m, dtype=bool) for m in masks])

    def _epsilon_actions(self, observation: np.ndarray, action_masks: np.ndarray | torch.Tensor | None, *,
                         deterministic: bool, epsilon: float, generator: torch.Generator,
                         rows: np.ndarray | torch.Tensor | None = None) -> np.ndarray:
        """The policy's actions, then per row with probability ``epsilon`` a uniform allowed action.

        One generator serves both, in this order: the policy's top-n% draw, the epsilon coins,
        the random actions (only if some coin came up).
        """
        obs = torch.as_tensor(np.asarray(observation), device=self.device, dtype=torch.float32)
        if obs.ndim == len(self.observation_space.shape):
            obs = obs[None]
        if rows is not None:
            rows = torch.as_tensor(np.asarray(rows), device=self.device, dtype=torch.long).reshape(-1)
        with torch.no_grad():
            scored = self.policy.scored_actions(obs, action_masks, rows)
            actions = self.policy.select_actions(scored, deterministic, generator=generator, rows=rows)
            if not deterministic and epsilon > 0:
                allowed = scored.allowed if rows is None else scored.allowed[rows]
                explore = torch.rand(len(actions), device=self.device, generator=generator) < epsilon
                if explore.any():
                    actions = torch.where(explore, uniform_allowed(allowed, generator=generator, where=explore), actions)
        return actions.cpu().numpy()

    def _sample_action(self, learning_starts: int, action_noise: Any = None, n_envs: int = 1):
        masks = self._env_masks(n_envs)
        if self.num_timesteps < learning_starts:
            hard = torch.as_tensor(masks, device=self.device)
            action = uniform_allowed(hard, generator=self._sampling_generator).cpu().numpy()
        else:
            action, _ = self.predict(self._last_obs, action_masks=masks, deterministic=False)
        return action, action

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = False, action_masks: np.ndarray | None = None):
        """Actions for observations: the policy's rules plus epsilon exploration.

        Args:
            observation: one observation or a batch.
            action_masks: the env's allowed actions (``env.action_masks()``), one row per observation.
            deterministic: greedy among allowed actions; otherwise per row with probability
                epsilon (the current exploration rate) a uniform allowed action, else top-n%
                sampling. Draws come from the model's own seeded generator.

        Returns:
            ``(actions, state)``, as SB3's ``predict``.

        Example:
            >>> import gymnasium as gym, oxide_env
            >>> env = gym.make("OxideComposition-v0")
            >>> model = ConstrainedDQN(env=env, seed=0)
            >>> obs, info = env.reset(seed=0)
            >>> action, _ = model.predict(obs, action_masks=info["action_mask"], deterministic=True)
            >>> bool(info["action_mask"][action])
            True
        """
        self.policy.set_training_mode(False)
        obs = np.asarray(observation)
        single = obs.ndim == len(self.observation_space.shape)
        rows = None
        if not single and len(obs) > 1 and action_masks is not None and not isinstance(action_masks, torch.Tensor):
            # score each distinct (state, mask) once: every episode's first state is the same one,
            # half of the second states repeat; the draws are those of the repeated rows
            masks = np.asarray(action_masks, dtype=bool)
            if masks.size == len(obs) * int(self.action_space.n):  # else the policy names the bad shape
                masks = masks.reshape(len(obs), -1)
                first, inverse = distinct_rows(obs, masks)
                if len(first) < len(obs):
                    obs, action_masks, rows = obs[first], masks[first], inverse
        actions = self._epsilon_actions(obs, action_masks, deterministic=deterministic,
                                        epsilon=0.0 if deterministic else self.exploration_rate,
                                        generator=self._sampling_generator, rows=rows)
        return (actions[0] if single else actions), state

    def _env_generation_settings(self) -> dict[str, Any] | None:
        """``exact_masks``, ``constraint_lookahead`` and ``normalize_observations`` of the (first) env,
        ``None`` without them."""
        if self.env is None:
            return None
        try:
            exact_masks = self.env.get_attr("exact_masks")[0]
            normalize = bool(self.env.get_attr("normalize_observations")[0])
        except AttributeError:
            return None
        try:
            lookahead = bool(self.env.get_attr("constraint_lookahead")[0])
        except AttributeError:
            lookahead = False
        return {"exact_masks": exact_masks if isinstance(exact_masks, str) else None,
                "constraint_lookahead": lookahead, "normalize_observations": normalize}

    def generate(self, n: int = 1000, seed: int | None = None, *, batch_size: int = 4096,
                 exact_masks: str | None = None, constraint_lookahead: bool | None = None, reward_model: Any = None,
                 normalize_observations: bool | None = None, distinct: bool = False,
                 progress: bool = False) -> list[str]:
        """Generate ``n`` formulas with the trained policy (top-n% sampling, oracles on, no epsilon).

        See :func:`agents.generation.generate_counts`. ``exact_masks``, ``constraint_lookahead``
        and ``normalize_observations`` default to the model's env's settings, or, for a model
        loaded without an env, to those of the env it was saved with (``generation_settings``;
        no exact masks, no lookahead and raw observations for files saved before they were
        recorded). The lookahead asks a reward model with design constraints: ``reward_model``,
        else the env's. ``distinct=True`` redraws duplicates so that the ``n`` reduced formulas
        are distinct.

        Raises:
            ValueError: ``constraint_lookahead`` without a reward model (a model loaded without an
                env: pass ``reward_model=predictors.envs.reward_model(task, constraints=...)``).

        Example:
            >>> import gymnasium as gym, oxide_env
            >>> model = ConstrainedDQN(env=gym.make("OxideComposition-v0", exact_masks="charge_neutral"), seed=0)
            >>> model.generation_settings
            {'exact_masks': 'charge_neutral', 'constraint_lookahead': False, 'normalize_observations': False}
            >>> len(model.generate(4, seed=0))
            4
        """
        from agents.generation import generate

        settings = self._env_generation_settings() or self.__dict__.get("generation_settings") or {}
        if exact_masks is None:
            exact_masks = settings.get("exact_masks")
        if constraint_lookahead is None:
            constraint_lookahead = bool(settings.get("constraint_lookahead", False))
        if normalize_observations is None:
            normalize_observations = bool(settings.get("normalize_observations", False))
        for name, value in (("normalize_observations", normalize_observations),
                            ("constraint_lookahead", constraint_lookahead)):
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"Invalid {name}={value!r}: expected True, False or None (the env's setting).")
        if constraint_lookahead and reward_model is None:
            if self.env is None:
                raise ValueError("This model generates with constraint_lookahead=True, which asks the reward model "
                                 "about the last step: pass reward_model=predictors.envs.reward_model(task, "
                                 "constraints=...) (the env's), or constraint_lookahead=False.")
            reward_model = self.env.get_attr("reward_model")[0]
        return generate(self, n, seed=seed, batch_size=batch_size, exact_masks=exact_masks,
                        constraint_lookahead=bool(constraint_lookahead), reward_model=reward_model,
                        distinct=distinct, progress=progress, normalize_observations=bool(normalize_observations))

    def _on_step(self) -> None:
        self._n_calls += 1
        if self._n_calls % max(self.target_update_interval // self.n_envs, 1) == 0:
            polyak_update(self.q_net.parameters(), self.q_net_target.parameters(), self.tau)
            polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)
        self.exploration_rate = max(self.exploration_final_eps,
                                    self.exploration_initial_eps * self.exploration_decay ** self.iteration)
        self.logger.record("rollout/exploration_rate", self.exploration_rate)
        self.logger.record("rollout/iteration", self.iteration)
        if self.oracle_decisions:
            self.logger.record("rollout/oracle_fallback_rate", self.oracle_fallbacks / self.oracle_decisions)

    # ----------------------------------------------------------------- learning
    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        losses = []
        for _ in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            with torch.no_grad():
                # a finished episode's next state adds nothing (1 - done = 0): nothing to score there
                allowed = data.next_action_masks & (data.dones == 0)
                if hasattr(self.q_net_target, "masked_forward"):  # the fused kernel scores allowed pairs only
                    next_q = self.q_net_target.masked_forward(data.next_observations, allowed)
                else:
                    next_q = self.q_net_target(data.next_observations).masked_fill(~allowed, float("-inf"))
                next_q = next_q.max(dim=1).values
                next_q = torch.where(torch.isfinite(next_q), next_q, torch.zeros_like(next_q)).reshape(-1, 1)
                target = data.rewards + (1 - data.dones) * self.gamma * next_q
            if hasattr(self.q_net, "q_of"):  # the paper's network scores just the taken actions
                current = self.q_net.q_of(data.observations, data.actions.long().reshape(-1)).reshape(-1, 1)
            else:
                current = torch.gather(self.q_net(data.observations), 1, data.actions.long())
            loss = F.smooth_l1_loss(current, target)
            losses.append(loss.item())
            self.policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.policy.q_net.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", float(np.mean(losses)))
        if self.constraints:
            self._train_oracles()

    def _train_oracles(self) -> None:
        losses, scores, labels = [], [], []
        for _ in range(self.oracle_gradient_steps):
            data = self.replay_buffer.sample(self.oracle_batch_size, env=self._vec_normalize_env)
            actions = data.actions.long().reshape(-1)
            known = data.constraint_labels >= 0  # (B, J)
            train_rows = ~data.holdout
            total = 0.0
            for j, oracle in enumerate(self.policy.oracles):
                logits = oracle.q_net.score(data.observations, actions) if hasattr(oracle.q_net, "score") \
                    else oracle(data.observations).gather(1, actions[:, None]).squeeze(1)
                use = known[:, j] & train_rows
                if use.any():
                    total = total + F.binary_cross_entropy_with_logits(
                        logits[use], data.constraint_labels[use, j].float())
                held = known[:, j] & data.holdout
                if held.any():
                    scores.append((j, logits[held].detach().cpu().numpy(),
                                   data.constraint_labels[held, j].cpu().numpy()))
            if isinstance(total, torch.Tensor):
                self.policy.oracle_optimizer.zero_grad()
                total.backward()
                self.policy.oracle_optimizer.step()
                losses.append(total.item())
        if losses:
            self.logger.record("train/oracle_loss", float(np.mean(losses)))
        for j, name in enumerate(self.constraints):
            rows = [(s, y) for jj, s, y in scores if jj == j]
            if rows:
                s = np.concatenate([r[0] for r in rows])
                y = np.concatenate([r[1] for r in rows])
                self.logger.record(f"oracle/{name}_accuracy", float(np.mean((s >= 0) == (y == 1))))
                auc = _binary_auc(s, y)
                if not math.isnan(auc):
                    self.logger.record(f"oracle/{name}_auc", auc)
        del labels
