"""The ``OxideComposition-v0`` Gymnasium environment."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from oxide_env.chemistry.composition import counts_to_formula
from oxide_env.chemistry.elements import ELEMENTS, OXYGEN_INDEX
from oxide_env.chemistry.episode import N_ACTIONS, N_COUNTS, N_STEPS, OBS_DIM, decode_actions
from oxide_env.core import EpisodeBatch, ExactMask, Oracle, observation_space

__all__ = ["N_ACTIONS", "N_COUNTS", "N_STEPS", "OBS_DIM", "OxideCompositionEnv", "render_rgb"]


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
    which no completion can be charge neutral / electronegativity balanced / pass the oxide rule
    are masked), AND the optional last-step lookahead (``constraint_lookahead``: at step 5, only
    the oxygen counts whose final design meets the design ``constraints``), AND
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
    constraint_oracles=None, oracle_threshold=0.5, exact_masks=None, constraint_lookahead=False,
    invalid_penalty=0.0,
    uncertainty_penalty=0.0, invalid_action_reward=None, normalize_observations=False, constraints=None,
    domain_models=None, reward_model=None, render_mode=None)``

    ``gym.make`` builds the reward model (the reward's arguments ``task`` ... ``domain_models`` below)
    from the shipped predictors (:func:`predictors.envs.make_env`); the class itself takes a ready
    one: ``OxideCompositionEnv(reward_model, exact_masks=..., ...)`` with any object that has
    ``evaluate(counts (n, 80)) -> RewardBatch`` and ``worst_reward()``
    (:class:`oxide_env.tasks.RewardModel`). ``gym.make_vec("OxideComposition-v0", num_envs=N, ...)``
    gives the native vector env (:class:`oxide_env.vector.OxideCompositionVectorEnv`).

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
    * ``exact_masks``: ``None``, ``"charge_neutral"``, ``"electronegativity_balanced"`` or
      ``"oxide_rule"``: an action is allowed iff some legal completion passes the rule.
    * ``constraint_lookahead``: with ``constraints``, the last step's mask allows only the oxygen
      counts whose finished design meets every constraint (the reward model is asked about the
      <= 9 completions; exact, memoised). What it does to the MDP: at step 5, the actions that
      would end with the worst reward are removed while another choice exists; when none
      meets the constraints the mask is unchanged and ``info["mask_fallback"]`` is True (the
      design then earns the worst reward). Steps 1-4 are unchanged, so an agent still has to
      learn to reach states with a good completion. Any algorithm that reads the masks
      (MaskablePPO, ``ConstrainedDQN``) uses it.
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
      predictor of the task; ``domain_models`` replaces the shipped domain models. With
      ``"shaping": s`` (> 0) a violating design earns less the further it misses instead of the flat
      worst reward (``worst - s * range * violation``; still below every valid design), a
      gradient towards narrow targets such as the sintering predictor's domain; ``"novel":
      "strict"`` then makes a known compound the worst-paid violation (else, breaking only
      ``novel``, it is the best-paid one).
    * ``render_mode``: ``"ansi"`` (a line of text) or ``"rgb_array"`` (the composition on a
      periodic table, one cell per element, darker = larger count; SB3's ``make_vec_env``
      asks for it).

    ## Version History
    * v0: initial version, the paper's setting (``normalize_observations`` and the
      ``rgb_array`` render mode, ``constraints``, the ``oxide_rule`` exact masks and
      ``constraint_lookahead`` added later; all off by default, so v0 is unchanged).

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
        reward_model: Any,
        *,
        constraint_oracles: Oracle | Sequence[Oracle] | None = None,
        oracle_threshold: float = 0.5,
        exact_masks: ExactMask | None = None,
        constraint_lookahead: bool = False,
        invalid_action_reward: float | None = None,
        normalize_observations: bool = False,
        render_mode: str | None = None,
    ) -> None:
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"Invalid render_mode={render_mode!r}; choose None, 'ansi' or 'rgb_array'.")
        self.render_mode = render_mode
        self._core = EpisodeBatch(1, reward_model, exact_masks=exact_masks, constraint_lookahead=constraint_lookahead,
                                  constraint_oracles=constraint_oracles,
                                  oracle_threshold=oracle_threshold, invalid_action_reward=invalid_action_reward,
                                  normalize_observations=normalize_observations)
        self.reward_model = reward_model
        self.task = getattr(reward_model, "task", None)
        self.exact_masks = exact_masks
        self.constraint_lookahead = self._core.constraint_lookahead
        self.normalize_observations = self._core.normalize_observations
        self.invalid_action_reward = self._core.invalid_action_reward
        self.action_space = spaces.Discrete(N_ACTIONS)
        self.observation_space = observation_space(self.normalize_observations)
        self._last_action: int | None = None

    # ------------------------------------------------------------------ state (views of the core's row 0)
    @property
    def counts(self) -> np.ndarray:
        """The composition so far, ``int64 (80,)``."""
        return self._core.counts[0]

    @property
    def step_index(self) -> int:
        """Actions taken in this episode (5 at its end)."""
        return int(self._core.steps[0])

    def action_masks(self) -> np.ndarray:
        """Allowed actions of the current state, ``bool (800,)`` (sb3-contrib's contract)."""
        return self._core.masks[0].copy()

    # ------------------------------------------------------------------ API
    def _info(self) -> dict[str, Any]:
        core = self._core
        return {
            "composition": core.counts[0].copy(),
            "formula": counts_to_formula(core.counts[0]),
            "step": int(core.steps[0]),
            "action_mask": core.masks[0].copy(),
            "mask_fallback": bool(core.fallback[0]),
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._core.reset()
        self._last_action = None
        return self._core.obs[0].copy(), self._info()

    def step(self, action):
        if self._core.done[0]:
            raise RuntimeError("step() called on a finished episode; call reset() first.")
        if not self.action_space.contains(action):
            raise ValueError(f"Invalid action={action!r}: expected an integer in [0, 800).")
        self._last_action = int(action)
        result = self._core.step(np.array([int(action)]))
        info = self._info()
        info.update(invalid_action=bool(result.invalid[0]), masked_action=bool(result.masked[0]))
        if result.terminal is not None:
            info.update(result.terminal.row(0))
        return self._core.obs[0].copy(), float(result.rewards[0]), bool(result.terminated[0]), False, info

    def render(self) -> str | np.ndarray | None:
        """``"ansi"``: a line of text; ``"rgb_array"``: an image (see :func:`render_rgb`); else ``None``."""
        if self.render_mode == "rgb_array":
            return render_rgb(self.counts, self.step_index)
        if self.render_mode != "ansi":
            return None
        formula = counts_to_formula(self.counts) or "(empty)"
        last = ""
        if self._last_action is not None:
            element, count = (int(x) for x in decode_actions(self._last_action))
            last = f" | last action: {ELEMENTS[element]} x{count}"
        return f"step {self.step_index}/{N_STEPS}: {formula}{last}"
