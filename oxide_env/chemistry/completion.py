"""Hard-rule action masks and exact forward constraint masks for the 5-step episode.

The episode builds a composition from nothing in exactly 5 steps. Action ``a`` in
``0..799`` adds ``a % 10`` atoms of element ``a // 10`` (count 0 adds nothing; an element
already present just gets a larger count). Steps 1-4 (``step`` = 0..3 actions taken so
far) accept any element, oxygen included, with count 0-9; step 5 (``step`` = 4) accepts
only oxygen with count 1-9. To make ending with oxygen alone impossible, at ``step == 3``
with no non-oxygen element present yet, count-0 and oxygen actions are masked. So a
finished composition is ``(4 free additions) + k * O`` with ``k`` in 1..9 and always has
oxygen and at least one other element.

:func:`completable_action_masks` (a batch of states) and :func:`completable_actions` (one
state) mark the actions after which *some* legal completion ends in a composition that
passes a validity constraint, with the constraint exactly as
:mod:`oxide_env.chemistry.validity` defines it:

* ``"charge_neutral"``: :func:`~oxide_env.chemistry.validity.charge_neutral` (SMACT 2014
  states): one oxidation state per element, total charge 0;
* ``"electronegativity_balanced"``:
  :func:`~oxide_env.chemistry.validity.electronegativity_balanced` (SMACT 2014): the same
  with every cation (state > 0) strictly less electronegative (Pauling) than every anion;
* ``"oxide_rule"``: :func:`~oxide_env.chemistry.validity.oxide_rule` (``icsd24`` states,
  oxygen only -2, no metal negative, electronegativity balanced, oxygen and another
  element present -- which every legal final composition has).

Masking with it never cuts off a valid composition and never lets an episode end invalid:
a rollout that only takes allowed actions always ends valid, and every state reached that
way has at least one allowed action.

How it is decided (exactly, not by sampling). Each constraint is a *rule*: a table of
oxidation states per element and whether the Pauling test applies (:class:`_Rule`); the
algorithm below takes the rule as data.

* **Sign patterns.** The Pauling test holds for an assignment iff some threshold splits
  the elements by electronegativity into cations (below) and anions (above). So for the
  elements already present plus oxygen (present in every final composition), each split
  with every element's states on its side is a *pattern* (a row); an element added later
  joins a pattern as a cation if it is less electronegative than the pattern's anions, as
  an anion if more than its cations (strictly: equal electronegativities fail). Charge
  neutrality has one pattern with all states.
* **Totals as bitsets.** Per pattern, the totals the present elements can reach are a
  bitset (a Python int, shift-or sumsets), also with oxygen's window of counts added, and
  with each present element left out (for actions that raise that element: it keeps its
  one state). All rows of the batch are stacked into one bool array and every action of
  every state is read from it with a few numpy gathers and one matrix product (the states
  of each element on each side).
* **Step 4** (the final oxygen): oxygen ``c_O + m`` must balance the present totals.
  **Step 3** (one action, then oxygen 1..9): new element ``(e, m)`` iff ``-m s_e`` is a
  total of the present elements plus oxygen for an allowed ``s_e``; a present element
  with ``c_e + m`` atoms and its state against the others; oxygen or a count-0 action
  against oxygen totals ``c_O + m + 1..9``.
* **Step 2** (two actions, then oxygen). The same computation with oxygen window 1..18
  decides most actions (completions whose next action is oxygen or count 0). Every action
  it leaves undecided is decided by its definition: the state after it is a step-3 state,
  completable iff its step-3 mask has an allowed action (computed the same batched way).
* **Steps 0 and 1.** Every state reachable in two actions (257,401 of them) can still be
  completed, for each constraint: checked by computation, with a completion for each
  found by these masks and verified by the validity functions (the slow test
  ``test_every_step2_state_is_completable``). So at steps 0 and 1 every action is allowed
  and :func:`is_completable` is True up to step 2. The check holds for the tables it was
  run with: a fingerprint of each rule's oxidation states and electronegativities guards
  it, and steps 0-1 raise ``RuntimeError`` if the installed smact / pymatgen ever give
  different ones.

Oddities of SMACT's 2014 set that matter here: oxygen has states -2, -1, +1 and +2, so
``BaO2`` counts as neutral (O-1) and oxygen can be the cation next to fluorine (``OF2`` is
electronegativity balanced); no element has state 0; a single element counts as valid,
so a (not legally reachable) oxygen-only state at step 4 gets all of O1-O9 (none under
the oxide rule, which needs another element).

Results are memoised per exact state (counts, step, constraint); the first call for a
constraint builds its tables.

Example:
    >>> import numpy as np
    >>> from oxide_env.chemistry.completion import completable_action_masks, completable_actions
    >>> from oxide_env.chemistry.composition import formula_to_counts
    >>> empty = np.zeros(80, dtype=np.int64)
    >>> int(completable_actions(empty, 0, "charge_neutral").sum())
    800
    >>> lu = formula_to_counts("Lu18")  # two steps of Lu9: +54 to balance with 1 step + O
    >>> mask = completable_actions(lu, 2, "charge_neutral")
    >>> bool(mask[10 * 63 + 9]), bool(mask[10 * 6 + 9])  # Lu9 more: no; O9: yes (Lu18 O27)
    (False, True)
    >>> states = np.stack([formula_to_counts("Ba"), formula_to_counts("Na")])  # BaO; Na1 O_k never
    >>> [np.flatnonzero(row).tolist() for row in completable_action_masks(states, 4, "oxide_rule")]
    [[61], []]
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from typing import Literal

import numpy as np

from oxide_env.chemistry import validity
from oxide_env.chemistry.composition import validate_counts
from oxide_env.chemistry.elements import ELEMENTS, MAX_COUNT, N_ELEMENTS, OXYGEN_INDEX
from oxide_env.chemistry.episode import (
    ACTION_COUNT,
    ACTION_ELEMENT,
    N_ACTIONS,
    N_COUNTS,
    N_FREE_STEPS,
    N_STEPS,
    check_step,
    hard_rule_masks,
)

__all__ = [
    "CONSTRAINTS",
    "clear_cache",
    "completable_action_masks",
    "completable_actions",
    "is_completable",
]

Constraint = Literal["charge_neutral", "electronegativity_balanced", "oxide_rule"]
CONSTRAINTS: tuple[str, ...] = ("charge_neutral", "electronegativity_balanced", "oxide_rule")
_FREE_STEPS = N_FREE_STEPS
_PROVEN_STEP = 2
"""Every state reachable after this many actions is completable (checked exhaustively)."""
_PROOF_FINGERPRINTS = {
    "charge_neutral": "a7cf24caad98a2ad2987a4753fd9dfa2708eb78d7dd48fb25de1d1008d354452",
    "electronegativity_balanced": "16099978c2837bfd62a671c27347a17ecdf6f6be8d9a564356d716ac06e75a19",
    "oxide_rule": "e435a5c561123f234cd16c8c68278190357b920c62e71a82fffe265c5b0eefba",
}
"""Per constraint: the :attr:`_Rule.fingerprint` (element order, oxidation states,
electronegativities, counts) for which the slow test ``test_every_step2_state_is_completable``
checked that every state after two actions is completable."""
_CACHE_SIZE = 1 << 16
_CHUNK = 1024
"""States per batch of the bitset stage (bounds the memory of the stacked bool arrays)."""

_ACTION_ELEMENT = ACTION_ELEMENT
_ACTION_COUNT = ACTION_COUNT
_M = np.arange(1, N_COUNTS)  # counts 1..9
_ADDS = np.zeros((N_ACTIONS, N_ELEMENTS), dtype=np.int64)
_ADDS[np.arange(N_ACTIONS), _ACTION_ELEMENT] = _ACTION_COUNT
_MAX_ITEMS = _FREE_STEPS - 1
"""Non-oxygen elements present at steps 2-4 that still matter: at most 3 (at step 4 up to 4)."""


# ------------------------------------------------------------------------------ hard rules
_check_step = check_step


def _check_counts(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = validate_counts(counts)
    if arr.shape != (N_ELEMENTS,):
        raise ValueError(f"Invalid counts with shape {arr.shape}: expected ({N_ELEMENTS},).")
    return arr


# ------------------------------------------------------------------------------- the rules
_N_CARRIERS = 5
_SIDE_ALL, _SIDE_CATION, _SIDE_ANION = 0, 1, 2
"""An element's side in a sign pattern: all its states (charge neutrality), cation states
(> 0) or anion states (< 0)."""


class _Rule:
    """A validity rule as data: each element's oxidation states and whether the Pauling test applies.

    A composition passes iff one state per element gives total charge 0 and, with
    ``en``, every cation is strictly less electronegative than every anion (an element
    without electronegativity then has no usable state, as SMACT's test fails on it).
    ``single_element_valid``: whether a one-element composition passes (SMACT's fast path;
    not the oxide rule). Built once per constraint; holds the tables and caches.
    """

    def __init__(
        self, name: str, states: Sequence[Sequence[int]], *, en: bool, single_element_valid: bool
    ) -> None:
        x_table = validity.PAULING_ELECTRONEGATIVITY
        table = []
        for i in range(N_ELEMENTS):
            st = tuple(sorted({int(s) for s in states[i]}))
            if en and x_table[i] is None:
                st = ()  # SMACT's Pauling test fails on a missing electronegativity
            if 0 in st:
                raise RuntimeError(
                    f"{ELEMENTS[i]} has oxidation state 0 in the {name!r} table; "
                    "oxide_env.chemistry.completion assumes no element has (true for SMACT's "
                    "2014 and ICSD 2024 sets)."
                )
            table.append(st)
        self.name = name
        self.en = en
        self.single_element_valid = single_element_valid
        self.states: tuple[tuple[int, ...], ...] = tuple(table)
        self.x = np.array([np.nan if v is None else float(v) for v in x_table])
        sv = sorted({s for st in table for s in st})
        self.sv = np.array(sv, dtype=np.int64)
        j_of = {s: j for j, s in enumerate(sv)}
        side_states = (
            table,
            [tuple(s for s in st if s > 0) for st in table],
            [tuple(s for s in st if s < 0) for st in table],
        )
        self.has = np.zeros((3, N_ELEMENTS, len(sv)), dtype=bool)  # [side, element, state]
        for side, sts in enumerate(side_states):
            for i, st in enumerate(sts):
                self.has[side, i, [j_of[s] for s in st]] = True
        self.has_any = self.has.any(axis=2)  # (3, 80)
        # one matrix for the new-element product: charge neutrality uses all states, the
        # Pauling rules cation and anion states side by side
        sides = (_SIDE_CATION, _SIDE_ANION) if en else (_SIDE_ALL,)
        self.sides = sides
        # per side and state: the elements with that state, as 80 bits (10 bytes)
        self.element_bits = [np.packbits(self.has[s].T, axis=1, bitorder="little") for s in sides]
        self.o_states = np.array(table[OXYGEN_INDEX], dtype=np.int64)
        self.o_side = np.array(
            [[True] * len(self.o_states), list(self.o_states > 0), list(self.o_states < 0)],
            dtype=bool,
        ).reshape(3, len(self.o_states))
        self.o_side_states = tuple(sts[OXYGEN_INDEX] for sts in side_states)
        smax = int(np.abs(self.sv).max()) if len(sv) else 1
        # Totals are read back as bool arrays over charges -big..big: every value read is
        # at most 54 atoms (4 free additions + oxygen) times the largest |state|.
        self.big = smax * MAX_COUNT * (_FREE_STEPS + 2)
        self.nbytes = (2 * self.big + 1 + 7) // 8
        self.lmask = (1 << (8 * self.nbytes)) - 1
        self.max_count = MAX_COUNT * N_STEPS
        # {c * s : s in the element's states on a side} as (lo, shifts) for sumsets and as a
        # bitset, flat index (side * 80 + element) * (max_count + 1) + c
        self.values = []
        for sts in side_states:
            for i in range(N_ELEMENTS):
                for c in range(self.max_count + 1):
                    vals = sorted({c * s for s in sts[i]})
                    self.values.append((vals[0], tuple(v - vals[0] for v in vals)) if vals else (0, ()))
        self.values_bits = [(_bits(sh), lo) if sh else _EMPTY for lo, sh in self.values]
        self.windows: dict = {}
        # Carriers of each state (never oxygen: present in every final composition), best
        # first -- lowest EN for cation states, highest for anion states -- the first
        # _N_CARRIERS of them (enough to find the best two outside <= 3 present elements).
        carriers = np.full((len(sv), _N_CARRIERS), -1, dtype=np.int64)
        for j, s in enumerate(sv):
            elems = [i for i in range(N_ELEMENTS) if i != OXYGEN_INDEX and s in table[i]]
            if en:
                elems.sort(key=lambda i: self.x[i] if s > 0 else -self.x[i])
            carriers[j, : min(len(elems), _N_CARRIERS)] = elems[:_N_CARRIERS]
        self.carriers = carriers
        self.abs_sv = sorted({abs(s) for s in sv})
        self.fingerprint = hashlib.sha256(
            repr(
                (ELEMENTS, OXYGEN_INDEX, MAX_COUNT, N_STEPS, name, self.states,
                 validity.PAULING_ELECTRONEGATIVITY if en else None, single_element_valid)
            ).encode()
        ).hexdigest()  # fmt: skip

    def window(self, c_o: int, side: int, w: int) -> tuple[int, int]:
        """{(c_o + k) * s : k in 1..w, s in oxygen's states on ``side``} as a bitset."""
        key = (c_o, side, w)
        out = self.windows.get(key)
        if out is None:
            out = self.windows[key] = _values(
                (c_o + k) * s for s in self.o_side_states[side] for k in range(1, w + 1)
            )
        return out


    def check_proof(self) -> None:
        """Raise unless steps 0-1 (all actions allowed) were checked for these tables."""
        if self.fingerprint != _PROOF_FINGERPRINTS[self.name]:
            raise RuntimeError(
                f"The installed smact / pymatgen give {self.name!r} oxidation states or "
                "electronegativities other than those for which every state after two actions "
                "was checked to be completable, so the masks of steps 0-1 are not known to be "
                "exact. Run `pytest -m slow -k every_step2_state` and, if it passes, set "
                f"_PROOF_FINGERPRINTS[{self.name!r}] = {self.fingerprint!r} in "
                "oxide_env/chemistry/completion.py."
            )


def _make_rule(constraint: str) -> _Rule:
    if constraint == "charge_neutral":
        return _Rule(constraint, validity.state_table("smact14"), en=False, single_element_valid=True)
    if constraint == "electronegativity_balanced":
        return _Rule(constraint, validity.state_table("smact14"), en=True, single_element_valid=True)
    # validity.oxide_rule: icsd24 states restricted (O only -2, metals >= 0), Pauling test,
    # oxygen and another element needed (every legal final composition has both)
    states = validity.oxide_states(validity.state_table("icsd24"))
    return _Rule(constraint, states, en=True, single_element_valid=False)


@functools.lru_cache(maxsize=None)
def _rule(constraint: str) -> _Rule:
    return _make_rule(_check_constraint(constraint))


# --------------------------------------------------------------------------- bitset sets
# A set of integers is (bits, lo): value v is in it iff bit v - lo of bits is set.
_EMPTY = (0, 0)
_ZERO = (1, 0)  # {0}: the totals of no element


def _values(values) -> tuple[int, int]:
    values = list(values)
    if not values:
        return _EMPTY
    lo = min(values)
    bits = 0
    for v in values:
        bits |= 1 << (v - lo)
    return bits, lo


def _bits(shifts) -> int:
    out = 0
    for d in shifts:
        out |= 1 << d
    return out


def _plus(x: tuple[int, int], a: tuple[int, tuple[int, ...]]) -> tuple[int, int]:
    """{u + v : u in x, v in a} for a bitset ``x`` and a small set ``a = (lo, shifts)``."""
    bits, lo = x
    if not bits or not a[1]:
        return _EMPTY
    out = 0
    for d in a[1]:
        out |= bits << d
    return out, lo + a[0]


def _stack(rule: _Rule, sets: list[tuple[int, int]], n_rows: int) -> np.ndarray:
    """Packed bits (n_rows, G, nbytes) uint8, G = len(sets) // n_rows: bit v + big of
    [r, g] (little-endian) is set iff v is in sets[r * G + g]; read with :func:`_read`."""
    big, nbytes = rule.big, rule.nbytes
    chunks = []
    for bits, lo in sets:
        # every value lies in -big..big (see _Rule.big), so the shift is never negative
        chunks.append((bits << (lo + big)).to_bytes(nbytes, "little"))
    raw = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    return raw.reshape(n_rows, len(sets) // max(n_rows, 1), nbytes)


def _read(group: np.ndarray, rows, pos: np.ndarray) -> np.ndarray:
    """Bits ``pos`` of packed rows: ``group[rows]`` bit ``pos`` as bool (shapes broadcast)."""
    return ((group[rows, pos >> 3] >> (pos & 7).astype(np.uint8)) & 1).astype(bool)


# ------------------------------------------------------------------- the masks, batched
def _items(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Present non-oxygen elements, left-packed: element (n, K) (-1 = none), count (n, K), c_o (n,)."""
    non_o = arr.copy()
    non_o[:, OXYGEN_INDEX] = 0
    nz = non_o > 0
    k = int(nz.sum(axis=1).max()) if len(arr) else 0
    order = np.argsort(~nz, axis=1, kind="stable")[:, :k]
    present = np.take_along_axis(nz, order, axis=1)
    elem = np.where(present, order, -1)
    cnt = np.where(present, np.take_along_axis(non_o, order, axis=1), 0)
    return elem, cnt, arr[:, OXYGEN_INDEX].copy()


def _patterns(rule: _Rule, elem: np.ndarray) -> tuple[np.ndarray, ...]:
    """The sign patterns (rows) of each state's present elements plus oxygen.

    Returns ``row_state`` (R,), ``sides`` (R, K + 1) (items then oxygen; :data:`_SIDE_ALL`
    for charge neutrality), ``cmax`` and ``amin`` (R,): the largest cation / smallest anion
    electronegativity of the pattern (-inf / +inf when there is none). Rows are ordered by
    state. A state with no row cannot be completed.
    """
    n, k = elem.shape
    slots = np.concatenate([elem, np.full((n, 1), OXYGEN_INDEX)], axis=1)  # (n, K + 1)
    present = slots >= 0
    e = np.where(present, slots, 0)
    if not rule.en:
        ok = (rule.has_any[_SIDE_ALL][e] | ~present).all(axis=1)
        rows = np.flatnonzero(ok)
        inf = np.full(len(rows), np.inf)
        return rows, np.zeros((len(rows), k + 1), dtype=np.int64), -inf, inf
    x = np.where(present, rule.x[e], np.nan)
    # candidate t = -1: no cation; t = slot: cations are the elements with EN <= x[t]
    thr = np.concatenate([np.full((n, 1), -np.inf), x], axis=1)  # (n, K + 2)
    with np.errstate(invalid="ignore"):
        cat = x[:, None, :] <= thr[:, :, None]  # (n, K + 2, K + 1)
        earlier = np.tril(np.ones((k + 1, k + 1), dtype=bool), -1)  # [t, i]: i < t
        dup = ((x[:, None, :] == x[:, :, None]) & earlier[None] & present[:, None, :]).any(axis=2)
    candidate = np.concatenate([np.ones((n, 1), dtype=bool), present & ~np.isnan(x) & ~dup], axis=1)
    side_ok = np.where(cat, rule.has_any[_SIDE_CATION][e][:, None, :], rule.has_any[_SIDE_ANION][e][:, None, :])
    valid = candidate & (side_ok | ~present[:, None, :]).all(axis=2)
    row_state, t = np.nonzero(valid)
    sides = np.where(cat[row_state, t], _SIDE_CATION, _SIDE_ANION)
    cmax = thr[row_state, t]
    anion_x = np.where(~cat[row_state, t] & present[row_state], x[row_state], np.inf)
    amin = anion_x.min(axis=1)
    return row_state, sides, cmax, amin


def _per_state(x: np.ndarray, row_state: np.ndarray, n: int) -> np.ndarray:
    """OR of the rows of each state (rows ordered by state); False for a state with none."""
    out = np.zeros((n, *x.shape[1:]), dtype=x.dtype)
    if len(row_state):
        starts = np.flatnonzero(np.r_[True, row_state[1:] != row_state[:-1]])
        if len(starts) == len(row_state):  # one row per state (e.g. charge neutrality)
            out[row_state] = x
        else:
            op = np.logical_or if x.dtype == bool else np.bitwise_or
            out[row_state[starts]] = op.reduceat(x, starts, axis=0)
    return out


def _row_sets(rule: _Rule, vidx: list, o_side: list, c_o: list, w: int, w2: int) -> list:
    """Per row: [T, Y, Y without item 0, without item 1, ..., (Y2)] (only [T] when ``w == 0``).

    T: totals of the present (non-oxygen) elements; Y: T plus oxygen's totals over
    ``c_o + 1 .. c_o + w`` atoms; Y2 the same over ``w2`` atoms (when ``w2``). Oxygen's
    window is the starting bitset and the elements' small sets are added to it, so every
    sumset costs one shift-or per state of an element.
    """
    values, values_bits, window = rule.values, rule.values_bits, rule.window
    k = len(vidx[0]) if vidx else 0
    out: list = []
    for idx, side, co in zip(vidx, o_side, c_o):
        a = [values[i] for i in idx if i >= 0]
        m = len(a)
        t = values_bits[idx[0]] if m else _ZERO
        for x in a[1:]:
            t = _plus(t, x)
        out.append(t)
        if not w:
            continue
        wb = window(co, side, w)
        if m == 0:
            y, rest = wb, []
        elif m == 1:
            y, rest = _plus(wb, a[0]), [wb]
        elif m == 2:
            r0 = _plus(wb, a[1])
            y, rest = _plus(r0, a[0]), [r0, _plus(wb, a[0])]
        else:
            b2 = _plus(wb, a[2])
            r0 = _plus(b2, a[1])
            rest = [r0, _plus(b2, a[0]), _plus(_plus(wb, a[1]), a[0])]
            y = _plus(r0, a[0])
        out.append(y)
        out.extend(rest)
        out.extend([_EMPTY] * (k - m))
        if w2:
            y2 = window(co, side, w2)
            for x in a:
                y2 = _plus(y2, x)
            out.append(y2)
    return out


def _masks_core(rule: _Rule, arr: np.ndarray, w: int) -> np.ndarray:
    """Masks (n, 80, 10) of a batch of states, hard rules not applied.

    ``w`` = 0: the final oxygen (step 4). ``w`` = 9: one action, then oxygen 1..9 (step 3,
    exact). ``w`` = 18 (step 2): every completion of a new element's action, and for the
    other actions the completions whose next action is oxygen or count 0 (the caller
    decides the rest).
    """
    n = len(arr)
    out = np.zeros((n, N_ELEMENTS, N_COUNTS), dtype=bool)
    elem, cnt, c_o = _items(arr)
    k = elem.shape[1]
    row_state, sides, cmax, amin = _patterns(rule, elem)
    r_elem, r_cnt = elem[row_state], cnt[row_state]
    r_co = c_o[row_state]
    o_side = sides[:, k]
    item_sides = sides[:, :k]
    vidx = np.where(
        r_elem >= 0, (item_sides * N_ELEMENTS + r_elem) * (rule.max_count + 1) + r_cnt, -1
    )
    n_rows = len(row_state)
    w2 = MAX_COUNT if w == 2 * MAX_COUNT else 0
    sets = _row_sets(rule, vidx.tolist(), o_side.tolist(), r_co.tolist(), w, w2)
    if not n_rows:
        return out
    arr3 = _stack(rule, sets, n_rows)  # (R, G, L)
    big = rule.big
    r_index = np.arange(n_rows)[:, None, None]
    has_items = elem[:, 0] >= 0 if k else np.zeros(n, dtype=bool)

    if not w:  # step 4: oxygen c_o + m against the totals T
        idx = big - (r_co[:, None, None] + _M[None, None, :]) * rule.o_states[None, :, None]
        hit = (_read(arr3[:, 0], r_index, idx) & rule.o_side[o_side][:, :, None]).any(axis=1)  # (R, 9)
        out[:, OXYGEN_INDEX, 1:] = _per_state(hit, row_state, n)
        if rule.single_element_valid:
            out[~has_items, OXYGEN_INDEX, 1:] = True  # oxygen alone (not legally reachable)
        else:
            out[~has_items, OXYGEN_INDEX, 1:] = False
        return out

    sv = rule.sv
    # ---- new elements (e, m): -m s_e in Y for a state s_e on a side the pattern allows
    all_rows = np.arange(n_rows)[:, None, None]
    z = _read(arr3[:, 1], all_rows, big - _M[:, None] * sv[None, :])  # (R, 9, J)
    if w2:
        # the next action raises e by d = 1..9: -(m + d) s_e in Y9 (oxygen 1..9)
        y9 = arr3[:, 2 + k]
        zc = np.cumsum(_read(y9, all_rows, big - np.arange(1, 2 * N_COUNTS - 1)[:, None] * sv[None, :]), axis=1)
        z |= zc[:, MAX_COUNT:] - zc[:, :MAX_COUNT] > 0  # counts m + 1 .. m + 9
    new = np.ones((n, N_ELEMENTS), dtype=bool)
    new[:, OXYGEN_INDEX] = False
    rows_present = np.arange(n)[:, None]
    new[rows_present, np.where(elem >= 0, elem, OXYGEN_INDEX)] = False
    new_r = new[row_state]
    if rule.en:
        with np.errstate(invalid="ignore"):
            ok = np.stack([new_r & (rule.x[None, :] < amin[:, None]),
                           new_r & (rule.x[None, :] > cmax[:, None])], axis=1)  # (R, 2, 80)
    else:
        ok = new_r[:, None, :]
    # elements as 80-bit masks (10 bytes): OR over states j of (elements with state j)
    ok_bits = np.packbits(ok, axis=2, bitorder="little")  # (R, S, 10)
    z8 = z.view(np.uint8)[:, :, :, None]
    hit = np.zeros((n_rows, MAX_COUNT, ok_bits.shape[2]), dtype=np.uint8)
    for si in range(len(rule.sides)):
        acc = np.bitwise_or.reduce(z8 * rule.element_bits[si][None, None], axis=2)  # (R, 9, 10)
        hit |= acc & ok_bits[:, si, None, :]
    hit = np.unpackbits(_per_state(hit, row_state, n), axis=2, bitorder="little")[:, :, :N_ELEMENTS]
    new_hit = hit.view(bool).transpose(0, 2, 1)  # (n, 80, 9)
    if w2:
        _second_new_element(rule, new_hit, new, elem, row_state, ok, cmax, amin, y9)
    out[:, :, 1:] = new_hit

    # ---- present elements: c_e + m atoms in the pattern's state, against Y without it
    for i in range(k):
        e_i = r_elem[:, i]
        present_i = e_i >= 0
        idx = big - (r_cnt[:, i, None, None] + _M[None, :, None]) * sv[None, None, :]  # (R, 9, J)
        states_i = rule.has[item_sides[:, i], np.where(present_i, e_i, 0)]  # (R, J)
        hit = (_read(arr3[:, 2 + i], r_index, idx) & states_i[:, None, :]).any(axis=2) & present_i[:, None]
        hit = _per_state(hit, row_state, n)  # (n, 9)
        has_i = elem[:, i] >= 0
        out[np.flatnonzero(has_i), elem[has_i, i], 1:] |= hit[has_i]

    # ---- oxygen (O, m) and count-0 actions: oxygen c_o + m + 1 .. c_o + m + w against T
    t = np.arange(1, N_COUNTS + w)  # m + k
    idx = big - (r_co[:, None, None] + t[None, None, :]) * rule.o_states[None, :, None]
    prof = (_read(arr3[:, 0], r_index, idx) & rule.o_side[o_side][:, :, None]).any(axis=1)  # (R, 9 + w)
    prof = _per_state(prof, row_state, n)
    cum = np.concatenate([np.zeros((n, 1), dtype=np.int64), np.cumsum(prof, axis=1)], axis=1)
    ok = (cum[:, w : w + N_COUNTS] - cum[:, :N_COUNTS]) > 0  # ok[m] = any prof[m .. m + w - 1]
    ok &= has_items[:, None]  # with oxygen alone the next action must add another element
    out[:, OXYGEN_INDEX, 1:] = ok[:, 1:]
    out[:, :, 0] = ok[:, :1]
    return out


def _second_new_element(rule, new_hit, new, elem, row_state, ok, cmax, amin, y9) -> None:
    """Step 2: decide the new-element actions ``(e, m)`` whose completion needs a second new
    element ``f`` (``f`` not present, not oxygen, not ``e``), in place in ``new_hit``.

    ``-m s_e - d s_f`` in Y9 (d = 1..9) is read from ``G_|s|`` = Y9 OR-ed over shifts
    ``0 .. 8 |s|``; ``s_f`` is available iff one of the best two carriers of that state
    outside the present elements is not ``e`` and lies on the right side of the pattern's
    bounds, widened by ``e`` (a cation ``e`` raises the anions' lower bound, an anion
    lowers the cations' upper one).
    """
    b, e, m = np.nonzero(new[:, :, None] & ~new_hit)
    if not b.size:
        return
    n = len(new)
    counts = np.bincount(row_state, minlength=n)
    starts = np.cumsum(counts) - counts
    n_r = counts[b]
    ent = np.repeat(np.arange(len(b)), n_r)  # one entry per (action, row of its state)
    r = starts[b][ent] + (np.arange(len(ent)) - np.repeat(np.cumsum(n_r) - n_r, n_r))
    e_ent, m_ent = e[ent], m[ent]  # m: 0..8 for counts 1..9
    sv = rule.sv
    # G_k for the rows involved: OR of Y9 over shifts 0, k, .., 8k
    rows = np.unique(r)
    local = np.searchsorted(rows, r)
    base = np.unpackbits(y9[rows], axis=1, bitorder="little").view(bool)
    g = np.empty((len(rule.abs_sv), *base.shape), dtype=bool)
    for gi, step in enumerate(rule.abs_sv):
        acc = base.copy()
        span = 1
        while 2 * span <= MAX_COUNT - 1:
            acc[:, span * step :] |= acc[:, : -span * step]
            span *= 2
        acc[:, (MAX_COUNT - 1) * step :] |= base[:, : -(MAX_COUNT - 1) * step]
        g[gi] = acc
    g_of = np.searchsorted(np.array(rule.abs_sv), np.abs(sv))  # (J,) index into g
    # position of -m s_e - d s_f, d = 1..9: v - s_f (s_f > 0) or v - 9 s_f (s_f < 0)
    far = np.where(sv > 0, 1, MAX_COUNT) * sv  # (J_f,)
    idx = rule.big - (m_ent[:, None, None] + 1) * sv[None, None, :] - far[None, :, None]  # (E, Jf, Je)
    vals = g[g_of[None, :, None], local[:, None, None], idx]  # (E, Jf, Je)
    # best two carriers outside the present elements, per state of the batch
    cand = rule.carriers  # (J, C)
    excluded = (cand[None, :, :, None] == elem[:, None, None, :]).any(axis=3) | (cand[None] < 0)
    order = np.argsort(excluded, axis=2, kind="stable")[:, :, :2]
    first_two = np.where(np.take_along_axis(excluded, order, axis=2), -1,
                         np.take_along_axis(np.broadcast_to(cand, excluded.shape), order, axis=2))
    bs = b[ent]
    f1, f2 = first_two[bs, :, 0], first_two[bs, :, 1]  # (E, J)
    cation_state = sv[None, :] > 0
    if rule.en:
        none_x = np.where(cation_state, np.inf, -np.inf)
        x1 = np.where(f1 >= 0, rule.x[np.maximum(f1, 0)], none_x)
        x2 = np.where(f2 >= 0, rule.x[np.maximum(f2, 0)], none_x)
        sides = (0, 1)
    else:
        x1 = np.where(f1 >= 0, 0.0, np.where(cation_state, np.inf, -np.inf))
        x2 = np.where(f2 >= 0, 0.0, np.where(cation_state, np.inf, -np.inf))
        sides = (0,)
    not_e = f1 != e_ent[:, None]
    xe = rule.x[e_ent][:, None]
    hit = np.zeros(len(ent), dtype=bool)
    for si in sides:
        ok_e = ok[r, si, e_ent]
        if not ok_e.any():
            continue
        cm, am = cmax[r][:, None], amin[r][:, None]
        if rule.en and si == 0:
            cm = np.maximum(cm, xe)  # e is a cation
        elif rule.en:
            am = np.minimum(am, xe)  # e is an anion
        with np.errstate(invalid="ignore"):
            avail = np.where(cation_state, ((x1 < am) & not_e) | (x2 < am),
                             ((x1 > cm) & not_e) | (x2 > cm))  # (E, Jf)
        side = rule.sides[si]
        states_e = rule.has[side, e_ent]  # (E, Je)
        hit |= ok_e & (vals & avail[:, :, None] & states_e[:, None, :]).any(axis=(1, 2))
    np.logical_or.at(new_hit, (b[ent], e_ent, m_ent), hit)


def _compute(rule: _Rule, arr: np.ndarray, step: int) -> np.ndarray:
    """Exact masks (n, 800) of distinct, checked states at one step (no cache)."""
    n = len(arr)
    hard = hard_rule_masks(arr, step)
    if step < _PROVEN_STEP:
        rule.check_proof()
        return hard
    out = np.empty((n, N_ACTIONS), dtype=bool)
    for lo in range(0, n, _CHUNK):
        part = arr[lo : lo + _CHUNK]
        if step == _FREE_STEPS:
            out[lo : lo + _CHUNK] = _masks_core(rule, part, 0).reshape(len(part), -1)
        else:
            w = MAX_COUNT if step == _FREE_STEPS - 1 else 2 * MAX_COUNT
            out[lo : lo + _CHUNK] = _masks_core(rule, part, w).reshape(len(part), -1)
    out &= hard
    if step == _FREE_STEPS - 2:
        # Undecided actions: the state after them is a step-3 state, completable iff its
        # step-3 mask allows some action.
        undecided_state, undecided_action = np.nonzero(hard & ~out)
        if len(undecided_state):
            children = arr[undecided_state] + _ADDS[undecided_action]
            child_masks = _compute(rule, children, step + 1)
            out[undecided_state, undecided_action] = child_masks.any(axis=1)
    return out


# ---------------------------------------------------------------------------- public API
def _check_matrix(counts: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    arr = validate_counts(counts)
    if arr.ndim != 2 or arr.shape[1] != N_ELEMENTS:
        raise ValueError(
            f"Invalid counts with shape {arr.shape}: expected (n, {N_ELEMENTS}) (one row per "
            "state; use completable_actions for a single state)."
        )
    return arr


def _check_reachable_rows(arr: np.ndarray, step: int) -> None:
    needed = ((arr + MAX_COUNT - 1) // MAX_COUNT).sum(axis=1)
    bad = np.flatnonzero(needed > step)
    if bad.size:
        r = int(bad[0])
        formula = " ".join(f"{ELEMENTS[i]}{arr[r, i]}" for i in np.flatnonzero(arr[r]))
        raise ValueError(
            f"Invalid state (row {r}: {formula}): its counts need at least {int(needed[r])} actions "
            f"(at most {MAX_COUNT} atoms per action) but step={step}; counts must be the "
            "composition after `step` actions."
        )


def _check_constraint(constraint: str) -> str:
    if constraint not in CONSTRAINTS:
        raise ValueError(
            f"Invalid constraint={constraint!r}: expected one of {', '.join(CONSTRAINTS)}."
        )
    return constraint


_CACHE: dict = {}


def _state_keys(arr: np.ndarray) -> list[tuple[int, ...]]:
    """(element, count, element, count, ...) of each row, flat (hashes fast)."""
    rows, cols = np.nonzero(arr)
    ends = np.cumsum(np.bincount(rows, minlength=len(arr)))
    inter = np.stack([cols, arr[rows, cols]], axis=1).ravel().tolist()
    keys = []
    start = 0
    for end in (2 * ends).tolist():
        keys.append(tuple(inter[start:end]))
        start = end
    return keys


def completable_action_masks(
    counts: Sequence[Sequence[int]] | np.ndarray, step: int, constraint: Constraint
) -> np.ndarray:
    """Exact constraint masks of a batch of states at one step.

    Row ``i`` equals ``completable_actions(counts[i], step, constraint)``: action ``a`` is
    True iff the hard rules allow it and some sequence of legal remaining actions (the
    final oxygen 1-9 included) ends in a composition that passes ``constraint``. Distinct
    states are computed together (numpy over all of them); results are memoised per state.

    Args:
        counts: the compositions after ``step`` actions, integer counts of shape ``(n, 80)``.
        step: actions taken so far, 0..4 (the same for every row).
        constraint: ``"charge_neutral"``, ``"electronegativity_balanced"`` (both SMACT 2014
            states) or ``"oxide_rule"`` (:func:`~oxide_env.chemistry.validity.oxide_rule`).

    Returns:
        ``np.ndarray`` of dtype bool and shape ``(n, 800)`` (a fresh array).

    Raises:
        ValueError: for a step outside 0..4, an unknown constraint, malformed counts, or
            counts that ``step`` actions cannot produce (more than 9 atoms per action).

    Example:
        >>> import numpy as np
        >>> from oxide_env.chemistry.composition import formula_to_counts
        >>> states = np.stack([formula_to_counts("Ba"), formula_to_counts("Ti")])
        >>> masks = completable_action_masks(states, 4, "charge_neutral")
        >>> [np.flatnonzero(row).tolist() for row in masks]  # BaO, BaO2; TiO .. TiO4 (O-1)
        [[61, 62], [61, 62, 63, 64]]
    """
    step = _check_step(step)
    constraint = _check_constraint(constraint)
    arr = _check_matrix(counts)
    _check_reachable_rows(arr, step)
    n = len(arr)
    if step < _PROVEN_STEP:
        _rule(constraint).check_proof()
        return hard_rule_masks(arr, step)
    keys = _state_keys(arr)
    packed: list = [None] * n
    todo: dict = {}
    for r, key in enumerate(keys):
        hit = _CACHE.get((constraint, step, key))
        if hit is None:
            todo.setdefault(key, []).append(r)
        else:
            packed[r] = hit
    out = np.empty((n, N_ACTIONS), dtype=bool)
    if todo:
        first = [rs[0] for rs in todo.values()]
        masks = _compute(_rule(constraint), arr[first], step)
        if len(_CACHE) + len(first) > _CACHE_SIZE:
            _CACHE.clear()
        bits = np.packbits(masks, axis=1)
        for (key, rs), row, b in zip(todo.items(), masks, bits):
            _CACHE[(constraint, step, key)] = b.tobytes()
            out[rs] = row
    done = [r for r in range(n) if packed[r] is not None]
    if done:
        raw = np.frombuffer(b"".join(packed[r] for r in done), dtype=np.uint8).reshape(len(done), -1)
        out[done] = np.unpackbits(raw, axis=1)[:, :N_ACTIONS].astype(bool)
    return out


def completable_actions(
    counts: Sequence[int] | np.ndarray, step: int, constraint: Constraint
) -> np.ndarray:
    """The hard-rule actions after which some legal completion satisfies ``constraint``.

    Exact: action ``a`` is True iff the hard rules allow it and some sequence of legal
    remaining actions (the final oxygen 1-9 included) ends in a composition that passes
    ``constraint``: :func:`~oxide_env.chemistry.validity.charge_neutral`,
    :func:`~oxide_env.chemistry.validity.electronegativity_balanced` or
    :func:`~oxide_env.chemistry.validity.oxide_rule`. One row of
    :func:`completable_action_masks`.

    Args:
        counts: the composition after ``step`` actions, integer counts of shape ``(80,)``.
        step: actions taken so far, 0..4.
        constraint: ``"charge_neutral"``, ``"electronegativity_balanced"`` or ``"oxide_rule"``.

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
        >>> np.flatnonzero(completable_actions(formula_to_counts("Ba"), 4, "oxide_rule")).tolist()
        [61]
    """
    step = _check_step(step)
    arr = _check_counts(counts)
    return completable_action_masks(arr[None], step, constraint)[0]


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
    _check_reachable_rows(arr[None], step)
    if step <= _PROVEN_STEP:
        _rule(constraint).check_proof()
        return True
    return bool(completable_actions(arr, step, constraint).any())


def clear_cache() -> None:
    """Empty the memoised masks (to time cold calls); the rules' tables are kept."""
    _CACHE.clear()
