"""The batched episode core: ``n`` episodes of ``OxideComposition-v0`` played together.

Everything an episode does — observations, hard-rule masks, exact constraint masks, oracle
masks, applying actions, terminal rewards — is computed here, for arrays of ``n`` episodes at
once (``counts (n, 80)``, ``steps (n,)``). The single environment
(:class:`~oxide_env.env.OxideCompositionEnv`) is this core with ``n = 1``; the Gymnasium vector
env (:class:`~oxide_env.vector.OxideCompositionVectorEnv`), the Stable-Baselines3 ``VecEnv``
(:mod:`agents.vec_env`) and batched generation (:mod:`agents.generation`) use it with ``n``
episodes. There is no other episode loop.

The terminal rewards come from an injected reward model: any object with
``evaluate(counts (m, 80)) -> RewardBatch`` and ``worst_reward()`` (see
:class:`oxide_env.tasks.RewardModel`); it is called once per :meth:`EpisodeBatch.step` for all
episodes that finish in it.

Example:
    >>> import numpy as np
    >>> from oxide_env.tasks import RewardModel, make_task
    >>> model = RewardModel(make_task({"bulk_modulus": 1.0}), {"bulk_modulus": lambda c: c.sum(axis=1) * 1.0})
    >>> from oxide_env.chemistry.elements import ELEMENTS
    >>> from oxide_env.chemistry.episode import encode_action
    >>> batch = EpisodeBatch(3, model)
    >>> for symbol, count in (("Mg", 1), ("Al", 2), ("Mg", 0), ("Mg", 0), ("O", 3)):
    ...     result = batch.step(np.full(3, encode_action(ELEMENTS.index(symbol), count)))
    >>> batch.formulas()[0], result.rewards.tolist(), result.terminated.tolist()
    ('MgAl2O3', [6.0, 6.0, 6.0], [True, True, True])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from oxide_env.chemistry.checks import check_number, describe
from oxide_env.chemistry.completion import CONSTRAINTS, Constraint
from oxide_env.chemistry.composition import counts_to_formulas
from oxide_env.chemistry.elements import N_ELEMENTS, OXYGEN_INDEX
from oxide_env.chemistry.episode import (
    N_ACTIONS,
    N_COUNTS,
    N_FEATURES,
    N_STEPS,
    OBS_DIM,
    apply_actions,
    hard_rule_masks,
)
from oxide_env.chemistry.features import feature_bounds, featurize_counts
from oxide_env.normalization import normalize_features
from oxide_env.tasks import MAX_REWARD, RewardBatch

ExactMask = Constraint
EXACT_MASKS: tuple[str, ...] = CONSTRAINTS
"""The exact forward masks (:mod:`oxide_env.chemistry.completion`): SMACT 2014 charge neutrality or
electronegativity balance (the paper's checks), or the oxide rule
(:func:`oxide_env.chemistry.validity.oxide_rule`: icsd24 states pymatgen also counts as common,
oxygen -2, no negative metal)."""
Oracle = Callable[[np.ndarray, np.ndarray], np.ndarray]
_ALL_ACTIONS = np.arange(N_ACTIONS)
_LAST_ACTIONS = OXYGEN_INDEX * N_COUNTS + np.arange(1, N_COUNTS)  # the last step's choices: oxygen 1-9

__all__ = ["EXACT_MASKS", "EpisodeBatch", "StepResult", "exact_action_masks", "observation_space", "observations"]


def observations(counts: np.ndarray, steps: np.ndarray | int, normalize: bool = False) -> np.ndarray:
    """The observations of a batch of states, ``float32 (n, 150)``.

    The 145 Magpie features of the composition (zeros when empty; ``normalize``: standardised
    with the shipped statistics, :mod:`oxide_env.normalization`), then a one-hot of the step
    (all zero once the episode ended, ``step == 5``).

    Example:
        >>> from oxide_env.chemistry.composition import formulas_to_counts
        >>> obs = observations(formulas_to_counts(["MgO", "Al2O3"]), 5)
        >>> obs.shape, float(obs[:, 145:].sum())
        ((2, 150), 0.0)
    """
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[1] != N_ELEMENTS or counts.dtype.kind not in "iu":
        raise ValueError(f"Invalid counts: expected an integer array (n, {N_ELEMENTS}), got {counts.dtype} "
                         f"{counts.shape} (see oxide_env.chemistry.composition.formulas_to_counts).")
    n = counts.shape[0]
    obs = np.zeros((n, OBS_DIM), dtype=np.float32)
    if n:
        obs[:, :N_FEATURES] = featurize_counts(counts)  # empty rows give zeros; ~2 us per row, no memo needed
    if normalize:
        obs[:, :N_FEATURES] = normalize_features(obs[:, :N_FEATURES])
    steps = np.asarray(steps, dtype=np.int64)
    if steps.ndim == 0:
        if steps < N_STEPS:
            obs[:, N_FEATURES + int(steps)] = 1.0
    else:
        running = steps < N_STEPS
        obs[running, N_FEATURES + steps[running]] = 1.0
    return obs


def observation_space(normalize: bool = False) -> spaces.Box:
    """The ``Box((150,), float32)`` of one observation (bounds from the element tables)."""
    low, high = feature_bounds(max_elements=N_STEPS)
    if normalize:  # the same float32 map as the observations, so bounds hold exactly
        low, high = normalize_features(low), normalize_features(high)
    return spaces.Box(low=np.concatenate([low, np.zeros(N_STEPS)]).astype(np.float32),
                      high=np.concatenate([high, np.ones(N_STEPS)]).astype(np.float32), dtype=np.float32)


_ROW_HASH = np.random.default_rng(20261204).integers(1, 2**62, size=N_ELEMENTS, dtype=np.int64) | 1


def unique_rows(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first, inverse)`` of the distinct rows of an int64 matrix: ``counts[first]`` are the
    distinct rows and ``counts[first][inverse]`` equals ``counts``.

    The same result as ``np.unique(counts, axis=0, return_index=True, return_inverse=True)`` up to
    the order of the distinct rows, ~10x faster: rows are hashed to one int64 (a random linear
    map, wrapping) and the hashes deduplicated; a collision (checked, exact) falls back to
    ``np.unique(axis=0)``.

    Example:
        >>> first, inverse = unique_rows(np.array([[1, 0], [0, 1], [1, 0]]))
        >>> len(first), (np.array([[1, 0], [0, 1], [1, 0]])[first][inverse] == [[1, 0], [0, 1], [1, 0]]).all()
        (2, np.True_)
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape[1] == N_ELEMENTS:
        with np.errstate(over="ignore"):
            keys = counts @ _ROW_HASH
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        if (counts[first][inverse] == counts).all():
            return first, inverse
    _, first, inverse = np.unique(counts, axis=0, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def exact_action_masks(counts: np.ndarray, steps: np.ndarray | int, constraint: str) -> np.ndarray:
    """Exact constraint masks of a batch of running states, ``bool (n, 800)``.

    Action ``a`` of row ``i`` is allowed iff some legal completion of the episode after it
    passes ``constraint`` (:mod:`oxide_env.chemistry.completion`). Rows are grouped by step and
    each distinct state is decided once.
    """
    from oxide_env.chemistry import completion

    counts = np.asarray(counts, dtype=np.int64)
    steps = np.broadcast_to(np.asarray(steps, dtype=np.int64), (counts.shape[0],))
    out = np.ones((counts.shape[0], N_ACTIONS), dtype=bool)
    batched = getattr(completion, "completable_action_masks", None)
    for step in np.unique(steps):
        rows = np.flatnonzero(steps == step)
        first, inverse = unique_rows(counts[rows])
        states = counts[rows][first]
        if batched is not None:
            masks = batched(states, int(step), constraint)
        else:
            masks = np.stack([completion.completable_actions(s, int(step), constraint) for s in states])
        out[rows] = masks[inverse]
    return out


@dataclass
class StepResult:
    """What one :meth:`EpisodeBatch.step` did, per stepped episode (arrays over the stepped rows).

    Attributes:
        rows: indices of the stepped episodes.
        rewards: ``(m,)`` float64: 0 before the end, the task's reward at the end,
            ``invalid_action_reward`` for a hard-rule violation.
        terminated: ``(m,)`` bool: the episode ended (fifth action or a hard-rule violation).
        invalid: ``(m,)`` bool: the action broke a hard rule (the composition is unchanged).
        masked: ``(m,)`` bool: the action was outside the advice mask (exact masks / oracles).
        finished: indices into ``rows`` of the episodes that ended normally (``terminal`` is theirs).
        terminal: the reward model's :class:`~oxide_env.tasks.RewardBatch` of those episodes.
    """

    rows: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    invalid: np.ndarray
    masked: np.ndarray
    finished: np.ndarray
    terminal: RewardBatch | None


class EpisodeBatch:
    """State of ``n`` episodes, stepped together with one numpy pass and one reward batch.

    Attributes (arrays over the ``n`` episodes; read them, do not write them):
        counts: ``int64 (n, 80)`` compositions so far.
        steps: ``int64 (n,)`` actions taken (``N_STEPS`` once ended normally).
        done: ``bool (n,)`` the episode ended (normally or by a hard-rule violation).
        obs: ``float32 (n, 150)`` current observations.
        hard_masks: ``bool (n, 800)`` hard-rule masks (all True once done).
        masks: ``bool (n, 800)`` hard masks AND exact masks AND oracle masks, never all False (all
            True once done: nothing to choose).
        fallback: ``bool (n,)`` an exact or oracle mask would have left nothing and was dropped.

    Args:
        n: number of episodes.
        reward_model: the injected rewards (:class:`~oxide_env.tasks.RewardModel` or any object
            with ``evaluate`` and ``worst_reward``); ``None``: no rewards (0; for generation, which
            only needs the final compositions).
        exact_masks: ``None`` or one of :data:`EXACT_MASKS`.
        constraint_lookahead: at the last step (oxygen 1-9), allow only the oxygen counts whose
            final composition meets the reward model's design constraints
            (``reward_model.constraints_met(...)``, else ``reward_model.evaluate(...).flags[
            "constraints_satisfied"]``; e.g. the oxide rule, a predicted-property bound, the
            applicability domain). Exact: it asks the reward model itself about the <= 9
            completions of each state (one batched, memoised call that checks only the
            constraints). If no count meets them, the mask is left as it was and ``fallback`` is
            set. Needs a reward model with constraints.
        constraint_oracles: ``oracle(obs (150,), actions (800,)) -> p``; actions with ``p <
            oracle_threshold`` are masked.
        invalid_action_reward: reward of a hard-rule violation (default: ``worst_reward()``).
        normalize_observations: standardised features (:mod:`oxide_env.normalization`).
    """

    def __init__(self, n: int, reward_model: Any, *, exact_masks: ExactMask | None = None,
                 constraint_lookahead: bool = False, constraint_oracles: Oracle | Sequence[Oracle] | None = None,
                 oracle_threshold: float = 0.5,
                 invalid_action_reward: float | None = None, normalize_observations: bool = False) -> None:
        check_number(n, "n", integer=True, minimum=1)
        if exact_masks not in (None, *EXACT_MASKS):
            raise ValueError(f"Invalid exact_masks={describe(exact_masks)}; choose None or one of "
                             f"{', '.join(map(repr, EXACT_MASKS))}.")
        if constraint_oracles is None:
            oracles: tuple[Oracle, ...] = ()
        elif callable(constraint_oracles):
            oracles = (constraint_oracles,)
        elif isinstance(constraint_oracles, Sequence) and all(callable(o) for o in constraint_oracles):
            oracles = tuple(constraint_oracles)
        else:
            raise ValueError(f"Invalid constraint_oracles={describe(constraint_oracles)}: expected a callable "
                             "oracle(obs, actions) -> probabilities, or a list of them.")
        check_number(oracle_threshold, "oracle_threshold", minimum=0, maximum=1)
        if reward_model is not None and not (hasattr(reward_model, "evaluate") and hasattr(reward_model,
                                                                                           "worst_reward")):
            raise TypeError(f"Invalid reward_model={describe(reward_model)}: expected an object with evaluate(counts) "
                            "and worst_reward(), e.g. predictors.envs.reward_model('bulk_modulus').")
        if not isinstance(normalize_observations, (bool, np.bool_)):
            raise ValueError(f"Invalid normalize_observations={describe(normalize_observations)}: expected True or "
                             "False.")
        if not isinstance(constraint_lookahead, (bool, np.bool_)):
            raise ValueError(f"Invalid constraint_lookahead={describe(constraint_lookahead)}: expected True or False.")
        if constraint_lookahead and not getattr(reward_model, "constraints", None):
            raise ValueError("constraint_lookahead=True needs a reward model with design constraints, e.g. "
                             "predictors.envs.reward_model(task, constraints={'oxide_rule': True, "
                             "'formation_energy': ('<=', -0.5), 'in_domain': True}).")
        self.n = int(n)
        self.constraint_lookahead = bool(constraint_lookahead)
        self.reward_model = reward_model
        self.exact_masks = exact_masks
        self.oracles = oracles
        self.oracle_threshold = float(oracle_threshold)
        self.normalize_observations = bool(normalize_observations)
        if invalid_action_reward is None:
            invalid_action_reward = 0.0 if reward_model is None else reward_model.worst_reward()
        else:
            check_number(invalid_action_reward, "invalid_action_reward", minimum=-MAX_REWARD, maximum=MAX_REWARD)
        self.invalid_action_reward = float(invalid_action_reward)
        self.counts = np.zeros((self.n, N_ELEMENTS), dtype=np.int64)
        self.steps = np.zeros(self.n, dtype=np.int64)
        self.done = np.zeros(self.n, dtype=bool)
        self.obs = np.zeros((self.n, OBS_DIM), dtype=np.float32)
        self.hard_masks = np.ones((self.n, N_ACTIONS), dtype=bool)
        self.masks = np.ones((self.n, N_ACTIONS), dtype=bool)
        self.fallback = np.zeros(self.n, dtype=bool)
        self.reset()

    # ------------------------------------------------------------------ state
    def _rows(self, rows: np.ndarray | Sequence[int] | None) -> np.ndarray:
        if rows is None:
            return np.arange(self.n)
        rows = np.asarray(rows)
        return np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.intp).reshape(-1)

    def reset(self, rows: np.ndarray | Sequence[int] | None = None) -> None:
        """Start new episodes in ``rows`` (default: all): empty composition at step 0."""
        rows = self._rows(rows)
        if rows.size == 0:
            return
        self.counts[rows] = 0
        self.steps[rows] = 0
        self.done[rows] = False
        self._refresh(rows)

    def _refresh(self, rows: np.ndarray) -> None:
        """Observations and masks of ``rows`` from their counts and steps."""
        self.obs[rows] = observations(self.counts[rows], self.steps[rows], self.normalize_observations)
        running = rows[~self.done[rows]]
        ended = rows[self.done[rows]]
        self.hard_masks[ended] = True
        self.masks[ended] = True  # finished: nothing to choose, never all-false
        self.fallback[ended] = False
        if running.size:
            hard, mask, fallback = self._masks(running)
            self.hard_masks[running], self.masks[running], self.fallback[running] = hard, mask, fallback

    def _masks(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hard = hard_rule_masks(self.counts[rows], self.steps[rows])
        mask = hard.copy()
        fallback = np.zeros(len(rows), dtype=bool)
        if self.exact_masks is not None:
            exact = mask & exact_action_masks(self.counts[rows], self.steps[rows], self.exact_masks)
            ok = exact.any(axis=1)
            mask[ok] = exact[ok]
            fallback |= ~ok
        if self.constraint_lookahead:
            last = np.flatnonzero(self.steps[rows] == N_STEPS - 1)
            if last.size:
                meets = self.lookahead_masks(self.counts[rows[last]], mask[last])
                allowed = mask[last] & meets
                ok = allowed.any(axis=1)
                mask[last[ok]] = allowed[ok]
                fallback[last[~ok]] = True
        for oracle in self.oracles:
            for j, row in enumerate(rows):
                p = np.asarray(oracle(self.obs[row].copy(), _ALL_ACTIONS), dtype=np.float64).reshape(-1)
                if p.shape != (N_ACTIONS,):
                    raise ValueError(f"A constraint oracle returned shape {p.shape}; expected ({N_ACTIONS},).")
                allowed = mask[j] & (p >= self.oracle_threshold)
                if allowed.any():
                    mask[j] = allowed
                else:
                    fallback[j] = True
        return hard, mask, fallback

    def lookahead_masks(self, counts: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
        """``bool (m, 800)``: the last-step actions whose final design meets the reward model's constraints.

        ``counts`` are states before the last action; only oxygen 1-9 can be True. With ``allowed``
        (``bool (m, 800)``, the masks so far) only the completions it allows are checked, the others
        read False: the step ANDs the two, so the result is the same at a fraction of the checks
        (with exact oxide-rule masks ~2 of the 9 oxygen counts are still allowed).
        """
        m = len(counts)
        finals = np.repeat(np.asarray(counts, dtype=np.int64), len(_LAST_ACTIONS), axis=0)
        finals[:, OXYGEN_INDEX] += np.tile(np.arange(1, N_COUNTS), m)
        check = np.ones(len(finals), dtype=bool) if allowed is None else \
            np.asarray(allowed, dtype=bool)[:, _LAST_ACTIONS].reshape(-1)
        model = self.reward_model
        meets = np.zeros(len(finals), dtype=bool)
        if check.any():
            if hasattr(model, "constraints_met"):  # the flag alone, without rewards or other predictions
                meets[check] = np.asarray(model.constraints_met(finals[check]), dtype=bool)
            else:
                meets[check] = model.evaluate(finals[check]).flags["constraints_satisfied"]
        out = np.zeros((m, N_ACTIONS), dtype=bool)
        out[:, _LAST_ACTIONS] = meets.reshape(m, len(_LAST_ACTIONS))
        return out

    def formulas(self, rows: np.ndarray | Sequence[int] | None = None) -> list[str]:
        """The compositions of ``rows`` as formulas (amounts as built, e.g. ``Mg2O2``)."""
        return counts_to_formulas(self.counts[self._rows(rows)])

    # ------------------------------------------------------------------ step
    def step(self, actions: np.ndarray, rows: np.ndarray | Sequence[int] | None = None) -> StepResult:
        """Apply one action to each episode in ``rows`` (default: all), which must be running.

        Raises:
            ValueError: an action outside ``0..799`` or the wrong number of actions.
            RuntimeError: a row whose episode has ended (reset it first).
        """
        rows = self._rows(rows)
        actions = np.asarray(actions).reshape(-1)
        if actions.shape != rows.shape:
            raise ValueError(f"Invalid actions of shape {np.shape(actions)}: expected one per stepped episode "
                             f"({rows.size}).")
        if actions.size and (not np.issubdtype(actions.dtype, np.integer) or actions.min() < 0
                             or actions.max() >= N_ACTIONS):
            if not (np.issubdtype(actions.dtype, np.floating) and np.all(actions == np.round(actions))
                    and actions.min() >= 0 and actions.max() < N_ACTIONS):
                bad = actions[0] if not actions.size else actions[(actions < 0) | (actions >= N_ACTIONS)
                                                                  | (actions != np.round(actions))][:1]
                raise ValueError(f"Invalid action={describe(np.asarray(bad).tolist())}: expected integers in "
                                 f"[0, {N_ACTIONS}).")
        actions = actions.astype(np.int64)
        if self.done[rows].any():
            raise RuntimeError("step() called on a finished episode; reset it first.")
        invalid = ~self.hard_masks[rows, actions]
        masked = ~self.masks[rows, actions]
        valid = rows[~invalid]
        apply_actions(self.counts, actions[~invalid], valid)
        self.steps[valid] += 1
        terminated = invalid | (self.steps[rows] == N_STEPS)
        self.done[rows[terminated]] = True
        rewards = np.zeros(rows.size, dtype=np.float64)
        rewards[invalid] = self.invalid_action_reward
        finished = np.flatnonzero(~invalid & terminated)
        terminal = None
        if finished.size and self.reward_model is not None:
            terminal = self.reward_model.evaluate(self.counts[rows[finished]])
            rewards[finished] = terminal.rewards
        self._refresh(valid)
        # an invalid action ends the episode with its composition and observation unchanged
        ended = rows[invalid]
        self.hard_masks[ended] = True
        self.masks[ended] = True
        self.fallback[ended] = False
        return StepResult(rows=rows, rewards=rewards, terminated=terminated, invalid=invalid, masked=masked,
                          finished=finished, terminal=terminal)
