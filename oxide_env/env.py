"""The ``OxideComposition-v0`` Gymnasium environment."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from oxide_env.chemistry.checks import check_number
from oxide_env.chemistry.completion import completable_actions, hard_rule_mask_of
from oxide_env.chemistry.composition import counts_to_formula
from oxide_env.chemistry.elements import ELEMENTS, MAX_COUNT, N_ELEMENTS, OXYGEN_INDEX
from oxide_env.chemistry.features import N_FEATURES, feature_bounds, featurize_one
from oxide_env.normalization import normalize_features
from oxide_env.tasks import MAX_REWARD, RewardModel, Task, make_task

N_STEPS = 5
N_COUNTS = MAX_COUNT + 1
N_ACTIONS = N_ELEMENTS * N_COUNTS
OBS_DIM = N_FEATURES + N_STEPS
ExactMask = Literal["charge_neutral", "electronegativity_balanced"]
Oracle = Callable[[np.ndarray, np.ndarray], np.ndarray]
_ALL_ACTIONS = np.arange(N_ACTIONS)


class _StateCache:
    """Memoised (features, formula) of (partial) compositions; most states repeat across episodes."""

    def __init__(self, size: int = 200_000) -> None:
        self.size = size
        self.store: OrderedDict[bytes, tuple[np.ndarray, str]] = OrderedDict()

    def __call__(self, counts: np.ndarray) -> tuple[np.ndarray, str]:
        key = counts.tobytes()
        hit = self.store.get(key)
        if hit is None:
            hit = (featurize_one(counts).astype(np.float32), counts_to_formula(counts))
            self.store[key] = hit
            if len(self.store) > self.size:
                self.store.popitem(last=False)
        return hit


_STATES = _StateCache()


def observation(counts: np.ndarray, step: int) -> np.ndarray:
    """The 150-dim observation: 145 Magpie features then a one-hot of the step (all zeros at the end)."""
    obs = np.zeros(OBS_DIM, dtype=np.float32)
    obs[:N_FEATURES] = _STATES(counts)[0]
    if step < N_STEPS:
        obs[N_FEATURES + step] = 1.0
    return obs


def decode_action(action: int) -> tuple[int, int]:
    """``action -> (element_index, count)``: ``action = 10 * element_index + count``."""
    return divmod(int(action), N_COUNTS)


CELL_PIXELS = 12
_TABLE_ROWS, _TABLE_COLUMNS = 10, 18  # 7 periods, a gap (the step indicator), lanthanides, actinides


def _table_position(z: int) -> tuple[int, int]:
    """``(row, column)`` of element ``z`` on an 18-column periodic table, f-block in rows 8 and 9."""
    if z <= 2:
        return 0, 0 if z == 1 else 17
    for row, (start, end) in enumerate(((3, 10), (11, 18), (19, 36), (37, 54), (55, 86), (87, 118)), start=1):
        if start <= z <= end:
            k = z - start
            if end - start == 7:  # periods 2-3: groups 1-2, then 13-18
                return row, k if k < 2 else k + 10
            if end - start == 17:  # periods 4-5
                return row, k
            if 2 <= k <= 16:  # La-Lu, Ac-Lr
                return row + 3, k
            return row, k if k < 2 else k - 14
    raise ValueError(f"Invalid atomic number z={z!r}: expected 1-118.")


@lru_cache(maxsize=1)
def _element_cells() -> np.ndarray:
    from pymatgen.core import Element

    return np.array([_table_position(Element(symbol).Z) for symbol in ELEMENTS])


def render_rgb(counts: np.ndarray, step: int) -> np.ndarray:
    """The composition on a periodic table, ``uint8 (120, 216, 3)``: one 12-pixel cell per element.

    Cells of the 80 elements are light grey, elements present blue (oxygen red), darker for a
    larger count; the row between the main table and the f-block shows the step (a dark cell
    per step taken, of 5).

    Example:
        >>> from oxide_env.chemistry.composition import formula_to_counts
        >>> render_rgb(formula_to_counts("BaTiO3"), 5).shape
        (120, 216, 3)
    """
    image = np.full((_TABLE_ROWS * CELL_PIXELS, _TABLE_COLUMNS * CELL_PIXELS, 3), 255, dtype=np.uint8)
    counts = np.asarray(counts)
    top = max(int(counts.max()), 1)

    def paint(row: int, column: int, color) -> None:
        y, x = row * CELL_PIXELS, column * CELL_PIXELS
        image[y + 1 : y + CELL_PIXELS - 1, x + 1 : x + CELL_PIXELS - 1] = color

    light = {False: np.array([198, 219, 239]), True: np.array([252, 187, 161])}
    dark = {False: np.array([8, 48, 107]), True: np.array([153, 0, 13])}
    for index, (row, column) in enumerate(_element_cells()):
        if counts[index] > 0:
            t = counts[index] / top
            oxygen = index == OXYGEN_INDEX
            paint(row, column, ((1 - t) * light[oxygen] + t * dark[oxygen]).astype(np.uint8))
        else:
            paint(row, column, (225, 225, 225))
    for k in range(N_STEPS):
        paint(7, k, (60, 60, 60) if k < step else (240, 240, 240))
    return image


class OxideCompositionEnv(gym.Env):
    """Build an oxide composition element by element; the reward is a predicted property.

    ## Description
    The environment of "Deep Reinforcement Learning for Inverse Inorganic Materials Design"
    (Pan, Karpovich, Olivetti). An episode builds one composition in exactly five steps:
    four free additions (any of 80 elements, count 0-9) and a final addition of oxygen
    (count 1-9). The terminal reward is a property predicted from the composition.

    ## Action Space
    ``Discrete(800)``: ``action = 10 * element_index + count`` over
    :data:`oxide_env.ELEMENTS` (pinned order) and counts 0-9. Count 0 adds nothing; an
    element already present adds up (Fe2 then Fe3 gives Fe5).

    ## Observation Space
    ``Box((150,), float32)`` (bounds from the element tables): the 145 Magpie features of the current composition
    (zeros when empty; exactly matminer's, see :func:`oxide_env.featurize`), then a one-hot
    of the step (5 entries; all zero in the terminal observation). The integer composition
    is in ``info["composition"]``. The raw features range up to ~3,800 (melting points in K);
    with ``normalize_observations=True`` each is standardised, ``(x - mean) / std``, with fixed
    statistics shipped in the package (:mod:`oxide_env.normalization`), and the bounds are
    transformed the same way.

    ## Action masks
    ``action_masks()`` (the sb3-contrib contract) and ``info["action_mask"]`` give the allowed
    actions: the hard rules (steps 1-4 any element; at step 4, if nothing but oxygen has been
    added, count 0 and oxygen are masked so the episode cannot end with oxygen alone; step 5
    oxygen 1-9 only), AND the optional exact constraint masks (``exact_masks``: actions after
    which no completion can be charge neutral / electronegativity balanced are masked), AND
    the optional constraint oracles (``constraint_oracles``: ``oracle(obs, actions) -> p``,
    masked where ``p < oracle_threshold``). The mask is never all-false: if the oracles or the
    exact masks would leave nothing, the less restrictive mask is used and
    ``info["mask_fallback"]`` is True.

    Stepping an action outside the *hard-rule* mask (``check_env`` and algorithms without
    masking do this) ends the episode at once with ``terminated=True``, the reward
    ``invalid_action_reward`` and ``info["invalid_action"] = True``; the composition is left
    unchanged. Actions masked only by oracles or exact masks are advice: they are executed
    normally and flagged with ``info["masked_action"] = True``.

    ## Starting State
    The empty composition at step 0.

    ## Rewards
    0 before the end; at step 5 the task's reward of the final composition (paper Table 3,
    see :mod:`oxide_env.tasks`), computed by the shipped predictors. Optional shaping, off by
    default: ``invalid_penalty`` (per failed validity check) and ``uncertainty_penalty``
    (times the ensemble std of the task's properties).

    ## Episode End
    ``terminated=True`` after the fifth step (or an invalid action). There is no truncation.
    The final ``info`` adds ``charge_neutral``, ``electronegativity_balanced``,
    ``properties`` (all predicted properties) and ``property_std``.

    ## Arguments
    ``gym.make("OxideComposition-v0", task="bulk_modulus", lam=None, predictors=None,
    constraint_oracles=None, oracle_threshold=0.5, exact_masks=None, invalid_penalty=0.0,
    uncertainty_penalty=0.0, invalid_action_reward=None, normalize_observations=False, constraints=None,
    domain_models=None, render_mode=None)``

    * ``task``: a preset (``formation_energy``, ``bulk_modulus``, ``shear_modulus``,
      ``sintering_temperature``, ``sintering_bulk``), a ``{predictor: weight}`` dict, or a
      callable ``counts (n, 80) -> rewards (n,)``.
    * ``lam``: the bulk-modulus weight of ``sintering_bulk`` (paper: 62.5, 125, 250), in
      ``[0, 1e6]``; task weights are within ``±1e6`` (``oxide_env.tasks.MAX_WEIGHT``).
    * ``predictors``: ``{name: predictor or callable}`` replacing the shipped models.
      Predictors and a callable ``task`` are run once on a probe batch (MgO, Al2O3, BaTiO3)
      when the environment is built: each must return one finite value per composition and
      the rewards must be finite (``|r| <= 1e30``), or the constructor raises ``ValueError``
      (``TypeError`` for a predictor that is neither a ``Predictor`` nor callable).
    * ``exact_masks``: ``None``, ``"charge_neutral"`` or ``"electronegativity_balanced"``.
    * ``invalid_action_reward``: reward of a hard-rule violation (default: the task's reward at
      the worst end of each property's training range).
    * ``normalize_observations``: standardise the 145 features with the shipped statistics
      (mean and std over random episodes' states, ``oxide_env/data/feature_stats.json``); the
      step one-hot is unchanged. For models that need inputs of order 1 (raw values reach
      ~3,800); the same for every run, unlike ``VecNormalize``. Measured for MaskablePPO on
      ``bulk_modulus`` it does not raise the property (``benchmarks/results/normalization.md``).
    * ``constraints``: terminal design constraints, e.g. ``{"oxide_rule": True, "formation_energy":
      ("<=", -0.5), "in_domain": True}`` (see ``oxide_env.tasks.make_constraints``). They change
      the MDP only at the last step: a finished design that breaks any of them earns the task's
      worst reward (as a hard-rule violation) instead of its predicted reward, and the terminal
      ``info`` carries one bool per constraint (``oxide_rule``, ``formation_energy_le_-0.5``,
      ``in_domain``, ``novel``) and ``constraints_satisfied`` — labels any algorithm can learn from (the
      ``ConstrainedDQN`` oracles take them as ``constraints=``). ``in_domain=True`` means inside
      the applicability domain (``predictors.domain``) of ``formation_energy`` and of every
      predictor of the task; ``domain_models`` replaces the shipped domain models.
    * ``render_mode``: ``"ansi"`` (a line of text) or ``"rgb_array"`` (the composition on a
      periodic table, one cell per element, darker = larger count; SB3's ``make_vec_env``
      asks for it).

    ## Version History
    * v0: initial version, the paper's setting (``normalize_observations`` and the
      ``rgb_array`` render mode and ``constraints`` added later; all off by default, so v0 is unchanged).

    Example:
        >>> import gymnasium as gym, oxide_env
        >>> env = gym.make("OxideComposition-v0", task="bulk_modulus")
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape, int(info["action_mask"].sum())
        ((150,), 800)
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        task: str | Mapping[str, float] | Task | Callable[[np.ndarray], np.ndarray] = "bulk_modulus",
        *,
        lam: float | None = None,
        predictors: Mapping[str, Any] | None = None,
        constraint_oracles: Oracle | Sequence[Oracle] | None = None,
        oracle_threshold: float = 0.5,
        exact_masks: ExactMask | None = None,
        invalid_penalty: float = 0.0,
        uncertainty_penalty: float = 0.0,
        invalid_action_reward: float | None = None,
        normalize_observations: bool = False,
        constraints: Mapping[str, Any] | None = None,
        domain_models: Mapping[str, Any] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if exact_masks not in (None, "charge_neutral", "electronegativity_balanced"):
            raise ValueError(f"Invalid exact_masks={exact_masks!r}; choose None, 'charge_neutral' "
                             "or 'electronegativity_balanced'.")
        if constraint_oracles is None:
            oracles: tuple[Oracle, ...] = ()
        elif callable(constraint_oracles):
            oracles = (constraint_oracles,)
        elif isinstance(constraint_oracles, Sequence) and all(callable(o) for o in constraint_oracles):
            oracles = tuple(constraint_oracles)
        else:
            raise ValueError(f"Invalid constraint_oracles={constraint_oracles!r}: expected a callable "
                             "oracle(obs, actions) -> probabilities, or a list of them.")
        check_number(oracle_threshold, "oracle_threshold", minimum=0, maximum=1)
        self.task = make_task(task, lam=lam)
        self.rewarder = RewardModel(self.task, predictors, invalid_penalty=invalid_penalty,
                                    uncertainty_penalty=uncertainty_penalty, constraints=constraints,
                                    domain_models=domain_models)
        if invalid_action_reward is None:
            invalid_action_reward = self.rewarder.worst_reward()
        else:
            check_number(invalid_action_reward, "invalid_action_reward", minimum=-MAX_REWARD, maximum=MAX_REWARD)
        self.invalid_action_reward = float(invalid_action_reward)
        self.oracles = oracles
        self.oracle_threshold = float(oracle_threshold)
        self.exact_masks = exact_masks
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"Invalid render_mode={render_mode!r}; choose None, 'ansi' or 'rgb_array'.")
        self.render_mode = render_mode
        if not isinstance(normalize_observations, (bool, np.bool_)):
            raise ValueError(f"Invalid normalize_observations={normalize_observations!r}: expected True or False.")
        self.normalize_observations = bool(normalize_observations)
        self.action_space = spaces.Discrete(N_ACTIONS)
        low, high = feature_bounds(max_elements=N_STEPS)
        if self.normalize_observations:  # the same float32 map as the observations, so bounds hold exactly
            low, high = normalize_features(low), normalize_features(high)
        self.observation_space = spaces.Box(
            low=np.concatenate([low, np.zeros(N_STEPS)]).astype(np.float32),
            high=np.concatenate([high, np.ones(N_STEPS)]).astype(np.float32),
            dtype=np.float32,
        )
        self.counts = np.zeros(N_ELEMENTS, dtype=np.int64)
        self.step_index = 0
        self._obs = self._observe()
        self._hard_mask = hard_rule_mask_of(False, 0)
        self._mask = self._hard_mask.copy()
        self._mask_fallback = False
        self._last_action: int | None = None
        self._done = False

    def _observe(self) -> np.ndarray:
        obs = observation(self.counts, self.step_index)
        if self.normalize_observations:
            obs[:N_FEATURES] = normalize_features(obs[:N_FEATURES])
        return obs

    # ------------------------------------------------------------------ masks
    def _compute_masks(self) -> None:
        if self.step_index >= N_STEPS:
            self._hard_mask = np.zeros(N_ACTIONS, dtype=bool)
            self._mask = self._hard_mask.copy()
            self._mask_fallback = False
            return
        has_other = bool(self.counts.sum() > self.counts[OXYGEN_INDEX])
        mask = hard_rule_mask_of(has_other, self.step_index)
        self._hard_mask = mask
        fallback = False
        if self.exact_masks is not None:
            exact = mask & completable_actions(self.counts, self.step_index, self.exact_masks)
            if exact.any():
                mask = exact
            else:
                fallback = True
        for oracle in self.oracles:
            p = np.asarray(oracle(self._obs, _ALL_ACTIONS), dtype=np.float64).reshape(-1)
            if p.shape != (N_ACTIONS,):
                raise ValueError(f"A constraint oracle returned shape {p.shape}; expected (800,).")
            allowed = mask & (p >= self.oracle_threshold)
            if allowed.any():
                mask = allowed
            else:
                fallback = True
        self._mask = mask
        self._mask_fallback = fallback

    def action_masks(self) -> np.ndarray:
        """Allowed actions of the current state, ``bool (800,)`` (sb3-contrib's contract)."""
        return self._mask.copy()

    # ------------------------------------------------------------------ API
    def _info(self) -> dict[str, Any]:
        return {
            "composition": self.counts.copy(),
            "formula": _STATES(self.counts)[1],
            "step": self.step_index,
            "action_mask": self._mask.copy(),
            "mask_fallback": self._mask_fallback,
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.counts = np.zeros(N_ELEMENTS, dtype=np.int64)
        self.step_index = 0
        self._last_action = None
        self._done = False
        self._obs = self._observe()
        self._compute_masks()
        return self._obs.copy(), self._info()

    def step(self, action):
        if self._done:
            raise RuntimeError("step() called on a finished episode; call reset() first.")
        if not self.action_space.contains(action):
            raise ValueError(f"Invalid action={action!r}: expected an integer in [0, 800).")
        action = int(action)
        self._last_action = action
        if not self._hard_mask[action]:
            self._done = True
            self._mask = np.ones(N_ACTIONS, dtype=bool)  # finished: nothing to choose, never all-false
            info = self._info()
            info.update(invalid_action=True, masked_action=True)
            return self._obs.copy(), self.invalid_action_reward, True, False, info
        masked = not self._mask[action]
        element, count = decode_action(action)
        self.counts[element] += count
        self.step_index += 1
        terminated = self.step_index == N_STEPS
        self._obs = self._observe()
        reward = 0.0
        extra: dict[str, Any] = {"invalid_action": False, "masked_action": masked}
        if terminated:
            self._done = True
            value, props, stds, neutral, balanced, flags = self.rewarder.evaluate(self.counts[None])[0]
            reward = value
            extra.update(charge_neutral=neutral, electronegativity_balanced=balanced,
                         properties=props, property_std=stds, **flags)
            self._mask = np.ones(N_ACTIONS, dtype=bool)  # terminal: nothing to choose
            self._mask_fallback = False
        else:
            self._compute_masks()
        info = self._info()
        info.update(extra)
        return self._obs.copy(), float(reward), terminated, False, info

    def render(self) -> str | np.ndarray | None:
        """``"ansi"``: a line of text; ``"rgb_array"``: an image (see :func:`render_rgb`); else ``None``."""
        if self.render_mode == "rgb_array":
            return render_rgb(self.counts, self.step_index)
        if self.render_mode != "ansi":
            return None
        formula = counts_to_formula(self.counts) or "(empty)"
        last = ""
        if self._last_action is not None:
            element, count = decode_action(self._last_action)
            last = f" | last action: {ELEMENTS[element]} x{count}"
        return f"step {self.step_index}/{N_STEPS}: {formula}{last}"
