"""Hard-rule action masks and exact forward constraint masks for the 5-step episode.

The episode builds a composition from nothing in exactly 5 steps. Action ``a`` in
``0..799`` adds ``a % 10`` atoms of element ``a // 10`` (count 0 adds nothing; an element
already present just gets a larger count). Steps 1-4 (``step`` = 0..3 actions taken so
far) accept any element, oxygen included, with count 0-9; step 5 (``step`` = 4) accepts
only oxygen with count 1-9. To make ending with oxygen alone impossible, at ``step == 3``
with no non-oxygen element present yet, count-0 and oxygen actions are masked. So a
finished composition is ``(4 free additions) + k * O`` with ``k`` in 1..9 and always has
oxygen and at least one other element.

:func:`completable_actions` marks the actions after which *some* legal completion ends in
a composition that passes a validity constraint, with the constraint exactly as
:mod:`oxide_env.chemistry.validity` (i.e. SMACT's ``smact_validity``, 2014 oxidation
states) defines it:

* ``"charge_neutral"``: one oxidation state per element, total charge 0;
* ``"electronegativity_balanced"``: the same with every cation (state > 0) strictly less
  electronegative (Pauling) than every anion (state < 0).

Masking with it never cuts off a valid composition and never lets an episode end invalid:
a rollout that only takes allowed actions always ends valid, and every state reached that
way has at least one allowed action.

How it is decided (exactly, not by sampling):

* **Steps 0 and 1.** Every state reachable in two actions (257,401 of them) can still be
  completed, for both constraints: checked by computation, with a completion for each
  found by these masks and verified by the validity functions (the slow test
  ``test_every_step2_state_is_completable``). So at steps 0 and 1 every action is allowed
  and :func:`is_completable` is True up to step 2. The check holds for the tables it was
  run with: a fingerprint of the oxidation states and electronegativities guards it, and
  steps 0-1 raise ``RuntimeError`` if the installed smact ever gives different ones.
* **Steps 2, 3, 4** (at most one free addition left after the action, then the oxygen).
  The final composition is the present elements (counts fixed, or one of them raised by
  the remaining free addition), at most one new element ``f`` (the remaining addition),
  and oxygen with a count in a known window. For the electronegativity test the present
  elements and oxygen get a sign pattern (cation / anion each; only patterns with max
  cation EN < min anion EN survive), which restricts their states and fixes the EN
  bounds any element added later must respect (strictly: equal EN fails). Per pattern,
  the totals the present elements can reach are a bitset (Python int, shift-or sumsets);
  action ``(e, m)`` is completable iff ``-m * s_e`` (minus ``d * s_f`` of the future
  element, or with ``e`` raised to ``m + d``) hits it for some allowed ``s_e``, ``s_f``.
  All 80 elements x 9 counts are answered at once by gathering those bits into small
  (state x count) tables and combining them with each element's states by matrix
  products; the costlier second-new-element option is only evaluated for the actions the
  other options leave undecided.
* **Element identity and supply.** An element takes one oxidation state, so adding to an
  element already present reuses its state in the pattern (never a fresh one). A *new*
  element is none of the present ones (nor oxygen, present in every final composition),
  so the future element's state ``s`` is available only if some element outside the
  present set -- and other than the action's own element -- carries ``s`` on the right
  side of the EN bounds (widened by the action's element); this is read off the two best
  carriers (by EN) of each state.

Oddities of SMACT's 2014 set that matter here: oxygen has states -2, -1, +1 and +2, so
``BaO2`` counts as neutral (O-1) and oxygen can be the cation next to fluorine (``OF2`` is
electronegativity balanced); no element has state 0; a single element counts as valid,
so a (not legally reachable) oxygen-only state at step 4 gets all of O1-O9.

Results are memoised on the exact state (counts, step, constraint).

Example:
    >>> import numpy as np
    >>> from oxide_env.chemistry.completion import completable_actions, hard_rule_mask
    >>> from oxide_env.chemistry.composition import formula_to_counts
    >>> empty = np.zeros(80, dtype=np.int64)
    >>> int(completable_actions(empty, 0, "charge_neutral").sum())
    800
    >>> lu = formula_to_counts("Lu18")  # two steps of Lu9: +54 to balance with 1 step + O
    >>> mask = completable_actions(lu, 2, "charge_neutral")
    >>> bool(mask[10 * 63 + 9]), bool(mask[10 * 6 + 9])  # Lu9 more: no; O9: yes (Lu18 O27)
    (False, True)
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from oxide_env.chemistry.composition import validate_counts
from oxide_env.chemistry.elements import ELEMENTS, MAX_COUNT, N_ELEMENTS, OXYGEN_INDEX
from oxide_env.chemistry.validity import OXIDATION_STATES, PAULING_ELECTRONEGATIVITY

__all__ = [
    "CONSTRAINTS",
    "N_ACTIONS",
    "N_STEPS",
    "clear_cache",
    "completable_actions",
    "hard_rule_mask",
    "is_completable",
]

Constraint = Literal["charge_neutral", "electronegativity_balanced"]
CONSTRAINTS: tuple[str, ...] = ("charge_neutral", "electronegativity_balanced")
N_COUNTS = MAX_COUNT + 1
N_ACTIONS: int = N_ELEMENTS * N_COUNTS
"""800 actions: ``a = 10 * element_index + count``."""
N_STEPS: int = 5
"""Actions per episode; ``step`` (actions taken so far) runs 0..4."""
_FREE_STEPS = N_STEPS - 1
_CACHE_SIZE = 1 << 15
_PROVEN_STEP = 2
"""Every state reachable after this many actions is completable (checked exhaustively)."""
_PROOF_FINGERPRINT = "7b0d210d8b493f35825dc5c824afd07f94734261c4c19c1170f11035ea22d18c"
"""sha256 of the element order, oxidation states, electronegativities and MAX_COUNT for
which that check was run (tests/test_completion.py, the slow test
``test_every_step2_state_is_completable``)."""
_TABLES_FINGERPRINT = hashlib.sha256(
    repr((ELEMENTS, OXIDATION_STATES, PAULING_ELECTRONEGATIVITY, MAX_COUNT)).encode()
).hexdigest()

_ACTION_ELEMENT = np.arange(N_ACTIONS) // N_COUNTS
_ACTION_COUNT = np.arange(N_ACTIONS) % N_COUNTS
_M = np.arange(1, N_COUNTS)  # counts 1..9


# ------------------------------------------------------------------------------ hard rules
def _check_step(step: int) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise ValueError(f"Invalid step={step!r}: expected an int in 0..{N_STEPS - 1}.")
    step = int(step)
    if not 0 <= step < N_STEPS:
        raise ValueError(
            f"Invalid step={step}: expected 0..{N_STEPS - 1} (actions taken so far; the "
            f"episode ends after {N_STEPS})."
        )
    return step


def _check_counts(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = validate_counts(counts)
    if arr.shape != (N_ELEMENTS,):
        raise ValueError(f"Invalid counts with shape {arr.shape}: expected ({N_ELEMENTS},).")
    return arr


@functools.lru_cache(maxsize=None)
def hard_rule_mask_of(has_non_oxygen: bool, step: int) -> np.ndarray:
    """The hard-rule mask, which depends only on ``step`` and whether a non-oxygen element is present.

    Returns a cached, read-only array (copy it before changing it); :func:`hard_rule_mask` is
    the checked, per-composition form.
    """
    step = _check_step(step)
    if step == _FREE_STEPS:
        mask = (_ACTION_ELEMENT == OXYGEN_INDEX) & (_ACTION_COUNT > 0)
    elif step == _FREE_STEPS - 1 and not has_non_oxygen:
        mask = (_ACTION_ELEMENT != OXYGEN_INDEX) & (_ACTION_COUNT > 0)
    else:
        mask = np.ones(N_ACTIONS, dtype=bool)
    mask.flags.writeable = False
    return mask


def hard_rule_mask(counts: Sequence[int] | np.ndarray, step: int) -> np.ndarray:
    """The actions the episode's hard rules allow in state ``(counts, step)``.

    Steps 0-3: every action, except that at step 3 with no non-oxygen element present,
    count-0 and oxygen actions are masked (an episode cannot end with oxygen alone).
    Step 4: oxygen with count 1-9 only.

    Args:
        counts: the composition so far, integer counts of shape ``(80,)``.
        step: the number of actions taken so far, 0..4.

    Returns:
        ``np.ndarray`` of dtype bool and shape ``(800,)``.

    Raises:
        ValueError: for a step outside 0..4 or malformed counts.

    Example:
        >>> import numpy as np
        >>> only_oxygen = np.zeros(80, dtype=int)
        >>> only_oxygen[6] = 4
        >>> int(hard_rule_mask(only_oxygen, 3).sum()), int(hard_rule_mask(only_oxygen, 4).sum())
        (711, 9)
    """
    step = _check_step(step)
    arr = _check_counts(counts)
    has_non_oxygen = bool(arr.sum() - arr[OXYGEN_INDEX] > 0)
    return hard_rule_mask_of(has_non_oxygen, step).copy()


# ------------------------------------------------------------------------- static tables
def _state_values() -> np.ndarray:
    """The distinct oxidation states of all elements, sorted."""
    for i, st in enumerate(OXIDATION_STATES):
        if 0 in st:
            raise RuntimeError(
                f"Element index {i} has oxidation state 0; oxide_env.chemistry.completion "
                "assumes none has (true for SMACT's 2014 set)."
            )
    return np.array(sorted({s for st in OXIDATION_STATES for s in st}), dtype=np.int64)


_SV = _state_values()
_J = len(_SV)
_SV_POS = _SV > 0
_SV_NEG = _SV < 0
_SMAX = int(np.abs(_SV).max()) if _J else 1
_SV_INDEX = {int(v): j for j, v in enumerate(_SV)}

# Offsets of the bits to read, relative to "minus the action's own charge", for counts
# m = 1..9 (axis m) of an element in state _SV[j], a future element in state _SV[k] with
# count d = 1..9 (axis d). Value v is read at array index v + B.
_IDX_N = -(_M[None, :] * _SV[:, None])  # (J, 9): -m s_j
_IDX_2A = -((_M[None, :, None] + _M[None, None, :]) * _SV[:, None, None])  # (J, 9, 9)
_IDX_F = -(_M[None, None, :, None] * _SV[None, :, None, None]) - (
    _M[None, None, None, :] * _SV[:, None, None, None]
)  # (K=J, J, 9, 9): -m s_j - d s_k


class _Tables:
    """Per-constraint element data: allowed states, EN, carriers of each state."""

    def __init__(self, en: bool) -> None:
        self.en = en
        states = []
        x = np.full(N_ELEMENTS, np.nan)
        for i in range(N_ELEMENTS):
            st = OXIDATION_STATES[i]
            xi = PAULING_ELECTRONEGATIVITY[i]
            if xi is not None:
                x[i] = xi
            elif en:
                st = ()  # SMACT's Pauling test fails on a missing electronegativity
            states.append(tuple(st))
        self.states: tuple[tuple[int, ...], ...] = tuple(states)
        self.pos = tuple(tuple(s for s in st if s > 0) for st in states)
        self.neg = tuple(tuple(s for s in st if s < 0) for st in states)
        self.x = x
        self.xl = [float(v) for v in x]
        has = np.zeros((N_ELEMENTS, _J), dtype=bool)
        for i, st in enumerate(states):
            for s in st:
                has[i, _SV_INDEX[s]] = True
        self.has = has
        self.has_pos = has & _SV_POS[None, :]
        self.has_neg = has & _SV_NEG[None, :]
        self.has32 = has.astype(np.float32)
        self.has_pos32 = self.has_pos.astype(np.float32)
        self.has_neg32 = self.has_neg.astype(np.float32)
        # Carriers of each state (never oxygen: it is present in every final composition),
        # best first: lowest EN for cation states, highest EN for anion states.
        carriers = []
        for j, s in enumerate(_SV.tolist()):
            elems = [i for i in range(N_ELEMENTS) if i != OXYGEN_INDEX and s in states[i]]
            if en:
                elems.sort(key=lambda i: x[i] if s > 0 else -x[i])
            carriers.append(tuple(elems))
        self.carriers = tuple(carriers)

    @functools.lru_cache(maxsize=4096)  # noqa: B019 (two module-level instances)
    def patterns(self, present: tuple[int, ...]) -> tuple[tuple, ...]:
        """Sign patterns of the present non-oxygen elements plus oxygen.

        Each pattern: (states per present element, oxygen's states, cmax, amin), where
        cmax / amin are the largest cation / smallest anion EN of the pattern. Charge
        neutrality has one pattern with all states and unbounded EN.
        """
        if not self.en:
            return (
                (
                    tuple(self.states[e] for e in present),
                    self.states[OXYGEN_INDEX],
                    -math.inf,
                    math.inf,
                ),
            )
        options = []
        for e in (*present, OXYGEN_INDEX):
            opt = []
            if self.pos[e]:
                opt.append((self.pos[e], self.xl[e], True))
            if self.neg[e]:
                opt.append((self.neg[e], self.xl[e], False))
            if not opt:
                return ()
            options.append(opt)
        out = []
        for combo in itertools.product(*options):
            cmax = max((x for _, x, cat in combo if cat), default=-math.inf)
            amin = min((x for _, x, cat in combo if not cat), default=math.inf)
            if cmax < amin:
                out.append((tuple(st for st, _, _ in combo[:-1]), combo[-1][0], cmax, amin))
        return tuple(out)

    @functools.lru_cache(maxsize=4096)  # noqa: B019
    def first_carriers(self, present: tuple[int, ...]) -> tuple[np.ndarray, ...]:
        """Per state: the best carrier outside ``present`` and the EN of the best two.

        Returns arrays of shape (J,): f1 (element, -1 if none), v1 and v2 (EN of the best
        two; for charge neutrality 0.0), with +inf (cation states) / -inf (anion states)
        where there is no such carrier.
        """
        excluded = set(present)
        f1 = np.full(_J, -1, dtype=np.int64)
        v1 = np.where(_SV_POS, math.inf, -math.inf)
        v2 = v1.copy()
        for j, elems in enumerate(self.carriers):
            found = [i for i in elems[: len(excluded) + 2] if i not in excluded][:2]
            if found:
                f1[j] = found[0]
                v1[j] = self.x[found[0]] if self.en else 0.0
            if len(found) > 1:
                v2[j] = self.x[found[1]] if self.en else 0.0
        return f1, v1, v2


_TABLES = {"charge_neutral": _Tables(en=False), "electronegativity_balanced": _Tables(en=True)}


# --------------------------------------------------------------------------- bitset sets
# A set of integers is (bits, lo): value v is in it iff bit v - lo of bits is set.
_EMPTY = (0, 0)


def _values(values) -> tuple[int, int]:
    values = list(values)
    if not values:
        return _EMPTY
    lo = min(values)
    bits = 0
    for v in values:
        bits |= 1 << (v - lo)
    return bits, lo


def _add_scaled(a: tuple[int, int], n: int, states: tuple[int, ...]) -> tuple[int, int]:
    """a + {n * s for s in states} (states sorted ascending)."""
    bits, lo = a
    if not bits or not states:
        return _EMPTY
    s0 = states[0]
    out = 0
    for s in states:
        out |= bits << (n * (s - s0))
    return out, lo + n * s0


def _sumset(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    if not a[0] or not b[0]:
        return _EMPTY
    if a[0].bit_count() < b[0].bit_count():
        a, b = b, a
    bits, small = a[0], b[0]
    out = 0
    while small:
        low = small & -small
        out |= bits << (low.bit_length() - 1)
        small ^= low
    return out, a[1] + b[1]


def _union(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    if not a[0]:
        return b
    if not b[0]:
        return a
    lo = min(a[1], b[1])
    return (a[0] << (a[1] - lo)) | (b[0] << (b[1] - lo)), lo


@functools.lru_cache(maxsize=4096)
def _window(n1: int, n2: int, states: tuple[int, ...]) -> tuple[int, int]:
    """{n * s : n1 <= n <= n2, s in states}."""
    return _values(n * s for s in states for n in range(n1, n2 + 1))


def _present_sum(items, states, skip: int = -1) -> tuple[int, int]:
    """Totals of sum(count * state) over the present elements (one state each)."""
    t = (1, 0)
    for idx, (_, n) in enumerate(items):
        if idx != skip:
            t = _add_scaled(t, n, states[idx])
    return t


# ------------------------------------------------------------------- the mask, per step
# Sets are read back as bool arrays over charges -_BIG.._BIG. The largest value read is
# |(c_e + m + d) * s_e + d' * s_f| with c_e <= 27 (a reachable state at step 3) and
# m, d, d' <= 9, or |n * s_O| with n <= 54 -- all within 54 * max|state|.
_BIG = _SMAX * MAX_COUNT * (_FREE_STEPS + 2)
_NBYTES = (2 * _BIG + 1 + 7) // 8
_LMASK = (1 << (8 * _NBYTES)) - 1
_G_N = _IDX_N + _BIG
_G_2A = _IDX_2A + _BIG
_G_F = _IDX_F + _BIG
_O_OFFSETS = np.arange(3 * MAX_COUNT + 1)  # oxygen totals c_o + 0 .. c_o + 27


def _stack(sets: list[tuple[int, int]]) -> np.ndarray:
    """Bool array (len(sets), >= 2 * _BIG + 1): [i, v + _BIG] = (v in sets[i])."""
    chunks = []
    for bits, lo in sets:
        shift = lo + _BIG
        bits = bits << shift if shift >= 0 else bits >> -shift
        chunks.append((bits & _LMASK).to_bytes(_NBYTES, "little"))
    raw = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little").reshape(len(sets), -1).view(bool)


class _Patterns:
    """The sign patterns of a present set, with their arrays (see ``_Tables.patterns``)."""

    def __init__(self, tb: "_Tables", present: tuple[int, ...], pats: list) -> None:
        self.list = pats
        n = len(pats)
        self.cmax = np.array([p[2] for p in pats], dtype=float)
        self.amin = np.array([p[3] for p in pats], dtype=float)
        o_all = tb.states[OXYGEN_INDEX]
        self.o_all = np.array(o_all, dtype=np.int64)
        self.o_mask = np.array([[s in p[1] for s in o_all] for p in pats], dtype=bool).reshape(
            n, len(o_all)
        )
        item_masks = np.zeros((len(present), n, _J), dtype=bool)
        for k, p in enumerate(pats):
            for idx, st in enumerate(p[0]):
                item_masks[idx, k, [_SV_INDEX[s] for s in st]] = True
        self.item_masks = item_masks
        new = np.ones(N_ELEMENTS, dtype=bool)
        new[list(present)] = False
        new[OXYGEN_INDEX] = False
        # Per side of a new action element e: (side, ok (80, P): e may join pattern p on
        # that side, states (80, J): e's states on that side). Charge neutrality has one
        # side with all states and no EN condition.
        if tb.en:
            x = tb.x[:, None]
            with np.errstate(invalid="ignore"):
                self.sides = [
                    (True, new[:, None] & (x < self.amin[None, :]), tb.has_pos),
                    (False, new[:, None] & (x > self.cmax[None, :]), tb.has_neg),
                ]
            states32 = [tb.has_pos32, tb.has_neg32]
        else:
            self.sides = [(None, np.repeat(new[:, None], n, axis=1), tb.has)]
            states32 = [tb.has32]
        self.sides32 = [(a.astype(np.float32), h) for (_, a, _), h in zip(self.sides, states32)]
        self.has_row = np.logical_or.reduce([a.any(1) & h.any(1) for _, a, h in self.sides])
        self._tb = tb
        self._present = present
        self._alpha_new: dict = {}

    @functools.cached_property
    def alpha0(self) -> np.ndarray:
        """(P, J): whether a new element (outside the present set) can take each state."""
        _, v1, _ = self._tb.first_carriers(self._present)
        return np.where(
            _SV_POS[None, :], v1[None, :] < self.amin[:, None], v1[None, :] > self.cmax[:, None]
        )

    def alpha_new(self, side) -> np.ndarray:
        """(P, 80, J): whether a second new element (not the action's element e) can take
        each state, with the EN bounds widened by e when it is a cation / an anion."""
        if side in self._alpha_new:
            return self._alpha_new[side]
        f1, v1, v2 = self._tb.first_carriers(self._present)
        x = self._tb.x[None, :, None]
        amin = self.amin[:, None, None]
        cmax = self.cmax[:, None, None]
        if side is True:
            cmax = np.maximum(cmax, x)
        elif side is False:
            amin = np.minimum(amin, x)
        not_e = (f1[None, :] != np.arange(N_ELEMENTS)[:, None])[None]
        cat = ((v1 < amin) & not_e) | (v2 < amin)
        an = ((v1 > cmax) & not_e) | (v2 > cmax)
        out = np.where(_SV_POS, cat, an)
        self._alpha_new[side] = out
        return out


@functools.lru_cache(maxsize=1024)
def _patterns(constraint: str, present: tuple[int, ...]) -> _Patterns:
    tb = _TABLES[constraint]
    return _Patterns(tb, present, list(tb.patterns(present)))


@functools.lru_cache(maxsize=4096)
def _raised_values(n: int, states: tuple[int, ...]) -> tuple[int, int]:
    return _values((n + d) * s for s in states for d in range(1, N_COUNTS))


def _raised_sum(items, states) -> tuple[int, int]:
    """Totals when one of the present elements gets 1..9 more atoms (its state unchanged)."""
    out = _EMPTY
    for idx, (_, n) in enumerate(items):
        rest = _present_sum(items, states, skip=idx)
        out = _union(out, _sumset(rest, _raised_values(n, states[idx])))
    return out


@functools.lru_cache(maxsize=4096)
def _future_values(states: tuple[int, ...]) -> tuple[int, int]:
    """{d * s : d in 1..9, s in states}: one new element's charges."""
    return _values(d * s for s in states for d in range(1, N_COUNTS))


def _f32(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32)


def _mask_final(constraint: str, items, c_o: int) -> np.ndarray:
    """Step 4: the action (O, m) finishes the composition."""
    out = np.zeros((N_ELEMENTS, N_COUNTS), dtype=bool)
    if not items:
        # Oxygen alone: SMACT counts a single element as valid (unreachable in legal play).
        out[OXYGEN_INDEX, 1:] = True
        return out
    present = tuple(e for e, _ in items)
    for states, o_states, _, _ in _TABLES[constraint].patterns(present):
        bits, lo = _present_sum(items, states)
        for m in range(1, N_COUNTS):
            for s in o_states:
                pos = -(c_o + m) * s - lo
                if pos >= 0 and (bits >> pos) & 1:
                    out[OXYGEN_INDEX, m] = True
    return out


def _mask_free(constraint: str, items, c_o: int, free: int) -> np.ndarray:
    """Steps 2 and 3: after the action, ``free`` (1 or 0) free additions, then O 1..9.

    Per sign pattern of the present elements and oxygen, with T = totals of the present
    elements, O9 / O18 = oxygen's totals over c_o + 1..9 / 1..18 atoms:

    * new element e, m atoms: some s_e with -m s_e in (T + O18) or in (T raised + O9)
      [the free addition raises a present element], -(m + d) s_e in T + O9 [it raises e],
      or -m s_e - d s_f in T + O9 for a state s_f some other new element can take;
    * present element e: the same with T, T raised taken over the other present elements
      and c_e + m atoms;
    * oxygen m atoms (m = 0: the count-0 actions): -n s_O in T for n in c_o + m + 1..18,
      or in T raised / T + (new element) for n in c_o + m + 1..9.

    With no free addition left only T + O9 remains.
    """
    out = np.zeros((N_ELEMENTS, N_COUNTS), dtype=bool)
    present = tuple(e for e, _ in items)
    pt = _patterns(constraint, present)
    pats = pt.list
    n_p = len(pats)
    if not n_p:
        return out

    # ---- Python bitsets per pattern
    o9s = [_window(c_o + 1, c_o + MAX_COUNT, p[1]) for p in pats]
    ts = [_present_sum(items, p[0]) for p in pats]
    ys = [_sumset(t, o9) for t, o9 in zip(ts, o9s)]
    sets = list(ys)
    if free:
        o18s = [_window(c_o + 1, c_o + 2 * MAX_COUNT, p[1]) for p in pats]
        raised = [_raised_sum(items, p[0]) if items else _EMPTY for p in pats]
        sets += [
            _union(_sumset(t, o18), _sumset(r, o9))
            for t, o18, r, o9 in zip(ts, o18s, raised, o9s)
        ]
    arrays = _stack(sets)
    y_arr = arrays[:n_p]

    # ---- new action elements; the costlier "second new element" option only where needed
    if free:
        none_arr = arrays[n_p:]
        z_none = none_arr[:, _G_N] | y_arr[:, _G_2A].any(-1)  # (P, J, 9)
    else:
        z_none = y_arr[:, _G_N]
    z_none = _f32(z_none).reshape(n_p, _J * MAX_COUNT)
    acc = np.zeros((N_ELEMENTS, 1, MAX_COUNT), dtype=np.float32)
    for a32, h32 in pt.sides32:
        w = (a32 @ z_none).reshape(N_ELEMENTS, _J, MAX_COUNT)
        acc += np.matmul(h32[:, None, :], w)
    decided = acc[:, 0] > 0
    if free:
        undecided = ~decided & pt.has_row[:, None]
        if undecided.any():
            es = np.flatnonzero(undecided.any(1))
            rows = [(side, a[es].T[:, :, None] & h[es][None]) for side, a, h in pt.sides]
            js = np.flatnonzero(np.logical_or.reduce([r.any((0, 1)) for _, r in rows]))
            n_j = len(js)
            z_f = _f32(y_arr[:, _G_F[:, js]].any(-1)).reshape(n_p, _J, n_j * MAX_COUNT)
            hit = np.zeros((len(es), MAX_COUNT), dtype=np.float32)
            for side, r in rows:
                r = _f32(r[:, :, js])  # (P, ne, nj)
                if not r.any():
                    continue
                q = np.matmul(_f32(pt.alpha_new(side)[:, es]), z_f)  # (P, ne, nj * 9)
                hit += (q.reshape(n_p, len(es), n_j, MAX_COUNT) * r[..., None]).sum((0, 2))
            decided[es] |= hit > 0
    out[:, 1:] = decided

    # ---- elements already present: c_e + m atoms
    for idx, (e, c_e) in enumerate(items):
        mask_e = pt.item_masks[idx]  # (P, J)
        js = np.flatnonzero(mask_e.any(0))
        if not js.size:
            continue
        mask_e = mask_e[:, js, None]
        shift = -c_e * _SV[js]
        rest = [it for k, it in enumerate(items) if k != idx]
        rest_states = [[st for k, st in enumerate(p[0]) if k != idx] for p in pats]
        t_e = [_present_sum(rest, st) for st in rest_states]
        e_sets = [_sumset(t, o9) for t, o9 in zip(t_e, o9s)]
        if free:
            e_sets += [
                _union(_sumset(t, o18), _sumset(_raised_sum(rest, st) if rest else _EMPTY, o9))
                for t, o18, st, o9 in zip(t_e, o18s, rest_states, o9s)
            ]
        e_arr = _stack(e_sets)
        ye = e_arr[:n_p]
        if free:
            ok = e_arr[n_p:][:, _G_N[js] + shift[:, None]]  # (P, j, 9)
            ok |= ye[:, _G_2A[js] + shift[:, None, None]].any(-1)
            ok = (ok & mask_e).any((0, 1))
            if not ok.all():
                zf = ye[:, _G_F[:, js] + shift[None, :, None, None]].any(-1)  # (P, K, j, 9)
                zf = (zf & pt.alpha0[:, :, None, None]).any(1)
                ok |= (zf & mask_e).any((0, 1))
        else:
            ok = (ye[:, _G_N[js] + shift[:, None]] & mask_e).any((0, 1))
        out[e, 1:] |= ok

    # ---- oxygen actions (O, m) and the count-0 actions: oxygen total c_o + m + window
    o_idx = -(c_o + _O_OFFSETS[None, :]) * pt.o_all[:, None] + _BIG  # (n_O_states, 28)

    def profile(group: list) -> np.ndarray:
        arr = _stack(group).reshape(-1, n_p, _NBYTES * 8)  # (kinds, P, L)
        return (arr[:, :, o_idx] & pt.o_mask[None, :, :, None]).any((0, 1, 2))

    prof_short = np.zeros(len(_O_OFFSETS), dtype=bool)
    prof_long = np.zeros(len(_O_OFFSETS), dtype=bool)
    if items:
        if free:
            prof_long = profile(ts)
            prof_short = profile(raised)
        else:
            prof_short = profile(ts)

    def o_ok() -> np.ndarray:
        ok = np.zeros(N_COUNTS, dtype=bool)
        for m in range(N_COUNTS):
            ok[m] = prof_short[m + 1 : m + N_COUNTS].any() or prof_long[
                m + 1 : m + 2 * MAX_COUNT + 1
            ].any()
        return ok

    ok = o_ok()
    if free and not ok.all():
        tf = []
        for k, t in enumerate(ts):
            ks = np.flatnonzero(pt.alpha0[k])
            fs = _future_values(tuple(int(_SV[j]) for j in ks)) if ks.size else _EMPTY
            tf.append(_sumset(t, fs))
        prof_short = prof_short | profile(tf)
        ok = o_ok()
    out[:, 0] = ok[0]
    out[OXYGEN_INDEX, 1:] = ok[1:]
    return out


# ---------------------------------------------------------------------------- public API
def _state_key(arr: np.ndarray) -> tuple[int, ...]:
    nz = np.flatnonzero(arr)
    return tuple(x for pair in zip(nz.tolist(), arr[nz].tolist()) for x in pair)


def _check_reachable(arr: np.ndarray, step: int) -> None:
    needed = int(np.sum((arr + MAX_COUNT - 1) // MAX_COUNT))
    if needed > step:
        raise ValueError(
            f"Invalid state: counts need at least {needed} actions (at most {MAX_COUNT} atoms "
            f"per action) but step={step}; counts must be the composition after `step` actions."
        )


def _check_constraint(constraint: str) -> str:
    if constraint not in _TABLES:
        raise ValueError(
            f"Invalid constraint={constraint!r}: expected one of {', '.join(CONSTRAINTS)}."
        )
    return constraint


def _check_proof() -> None:
    if _TABLES_FINGERPRINT != _PROOF_FINGERPRINT:
        raise RuntimeError(
            "The installed smact gives oxidation states / electronegativities other than those "
            "for which every state after two actions was checked to be completable, so the "
            "masks of steps 0-1 are not known to be exact. Run `pytest -m slow -k "
            "every_step2_state` and, if it passes, update _PROOF_FINGERPRINT in "
            "oxide_env/chemistry/completion.py."
        )


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _mask_key(key: tuple[int, ...], step: int, constraint: str) -> bytes:
    items = [(key[i], key[i + 1]) for i in range(0, len(key), 2) if key[i] != OXYGEN_INDEX]
    c_o = next((key[i + 1] for i in range(0, len(key), 2) if key[i] == OXYGEN_INDEX), 0)
    hard = hard_rule_mask_of(bool(items), step)
    if step < _PROVEN_STEP:
        _check_proof()
        mask = hard
    else:
        if step == _FREE_STEPS:
            table = _mask_final(constraint, items, c_o)
        else:
            table = _mask_free(constraint, items, c_o, free=_FREE_STEPS - 1 - step)
        mask = table.reshape(-1) & hard
    return np.packbits(mask).tobytes()


def completable_actions(
    counts: Sequence[int] | np.ndarray, step: int, constraint: Constraint
) -> np.ndarray:
    """The hard-rule actions after which some legal completion satisfies ``constraint``.

    Exact: action ``a`` is True iff the hard rules allow it and some sequence of legal
    remaining actions (the final oxygen 1-9 included) ends in a composition for which
    :func:`~oxide_env.chemistry.validity.charge_neutral` (or
    :func:`~oxide_env.chemistry.validity.electronegativity_balanced`) is True.

    Args:
        counts: the composition after ``step`` actions, integer counts of shape ``(80,)``.
        step: actions taken so far, 0..4.
        constraint: ``"charge_neutral"`` or ``"electronegativity_balanced"``.

    Returns:
        ``np.ndarray`` of dtype bool and shape ``(800,)`` (a fresh array).

    Raises:
        ValueError: for a step outside 0..4, an unknown constraint, malformed counts, or
            counts that ``step`` actions cannot produce (more than 9 atoms per action).

    Example:
        >>> import numpy as np
        >>> from oxide_env.chemistry.composition import formula_to_counts
        >>> mask = completable_actions(formula_to_counts("Ba"), 4, "charge_neutral")
        >>> np.flatnonzero(mask).tolist()  # BaO (O-2) and BaO2 (O-1) are neutral, BaO3... not
        [61, 62]
    """
    step = _check_step(step)
    constraint = _check_constraint(constraint)
    arr = _check_counts(counts)
    _check_reachable(arr, step)
    packed = _mask_key(_state_key(arr), step, constraint)
    return np.unpackbits(np.frombuffer(packed, dtype=np.uint8))[:N_ACTIONS].astype(bool)


def is_completable(counts: Sequence[int] | np.ndarray, step: int, constraint: Constraint) -> bool:
    """Whether some legal continuation from ``(counts, step)`` ends satisfying ``constraint``.

    Equals ``completable_actions(counts, step, constraint).any()``; True for every state
    reachable in at most two actions.

    Raises:
        ValueError: as :func:`completable_actions`.
    """
    step = _check_step(step)
    constraint = _check_constraint(constraint)
    arr = _check_counts(counts)
    _check_reachable(arr, step)
    if step <= _PROVEN_STEP:
        _check_proof()
        return True
    return bool(completable_actions(arr, step, constraint).any())


def clear_cache() -> None:
    """Empty the memoisation caches (to time cold calls)."""
    _mask_key.cache_clear()
    for fn in (_patterns, _window, _raised_values, _future_values):
        fn.cache_clear()
    for tb in _TABLES.values():
        tb.patterns.cache_clear()
        tb.first_carriers.cache_clear()
