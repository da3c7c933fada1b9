"""The episode's shape and hard rules, written once and batched over episodes.

An episode builds one composition in :data:`N_STEPS` = 5 actions. Action ``a`` in
``0..N_ACTIONS-1`` adds ``a % N_COUNTS`` atoms of element ``a // N_COUNTS`` (of
:data:`~oxide_env.chemistry.elements.ELEMENTS`, oxygen included); count 0 adds nothing and an
element already present just gets a larger count. ``step`` is the number of actions taken so
far (0..4 while the episode runs, 5 when it has ended).

Hard rules (the only rules every algorithm must follow):

* steps 0-3: any element, count 0-9;
* step 3 with no non-oxygen element present: count 0 and oxygen are masked (an episode cannot
  end with oxygen alone);
* step 4: oxygen with count 1-9 only.

So every finished composition holds oxygen and at least one other element. The observation is
the :data:`N_FEATURES` Magpie features followed by a one-hot of the step (:data:`OBS_DIM` =
150 entries; all zero at the end). This module is the one home of those numbers and rules:
the single env, the vector envs, generation and the policies all import them from here
(:mod:`oxide_env.core` plays the episodes).

Example:
    >>> import numpy as np
    >>> N_STEPS, N_ACTIONS, OBS_DIM
    (5, 800, 150)
    >>> decode_actions(np.array([0, 69, 799]))
    (array([ 0,  6, 79]), array([0, 9, 9]))
    >>> counts = np.zeros((2, 80), dtype=np.int64); counts[1, 0] = 3  # empty; three atoms of ELEMENTS[0]
    >>> hard_rule_masks(counts, np.array([3, 4])).sum(axis=1)
    array([711,   9])
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from oxide_env.chemistry.elements import MAX_COUNT, N_ELEMENTS, OXYGEN_INDEX
from oxide_env.chemistry.features import N_FEATURES

__all__ = [
    "ACTION_COUNT",
    "ACTION_ELEMENT",
    "N_ACTIONS",
    "N_COUNTS",
    "N_FEATURES",
    "N_FREE_STEPS",
    "N_STEPS",
    "OBS_DIM",
    "apply_actions",
    "check_step",
    "decode_actions",
    "encode_action",
    "hard_rule_mask",
    "hard_rule_mask_of",
    "hard_rule_masks",
    "random_episodes",
]

N_STEPS: int = 5
"""Actions per episode; ``step`` (actions taken so far) runs 0..4, 5 once the episode ended."""
N_FREE_STEPS: int = N_STEPS - 1
"""Steps at which any element may be added (the last one adds oxygen)."""
N_COUNTS: int = MAX_COUNT + 1
"""Counts 0..9 per action."""
N_ACTIONS: int = N_ELEMENTS * N_COUNTS
"""800 actions: ``a = N_COUNTS * element_index + count``."""
OBS_DIM: int = N_FEATURES + N_STEPS
"""150: the Magpie features, then the step one-hot."""
ACTION_ELEMENT = np.arange(N_ACTIONS) // N_COUNTS
"""Element index of every action (read-only)."""
ACTION_COUNT = np.arange(N_ACTIONS) % N_COUNTS
"""Count of every action (read-only)."""
ACTION_ELEMENT.flags.writeable = False
ACTION_COUNT.flags.writeable = False


def check_step(step: object) -> int:
    """``step`` as an int in ``0..N_STEPS-1``, else ``ValueError`` naming it."""
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
        raise ValueError(f"Invalid step={step!r}: expected an int in 0..{N_STEPS - 1}.")
    step = int(step)
    if not 0 <= step < N_STEPS:
        raise ValueError(f"Invalid step={step}: expected 0..{N_STEPS - 1} (actions taken so far; the episode ends "
                         f"after {N_STEPS}).")
    return step


def encode_action(element: int, count: int) -> int:
    """``(element_index, count) -> action``.

    Example:
        >>> encode_action(6, 2)
        62
    """
    if not (0 <= int(element) < N_ELEMENTS and 0 <= int(count) < N_COUNTS):
        raise ValueError(f"Invalid (element, count)=({element!r}, {count!r}): expected 0..{N_ELEMENTS - 1} and "
                         f"0..{N_COUNTS - 1}.")
    return int(element) * N_COUNTS + int(count)


def decode_actions(actions: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """``actions -> (element indices, counts)``, elementwise (works on a scalar too)."""
    actions = np.asarray(actions, dtype=np.int64)
    return actions // N_COUNTS, actions % N_COUNTS


def apply_actions(counts: np.ndarray, actions: np.ndarray, rows: np.ndarray | None = None) -> None:
    """Add each action's atoms to its row of ``counts`` (in place); ``rows`` selects the rows acted in."""
    rows = np.arange(len(counts)) if rows is None else np.asarray(rows)
    elements, amounts = decode_actions(actions)
    np.add.at(counts, (rows, elements), amounts)


