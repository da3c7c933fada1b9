"""The paper's Q-network (Appendix A.3) and constraint oracles as SB3 policy pieces.

Inputs are four vectors: the 145 Magpie features and the step one-hot (the observation), and
the element one-hot (80) and count one-hot (10) of the action. Each goes through its own
fully connected layer to 64 units with LeakyReLU; the four are concatenated (256), passed
through a hidden layer (64, LeakyReLU) and a linear output.

All 800 actions are scored in one pass without building a ``(batch, 800, 256)`` tensor: the
hidden layer's weight is split into a state part (applied once per state) and an action part
(applied once per action, 800 x 64), and the two are broadcast-added before the LeakyReLU.

Features are standardized inside the network with *fixed* statistics: buffers set once from
the shipped statistics of :mod:`oxide_env.normalization` (the features of random episodes'
states) and saved with the weights, so no running statistics change the policy silently.

Action selection lives in :class:`ConstrainedDQNPolicy` (``_predict`` / ``predict`` take
``action_masks`` as sb3-contrib's maskable policies do): allowed actions are the mask AND
every oracle's ``C_j(s, a) >= oracle_threshold``, then greedy (deterministic) or uniform
among the top ``top_n_pct`` % by Q. ``"MlpPolicy"`` (:class:`ConstrainedMlpPolicy`) is the
same policy over SB3 MLPs, for any Discrete-action env.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from torch import nn

import agents.kernels as kernels
from agents.sampling import all_true, any_true, merge_noop_actions, top_n_sample
from oxide_env.chemistry.checks import check_number
from oxide_env.chemistry.elements import N_ELEMENTS
from oxide_env.chemistry.episode import N_ACTIONS, N_COUNTS, N_FEATURES, N_STEPS, OBS_DIM


def feature_statistics() -> tuple[np.ndarray, np.ndarray]:
    """Float32 ``(mean, std)`` of the 145 features the paper's network standardizes with.

    The shipped statistics of :func:`oxide_env.normalization.feature_statistics` (every
    non-empty state of 20,000 random episodes drawn among the hard-rule-allowed actions; std
    > 0), the same numbers as the env's ``normalize_observations=True``. Networks keep them as
    buffers in their weights, so a saved model keeps the statistics it was trained with.

    Example:
        >>> mean, std = feature_statistics()
        >>> mean.shape, mean.dtype, bool((std > 0).all())
        ((145,), dtype('float32'), True)
    """
    from oxide_env.normalization import feature_statistics as shipped

    mean, std = shipped()
    return mean.astype(np.float32), std.astype(np.float32)


def use_kernel(obs: torch.Tensor) -> bool:
    """Whether :mod:`agents.kernels` serves this call: inference (no gradients) on the CPU."""
    return kernels.AVAILABLE and obs.device.type == "cpu" and not torch.is_grad_enabled()


MIN_ROWS = 4
"""Fewest states :func:`fused_scores` passes through the input layers. MKL computes a batch of
1-3 rows by another path than a batch of 4 or more, which differs in the last bits; padded to 4
rows, a state's scores are the same bits whether it is scored alone (e.g. the one first state
of a batch of episodes, scored once) or among 100 others (on one thread; on two, MKL may
split a batch differently)."""


def state_parts(nets: list[PairNet], obs: torch.Tensor) -> torch.Tensor:
    """Every net's :meth:`PairNet.state_part`, side by side ``(batch, sum of hidden widths)``.

    Nets of the same shape and feature standardization share one pass through their input
    layers, stacked: each output column is its own dot product, so the values are the same
    bits as each net's own layers (tested), for half the torch calls.
    """
    first = nets[0]
    e = first.embed_dim
    if len(nets) == 1 or not all(type(net) is PairNet and net.embed_dim == e for net in nets) or not all(
            torch.equal(net.feature_mean, first.feature_mean) and torch.equal(net.feature_std, first.feature_std)
            for net in nets[1:]):
        return torch.cat([net.state_part(obs) for net in nets], dim=1)
    x = (obs[:, :N_FEATURES] - first.feature_mean) / first.feature_std
    f = first.act(nn.functional.linear(x, torch.cat([net.features.weight for net in nets]),
                                       torch.cat([net.features.bias for net in nets])))
    s = first.act(nn.functional.linear(obs[:, N_FEATURES : N_FEATURES + N_STEPS],
                                       torch.cat([net.step.weight for net in nets]),
                                       torch.cat([net.step.bias for net in nets])))
    parts = []
    for k, net in enumerate(nets):
        w = net.hidden.weight  # the same products and sums, in the same order, as state_part
        parts.append(f[:, k * e : (k + 1) * e] @ w[:, :e].T + s[:, k * e : (k + 1) * e] @ w[:, e : 2 * e].T
                     + net.hidden.bias)
    return torch.cat(parts, dim=1)


def fused_scores(nets: list[PairNet], obs: torch.Tensor, columns: torch.Tensor | None = None,
                 mask: torch.Tensor | None = None, cut: float | None = None
                 ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Scores ``(len(nets), batch, 800)`` of several :class:`PairNet` by the fused CPU kernel.

    Only the actions in ``columns`` are scored, and of those only the pairs ``mask`` (bool
    ``(batch, 800)``) allows; the others read -inf. No gradients. With ``cut``, also the
    scored pairs every net after the first scores ``>= cut``: ``(scores, passes)``.
    """
    cols = torch.arange(N_ACTIONS) if columns is None else columns.to("cpu", torch.long)
    obs = obs.float()
    n = obs.shape[0]
    if 0 < n < MIN_ROWS:  # see MIN_ROWS: padded, a state's scores do not depend on its batch
        obs = torch.cat([obs, obs[:1].expand(MIN_ROWS - n, -1)])
    with torch.no_grad():
        state = state_parts(nets, obs)[:n].numpy()
        action = torch.cat([net.action_part() for net in nets], dim=1).numpy()
        weight = torch.cat([net.out.weight for net in nets]).numpy()
        bias = torch.cat([net.out.bias for net in nets]).numpy()
    threads = torch.get_num_threads()
    rows = None if mask is None else mask.to("cpu", torch.bool).numpy()
    out = kernels.pair_scores(state, action, weight, bias, cols.numpy(), rows, dense=True, cut=cut)
    if torch.get_num_threads() != threads:
        # numba's OpenMP layer sets the process's OpenMP thread count, which torch shares: left at
        # numba's (all cores), every later torch op (e.g. MaskablePPO's) ran on 2 threads that
        # spin-wait on a busy machine (the Table 1 taste's PPO took 165 s instead of 14 s)
        torch.set_num_threads(threads)
    if cut is None:
        return torch.from_numpy(out)
    return torch.from_numpy(out[0]), torch.from_numpy(out[1])


