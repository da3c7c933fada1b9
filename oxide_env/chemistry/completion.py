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
* ``"oxide_rule"``: :func:`~oxide_env.chemistry.validity.oxide_rule` (``icsd24`` states that
  pymatgen also counts as common,
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
  with every element's states on its side is a *pattern*; an element added later
  joins a pattern as a cation if it is less electronegative than the pattern's anions, as
  an anion if more than its cations (strictly: equal electronegativities fail). Charge
  neutrality has one pattern with all states.
* **Totals as bitsets.** Per pattern, the totals the present elements can reach are a
  bitset over charges (64-bit words, shift-or sumsets), also with oxygen's window of counts
  added, and with each present element left out (for actions that raise that element: it
  keeps its one state). Each element's states are a bitmask over the table's distinct
  states, so a new element's action is one AND against the states whose charge is a total.
  One compiled pass (numba) per state does all of it; a batch is a loop over its states.
* **Step 4** (the final oxygen): oxygen ``c_O + m`` must balance the present totals.
  **Step 3** (one action, then oxygen 1..9): new element ``(e, m)`` iff ``-m s_e`` is a
  total of the present elements plus oxygen for an allowed ``s_e``; a present element
  with ``c_e + m`` atoms and its state against the others; oxygen or a count-0 action
  against oxygen totals ``c_O + m + 1..9``.
* **Step 2** (two actions, then oxygen 1..9), exactly, by what the next action is. A new
  element ``(e, m)``: ``-m s_e`` against the present totals plus oxygen 1..18 (next:
  oxygen or count 0) or with a present element raised by 1..9 (then oxygen 1..9);
  ``-(m + d) s_e`` against Y9 (present plus oxygen 1..9; next raises ``e``); or
  ``-m s_e - d s_f`` against Y9 for a second new element ``f``: ``s_f`` is available iff
  one of the best two carriers of that state outside the present elements is not ``e``
  and lies on the right side of the pattern's bounds widened by ``e``. A present element
  raised by ``m``: ``c + m`` atoms in its state against the same sets without it (a new
  element ``f`` then fits the pattern's own bounds). Oxygen ``m`` or count 0: the step-3
  cases of the state after it (oxygen ``c_O + m + 1..18`` against the present totals; a
  raised or a new element, then oxygen ``c_O + m + 1..9``). A pattern skips the actions
  earlier patterns allowed, and the second-new-element case runs last, on what is left.
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
constraint builds its tables (and the first in an install compiles the kernel, cached on disk).

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

try:  # numba is a dependency; the kernel is compiled once and cached on disk
    from numba import njit
except ImportError:  # pragma: no cover
    def njit(*args, **kwargs):
        return (lambda f: f) if not (len(args) == 1 and callable(args[0])) else args[0]

from oxide_env.chemistry import validity
from oxide_env.chemistry.composition import validate_counts
from oxide_env.chemistry.elements import ELEMENTS, MAX_COUNT, N_ELEMENTS, OXYGEN_INDEX
from oxide_env.chemistry.episode import (
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
    "rule_fingerprint",
]

Constraint = Literal["charge_neutral", "electronegativity_balanced", "oxide_rule"]
CONSTRAINTS: tuple[str, ...] = ("charge_neutral", "electronegativity_balanced", "oxide_rule")
_FREE_STEPS = N_FREE_STEPS
_PROVEN_STEP = 2
"""Every state reachable after this many actions is completable (checked exhaustively)."""
_PROOF_FINGERPRINTS = {
    "charge_neutral": "a7cf24caad98a2ad2987a4753fd9dfa2708eb78d7dd48fb25de1d1008d354452",
    "electronegativity_balanced": "16099978c2837bfd62a671c27347a17ecdf6f6be8d9a564356d716ac06e75a19",
    "oxide_rule": "aada95dc03c80e589243290587c2a229563b22ea9f0eac5860350971d7b1a119",
}
"""Per constraint: the :attr:`_Rule.fingerprint` (element order, oxidation states,
electronegativities, counts) for which the slow test ``test_every_step2_state_is_completable``
checked that every state after two actions is completable."""
_CACHE_SIZE = 1 << 16

# ------------------------------------------------------------------------------ hard rules
_check_step = check_step


def _check_counts(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    if (
        isinstance(counts, np.ndarray) and counts.dtype == np.int64 and counts.shape == (N_ELEMENTS,)
        and counts.min() >= 0
    ):  # fmt: skip
        return counts  # what validate_counts would return (the reachability check follows)
    arr = validate_counts(counts)
    if arr.shape != (N_ELEMENTS,):
        raise ValueError(f"Invalid counts with shape {arr.shape}: expected ({N_ELEMENTS},).")
    return arr


# ------------------------------------------------------------------------------- the rules
# An element's side in a sign pattern (the first axis of _Rule.side_states): 0 all its states
# (charge neutrality), 1 its cation states (> 0), 2 its anion states (< 0).
_N_CARRIERS = 5


class _Rule:
    """A validity rule as data: each element's oxidation states and whether the Pauling test applies.

    A composition passes iff one state per element gives total charge 0 and, with
    ``en``, every cation is strictly less electronegative than every anion (an element
    without electronegativity then has no usable state, as SMACT's test fails on it).
    ``single_element_valid``: whether a one-element composition passes (SMACT's fast path;
    not the oxide rule). Built once per constraint; holds the kernel's tables.
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
        if len(sv) > 62:
            raise RuntimeError(f"{len(sv)} distinct oxidation states in {name!r}: at most 62 fit the state bitmasks.")
        self.sv = np.array(sv, dtype=np.int64)
        j_of = {s: j for j, s in enumerate(sv)}
        side_states = (
            table,
            [tuple(s for s in st if s > 0) for st in table],
            [tuple(s for s in st if s < 0) for st in table],
        )
        width = max(1, max(len(st) for st in table))
        # [side, element, :n] the element's states on a side, and as a bitmask over sv
        self.side_states = np.zeros((3, N_ELEMENTS, width), dtype=np.int64)
        self.n_side_states = np.zeros((3, N_ELEMENTS), dtype=np.int64)
        self.state_bits = np.zeros((3, N_ELEMENTS), dtype=np.int64)
        for side, sts in enumerate(side_states):
            for i, st in enumerate(sts):
                self.side_states[side, i, : len(st)] = st
                self.n_side_states[side, i] = len(st)
                self.state_bits[side, i] = sum(1 << j_of[s] for s in st)
        smax = int(np.abs(self.sv).max()) if len(sv) else 1
        # Every total in a bitset is that of at most 54 atoms (4 free additions + oxygen):
        # charges -big..big.
        self.big = smax * MAX_COUNT * (_FREE_STEPS + 2)
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
        self.fingerprint = hashlib.sha256(
            repr(
                (ELEMENTS, OXYGEN_INDEX, MAX_COUNT, N_STEPS, name, self.states,
                 validity.PAULING_ELECTRONEGATIVITY if en else None, single_element_valid)
            ).encode()
        ).hexdigest()  # fmt: skip

    def masks(self, arr: np.ndarray, step: int) -> np.ndarray:
        """Exact masks ``bool (n, 800)`` of checked states at step 2, 3 or 4 (no cache).

        Each row is decided on its own (the kernel's scratch state is reset per row), so blocks of
        rows run in parallel threads, as many as numba's thread count (``numba.set_num_threads``,
        ``NUMBA_NUM_THREADS``), with the same result.
        """
        arr = np.ascontiguousarray(arr, dtype=np.int64)
        out = np.zeros((len(arr), N_ELEMENTS, N_COUNTS), dtype=np.bool_)
        args = (step, self.big, self.sv, self.side_states, self.n_side_states, self.state_bits, self.x,
                self.carriers, self.en, self.single_element_valid)
        threads = min(_threads(), len(arr) // _ROWS_PER_THREAD)
        if threads <= 1:
            _masks_kernel(arr, *args, out)
        else:
            bounds = np.linspace(0, len(arr), threads + 1).astype(int)
            blocks = [(arr[a:b], out[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
            list(_pool().map(lambda block: _masks_kernel(block[0], *args, block[1]), blocks))
        return out.reshape(len(arr), N_ACTIONS)

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


_ROWS_PER_THREAD = 64  # fewer rows than this per thread are not worth a thread's start


def _threads() -> int:
    try:
        import numba

        return int(numba.get_num_threads())
    except ImportError:  # pragma: no cover - without numba the kernel holds the GIL anyway
        return 1


_POOL: list = []  # [(pid, executor)]: a forked child starts its own (the parent's threads are not in it)


def _pool():
    import os
    from concurrent.futures import ThreadPoolExecutor

    if not _POOL or _POOL[0][0] != os.getpid():
        _POOL[:] = [(os.getpid(), ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                                                     thread_name_prefix="completion"))]
    return _POOL[0][1]


def _make_rule(constraint: str) -> _Rule:
    if constraint == "charge_neutral":
        return _Rule(constraint, validity.state_table("smact14"), en=False, single_element_valid=True)
    if constraint == "electronegativity_balanced":
        return _Rule(constraint, validity.state_table("smact14"), en=True, single_element_valid=True)
    # validity.oxide_rule: icsd24 states restricted (O only -2, metals >= 0, states pymatgen
    # counts as common), Pauling test,
    # oxygen and another element needed (every legal final composition has both)
    states = validity.oxide_states(validity.state_table("icsd24"))
    return _Rule(constraint, states, en=True, single_element_valid=False)


@functools.lru_cache(maxsize=None)
def _rule(constraint: str) -> _Rule:
    return _make_rule(_check_constraint(constraint))


def rule_fingerprint(constraint: str) -> str:
    """The sha256 of a constraint's rule: element order, oxidation-state table, electronegativities
    and counts. It changes whenever the rule's meaning does (a new state table, another smact or
    pymatgen), so results made under a rule can be keyed by it.

    Example:
        >>> len(rule_fingerprint("oxide_rule"))
        64
    """
    return _rule(constraint).fingerprint


# ------------------------------------------------------------------ bitsets (compiled)
# A set of charges is a bitset of 64-bit words: charge v is bit v + big (see _Rule.big).
# Every set holds totals of real partial compositions, so no shift ever drops a member.
_O = OXYGEN_INDEX
_NEG_INF = -np.inf
_POS_INF = np.inf


@njit(cache=True)
def _shift_or(dst, src, sh):  # pragma: no cover - compiled
    """``dst |= {v + sh : v in src}`` (``sh`` may be negative)."""
    nw = dst.shape[0]
    if sh >= 0:
        q = sh >> 6
        r = np.uint64(sh & 63)
        if r == 0:
            for i in range(nw - 1, q - 1, -1):
                dst[i] |= src[i - q]
        else:
            lft = np.uint64(64) - r
            for i in range(nw - 1, q, -1):
                dst[i] |= (src[i - q] << r) | (src[i - q - 1] >> lft)
            if q < nw:
                dst[q] |= src[0] << r
    else:
        sh = -sh
        q = sh >> 6
        r = np.uint64(sh & 63)
        if r == 0:
            for i in range(nw - q):
                dst[i] |= src[i + q]
        else:
            lft = np.uint64(64) - r
            for i in range(nw - q - 1):
                dst[i] |= (src[i + q] >> r) | (src[i + q + 1] << lft)
            if q < nw:
                dst[nw - q - 1] |= src[nw - 1] >> r


@njit(cache=True)
def _has(bs, v, big):  # pragma: no cover - compiled
    """Whether charge ``v`` is in ``bs``."""
    p = v + big
    if p < 0 or p > 2 * big:
        return False
    return ((bs[p >> 6] >> np.uint64(p & 63)) & np.uint64(1)) != 0


@njit(cache=True)
def _add(bs, v, big):  # pragma: no cover - compiled
    p = v + big
    bs[p >> 6] |= np.uint64(1) << np.uint64(p & 63)


@njit(cache=True)
def _fold(dst, src, tmp, vals, nvals, k, skip1, skip2):  # pragma: no cover - compiled
    """``dst = src + C_0 + .. + C_{k-1}`` (sumsets), items ``skip1``/``skip2`` left out;
    ``C_i = vals[i, :nvals[i]]``."""
    dst[:] = src
    for i in range(k):
        if i == skip1 or i == skip2:
            continue
        tmp[:] = 0
        for t in range(nvals[i]):
            _shift_or(tmp, dst, vals[i, t])
        dst[:] = tmp


@njit(cache=True)
def _window(dst, c_o, lo, hi, o_st, n_o, big):  # pragma: no cover - compiled
    """``dst = {(c_o + t) s : t in lo..hi, s in o_st[:n_o]}`` (oxygen's totals)."""
    dst[:] = 0
    for t in range(lo, hi + 1):
        for u in range(n_o):
            _add(dst, (c_o + t) * o_st[u], big)


@njit(cache=True)
def _new_element_bits(e, en, x, amin, cmax, state_bits):  # pragma: no cover - compiled
    """The states a new element ``e`` may take: all (charge neutrality), or under the EN test its
    cation states if it is less electronegative than every anion (``amin``) and its anion states
    if more electronegative than every cation (``cmax``)."""
    if not en:
        return state_bits[0, e]
    bits = state_bits[0, e] & 0
    if x[e] < amin:
        bits |= state_bits[1, e]
    if x[e] > cmax:
        bits |= state_bits[2, e]
    return bits


@njit(cache=True, inline="always")
def _mark_count(res, m, hit):  # pragma: no cover - compiled
    """Where ``hit``, allow count ``m`` of this step: 0 (skip) for every element, else oxygen ``m``."""
    if hit:
        if m == 0:
            for e in range(res.shape[0]):
                res[e, 0] = True
        else:
            res[_O, m] = True


@njit(cache=True, inline="always")
def _mark_new_elements(res, hits, is_item, en, x, amin, cmax, state_bits):  # pragma: no cover - compiled
    """``res[e, m]`` for each new element ``e`` (not oxygen, not present) and ``m`` in 1..9 where one
    of its possible states (:func:`_new_element_bits`) is in ``hits[m]``."""
    for e in range(res.shape[0]):
        if e == _O or is_item[e]:
            continue
        bits = _new_element_bits(e, en, x, amin, cmax, state_bits)
        if bits == 0:
            continue
        for m in range(1, 10):
            if bits & hits[m]:
                res[e, m] = True


@njit(cache=True)
def _state_hits(bs, scale, sv, big):  # pragma: no cover - compiled
    """Bitmask over the states j with ``-scale * sv[j]`` in ``bs``."""
    out = 0
    for j in range(sv.shape[0]):
        if _has(bs, -scale * sv[j], big):
            out |= 1 << j
    return out


@njit(cache=True)
def _second_new(res, p, pat_sides, pat_bounds, items, cnt, k, is_item, c_o, big, sv, side_states,
                n_side_states, state_bits, x, c1, c2, en, vals, nvals, w9, y9, tmp, g, g_done,
                ga, ga_key):  # pragma: no cover - compiled
    """Step 2, pattern ``p``: set the new-element actions ``(e, m)`` still False that a second
    new element ``f`` completes: ``-m s_e - d s_f`` in Y9 (``d`` = 1..9). ``s_f`` is available
    iff one of the best two carriers of that state outside the present elements (``c1``,
    ``c2``) is not ``e`` and lies on the right side of the pattern's bounds widened by ``e``."""
    n_el = res.shape[0]
    nj = sv.shape[0]
    cmax, amin = pat_bounds[p, 0], pat_bounds[p, 1]
    ready = False
    for e in range(n_el):
        if e == _O or is_item[e]:
            continue
        left = False
        for m in range(1, 10):
            if not res[e, m]:
                left = True
        if not left:
            continue
        for side in range(3):
            if en == (side == 0):
                continue
            if en and side == 1 and not x[e] < amin:
                continue
            if en and side == 2 and not x[e] > cmax:
                continue
            bits = state_bits[side, e]
            if bits == 0:
                continue
            cm, am = cmax, amin  # bounds for f with e in the composition
            if en and side == 1 and x[e] > cm:
                cm = x[e]
            if en and side == 2 and x[e] < am:
                am = x[e]
            avail = 0
            for jf in range(nj):
                if en:
                    if sv[jf] > 0:
                        ok1 = c1[jf] >= 0 and c1[jf] != e and x[c1[jf]] < am
                        ok2 = c2[jf] >= 0 and x[c2[jf]] < am
                    else:
                        ok1 = c1[jf] >= 0 and c1[jf] != e and x[c1[jf]] > cm
                        ok2 = c2[jf] >= 0 and x[c2[jf]] > cm
                else:
                    ok1 = c1[jf] >= 0 and c1[jf] != e
                    ok2 = c2[jf] >= 0
                if ok1 or ok2:
                    avail |= 1 << jf
            if avail == 0:
                continue
            if not ready:  # this pattern's Y9; G_j = Y9 + {d sv[j]} and their unions on demand
                for i in range(k):
                    nvals[i] = n_side_states[pat_sides[p, i], items[i]]
                    for t in range(nvals[i]):
                        vals[i, t] = cnt[i] * side_states[pat_sides[p, i], items[i], t]
                o_side = pat_sides[p, k]
                _window(w9, c_o, 1, 9, side_states[o_side, _O], n_side_states[o_side, _O], big)
                _fold(y9, w9, tmp, vals, nvals, k, -1, -1)
                g_done[:] = False
                ga_key[:] = 0
                ready = True
            slot = -1  # the union of G_j over the available j (a few distinct ones per pattern)
            for u in range(ga_key.shape[0]):
                if ga_key[u] == avail:
                    slot = u
                    break
            if slot < 0:
                slot = 0
                for u in range(ga_key.shape[0]):
                    if ga_key[u] == 0:
                        slot = u
                        break
                ga_key[slot] = avail
                ga[slot][:] = 0
                for jf in range(nj):
                    if not (avail >> jf) & 1:
                        continue
                    if not g_done[jf]:
                        g[jf][:] = 0
                        for d in range(1, 10):
                            _shift_or(g[jf], y9, d * sv[jf])
                        g_done[jf] = True
                    ga[slot] |= g[jf]
            for m in range(1, 10):
                if res[e, m]:
                    continue
                for je in range(nj):
                    if (bits >> je) & 1 and _has(ga[slot], -m * sv[je], big):
                        res[e, m] = True
                        break


@njit(cache=True, nogil=True)  # nogil: row blocks run in parallel threads (_Rule.masks)
def _masks_kernel(arr, step, big, sv, side_states, n_side_states, state_bits, x, carriers, en,
                  single_valid, out):  # pragma: no cover - compiled
    """Masks ``out (n, 80, 10)`` (OR-ed into) of the states ``arr (n, 80)`` at step 2, 3 or 4.

    See the module docstring for what is decided how. Only actions the hard rules allow are
    ever set (step 4: oxygen 1-9; step 3: oxygen and count 0 only with a non-oxygen element).
    """
    n, n_el = arr.shape
    nj = sv.shape[0]
    width = side_states.shape[2]
    nw = (2 * big + 1 + 63) // 64
    buf = np.zeros((24 + nj + 8, nw), dtype=np.uint64)
    zero = buf[0]
    tmp = buf[1]
    t_all = buf[2]
    w9 = buf[3]
    w18 = buf[4]
    y9 = buf[5]
    u_set = buf[7]  # step 2: Y18 | R
    fs = buf[8]  # step 2: the new elements' totals d * s_f
    fs9 = buf[9]  # FS + oxygen 1..9
    rp = buf[10]  # step 2: R' | T + FS (oxygen's partner after an oxygen action)
    tmp2 = buf[11]
    y9m = buf[12:16]  # Y9 without item i
    vm = buf[16:20]  # step 2: Y18 | R | N9 without item i
    g = buf[24 : 24 + nj]  # step 2: Y9 + {d sv[j] : d = 1..9}
    ga = buf[24 + nj :]  # step 2: unions of g
    zero[:] = 0
    _add(zero, 0, big)
    items = np.empty(4, dtype=np.int64)
    cnt = np.empty(4, dtype=np.int64)
    slots = np.empty(5, dtype=np.int64)
    sides = np.empty(5, dtype=np.int64)
    vals = np.empty((4, width), dtype=np.int64)
    nvals = np.empty(4, dtype=np.int64)
    is_item = np.zeros(n_el, dtype=np.bool_)
    c1 = np.empty(nj, dtype=np.int64)
    c2 = np.empty(nj, dtype=np.int64)
    z = np.empty(2 * 9 + 1, dtype=np.int64)
    zu = np.empty(10, dtype=np.int64)
    prof1 = np.empty(28, dtype=np.bool_)
    prof2 = np.empty(28, dtype=np.bool_)
    g_done = np.zeros(nj, dtype=np.bool_)
    ga_key = np.zeros(8, dtype=np.int64)
    pat_sides = np.zeros((6, 5), dtype=np.int64)
    pat_bounds = np.zeros((6, 2), dtype=np.float64)
    for r in range(n):
        row = arr[r]
        res = out[r]
        k = 0
        for i in range(n_el):
            if i != _O and row[i] > 0:
                items[k] = i
                cnt[k] = row[i]
                is_item[i] = True
                k += 1
        c_o = row[_O]
        for s in range(k):
            slots[s] = items[s]
        slots[k] = _O
        if step == 2:  # the best two carriers of each state outside the present elements
            for j in range(nj):
                c1[j] = -1
                c2[j] = -1
                for t in range(carriers.shape[1]):
                    c = carriers[j, t]
                    if c < 0 or is_item[c]:
                        continue
                    if c1[j] < 0:
                        c1[j] = c
                    else:
                        c2[j] = c
                        break
        n_pat = 0
        for t_slot in range(-1, k + 1):  # the sign patterns: threshold below all / at a slot
            if not en:
                if t_slot >= 0:
                    break
                cmax, amin = _NEG_INF, _POS_INF
                ok = True
                for s in range(k + 1):
                    sides[s] = 0
                    if n_side_states[0, slots[s]] == 0:
                        ok = False
            else:
                if t_slot >= 0:
                    thr = x[slots[t_slot]]
                    if np.isnan(thr):
                        continue
                    dup = False
                    for u in range(t_slot):
                        if x[slots[u]] == thr:
                            dup = True
                    if dup:
                        continue
                else:
                    thr = _NEG_INF
                cmax, amin = thr, _POS_INF
                ok = True
                for s in range(k + 1):
                    xs = x[slots[s]]
                    if xs <= thr:
                        sides[s] = 1
                    else:
                        sides[s] = 2
                        if xs < amin:
                            amin = xs
                    if n_side_states[sides[s], slots[s]] == 0:
                        ok = False
            if not ok:
                continue
            for i in range(k):
                nvals[i] = n_side_states[sides[i], items[i]]
                for t in range(nvals[i]):
                    vals[i, t] = cnt[i] * side_states[sides[i], items[i], t]
            o_side = sides[k]
            o_st = side_states[o_side, _O]
            n_o = n_side_states[o_side, _O]
            _fold(t_all, zero, tmp, vals, nvals, k, -1, -1)
            if step == 4:  # the final oxygen c_o + m against T
                for m in range(1, 10):
                    for u in range(n_o):
                        if _has(t_all, -(c_o + m) * o_st[u], big):
                            res[_O, m] = True
                continue
            # ---- oxygen or count 0 now (and at step 2 one more action), then oxygen
            for t in range(1, 28):
                prof1[t] = False
                for u in range(n_o):
                    if _has(t_all, -(c_o + t) * o_st[u], big):
                        prof1[t] = True
            _window(w9, c_o, 1, 9, o_st, n_o, big)
            _fold(y9, w9, tmp, vals, nvals, k, -1, -1)
            for i in range(k):
                _fold(y9m[i], w9, tmp, vals, nvals, k, i, -1)
            if step == 3:
                for m in range(1, 10):
                    z[m] = _state_hits(y9, m, sv, big)
                for m in range(10):
                    hit = False
                    if k > 0:
                        for t in range(m + 1, m + 10):
                            hit |= prof1[t]
                    _mark_count(res, m, hit)
                # present elements: c_e + m atoms against Y9 without them
                for i in range(k):
                    for m in range(1, 10):
                        for t in range(nvals[i]):
                            if _has(y9m[i], -(cnt[i] + m) * side_states[sides[i], items[i], t], big):
                                res[items[i], m] = True
                # new elements
                _mark_new_elements(res, z, is_item, en, x, amin, cmax, state_bits)
                continue
            # ---- step 2 (two actions, then oxygen 1..9); what earlier patterns decided is skipped
            need_c = False  # oxygen m / count 0 (res[_O, 0] stands for every count 0)
            for m in range(10):
                if not res[_O, m]:
                    need_c = True
            need_b = 0  # bits over the present elements
            for i in range(k):
                for m in range(1, 10):
                    if not res[items[i], m]:
                        need_b |= 1 << i
            need_a = False
            for e in range(n_el):
                if e != _O and not is_item[e]:
                    for m in range(1, 10):
                        if not res[e, m]:
                            need_a = True
            if need_c or need_b:  # new elements f that fit the pattern: FS = {d s_f}
                fs[:] = 0
                for j in range(nj):
                    c = c1[j]
                    if c < 0:
                        continue
                    if en and not ((sv[j] > 0 and x[c] < amin) or (sv[j] < 0 and x[c] > cmax)):
                        continue
                    for d in range(1, 10):
                        _add(fs, d * sv[j], big)
            if need_a or need_b:
                _window(w18, c_o, 1, 18, o_st, n_o, big)
            # U = Y18 | R (R: a present element raised by d = 1..9, then oxygen 1..9); rp: R
            # without oxygen, or a new element f (T + FS)
            if need_a:
                _fold(u_set, w18, tmp, vals, nvals, k, -1, -1)
            if need_c:
                _fold(rp, fs, tmp, vals, nvals, k, -1, -1)
            if need_a or need_c:
                for i in range(k):
                    if need_c:
                        _fold(tmp2, zero, tmp, vals, nvals, k, i, -1)  # T without item i
                    for d in range(1, 10):
                        for t in range(nvals[i]):
                            v = (cnt[i] + d) * side_states[sides[i], items[i], t]
                            if need_a:
                                _shift_or(u_set, y9m[i], v)
                            if need_c:
                                _shift_or(rp, tmp2, v)
            # ---- oxygen m or count 0: then oxygen, a raised element or a new one; oxygen
            if need_c:
                for t in range(1, 19):
                    prof2[t] = False
                    for u in range(n_o):
                        if _has(rp, -(c_o + t) * o_st[u], big):
                            prof2[t] = True
                for m in range(10):
                    hit = False
                    if k > 0:
                        for t in range(m + 1, m + 19):
                            hit |= prof1[t]
                    for t in range(m + 1, m + 10):
                        hit |= prof2[t]
                    _mark_count(res, m, hit)
            # ---- present elements raised by m: c_e + m against V (Y18, R and N9 = Y9 + FS,
            # all without the element); c_e + m + d against Y9 without it
            if need_b:
                fs9[:] = 0
                for t in range(1, 10):
                    for u in range(n_o):
                        _shift_or(fs9, fs, (c_o + t) * o_st[u])
            for i in range(k):
                if not (need_b >> i) & 1:
                    continue
                _fold(vm[i], w18, tmp, vals, nvals, k, i, -1)
                _fold(tmp2, fs9, tmp, vals, nvals, k, i, -1)
                vm[i] |= tmp2
                for h_i in range(k):
                    if h_i == i:
                        continue
                    _fold(tmp2, w9, tmp, vals, nvals, k, i, h_i)
                    for d in range(1, 10):
                        for t in range(nvals[h_i]):
                            _shift_or(vm[i], tmp2, (cnt[h_i] + d) * side_states[sides[h_i], items[h_i], t])
                for m in range(1, 10):
                    if res[items[i], m]:
                        continue
                    for t in range(nvals[i]):
                        s = side_states[sides[i], items[i], t]
                        if _has(vm[i], -(cnt[i] + m) * s, big):
                            res[items[i], m] = True
                            break
                        for d in range(1, 10):
                            if _has(y9m[i], -(cnt[i] + m + d) * s, big):
                                res[items[i], m] = True
                                break
                        if res[items[i], m]:
                            break
            # ---- new elements e, m: -m s_e in U, or -(m + d) s_e in Y9 (a second new
            # element f: after all patterns, below)
            if need_a:
                for m in range(1, 19):
                    z[m] = _state_hits(y9, m, sv, big)
                for m in range(1, 10):
                    zu[m] = _state_hits(u_set, m, sv, big)
                    for d in range(1, 10):
                        zu[m] |= z[m + d]
                _mark_new_elements(res, zu, is_item, en, x, amin, cmax, state_bits)
            if n_pat < pat_sides.shape[0]:  # kept for the second new element, below
                pat_sides[n_pat, : k + 1] = sides[: k + 1]
                pat_bounds[n_pat, 0] = cmax
                pat_bounds[n_pat, 1] = amin
                n_pat += 1
        if step == 2:
            # new elements (e, m) still False: a second new element f, -m s_e - d s_f in Y9
            for p in range(n_pat):
                _second_new(res, p, pat_sides, pat_bounds, items, cnt, k, is_item, c_o, big, sv,
                            side_states, n_side_states, state_bits, x, c1, c2, en, vals, nvals,
                            w9, y9, tmp, g, g_done, ga, ga_key)
        if step == 4 and k == 0:
            for m in range(1, 10):
                res[_O, m] = single_valid  # oxygen alone (not legally reachable)
        for s in range(k):
            is_item[items[s]] = False


# ---------------------------------------------------------------------------- public API
def _check_matrix(counts: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    if (
        isinstance(counts, np.ndarray) and counts.dtype == np.int64 and counts.ndim == 2
        and counts.shape[1] == N_ELEMENTS and (not counts.size or counts.min() >= 0)
    ):  # fmt: skip
        return counts  # what validate_counts would return (the reachability check follows)
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


def _state_keys(arr: np.ndarray, step: int, constraint: str) -> list[bytes]:
    """Memo keys: constraint, step, then each row's counts as 80 bytes (reachable counts are at
    most 45). Plain bytes, so the memo adds nothing for the garbage collector to traverse."""
    prefix = bytes((CONSTRAINTS.index(constraint), step))
    raw = arr.astype(np.uint8).tobytes()
    return [prefix + raw[i : i + N_ELEMENTS] for i in range(0, len(raw), N_ELEMENTS)]


def completable_action_masks(
    counts: Sequence[Sequence[int]] | np.ndarray, step: int, constraint: Constraint
) -> np.ndarray:
    """Exact constraint masks of a batch of states at one step.

    Row ``i`` equals ``completable_actions(counts[i], step, constraint)``: action ``a`` is
    True iff the hard rules allow it and some sequence of legal remaining actions (the
    final oxygen 1-9 included) ends in a composition that passes ``constraint``. Each
    distinct state is computed once (one compiled pass); results are memoised per state.

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
    return _masks(arr, step, constraint)


def _masks(arr: np.ndarray, step: int, constraint: str) -> np.ndarray:
    """:func:`completable_action_masks` of checked arguments."""
    n = len(arr)
    if step < _PROVEN_STEP:
        _rule(constraint).check_proof()
        return hard_rule_masks(arr, step)
    keys = _state_keys(arr, step, constraint)
    todo: dict = {}  # key -> index among the rows to compute
    todo_rows, miss_rows, miss_index, hit_rows, hits = [], [], [], [], []
    for r, key in enumerate(keys):
        hit = _CACHE.get(key)
        if hit is None:
            j = todo.get(key)
            if j is None:
                j = todo[key] = len(todo_rows)
                todo_rows.append(r)
            miss_rows.append(r)
            miss_index.append(j)
        else:
            hit_rows.append(r)
            hits.append(hit)
    if todo_rows:
        masks = _rule(constraint).masks(arr if len(todo_rows) == n else arr[todo_rows], step)
        if len(todo_rows) == n:  # every row new and distinct
            out = masks
        else:
            out = np.empty((n, N_ACTIONS), dtype=bool)
            out[miss_rows] = masks[miss_index]
        if len(_CACHE) + len(todo_rows) > _CACHE_SIZE:
            _CACHE.clear()
        bits = np.packbits(masks, axis=1)
        for r, b in zip(todo_rows, bits):
            _CACHE[keys[r]] = b.tobytes()
    else:
        out = np.empty((n, N_ACTIONS), dtype=bool)
    if hits:
        raw = np.frombuffer(b"".join(hits), dtype=np.uint8).reshape(len(hits), -1)
        out[hit_rows] = np.unpackbits(raw, axis=1, count=N_ACTIONS).view(bool)
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
    constraint = _check_constraint(constraint)
    arr = _check_counts(counts)[None]
    _check_reachable_rows(arr, step)
    return _masks(arr, step, constraint)[0]


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
