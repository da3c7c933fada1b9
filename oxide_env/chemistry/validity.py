"""Charge neutrality and electronegativity balance, exactly as SMACT defines them, but fast.

The two public functions reproduce, with no mismatches,

* ``charge_neutral(c)`` ==
  ``smact.screening.smact_validity(f, use_pauling_test=False, include_alloys=False,
  oxidation_states_set="smact14")``
* ``electronegativity_balanced(c)`` ==
  ``smact.screening.smact_validity(f, use_pauling_test=True, include_alloys=False,
  oxidation_states_set="smact14")``

where ``f`` is the reduced formula of ``c``. The oxidation states (the 2014 SMACT set) and
Pauling electronegativities are read from the installed ``smact`` package at import time.

How SMACT decides (``smact_validity`` with the arguments above), and how it is matched:

* Each element takes a single oxidation state (no mixed valence: SMACT's
  ``mixed_valence=False`` default), so e.g. ``Fe3O4`` is *not* charge neutral.
* A composition of a single element is valid, whatever its oxidation states (SMACT's
  fast path). So ``"O2"`` is "charge neutral" and "electronegativity balanced".
* Otherwise SMACT tries every assignment of one oxidation state per element. Charge
  neutral: ``sum(n_i * s_i) == 0`` for reduced counts ``n_i``. SMACT passes the counts
  themselves as ``stoichs`` to ``neutral_ratios``, so its ``threshold`` argument is never
  used, and the gcd filter always passes (SMACT reduces the counts first). Scaling all
  counts does not change the answer, so reducing is only a cache-key and speed matter.
* An element with no oxidation states in the set makes the composition invalid.
* Pauling test (``eneg_states_test``): for every pair of elements, a cation (``s > 0``)
  must have a *strictly* lower electronegativity than an anion (``s < 0``); equal values
  fail. Zero states and cation-cation / anion-anion pairs are unconstrained. If any
  element's electronegativity is ``None`` the test fails (``eneg_states_test`` returns
  False on a ``None`` before comparing oxidation states).
* The empty composition (all counts zero) is neither: both functions return False.
  (SMACT cannot be asked: a formula string cannot be empty.)

Algorithm. Sums of oxidation states are kept as Python ints used as bitsets (bit ``v``
set = a total of ``v`` is reachable) and extended element by element with shift-or.
Charge neutrality asks whether the total 0 is reachable. For the electronegativity test,
sort the elements by electronegativity into groups of equal value; an assignment passes
iff for some split point the elements before it take states ``>= 0`` and those after it
take states ``<= 0`` (equal-electronegativity elements are never split, so equal values
cannot be cation and anion). A prefix bitset of the non-negative totals and a suffix
bitset of the (negated) non-positive totals then meet at some split iff they share a bit.
A bounds check (all totals > 0 or all < 0) rejects most non-neutral inputs first; a total
count above 65,536 switches to exact sets of totals to keep the bitsets small. Results
are memoised (``functools.lru_cache``) on the reduced ``(element index, count)`` tuple.

Example:
    >>> from oxide_env.chemistry.validity import charge_neutral, electronegativity_balanced
    >>> charge_neutral(["Fe2O3", "NaO5"]).tolist()
    [True, False]
    >>> electronegativity_balanced("CaTiO3").tolist()
    [True]
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from oxide_env.chemistry.composition import formula_to_counts, validate_counts
from oxide_env.chemistry.elements import ELEMENTS, N_ELEMENTS

__all__ = [
    "OXIDATION_STATES",
    "PAULING_ELECTRONEGATIVITY",
    "charge_neutral",
    "clear_cache",
    "electronegativity_balanced",
]

Key = tuple[int, ...]
"""A reduced composition, flat: ``(element_index, count, element_index, count, ...)``
with counts > 0, in element-index order (hashes faster than a tuple of pairs)."""

_CACHE_SIZE = 1 << 18
_SMALL_BATCH = 32
"""Up to this many count rows are keyed row by row, above it with whole-matrix numpy."""
_MAX_TOTAL_COUNT = 1 << 16
"""Above this total count the bitsets would get large (bits ~ 12 x total); fall back to
exact sets of totals instead."""


def _load_smact_data() -> tuple[tuple[tuple[int, ...], ...], tuple[float | None, ...]]:
    import smact

    states: list[tuple[int, ...]] = []
    enegs: list[float | None] = []
    for symbol in ELEMENTS:
        element = smact.Element(symbol)
        ox = element.oxidation_states_smact14
        states.append(tuple(sorted({int(s) for s in ox})) if ox else ())
        x = element.pauling_eneg
        if x is not None:
            x = float(x)
            if not math.isfinite(x):
                # SMACT would treat a NaN as "never violates"; no element has one today.
                raise RuntimeError(
                    f"smact gives a non-finite Pauling electronegativity {x!r} for {symbol}; "
                    "oxide_env.chemistry.validity does not reproduce SMACT for that case."
                )
        enegs.append(x)
    return tuple(states), tuple(enegs)


OXIDATION_STATES, PAULING_ELECTRONEGATIVITY = _load_smact_data()
"""Per element of ``ELEMENTS``: sorted SMACT-2014 oxidation states (``()`` if none) and
the Pauling electronegativity (``None`` if SMACT has none)."""


# --------------------------------------------------------------------------- core tests
_MIN = tuple(st[0] if st else 0 for st in OXIDATION_STATES)
_MAX = tuple(st[-1] if st else 0 for st in OXIDATION_STATES)
_REL = tuple(tuple(s - st[0] for s in st) for st in OXIDATION_STATES)
_LEN = tuple(len(st) for st in OXIDATION_STATES)
_POS = tuple(tuple(s for s in st if s >= 0) for st in OXIDATION_STATES)
_NEG = tuple(tuple(-s for s in st if s <= 0) for st in OXIDATION_STATES)
_EN_SORT = tuple(-math.inf if x is None else x for x in PAULING_ELECTRONEGATIVITY)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _neutral_key(key: Key) -> bool:
    """Charge neutrality of a reduced composition key (see module docstring)."""
    m = len(key)
    if m <= 2:
        return m == 2  # empty: False; single element: True (SMACT's fast path)
    lo = hi = total = 0
    last = bl = -1
    for j in range(0, m, 2):
        i, n = key[j], key[j + 1]
        if not _LEN[i]:
            return False  # SMACT: an element without oxidation states is invalid
        lo += n * _MIN[i]
        hi += n * _MAX[i]
        total += n
        if _LEN[i] > bl:
            bl, last = _LEN[i], j
    if lo > 0 or hi < 0:
        return False
    if total > _MAX_TOTAL_COUNT:
        return _neutral_sets(key)
    # bit p of `bits` <=> the elements other than `last` can total p + offset.
    bits, offset = 1, 0
    for j in range(0, m, 2):
        if j != last:
            i, n = key[j], key[j + 1]
            out = 0
            for r in _REL[i]:
                out |= bits << (n * r)
            bits = out
            offset += n * _MIN[i]
    # The element with most states is only tested against the others' totals.
    i, n = key[last], key[last + 1]
    for s in OXIDATION_STATES[i]:
        p = -offset - n * s
        if p >= 0 and (bits >> p) & 1:
            return True
    return False


def _neutral_sets(key: Key) -> bool:
    """Same as :func:`_neutral_key` with sets of totals (for huge counts)."""
    totals = {0}
    for j in range(0, len(key), 2):
        i, n = key[j], key[j + 1]
        totals = {t + n * s for t in totals for s in OXIDATION_STATES[i]}
    return 0 in totals


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _balanced_key(key: Key) -> bool:
    """Electronegativity balance of a reduced composition key (see module docstring)."""
    m = len(key)
    if m <= 2:
        return m == 2  # empty: False; single element: True (SMACT's fast path)
    for j in range(0, m, 2):
        if PAULING_ELECTRONEGATIVITY[key[j]] is None:
            return False  # SMACT's eneg_states_test fails on any None
    if not _neutral_key(key):
        return False
    pairs = sorted(zip(key[::2], key[1::2]), key=lambda p: _EN_SORT[p[0]])
    if sum(key[1::2]) > _MAX_TOTAL_COUNT:
        return _balanced_sets(pairs)
    k = len(pairs)
    # suffix[t]: bit v <=> elements t.. can take states <= 0 totalling -v.
    suffix = [0] * (k + 1)
    suffix[k] = bits = 1
    for t in range(k - 1, -1, -1):
        i, n = pairs[t]
        out = 0
        for s in _NEG[i]:
            out |= bits << (n * s)
        bits = suffix[t] = out
        if not out:
            break
    # bits: bit v <=> elements ..t-1 can take states >= 0 totalling v. A split before
    # element t is allowed only between different electronegativities.
    bits = 1
    previous = None
    for t in range(k):
        i, n = pairs[t]
        x = _EN_SORT[i]
        if x != previous and bits & suffix[t]:
            return True
        previous = x
        out = 0
        for s in _POS[i]:
            out |= bits << (n * s)
        bits = out
        if not out:
            return False
    return bool(bits & 1)  # all elements cation-or-zero; suffix[k] == 1


def _balanced_sets(pairs: list[tuple[int, int]]) -> bool:
    """Same as :func:`_balanced_key` (after sorting) with sets of totals."""
    k = len(pairs)
    suffix: list[set[int]] = [set() for _ in range(k + 1)]
    suffix[k] = totals = {0}
    for t in range(k - 1, -1, -1):
        i, n = pairs[t]
        totals = suffix[t] = {v + n * s for v in totals for s in _NEG[i]}
    totals = {0}
    previous = None
    for t in range(k):
        i, n = pairs[t]
        if _EN_SORT[i] != previous and not totals.isdisjoint(suffix[t]):
            return True
        previous = _EN_SORT[i]
        totals = {v + n * s for v in totals for s in _POS[i]}
    return 0 in totals


# ------------------------------------------------------------------------ input handling
@functools.lru_cache(maxsize=_CACHE_SIZE)
def _formula_key(formula: str) -> Key:
    counts = formula_to_counts(formula)
    nonzero = np.flatnonzero(counts)
    values = counts[nonzero]
    g = max(int(np.gcd.reduce(values)), 1) if values.size else 1
    return tuple(x for pair in zip(nonzero.tolist(), (values // g).tolist()) for x in pair)


def _matrix_keys(counts: np.ndarray) -> list[Key]:
    """Reduced keys of the rows of a validated ``(n, 80)`` int64 count matrix."""
    flat = np.flatnonzero(counts.ravel() != 0)
    rows, cols = np.divmod(flat, N_ELEMENTS)
    values = counts.ravel()[flat]
    per_row = np.bincount(rows, minlength=len(counts))
    ends = np.cumsum(per_row)
    if flat.size:
        has = per_row > 0
        g = np.ones(len(counts), dtype=np.int64)
        g[has] = np.gcd.reduceat(values, (ends - per_row)[has])
        values = values // np.repeat(g, per_row)
    interleaved = np.stack([cols, values], axis=1).ravel().tolist()
    keys: list[Key] = []
    start = 0
    for end in (2 * ends).tolist():
        keys.append(tuple(interleaved[start:end]))
        start = end
    return keys


def _keys(compositions: str | Sequence[str] | Sequence[Sequence[int]] | np.ndarray) -> list[Key]:
    """Turn the accepted input forms into reduced composition keys (validating them)."""
    if isinstance(compositions, str):
        return [_formula_key(compositions)]
    if isinstance(compositions, np.ndarray):
        if compositions.dtype.kind in "US":
            return [_formula_key(str(f)) for f in compositions.reshape(-1).tolist()]
        arr = compositions
    else:
        items = list(compositions)
        if not items:
            return []
        n_str = sum(isinstance(x, str) for x in items)
        if n_str == len(items):
            return [_formula_key(f) for f in items]
        if n_str:
            bad = next(x for x in items if not isinstance(x, str))
            raise ValueError(
                f"Invalid compositions: a list mixes formula strings and {bad!r}; give either "
                "formula strings or count vectors of length 80."
            )
        try:
            arr = np.asarray(items)
        except ValueError as exc:
            raise ValueError(f"Invalid compositions: ragged count vectors ({exc}).") from exc
    if arr.dtype == object:
        raise ValueError(
            f"Invalid compositions of dtype object with shape {arr.shape}: expected formula "
            "strings or integer counts of shape (80,) or (n, 80)."
        )
    if arr.dtype.kind not in "iu" or arr.ndim not in (1, 2) or arr.shape[-1] != N_ELEMENTS:
        arr = validate_counts(arr)  # raises on bad shapes/values; converts float and bool
    rows = arr.reshape(-1, N_ELEMENTS)
    if len(rows) > _SMALL_BATCH:
        return _matrix_keys(validate_counts(rows))
    # Few rows (e.g. one environment step): per-row Python beats whole-array numpy calls.
    keys = []
    for row in rows:
        nonzero = row.nonzero()[0]
        values = row[nonzero].tolist()
        if not values:
            keys.append(())
            continue
        if min(values) < 0:
            validate_counts(arr)  # raises, naming the negative count
        g = math.gcd(*values)
        if g != 1:
            values = [v // g for v in values]
        key = [0] * (2 * len(values))
        key[::2] = nonzero.tolist()
        key[1::2] = values
        keys.append(tuple(key))
    return keys


# ---------------------------------------------------------------------------- public API
def charge_neutral(
    compositions: str | Sequence[str] | Sequence[Sequence[int]] | np.ndarray,
) -> np.ndarray:
    """Whether some assignment of SMACT-2014 oxidation states makes each composition neutral.

    Equals ``smact.screening.smact_validity(reduced_formula, use_pauling_test=False,
    include_alloys=False, oxidation_states_set="smact14")``. Single-element compositions
    are True (SMACT's convention); the empty composition is False.

    Args:
        compositions: a formula string, a sequence of formula strings, an integer count
            vector of shape ``(80,)``, or a count matrix of shape ``(n, 80)`` (columns in
            :data:`~oxide_env.chemistry.elements.ELEMENTS` order).

    Returns:
        ``np.ndarray`` of dtype bool and shape ``(n,)`` (``n = 1`` for a single formula or
        vector).

    Raises:
        ValueError: for a malformed formula, an element outside the 80, a count array of
            the wrong shape, or negative / non-integer counts.

    Example:
        >>> charge_neutral(["MgO", "Ti2O4", "NaO5"]).tolist()
        [True, True, False]

        SMACT gives each element a single oxidation state, so mixed-valence compounds
        such as magnetite fail:

        >>> charge_neutral("Fe3O4").tolist()
        [False]
    """
    keys = _keys(compositions)
    return np.fromiter(map(_neutral_key, keys), dtype=bool, count=len(keys))


def electronegativity_balanced(
    compositions: str | Sequence[str] | Sequence[Sequence[int]] | np.ndarray,
) -> np.ndarray:
    """Whether each composition is neutral with cations less electronegative than anions.

    Equals ``smact.screening.smact_validity(reduced_formula, use_pauling_test=True,
    include_alloys=False, oxidation_states_set="smact14")``: some neutral assignment of
    SMACT-2014 oxidation states has every element with a positive state strictly less
    electronegative (Pauling) than every element with a negative state. Single-element
    compositions are True (SMACT's convention); the empty composition is False.

    Args:
        compositions: as for :func:`charge_neutral`.

    Returns:
        ``np.ndarray`` of dtype bool and shape ``(n,)``.

    Raises:
        ValueError: as for :func:`charge_neutral`.

    Example:
        >>> electronegativity_balanced(["BaTiO3", "NaO5"]).tolist()
        [True, False]
    """
    keys = _keys(compositions)
    return np.fromiter(map(_balanced_key, keys), dtype=bool, count=len(keys))


def clear_cache() -> None:
    """Empty the memoisation caches (used by benchmarks to time cold calls)."""
    _neutral_key.cache_clear()
    _balanced_key.cache_clear()
    _formula_key.cache_clear()