class PairNet(nn.Module):
    """Scores every (state, action) pair with the paper's four-input architecture.

    Args:
        embed_dim: width of each input layer (paper: 64).
        hidden_dim: width of the hidden layer after the concatenation (paper: 64).

    Example:
        >>> net = PairNet()
        >>> net(torch.zeros(3, 150)).shape
        torch.Size([3, 800])
    """

    def __init__(self, embed_dim: int = 64, hidden_dim: int = 64, standardize: bool = True) -> None:
        super().__init__()
        self.features = nn.Linear(N_FEATURES, embed_dim)
        self.step = nn.Linear(N_STEPS, embed_dim)
        self.element = nn.Linear(N_ELEMENTS, embed_dim)
        self.count = nn.Linear(N_COUNTS, embed_dim)
        self.hidden = nn.Linear(4 * embed_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, 1)
        self.act = nn.LeakyReLU()
        self.embed_dim = embed_dim
        mean, std = feature_statistics()
        if not standardize:  # the env already standardised the features (normalize_observations=True)
            mean, std = np.zeros_like(mean), np.ones_like(std)
        self.register_buffer("feature_mean", torch.from_numpy(mean.copy()))
        self.register_buffer("feature_std", torch.from_numpy(std.copy()))
        actions = torch.arange(N_ACTIONS)
        self.register_buffer("element_onehot", nn.functional.one_hot(actions // N_COUNTS, N_ELEMENTS).float(),
                             persistent=False)
        self.register_buffer("count_onehot", nn.functional.one_hot(actions % N_COUNTS, N_COUNTS).float(),
                             persistent=False)

    def action_part(self) -> torch.Tensor:
        """Hidden-layer pre-activation contribution of every action, ``(800, hidden_dim)``.

        Without gradients it is remembered together with a copy of the weights it was computed
        from, and reused only while every one of them is still equal (a comparison of ~22k floats
        instead of two 800-row layers): acting calls it 3 times per step for each of the Q-network
        and the oracles, while the weights change once per training call. (A memo keyed on the
        parameters' version counters went stale when SB3's ``polyak_update`` copied weights
        through ``.data``, which does not bump them; comparing values cannot.)
        """
        if torch.is_grad_enabled():
            return self._action_part()
        weights = (self.element.weight, self.element.bias, self.count.weight, self.count.bias, self.hidden.weight)
        memo = self.__dict__.get("_action_memo")
        if memo is not None and memo[0][0].device == weights[0].device and all(
                torch.equal(a, b) for a, b in zip(memo[0], weights)):
            return memo[1]
        value = self._action_part()
        self.__dict__["_action_memo"] = (tuple(w.detach().clone() for w in weights), value)
        return value

    def _action_part(self) -> torch.Tensor:
        # Action a = element * 10 + count: the element term has 80 distinct rows and the count term
        # 10, so each is computed once and broadcast to the 800 actions (a one-hot input row picks
        # a weight column exactly: the same values as the 800-row layers, ~4x faster).
        e = self.embed_dim
        w = self.hidden.weight  # (hidden, 4e)
        el = self.act(self.element.weight.T + self.element.bias) @ w[:, 2 * e : 3 * e].T  # (80, hidden)
        ct = self.act(self.count.weight.T + self.count.bias) @ w[:, 3 * e :].T  # (10, hidden)
        return (el[:, None, :] + ct[None, :, :]).reshape(N_ACTIONS, -1)

    def state_part(self, obs: torch.Tensor) -> torch.Tensor:
        """Hidden-layer pre-activation contribution of each state (bias included), ``(batch, hidden)``."""
        e = self.embed_dim
        w = self.hidden.weight
        x = (obs[:, :N_FEATURES] - self.feature_mean) / self.feature_std
        f = self.act(self.features(x))
        s = self.act(self.step(obs[:, N_FEATURES : N_FEATURES + N_STEPS]))
        return f @ w[:, :e].T + s @ w[:, e : 2 * e].T + self.hidden.bias

    CHUNK = 64  # states per block: a (64, 800, 64) block stays in cache, ~4x faster than larger ones

    def forward(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``(batch, 800)``; with ``mask`` (bool, same shape) -inf where it forbids.

        Inference on the CPU runs the fused kernel (same values, ~5x faster), which with a mask
        computes only the allowed pairs.
        """
        if use_kernel(obs):
            return fused_scores([self], obs, mask=mask)[0]
        state = self.state_part(obs)
        action = self.action_part()[None, :, :]
        w = self.out.weight.T
        blocks = [
            (self.act(state[i : i + self.CHUNK, None, :] + action) @ w).squeeze(-1)  # (b, 800)
            for i in range(0, state.shape[0], self.CHUNK)
        ]
        scores = (torch.cat(blocks) if len(blocks) > 1 else blocks[0]) + self.out.bias
        return scores if mask is None else scores.masked_fill(~mask, float("-inf"))

    def score(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Scores of given actions only, ``(batch,)``: cheaper than ``forward`` for training."""
        e = self.embed_dim
        w = self.hidden.weight
        el = self.act(self.element(self.element_onehot[actions]))
        ct = self.act(self.count(self.count_onehot[actions]))
        pre = self.state_part(obs) + el @ w[:, 2 * e : 3 * e].T + ct @ w[:, 3 * e :].T
        return (self.act(pre) @ self.out.weight.T).squeeze(-1) + self.out.bias


class PaperQNetwork(QNetwork):
    """SB3 ``QNetwork`` whose Q-values come from a :class:`PairNet` (all 800 actions at once)."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Discrete,
                 features_extractor: BaseFeaturesExtractor, features_dim: int,
                 net_arch: list[int] | None = None, activation_fn: type[nn.Module] = nn.LeakyReLU,
                 normalize_images: bool = True, embed_dim: int = 64, hidden_dim: int = 64,
                 standardize: bool = True) -> None:
        BasePolicy.__init__(self, observation_space, action_space, features_extractor=features_extractor,
                            normalize_images=normalize_images)
        if int(action_space.n) != N_ACTIONS or features_dim != OBS_DIM:
            raise ValueError(
                f"PaperQNetwork needs OxideComposition's spaces (Discrete(800), Box(150,)); got "
                f"{action_space} and {features_dim} observation features. Use 'MlpPolicy' for other envs."
            )
        self.net_arch = net_arch or []
        self.activation_fn = activation_fn
        self.features_dim = features_dim
        self.embed_dim, self.hidden_dim, self.standardize = embed_dim, hidden_dim, bool(standardize)
        self.q_net = PairNet(embed_dim, hidden_dim, standardize=self.standardize)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q_net(self.extract_features(obs, self.features_extractor).float())

    def masked_forward(self, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Q-values ``(batch, 800)`` where ``mask`` (bool, same shape) allows, -inf elsewhere.

        The values equal ``forward``'s; on the CPU without gradients (the Bellman target) the
        fused kernel computes only the allowed pairs.
        """
        return self.q_net(self.extract_features(obs, self.features_extractor).float(), mask)

    def q_of(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q-values of the given actions only, ``(batch,)`` (training needs no other)."""
        return self.q_net.score(self.extract_features(obs, self.features_extractor).float(), actions)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(embed_dim=self.embed_dim, hidden_dim=self.hidden_dim, standardize=self.standardize)
        return data


class ScoredActions(NamedTuple):
    """What action selection needs for a batch of distinct states (:meth:`ConstrainedDQNPolicy.scored_actions`)."""

    q_values: torch.Tensor
    """Q-values, float ``(batch, n_actions)`` (-inf for actions no state of the batch may take)."""
    allowed: torch.Tensor
    """Allowed actions, bool ``(batch, n_actions)``: mask AND oracles (row-wise fallback to the mask)."""


def check_policy_settings(top_n_pct: object, oracle_threshold: object, merge_noops: object,
                          oracle_relative: object = 0.0) -> tuple[float, float, bool, float]:
    """The action-selection settings as ``(float, float, bool, float)``, or ``ValueError`` / ``TypeError`` naming the bad one.

    Example:
        >>> check_policy_settings(20, 0.5, False)
        (20.0, 0.5, False, 0.0)
        >>> check_policy_settings(150, 0.5, False)
        Traceback (most recent call last):
        ...
        ValueError: Invalid top_n_pct=150: expected a finite number >= 0 and <= 100.
    """
    top_n_pct = check_number(top_n_pct, "top_n_pct", minimum=0, maximum=100)
    oracle_threshold = check_number(oracle_threshold, "oracle_threshold", minimum=0, maximum=1)
    if not isinstance(merge_noops, (bool, np.bool_)):
        raise ValueError(f"Invalid merge_noops={merge_noops!r}: expected True or False.")
    oracle_relative = check_number(oracle_relative, "oracle_relative", minimum=0, maximum=1)
    return float(top_n_pct), float(oracle_threshold), bool(merge_noops), float(oracle_relative)


class ConstrainedDQNPolicy(DQNPolicy):
    """DQN policy with the paper's Q-network, one constraint oracle per constraint, and its action selection.

    Action selection (:meth:`_predict`, :meth:`predict`): allowed actions = ``action_masks``
    AND ``C_j(s, a) >= oracle_threshold`` for every oracle (a row the oracles would leave
    empty falls back to its mask, or with ``oracle_relative = r > 0`` to the masked actions
    whose predicted success ``min_j C_j`` is at least ``r`` times the row's best;
    :attr:`oracle_fallbacks` of :attr:`oracle_decisions` count it); with ``merge_noops`` the count-0 actions rank as one (the best of them,
    :func:`~agents.sampling.merge_noop_actions`); then ``deterministic`` is greedy among the
    allowed actions, else uniform among the top ``top_n_pct`` % of them by Q
    (:func:`~agents.sampling.top_n_sample`). Epsilon exploration is the algorithm's
    (:meth:`agents.dqn.ConstrainedDQN.predict`). ``ConstrainedDQN`` sets the three settings
    from its own arguments; they are saved with the policy.

    For spaces other than OxideComposition's (any Discrete-action env with ``action_masks()``),
    use ``paper_network=False`` or :class:`ConstrainedMlpPolicy` (``"MlpPolicy"``): the
    Q-network and oracles are SB3 MLPs over the observation (``net_arch``) with one output per action.

    Args:
        n_constraints: number of oracles (one per constraint, e.g. charge neutrality and
            electronegativity balance).
        paper_network: use the paper's architecture (OxideComposition spaces only).
        embed_dim, hidden_dim: widths of the paper's network.
        oracle_lr: Adam learning rate of the oracles.
        top_n_pct: sample among the top ``top_n_pct`` % allowed actions (paper: 20; 0 is greedy).
        oracle_threshold: T, the oracles' acceptance threshold (paper: 0.5).
        merge_noops: rank the count-0 ("add nothing") actions as one candidate.
        oracle_relative: r in [0, 1]: where no action reaches T (a rare constraint, whose
            oracle never predicts success above T), keep the actions at least r times as likely
            to succeed as the best one instead of the whole mask (0: the whole mask, the paper's).
        Other arguments: as SB3's ``DQNPolicy``.

    Example:
        >>> import gymnasium as gym, oxide_env
        >>> from stable_baselines3.common.utils import ConstantSchedule
        >>> env = gym.make("OxideComposition-v0")
        >>> policy = ConstrainedDQNPolicy(env.observation_space, env.action_space, ConstantSchedule(1e-3))
        >>> obs, info = env.reset(seed=0)
        >>> mask = np.zeros(800, dtype=bool); mask[[52, 417]] = True
        >>> action, _ = policy.predict(obs, action_masks=mask)
        >>> int(action) in (52, 417)
        True
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Discrete, lr_schedule: Schedule,
                 net_arch: list[int] | None = None, activation_fn: type[nn.Module] = nn.LeakyReLU,
                 features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
                 features_extractor_kwargs: dict[str, Any] | None = None, normalize_images: bool = True,
                 optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
                 optimizer_kwargs: dict[str, Any] | None = None, n_constraints: int = 2,
                 paper_network: bool = True, embed_dim: int = 64, hidden_dim: int = 64,
                 oracle_lr: float = 1e-3, top_n_pct: float = 20.0, oracle_threshold: float = 0.5,
                 merge_noops: bool = False, normalized_observations: bool = False,
                 oracle_relative: float = 0.0) -> None:
        self.n_constraints = n_constraints
        self.normalized_observations = bool(normalized_observations)
        self.paper_network = paper_network
        self.embed_dim, self.hidden_dim = embed_dim, hidden_dim
        self.oracle_lr = oracle_lr
        self.top_n_pct, self.oracle_threshold, self.merge_noops, self.oracle_relative = check_policy_settings(
            top_n_pct, oracle_threshold, merge_noops, oracle_relative)
        self.oracle_fallbacks = 0
        """Decisions in a state whose mask the oracles would have emptied (its mask was used instead)."""
        self.oracle_decisions = 0
        """Decisions the oracles filtered: one per output row (a state scored once for several rows counts each)."""
        super().__init__(observation_space, action_space, lr_schedule, net_arch=net_arch,
                         activation_fn=activation_fn, features_extractor_class=features_extractor_class,
                         features_extractor_kwargs=features_extractor_kwargs, normalize_images=normalize_images,
                         optimizer_class=optimizer_class, optimizer_kwargs=optimizer_kwargs)

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)
        self.oracles = nn.ModuleList([self.make_q_net() for _ in range(self.n_constraints)])
        self.oracle_optimizer = (torch.optim.Adam(self.oracles.parameters(), lr=self.oracle_lr)
                                 if self.n_constraints else None)

    def make_q_net(self) -> QNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        if self.paper_network:
            return PaperQNetwork(**net_args, embed_dim=self.embed_dim, hidden_dim=self.hidden_dim,
                                 standardize=not self.normalized_observations).to(self.device)
        return QNetwork(**net_args).to(self.device)

    def scores(self, obs: torch.Tensor, columns: torch.Tensor | None = None,
               mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Q-values ``(batch, n_actions)`` and oracle logits ``(n_constraints, batch, n_actions)``.

        For inference (no gradients) on the CPU with the paper's network, all networks are
        evaluated together by the fused kernel of :mod:`agents.kernels`, and only for the
        action indices in ``columns`` and the (state, action) pairs ``mask`` allows, when given
        (the others read -inf: never the best, never allowed). Otherwise each network runs in
        torch and ``columns`` and ``mask`` are ignored.
        """
        q, logits, _ = self._scores(obs, columns, mask)
        return q, logits

    def _scores(self, obs: torch.Tensor, columns: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                cut: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """:meth:`scores`, and with ``cut`` where the kernel serves, the scored pairs every oracle's
        logit passes (``logits >= cut`` in the same pass; else ``None``)."""
        nets = [self.q_net.q_net, *(o.q_net for o in self.oracles)]
        if not use_kernel(obs) or not all(isinstance(n, PairNet) for n in nets):
            logits = [o(obs) for o in self.oracles]
            return self.q_net(obs), (torch.stack(logits) if logits else obs.new_zeros(0, obs.shape[0], 1)), None
        if cut is None:
            full = fused_scores(nets, obs, columns, mask)
            return full[0], full[1:], None
        full, passes = fused_scores(nets, obs, columns, mask, cut)
        return full[0], full[1:], passes

    def oracle_probabilities(self, obs: torch.Tensor) -> torch.Tensor:
        """``C_j(s, a)`` for every oracle and action, ``(n_constraints, batch, n_actions)``."""
        if self.n_constraints == 0:
            return torch.ones(0, obs.shape[0], int(self.action_space.n), device=obs.device)
        return torch.stack([torch.sigmoid(o(obs)) for o in self.oracles])

    # ------------------------------------------------------------------ action selection
    def _masks_tensor(self, action_masks: torch.Tensor | np.ndarray | None, n: int) -> torch.Tensor:
        """``action_masks`` as bool ``(n, n_actions)`` on the policy's device (all allowed for ``None``)."""
        n_actions = int(self.action_space.n)
        if action_masks is None:
            return torch.ones(n, n_actions, dtype=torch.bool, device=self.device)
        masks = torch.as_tensor(action_masks if isinstance(action_masks, torch.Tensor)
                                else np.asarray(action_masks, dtype=bool), device=self.device)
        if masks.numel() != n * n_actions:
            raise ValueError(f"Invalid action_masks of shape {tuple(masks.shape)}: expected ({n}, {n_actions}), "
                             "one row of allowed actions per observation (env.action_masks()).")
        return masks.bool().reshape(n, n_actions)

    def scored_actions(self, observation: torch.Tensor,
                       action_masks: torch.Tensor | np.ndarray | None = None,
                       rows: torch.Tensor | None = None) -> ScoredActions:
        """Q-values and allowed actions of a batch of states (no gradients).

        Allowed = ``action_masks`` AND every oracle's ``C_j >= oracle_threshold`` (a row left
        empty falls back to its mask, counted in :attr:`oracle_fallbacks`), then with
        ``merge_noops`` one count-0 action per row. Only the actions some row's mask allows
        are scored, each only where its row's mask allows (the fused CPU kernel skips the
        others; a row whose mask allows nothing is scored on every action some row allows).

        Args:
            observation: float ``(batch, *obs_shape)`` on the policy's device (one row per distinct state).
            action_masks: bool ``(batch, n_actions)``; ``None``: every action allowed.
            rows: ``(m,)`` state index of each decision these scores serve (``None``: one per
                state); only :attr:`oracle_decisions` and :attr:`oracle_fallbacks` read it.
        """
        obs = observation if observation.ndim > len(self.observation_space.shape) else observation[None]
        masks = self._masks_tensor(action_masks, obs.shape[0])
        with torch.no_grad():
            union = any_true(masks, dim=0)
            nothing = ~any_true(masks, dim=1, keepdim=True)
            scored = masks | (nothing & union)  # an empty row: as before
            t = self.oracle_threshold  # sigmoid(x) >= t  <=>  x >= log(t / (1 - t))
            cut = -math.inf if t <= 0 else math.inf if t >= 1 else math.log(t) - math.log1p(-t)
            q, logits, passes = self._scores(obs, union.nonzero().squeeze(1), scored,
                                             cut if self.n_constraints else None)
            allowed = masks
            if self.n_constraints:
                if passes is None:
                    allowed = masks & all_true(logits >= cut, dim=0)
                else:  # the kernel compared the logits as it computed them (the scored pairs only)
                    allowed = passes & masks if nothing.any() else passes
                empty = ~any_true(allowed, dim=1)
                self.oracle_decisions += int(masks.shape[0] if rows is None else rows.shape[0])
                if empty.any():
                    self.oracle_fallbacks += int(empty.sum() if rows is None else empty[rows].sum())
                    if self.oracle_relative > 0:  # the likeliest to succeed, relative to the row's best
                        # in log space: sigmoid underflows for the confident "no" of a rare constraint
                        log_success = nn.functional.logsigmoid(logits[:, empty].min(dim=0).values)
                        log_success = log_success.masked_fill(~masks[empty], -math.inf)
                        best = log_success.max(dim=1, keepdim=True).values
                        allowed[empty] = masks[empty] & (log_success >= best + math.log(self.oracle_relative))
                    else:
                        allowed[empty] = masks[empty]
            if self.merge_noops:
                allowed = merge_noop_actions(q, allowed)
        return ScoredActions(q, allowed)

    def select_actions(self, scored: ScoredActions, deterministic: bool = False, *,
                       generator: torch.Generator | None = None, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Actions from :meth:`scored_actions`: greedy among the allowed ones, or top-n% sampling.

        Args:
            scored: Q-values and allowed actions of the distinct states.
            deterministic: greedy; otherwise uniform among the top ``top_n_pct`` % allowed actions.
            generator: torch generator on the policy's device (``None``: torch's default one).
            rows: ``(m,)`` state index of each output row (``None``: one action per state).
        """
        q, allowed = scored
        if deterministic:
            actions = q.masked_fill(~allowed, float("-inf")).argmax(dim=1)
            return actions if rows is None else actions[rows]
        return top_n_sample(q, allowed, self.top_n_pct, generator=generator, rows=rows)

    def _predict(self, observation: torch.Tensor, deterministic: bool = False,
                 action_masks: torch.Tensor | np.ndarray | None = None, *,
                 generator: torch.Generator | None = None, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Actions (long ``(batch,)``, or ``(m,)`` with ``rows``) under the policy's rules (no epsilon).

        Args:
            observation: float ``(batch, *obs_shape)`` on the policy's device.
            deterministic: greedy among the allowed actions; otherwise top-n% sampling.
            action_masks: allowed actions, bool ``(batch, n_actions)`` (``None``: all).
            generator: torch generator for the sampling (``None``: torch's default one).
            rows: with ``rows``, ``observation`` and ``action_masks`` hold *distinct* states
                only and output row ``i`` acts in state ``rows[i]``: each state is scored once
                (what makes generation fast). The draws equal those for the repeated states.
        """
        if rows is not None:
            rows = torch.as_tensor(rows, device=self.device, dtype=torch.long).reshape(-1)
        scored = self.scored_actions(observation, action_masks, rows)
        return self.select_actions(scored, deterministic, generator=generator, rows=rows)

    def predict(self, observation: np.ndarray, state: tuple[np.ndarray, ...] | None = None,
                episode_start: np.ndarray | None = None, deterministic: bool = False,
                action_masks: np.ndarray | None = None) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Actions for one observation or a batch, as sb3-contrib's maskable policies (numpy in, numpy out).

        Args:
            observation: one observation or a batch.
            state, episode_start: unused (no recurrent state); ``state`` is returned as given.
            deterministic: greedy among the allowed actions; otherwise top-n% sampling with
                torch's default generator (seed it with ``torch.manual_seed``).
            action_masks: allowed actions (``env.action_masks()``), one row per observation.

        Returns:
            ``(actions, state)``: an int action for one observation, else an array ``(batch,)``.
        """
        self.set_training_mode(False)
        obs_tensor, vectorized = self.obs_to_tensor(observation)
        with torch.no_grad():
            actions = self._predict(obs_tensor, deterministic=deterministic, action_masks=action_masks)
        actions = actions.cpu().numpy().reshape((-1, *self.action_space.shape))
        if not vectorized:
            actions = actions.squeeze(axis=0)
        return actions, state

    def set_training_mode(self, mode: bool) -> None:
        """The Q-network's and the oracles' mode (SB3's DQNPolicy sets the Q-network's only).

        SB3 calls this at every step, and ``nn.Module.train`` re-sets the flag of every submodule
        through ``nn.Module.__setattr__`` (~0.4 ms a call), so a network already in ``mode`` (its
        own flag; ``train`` sets the whole tree) is left as it is.
        """
        nets = [self.q_net, *getattr(self, "oracles", [])]
        if self.training == mode and all(net.training == mode for net in nets):
            return
        super().set_training_mode(mode)
        for oracle in nets[1:]:
            oracle.set_training_mode(mode)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(n_constraints=self.n_constraints, paper_network=self.paper_network,
                    embed_dim=self.embed_dim, hidden_dim=self.hidden_dim, oracle_lr=self.oracle_lr,
                    top_n_pct=self.top_n_pct, oracle_threshold=self.oracle_threshold, merge_noops=self.merge_noops,
                    oracle_relative=self.oracle_relative, normalized_observations=self.normalized_observations)
        return data


class ConstrainedMlpPolicy(ConstrainedDQNPolicy):
    """``ConstrainedDQN("MlpPolicy", env)``: SB3 MLPs for the Q-network and the oracles, any Discrete env.

    The Q-network is SB3's ``QNetwork`` over the flattened observation (``net_arch``, default
    ``[64, 64]``, ReLU, as SB3's DQN ``MlpPolicy``), and each of the ``n_constraints`` oracles
    is another such MLP with one logit per action. Action selection is
    :class:`ConstrainedDQNPolicy`'s. With OxideComposition's raw features (up to ~3,800) an
    MLP learns better from ``normalize_observations=True``.

    Example:
        >>> import gymnasium as gym, oxide_env
        >>> from stable_baselines3.common.utils import ConstantSchedule
        >>> env = gym.make("OxideComposition-v0")
        >>> policy = ConstrainedMlpPolicy(env.observation_space, env.action_space, ConstantSchedule(1e-3),
        ...                               n_constraints=1)
        >>> type(policy.q_net).__name__, len(policy.oracles), policy.net_arch
        ('QNetwork', 1, [64, 64])
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Discrete, lr_schedule: Schedule,
                 net_arch: list[int] | None = None, activation_fn: type[nn.Module] = nn.ReLU,
                 *args: Any, paper_network: bool = False, **kwargs: Any) -> None:
        if paper_network:
            raise ValueError("Invalid paper_network=True for ConstrainedMlpPolicy ('MlpPolicy'): use "
                             "'PaperQPolicy' for the paper's network.")
        super().__init__(observation_space, action_space, lr_schedule, net_arch, activation_fn, *args,
                         paper_network=False, **kwargs)