@lru_cache(maxsize=None)
def hard_rule_mask_of(has_non_oxygen: bool, step: int) -> np.ndarray:
    """The hard-rule mask, which depends only on ``step`` and whether a non-oxygen element is present.

    Returns a cached, read-only ``bool (800,)`` array (copy it before changing it). At
    ``step == N_STEPS`` (ended) nothing is allowed.
    """
    if step == N_STEPS:
        mask = np.zeros(N_ACTIONS, dtype=bool)
    elif check_step(step) == N_FREE_STEPS:
        mask = (ACTION_ELEMENT == OXYGEN_INDEX) & (ACTION_COUNT > 0)
    elif step == N_FREE_STEPS - 1 and not has_non_oxygen:
        mask = (ACTION_ELEMENT != OXYGEN_INDEX) & (ACTION_COUNT > 0)
    else:
        mask = np.ones(N_ACTIONS, dtype=bool)
    mask.flags.writeable = False
    return mask


@lru_cache(maxsize=1)
def _mask_table() -> np.ndarray:
    """``table[has_non_oxygen, step]``: the hard-rule masks of every case, ``(2, N_STEPS + 1, 800)``."""
    table = np.stack([np.stack([hard_rule_mask_of(bool(h), s) for s in range(N_STEPS + 1)]) for h in (0, 1)])
    table.flags.writeable = False
    return table


def hard_rule_mask(counts: np.ndarray, step: int) -> np.ndarray:
    """The actions the hard rules allow in one state ``(counts (80,), step)``, checked, ``bool (800,)``.

    Example:
        >>> only_oxygen = np.zeros(80, dtype=int)
        >>> only_oxygen[OXYGEN_INDEX] = 4
        >>> int(hard_rule_mask(only_oxygen, 3).sum()), int(hard_rule_mask(only_oxygen, 4).sum())
        (711, 9)
    """
    from oxide_env.chemistry.composition import validate_counts

    step = check_step(step)
    arr = validate_counts(counts)
    if arr.shape != (N_ELEMENTS,):
        raise ValueError(f"Invalid counts with shape {arr.shape}: expected ({N_ELEMENTS},).")
    return hard_rule_masks(arr[None, :], step)[0]


def hard_rule_masks(counts: np.ndarray, steps: np.ndarray | int) -> np.ndarray:
    """Hard-rule masks of a batch of states, ``bool (n, 800)`` (a new array).

    Args:
        counts: the compositions so far, ``(n, 80)`` integer counts.
        steps: actions taken so far, one per row or one for all (``N_STEPS`` = ended: all False).
    """
    counts = np.asarray(counts)
    has_other = (counts.sum(axis=1) - counts[:, OXYGEN_INDEX]) > 0
    steps = np.asarray(steps, dtype=np.int64)
    if steps.size and (steps.min() < 0 or steps.max() > N_STEPS):
        bad = np.atleast_1d(steps)[np.atleast_1d((steps < 0) | (steps > N_STEPS))][0]
        raise ValueError(f"Invalid step={int(bad)}: expected 0..{N_STEPS}.")
    return _mask_table()[has_other.astype(np.intp), steps]


def random_episodes(n_episodes: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Play ``n_episodes`` episodes with uniformly random hard-rule-allowed actions.

    Returns the compositions after each step: ``N_STEPS`` arrays ``(n_episodes, 80)`` (the last
    one holds the finished compositions). Per step the episodes are drawn in two groups (no
    non-oxygen element yet, then the rest), each with one ``rng.choice`` over its allowed actions,
    so a seed always gives the same episodes.

    Example:
        >>> states = random_episodes(3, np.random.default_rng(0))
        >>> len(states), states[-1].shape, bool((states[-1][:, OXYGEN_INDEX] > 0).all())
        (5, (3, 80), True)
    """
    counts = np.zeros((n_episodes, N_ELEMENTS), dtype=np.int64)
    states = []
    for step in range(N_STEPS):
        has_other = (counts.sum(axis=1) - counts[:, OXYGEN_INDEX]) > 0
        actions = np.empty(n_episodes, dtype=np.int64)
        for flag in (False, True):
            rows = np.flatnonzero(has_other == flag)
            actions[rows] = rng.choice(np.flatnonzero(hard_rule_mask_of(flag, step)), size=len(rows))
        apply_actions(counts, actions)
        states.append(counts.copy())
    return states
