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
count above 2**20 (1,048,576) switches to exact sets of totals to keep the bitsets small.

Cost. Inputs go through :func:`~oxide_env.chemistry.composition.as_count_matrix`'s rules
(at most 20 distinct elements, counts within int64, bare strings are one formula, dicts map
element -> count). A composition whose reduced counts total at most 2**20 costs at most
~12 x total x (number of states) bit operations (< 0.1 s and ~35 MB for 20 elements at the
limit); above that the exact sets of totals are used when the product over its elements of
their number of known oxidation states (SMACT 2014 and ICSD 2024 together) is at most 2**16
(< 1 s), and otherwise ``ValueError`` is raised (divide the counts by a common factor or
use fewer elements). Results
are memoised (``functools.lru_cache``) on the reduced ``(element index, count)`` tuple.
A count matrix of 8 rows or more (counts up to 1,000; the environment's terminal batches) is
decided instead in one compiled pass with the same bitsets in machine words (~1 µs a row,
tested equal to the keyed tests on every state table).

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
from typing import Literal

import numpy as np

from oxide_env.chemistry.checks import describe
from oxide_env.chemistry.composition import MAX_ELEMENTS, as_count_matrix, formula_to_counts, validate_counts
from oxide_env.chemistry.elements import ELEMENTS, N_ELEMENTS

__all__ = [
    "IS_METAL",
    "OXIDATION_STATES",
    "OXIDATION_STATE_SETS",
    "PAULING_ELECTRONEGATIVITY",
    "PYMATGEN_STATES",
    "RARE_STATE_SHARE",
    "StateRule",
    "charge_neutral",
    "charge_neutral_paper_rule",
    "clear_cache",
    "electronegativity_balanced",
    "electronegativity_balanced_paper_rule",
    "frequent_states",
    "oxide_rule",
    "oxide_states",
    "state_table",
    "tables_fingerprint",
]

Key = tuple[int, ...]
"""A reduced composition, flat: ``(element_index, count, element_index, count, ...)``
with counts > 0, in element-index order (hashes faster than a tuple of pairs)."""

_CACHE_SIZE = 1 << 18
_SMALL_BATCH = 32
"""Up to this many count rows are keyed row by row, above it with whole-matrix numpy."""
_MAX_TOTAL_COUNT = 1 << 20
"""Above this reduced total count the bitsets would get large (bits ~ 12 x total, 1.5 MB at
the limit); fall back to exact sets of totals instead."""
_MAX_SET_COMBINATIONS = 1 << 16
"""Above :data:`_MAX_TOTAL_COUNT`, the sets of totals hold up to the product over elements
of their number of oxidation states; past this product a composition raises ``ValueError``
(its exact check could take exponential time)."""


OxidationStateSet = Literal["smact14", "icsd24"]
"""Names of the oxidation-state sets: ``"smact14"`` (SMACT's 2014 set, the paper's era, every
state SMACT ever listed) and ``"icsd24"`` (``Element.oxidation_states_icsd24``: states seen in
the 2024 ICSD, SMACT's current reference set)."""
OXIDATION_STATE_SETS: tuple[str, ...] = ("smact14", "icsd24")


def _load_smact_states(name: str) -> tuple[tuple[int, ...], ...]:
    import smact

    states: list[tuple[int, ...]] = []
    for symbol in ELEMENTS:
        ox = getattr(smact.Element(symbol), f"oxidation_states_{name}")
        states.append(tuple(sorted({int(s) for s in ox})) if ox else ())
    return tuple(states)


def _load_smact_electronegativity() -> tuple[float | None, ...]:
    import smact

    enegs: list[float | None] = []
    for symbol in ELEMENTS:
        x = smact.Element(symbol).pauling_eneg
        if x is not None:
            x = float(x)
            if not math.isfinite(x):
                # SMACT would treat a NaN as "never violates"; no element has one today.
                raise RuntimeError(
                    f"smact gives a non-finite Pauling electronegativity {x!r} for {symbol}; "
                    "oxide_env.chemistry.validity does not reproduce SMACT for that case."
                )
        enegs.append(x)
    return tuple(enegs)


PAULING_ELECTRONEGATIVITY = _load_smact_electronegativity()
"""Per element of ``ELEMENTS``: the Pauling electronegativity (``None`` if SMACT has none)."""
OXIDATION_STATES = _load_smact_states("smact14")
"""Per element of ``ELEMENTS``: sorted SMACT-2014 oxidation states (``()`` if none)."""


def _load_metals() -> tuple[bool, ...]:
    from pymatgen.core.periodic_table import Element

    return tuple(bool(Element(symbol).is_metal) for symbol in ELEMENTS)


IS_METAL = _load_metals()
"""Per element of ``ELEMENTS``: pymatgen's ``Element.is_metal`` (alkali, alkaline-earth,
transition, post-transition metals, lanthanoids and actinoids; the metalloids B, Si, Ge, As,
Sb, Te are not metals)."""


# --------------------------------------------------------------------------- core tests
class StateRule:
    """Charge-neutrality and electronegativity-balance tests under one oxidation-state table.

    ``states[i]`` are the allowed oxidation states of element ``ELEMENTS[i]``. The tests are
    SMACT's (see the module docstring) with these states; results are memoised per instance
    on the reduced composition key.
    """

    def __init__(self, states: Sequence[Sequence[int]]) -> None:
        st_all = tuple(tuple(sorted({int(s) for s in st})) for st in states)
        if len(st_all) != N_ELEMENTS:
            raise ValueError(f"a state table needs {N_ELEMENTS} rows, got {len(st_all)}")
        self.states = st_all
        self._min = tuple(st[0] if st else 0 for st in st_all)
        self._max = tuple(st[-1] if st else 0 for st in st_all)
        self._rel = tuple(tuple(s - st[0] for s in st) for st in st_all)
        self._len = tuple(len(st) for st in st_all)
        self._pos = tuple(tuple(s for s in st if s >= 0) for st in st_all)
        self._neg = tuple(tuple(-s for s in st if s <= 0) for st in st_all)
        self.neutral = functools.lru_cache(maxsize=_CACHE_SIZE)(self._neutral_key)
        self.balanced = functools.lru_cache(maxsize=_CACHE_SIZE)(self._balanced_key)

    def cache_clear(self) -> None:
        self.neutral.cache_clear()
        self.balanced.cache_clear()

    def batch(self, counts: np.ndarray, balanced: bool = False) -> np.ndarray:
        """:meth:`neutral` (``balanced``: :meth:`balanced`) of every row of a valid non-negative
        ``(n, 80)`` count matrix in one compiled pass (the same bitsets in machine words; no memo).

        Example:
            >>> from oxide_env.chemistry.composition import formulas_to_counts
            >>> _rule("smact14").batch(formulas_to_counts(["MgO", "NaO5", "O2"])).tolist()
            [True, False, True]
        """
        tables = self.__dict__.get("_tables")
        if tables is None:
            states, n_states = _padded(self.states)
            pos, n_pos = _padded(self._pos)
            neg, n_neg = _padded(self._neg)
            tables = self.__dict__["_tables"] = (
                n_states, states, np.array(self._min, dtype=np.int64), np.array(self._max, dtype=np.int64),
                pos, n_pos, neg, n_neg, _EN_ARRAY, _HAS_EN)
        out = np.empty(len(counts), dtype=bool)
        _validity_kernel(np.ascontiguousarray(counts, dtype=np.int64), bool(balanced), *tables, out)
        return out

    def _neutral_key(self, key: Key) -> bool:
        """Charge neutrality of a reduced composition key (see module docstring)."""
        m = len(key)
        if m <= 2:
            return m == 2  # empty: False; single element: True (SMACT's fast path)
        lo = hi = total = 0
        last = bl = -1
        for j in range(0, m, 2):
            i, n = key[j], key[j + 1]
            if not self._len[i]:
                return False  # SMACT: an element without oxidation states is invalid
            lo += n * self._min[i]
            hi += n * self._max[i]
            total += n
            if self._len[i] > bl:
                bl, last = self._len[i], j
        if lo > 0 or hi < 0:
            return False
        if total > _MAX_TOTAL_COUNT:
            return self.neutral_sets(key)
        # bit p of `bits` <=> the elements other than `last` can total p + offset.
        bits, offset = 1, 0
        for j in range(0, m, 2):
            if j != last:
                i, n = key[j], key[j + 1]
                out = 0
                for r in self._rel[i]:
                    out |= bits << (n * r)
                bits = out
                offset += n * self._min[i]
        # The element with most states is only tested against the others' totals.
        i, n = key[last], key[last + 1]
        for s in self.states[i]:
            p = -offset - n * s
            if p >= 0 and (bits >> p) & 1:
                return True
        return False

    def neutral_sets(self, key: Key) -> bool:
        """Same as :meth:`neutral` with sets of totals (for huge counts)."""
        totals = {0}
        for j in range(0, len(key), 2):
            i, n = key[j], key[j + 1]
            totals = {t + n * s for t in totals for s in self.states[i]}
        return 0 in totals

    def _balanced_key(self, key: Key) -> bool:
        """Electronegativity balance of a reduced composition key (see module docstring)."""
        m = len(key)
        if m <= 2:
            return m == 2  # empty: False; single element: True (SMACT's fast path)
        for j in range(0, m, 2):
            if PAULING_ELECTRONEGATIVITY[key[j]] is None:
                return False  # SMACT's eneg_states_test fails on any None
        if not self.neutral(key):
            return False
        pairs = sorted(zip(key[::2], key[1::2]), key=lambda p: _EN_SORT[p[0]])
        if sum(key[1::2]) > _MAX_TOTAL_COUNT:
            return self.balanced_sets(pairs)
        k = len(pairs)
        # suffix[t]: bit v <=> elements t.. can take states <= 0 totalling -v.
        suffix = [0] * (k + 1)
        suffix[k] = bits = 1
        for t in range(k - 1, -1, -1):
            i, n = pairs[t]
            out = 0
            for s in self._neg[i]:
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
            for s in self._pos[i]:
                out |= bits << (n * s)
            bits = out
            if not out:
                return False
        return bool(bits & 1)  # all elements cation-or-zero; suffix[k] == 1

    def balanced_sets(self, pairs: list[tuple[int, int]]) -> bool:
        """Same as :meth:`balanced` (after sorting) with sets of totals."""
        k = len(pairs)
        suffix: list[set[int]] = [set() for _ in range(k + 1)]
        suffix[k] = totals = {0}
        for t in range(k - 1, -1, -1):
            i, n = pairs[t]
            totals = suffix[t] = {v + n * s for v in totals for s in self._neg[i]}
        totals = {0}
        previous = None
        for t in range(k):
            i, n = pairs[t]
            if _EN_SORT[i] != previous and not totals.isdisjoint(suffix[t]):
                return True
            previous = _EN_SORT[i]
            totals = {v + n * s for v in totals for s in self._pos[i]}
        return 0 in totals


_EN_SORT = tuple(-math.inf if x is None else x for x in PAULING_ELECTRONEGATIVITY)
_O = ELEMENTS.index("O")


def _load_pymatgen_states() -> tuple[frozenset[int], ...]:
    from pymatgen.core.periodic_table import Element

    out = []
    for symbol in ELEMENTS:
        element = Element(symbol)
        out.append(frozenset(int(s) for s in (element.icsd_oxidation_states or element.common_oxidation_states)))
    return tuple(out)


PYMATGEN_STATES = _load_pymatgen_states()
"""Per element of ``ELEMENTS``: the states pymatgen's ``Composition.oxi_state_guesses`` tries by
default (``Element.icsd_oxidation_states``, states common in the ICSD, or
``Element.common_oxidation_states`` where pymatgen lists no ICSD state: Os, Pt, Au, ...)."""


def pymatgen_oxide_guesses(formula: str, *, common: bool = False) -> list[dict[str, float]]:
    """pymatgen's charge-balanced oxidation-state assignments of an oxide, most probable first:
    ``Composition.oxi_state_guesses`` with oxygen at -2 and every metal in a non-negative state.

    The states tried are pymatgen's defaults (:data:`PYMATGEN_STATES`: ICSD-common, else common);
    with ``common=True`` every element's ``Element.common_oxidation_states`` only, the stricter
    reading that the oxide rule's ICSD statistics loosen (they admit Sc2+, V2+ or Sb3-). Mixed
    valence (a fractional average state) is allowed. An empty list: no assignment.

    Example:
        >>> pymatgen_oxide_guesses("Fe3O4")[0]["Fe"] == 8 / 3
        True
        >>> bool(pymatgen_oxide_guesses("MnVO2")), bool(pymatgen_oxide_guesses("MnVO2", common=True))
        (True, False)
    """
    import warnings

    from pymatgen.core import Composition, Element

    composition = Composition(formula)
    override: dict[str, list[int]] = {}
    for el in composition.elements:
        element = Element(el.symbol)
        states = list(element.common_oxidation_states if common
                      else element.icsd_oxidation_states or element.common_oxidation_states)
        if element.is_metal:
            override[el.symbol] = [x for x in states if x >= 0]
        elif common:
            override[el.symbol] = states
    override["O"] = [-2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(composition.oxi_state_guesses(oxi_states_override=override, max_sites=-50))


RARE_STATE_SHARE = 0.03
"""A state is *rare* for an element when it holds under this share of the element's charged sites
in pymatgen's ICSD bond-valence statistics (``pymatgen.analysis.bond_valence.ICSD_BV_DATA``)."""


FREQUENT_STATES_FILE = "data/frequent_states.json"
"""The shipped result of :func:`frequent_states_from_pymatgen` (``oxide_env/data``): reading it takes
~1 ms, importing pymatgen's bond-valence statistics ~1.2 s (it parses YAML)."""


def frequent_states_from_pymatgen(share: float = RARE_STATE_SHARE) -> dict[str, list[int] | None]:
    """``{symbol: sorted states}`` held by at least ``share`` of each element's charged sites in
    pymatgen's ICSD bond-valence statistics (``None``: no statistics). The reference the shipped
    :data:`FREQUENT_STATES_FILE` is tested against; regenerate it with
    ``python -c "import json; from oxide_env.chemistry.validity import frequent_states_from_pymatgen as f;
    print(json.dumps(f()))" > oxide_env/data/frequent_states.json``.
    """
    from pymatgen.analysis.bond_valence import ICSD_BV_DATA

    totals: dict[str, int] = {}
    sites: dict[tuple[str, float], int] = {}
    for species, d in ICSD_BV_DATA.items():
        if species.oxi_state:
            totals[species.symbol] = totals.get(species.symbol, 0) + d["n_data_pts"]
            sites[species.symbol, float(species.oxi_state)] = d["n_data_pts"]
    return {symbol: sorted(int(v) for (el, v), n in sites.items()
                           if el == symbol and v.is_integer() and n >= share * totals[symbol])
            if symbol in totals else None
            for symbol in ELEMENTS}


@functools.lru_cache(maxsize=1)
def frequent_states() -> tuple[frozenset[int] | None, ...]:
    """Per element of ``ELEMENTS``: the states held by at least :data:`RARE_STATE_SHARE` of the
    element's charged sites in pymatgen's ICSD bond-valence statistics; ``None`` for an element
    without statistics (Os, Pt, Au, Pu, Am: not judged). Read from :data:`FREQUENT_STATES_FILE`
    (equal to :func:`frequent_states_from_pymatgen`, tested).

    Example:
        >>> 2 in frequent_states()[ELEMENTS.index("La")], 3 in frequent_states()[ELEMENTS.index("La")]
        (False, True)
    """
    import json
    from importlib import resources

    with resources.files("oxide_env").joinpath(FREQUENT_STATES_FILE).open() as fh:
        table = json.load(fh)
    missing = [symbol for symbol in ELEMENTS if symbol not in table]
    if missing:
        raise RuntimeError(f"{FREQUENT_STATES_FILE} lacks {missing}: regenerate it (see "
                           "frequent_states_from_pymatgen).")
    return tuple(None if table[symbol] is None else frozenset(table[symbol]) for symbol in ELEMENTS)


def oxide_states(states: Sequence[Sequence[int]], *, common_only: bool = True) -> tuple[tuple[int, ...], ...]:
    """The oxide rule's restriction of a state table: oxygen only −2, metals only ≥ 0, and
    only states pymatgen also counts as common (:data:`PYMATGEN_STATES`) and that are not rare
    in its ICSD bond-valence statistics (:func:`frequent_states`).

    The last condition drops the states that a set such as ``icsd24`` lists but pymatgen's ICSD
    statistics do not: Zn+3, Y+1, La+1, Sr+4, Fe+1/+4/+5/+6, Os other than +4, Au+1/+2/+5,
    Cl other than −1, most lanthanide +2 and +4 states... The statistics then drop states that
    hold under 3 % of an element's ICSD sites: La+2, Nd+2, Ni+4, Cu+3, Mn+7, Ag+3, Bi+2, W+3, Se+6...
    (at 5 % W would keep no state below +5, and W17 after two actions could not be completed, which
    the exact masks' proof for steps 0-1 needs).
    An agent masked by ``icsd24`` alone
    found such states and used them: for 24 of 150 sampled plausible bulk-modulus designs (seed 0),
    23 of them with Zn, pymatgen's ``oxi_state_guesses`` found no charge-balanced assignment; masked
    by the pymatgen states alone, it used La+2 or Sc+2 instead (about a quarter of its designs). The
    price: some real but rare states fail too (Fe+4 in SrFeO3, Os+8 in OsO4, Cl+7 in perchlorates,
    Mn+7 in KMnO4, Cu+3 in NaCuO2): of the text-mined laboratory oxides, 90.6 % pass instead of
    95.3 % (``benchmarks/oxide_rule_states.py``).

    ``common_only=False`` skips the last two conditions (the rule before they were added).

    Example:
        >>> oxide_states(state_table("icsd24"))[ELEMENTS.index("O")]
        (-2,)
        >>> oxide_states(state_table("icsd24"))[ELEMENTS.index("Zn")]
        (2,)
        >>> oxide_states(state_table("icsd24"), common_only=False)[ELEMENTS.index("Zn")]
        (2, 3)
    """
    frequent = frequent_states() if common_only else ()
    out = []
    for i, st in enumerate(states):
        if i == _O:
            st = tuple(s for s in st if s == -2)
        elif IS_METAL[i]:
            st = tuple(s for s in st if s >= 0)
        if common_only:
            st = tuple(s for s in st if s in PYMATGEN_STATES[i]
                       and (i == _O or frequent[i] is None or s in frequent[i]))
        out.append(tuple(st))
    return tuple(out)


@functools.lru_cache(maxsize=None)
def state_table(oxidation_states: str) -> tuple[tuple[int, ...], ...]:
    """The per-element oxidation states of a named set (``"smact14"`` or ``"icsd24"``).

    Raises:
        ValueError: for another name.
    """
    if oxidation_states not in OXIDATION_STATE_SETS:
        raise ValueError(
            f"Unknown oxidation_states={oxidation_states!r}; choose one of "
            f"{', '.join(map(repr, OXIDATION_STATE_SETS))}."
        )
    return OXIDATION_STATES if oxidation_states == "smact14" else _load_smact_states(oxidation_states)


@functools.lru_cache(maxsize=None)
def tables_fingerprint() -> str:
    """The sha256 of every table the rules of this module read (elements, the ``smact14`` and
    ``icsd24`` states, the oxide rule's states, electronegativities, metals): metrics computed
    under other tables are stale.

    Example:
        >>> len(tables_fingerprint())
        64
    """
    import hashlib
    import json

    data = [ELEMENTS, *(state_table(n) for n in OXIDATION_STATE_SETS), oxide_states(state_table("icsd24")),
            PAULING_ELECTRONEGATIVITY, IS_METAL]
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()


@functools.lru_cache(maxsize=None)
def _rule(oxidation_states: str, oxide: bool = False, common_only: bool = True) -> StateRule:
    states = state_table(oxidation_states)
    return StateRule(oxide_states(states, common_only=common_only) if oxide else states)


_SMACT14 = _rule("smact14")
# The SMACT-2014 tests under their historical names (the exact masks and tests use them).
_neutral_key = _SMACT14.neutral
_balanced_key = _SMACT14.balanced
_neutral_sets = _SMACT14.neutral_sets
_balanced_sets = _SMACT14.balanced_sets


# ------------------------------------------------------------------------ input handling
def _load_state_counts() -> tuple[int, ...]:
    """Per element: the number of oxidation states in SMACT 2014 and ICSD 2024 together (a
    bound on every state table of this module, used to bound the cost of an exact check)."""
    import smact

    out = []
    for symbol in ELEMENTS:
        element = smact.Element(symbol)
        states = set(element.oxidation_states_smact14 or ()) | set(element.oxidation_states_icsd24 or ())
        out.append(len(states))
    return tuple(out)


_N_STATES_BOUND = _load_state_counts()


def _check_cost(key: Key) -> Key:
    """Raise if the exact test of a reduced key could be too costly (see the module docstring)."""
    total = sum(key[1::2])
    if total > _MAX_TOTAL_COUNT:
        combinations = math.prod(max(_N_STATES_BOUND[i], 1) for i in key[::2])
        if combinations > _MAX_SET_COMBINATIONS:
            formula = "".join(f"{ELEMENTS[i]}{n}" for i, n in zip(key[::2], key[1::2]))
            raise ValueError(
                f"Invalid composition {describe(formula)}: its reduced counts total {total:,} "
                f"(> {_MAX_TOTAL_COUNT:,}) and its {len(key) // 2} elements have {combinations:,} "
                f"combinations of oxidation states (> {_MAX_SET_COMBINATIONS:,}), so an exact validity "
                "check could take exponential time; use smaller counts (e.g. divide them by a common "
                "factor) or fewer elements."
            )
    return key


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _formula_key(formula: str) -> Key:
    counts = formula_to_counts(formula)
    nonzero = np.flatnonzero(counts)
    values = counts[nonzero]
    g = max(int(np.gcd.reduce(values)), 1) if values.size else 1
    return _check_cost(tuple(x for pair in zip(nonzero.tolist(), (values // g).tolist()) for x in pair))


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
    if counts.size and counts.max() > _MAX_TOTAL_COUNT // MAX_ELEMENTS:  # rare: large counts
        for key in keys:
            _check_cost(key)
    return keys


def _keys(compositions: object) -> list[Key]:
    """Turn the accepted input forms into reduced composition keys (validating them).

    Formula strings are keyed through a cache; int arrays take a fast path (the environment
    calls this every step); everything else goes through
    :func:`~oxide_env.chemistry.composition.as_count_matrix`, so the forms, types and limits
    are those of the whole chemistry layer.
    """
    if isinstance(compositions, str):
        return [_formula_key(compositions)]
    if isinstance(compositions, np.ndarray) and compositions.dtype.kind == "U":
        return [_formula_key(f) for f in compositions.reshape(-1).tolist()]
    if isinstance(compositions, (list, tuple)) and compositions and all(isinstance(x, str) for x in compositions):
        return [_formula_key(f) for f in compositions]
    if isinstance(compositions, np.ndarray) and compositions.dtype.kind == "i" \
            and compositions.ndim in (1, 2) and compositions.shape[-1] == N_ELEMENTS:
        arr = compositions  # checked below, row by row or by validate_counts
        checked = False
    else:
        arr = as_count_matrix(compositions)  # raises TypeError / ValueError naming the value
        checked = True
    rows = arr.reshape(-1, N_ELEMENTS)
    if len(rows) > _SMALL_BATCH:
        return _matrix_keys(rows if checked else validate_counts(rows))
    # Few rows (e.g. one environment step): per-row Python beats whole-array numpy calls.
    keys = []
    for row in rows:
        nonzero = row.nonzero()[0]
        values = row[nonzero].tolist()
        if not values:
            keys.append(())
            continue
        if min(values) < 0 or len(values) > MAX_ELEMENTS:
            validate_counts(arr)  # raises, naming the negative count or the row
        g = math.gcd(*values)
        if g != 1:
            values = [v // g for v in values]
        key = [0] * (2 * len(values))
        key[::2] = nonzero.tolist()
        key[1::2] = values
        keys.append(_check_cost(tuple(key)) if sum(values) > _MAX_TOTAL_COUNT else tuple(key))
    return keys



# ------------------------------------------------------------------ compiled batch path
try:  # numba is a dependency; without it every composition takes the keyed Python path
    from numba import njit as _njit
except ImportError:  # pragma: no cover
    _njit = None

_KERNEL_MIN_ROWS = 8
"""From this many count rows on, :func:`charge_neutral` and :func:`electronegativity_balanced`
decide a count matrix in one compiled pass (the environment's terminal batches); fewer rows go
through the memoised keys."""
_KERNEL_MAX_COUNT = 1000
"""Count matrices with a larger entry take the keyed path (bitsets stay a few kB per row)."""


def _padded(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(1, max(len(r) for r in rows))
    table = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        table[i, : len(r)] = r
    return table, np.array([len(r) for r in rows], dtype=np.int64)


_EN_ARRAY = np.array([math.nan if x is None else x for x in PAULING_ELECTRONEGATIVITY], dtype=np.float64)
_HAS_EN = np.array([x is not None for x in PAULING_ELECTRONEGATIVITY], dtype=bool)

if _njit is not None:

    @_njit(cache=True, inline="always")
    def _shift_or(dst, src, shift):  # pragma: no cover - compiled
        """dst |= src << shift, both bitsets of len(dst) words (bits past the end dropped)."""
        words = dst.shape[0]
        q, r = shift // 64, np.uint64(shift % 64)
        for w in range(words - q):
            v = src[w]
            if v:
                dst[w + q] |= v << r
                if r and w + q + 1 < words:
                    dst[w + q + 1] |= v >> (np.uint64(64) - r)

    @_njit(cache=True, inline="always")
    def _bit(bits, v):  # pragma: no cover - compiled
        return (bits[v // 64] >> np.uint64(v % 64)) & np.uint64(1)

    @_njit(cache=True)
    def _neutral_rows(idx, cnt, m, n_states, states, mins, maxs):  # pragma: no cover - compiled
        lo = 0
        hi = 0
        for j in range(m):
            i = idx[j]
            if n_states[i] == 0:
                return False
            lo += cnt[j] * mins[i]
            hi += cnt[j] * maxs[i]
        if lo > 0 or hi < 0:
            return False
        words = (hi - lo) // 64 + 1
        bits = np.zeros(words, dtype=np.uint64)
        out = np.zeros(words, dtype=np.uint64)
        bits[0] = 1  # bit v: the elements so far can total v + (their counts times their minimum states)
        for j in range(m):
            i = idx[j]
            out[:] = 0
            for t in range(n_states[i]):
                _shift_or(out, bits, cnt[j] * (states[i, t] - mins[i]))
            bits, out = out, bits
        return _bit(bits, -lo) == 1

    @_njit(cache=True)
    def _balanced_rows(idx, cnt, m, pos, n_pos, neg, n_neg, en):  # pragma: no cover - compiled
        order = np.empty(m, dtype=np.int64)  # stable sort by electronegativity (insertion, m <= 20)
        for j in range(m):
            k = j
            while k > 0 and en[idx[order[k - 1]]] > en[idx[j]]:
                order[k] = order[k - 1]
                k -= 1
            order[k] = j
        top = 0  # a bound on every total of either side
        for j in range(m):
            i = idx[j]
            a = 0
            for u in range(n_pos[i]):
                a = max(a, pos[i, u])
            for u in range(n_neg[i]):
                a = max(a, neg[i, u])
            top += cnt[j] * a
        words = top // 64 + 1
        # suffix[t]: bit v <=> the elements t.. (in order) can take states <= 0 totalling -v
        suffix = np.zeros((m + 1, words), dtype=np.uint64)
        suffix[m, 0] = 1
        for t in range(m - 1, -1, -1):
            j = order[t]
            i = idx[j]
            empty = True
            for u in range(n_neg[i]):
                _shift_or(suffix[t], suffix[t + 1], cnt[j] * neg[i, u])
            for w in range(words):
                if suffix[t, w]:
                    empty = False
                    break
            if empty:
                break
        # bits: bit v <=> the elements before t can take states >= 0 totalling v; a split before
        # element t is allowed only between different electronegativities
        bits = np.zeros(words, dtype=np.uint64)
        out = np.zeros(words, dtype=np.uint64)
        bits[0] = 1
        for t in range(m):
            j = order[t]
            i = idx[j]
            if t == 0 or en[i] != en[idx[order[t - 1]]]:
                for w in range(words):
                    if bits[w] & suffix[t, w]:
                        return True
            out[:] = 0
            for u in range(n_pos[i]):
                _shift_or(out, bits, cnt[j] * pos[i, u])
            bits, out = out, bits
            empty = True
            for w in range(words):
                if bits[w]:
                    empty = False
                    break
            if empty:
                return False
        return bits[0] & np.uint64(1) == 1

    @_njit(cache=True, nogil=True)
    def _validity_kernel(counts, balanced, n_states, states, mins, maxs, pos, n_pos, neg, n_neg, en, has_en,
                         out):  # pragma: no cover - compiled
        n_cols = counts.shape[1]
        idx = np.empty(n_cols, dtype=np.int64)
        cnt = np.empty(n_cols, dtype=np.int64)
        for r in range(counts.shape[0]):
            m = 0
            for e in range(n_cols):
                if counts[r, e] != 0:
                    idx[m] = e
                    cnt[m] = counts[r, e]
                    m += 1
            if m <= 1:
                out[r] = m == 1  # empty: False; one element: True (SMACT's fast path)
                continue
            g = cnt[0]
            for j in range(1, m):
                a, b = g, cnt[j]
                while b:
                    a, b = b, a % b
                g = a
            for j in range(m):
                cnt[j] //= g
            if balanced:
                ok = True
                for j in range(m):
                    ok = ok and has_en[idx[j]]
                if not ok:
                    out[r] = False
                    continue
            verdict = _neutral_rows(idx, cnt, m, n_states, states, mins, maxs)
            if verdict and balanced:
                verdict = _balanced_rows(idx, cnt, m, pos, n_pos, neg, n_neg, en)
            out[r] = verdict


# ---------------------------------------------------------------------------- public API
def _batchable(compositions: object) -> bool:
    """Whether ``compositions`` is a count matrix for :meth:`StateRule.batch` (valid, non-negative,
    at least :data:`_KERNEL_MIN_ROWS` rows, counts up to :data:`_KERNEL_MAX_COUNT`)."""
    return _njit is not None and isinstance(compositions, np.ndarray) and compositions.dtype.kind in "iu" \
        and compositions.ndim == 2 and compositions.shape[1] == N_ELEMENTS \
        and len(compositions) >= _KERNEL_MIN_ROWS and compositions.min() >= 0 \
        and compositions.max() <= _KERNEL_MAX_COUNT \
        and int(np.count_nonzero(compositions, axis=1).max()) <= MAX_ELEMENTS


def _verdicts(rule: StateRule, balanced: bool, compositions: object) -> np.ndarray:
    """Charge neutrality (or with ``balanced``, electronegativity balance) under ``rule`` of every
    composition, as a bool array: a batch of count rows in one compiled pass, else by memoised keys."""
    if _batchable(compositions):
        return rule.batch(compositions, balanced)
    keys = _keys(compositions)
    test = rule.balanced if balanced else rule.neutral
    return np.fromiter(map(test, keys), dtype=bool, count=len(keys))


def charge_neutral(
    compositions: str | Sequence[str] | Sequence[Sequence[int]] | np.ndarray,
    *,
    oxidation_states: OxidationStateSet = "smact14",
) -> np.ndarray:
    """Whether some assignment of oxidation states makes each (reduced) composition neutral.

    Equals ``smact.screening.smact_validity(reduced_formula, use_pauling_test=False,
    include_alloys=False, oxidation_states_set=oxidation_states)``. Single-element
    compositions are True (SMACT's convention); the empty composition is False.

    Args:
        compositions: a formula string, a sequence of formula strings, an integer count
            vector of shape ``(80,)``, or a count matrix of shape ``(n, 80)`` (columns in
            :data:`~oxide_env.chemistry.elements.ELEMENTS` order).
        oxidation_states: ``"smact14"`` (default: SMACT's 2014 set, which the paper used) or
            ``"icsd24"`` (states observed in the 2024 ICSD).

    Returns:
        ``np.ndarray`` of dtype bool and shape ``(n,)`` (``n = 1`` for a single formula or
        vector).

    Raises:
        ValueError: for a malformed formula, an element outside the 80, a count array of
            the wrong shape, negative / non-integer counts, or an unknown state set.

    Example:
        >>> charge_neutral(["MgO", "Ti2O4", "NaO5"]).tolist()
        [True, True, False]

        SMACT gives each element a single oxidation state, so mixed-valence compounds
        such as magnetite fail:

        >>> charge_neutral("Fe3O4").tolist()
        [False]
    """
    return _verdicts(_rule(oxidation_states), False, compositions)


def electronegativity_balanced(
    compositions: str | Sequence[str] | Sequence[Sequence[int]] | np.ndarray,
    *,
    oxidation_states: OxidationStateSet = "smact14",
) -> np.ndarray:
    """Whether each composition is neutral with cations less electronegative than anions.

    Equals ``smact.screening.smact_validity(reduced_formula, use_pauling_test=True,
    include_alloys=False, oxidation_states_set=oxidation_states)``: some neutral assignment
    of oxidation states has every element with a positive state strictly less
    electronegative (Pauling) than every element with a negative state. Single-element
    compositions are True (SMACT's convention); the empty composition is False.

    Args:
        compositions: as for :func:`charge_neutral`.
        oxidation_states: as for :func:`charge_neutral`.

    Returns:
        ``np.ndarray`` of dtype bool and shape ``(n,)``.

    Raises:
        ValueError: as for :func:`charge_neutral`.

    Example:
        >>> electronegativity_balanced(["BaTiO3", "NaO5"]).tolist()
        [True, False]
    """
    return _verdicts(_rule(oxidation_states), True, compositions)


def oxide_rule(
    compositions: str | Sequence[str] | Sequence[Sequence[int]] | np.ndarray,
    *,
    oxidation_states: OxidationStateSet = "icsd24",
    common_only: bool = True,
) -> np.ndarray:
    """Whether each composition is a plausible oxide by its oxidation states.

    The oxide rule: the composition contains oxygen and at least one other element, and some
    assignment of one oxidation state per element from ``oxidation_states`` (default the
    commonly observed ``icsd24`` states) is charge neutral and electronegativity balanced
    (SMACT's Pauling test) with **oxygen at −2**, **no metal in a negative state**
    ("metal" = pymatgen's ``Element.is_metal``, :data:`IS_METAL`) and **only common states**:
    states pymatgen also lists as common (:data:`PYMATGEN_STATES`: no Zn+3, Y+1, Sr+4...) and
    not rare in its ICSD bond-valence statistics (:func:`frequent_states`: no La+2, Mn+7...; see
    :func:`oxide_states`). So every composition that passes also has a charge-balanced assignment
    by pymatgen's ``Composition.oxi_state_guesses()``. Non-metals and
    metalloids other than oxygen (H, B, C, N, F, Si, P, S, halogens, ...) keep every common
    state of the set, so oxyfluorides, nitrates or hydroxides can pass. It is
    ``smact_validity(reduced_formula, use_pauling_test=True, include_alloys=False)`` run on
    the restricted state table.

    Args:
        compositions: as for :func:`charge_neutral`.
        oxidation_states: the state set restricted by the rule.
        common_only: keep only common states (default). ``False`` is the looser rule used
            before (e.g. Zn+3 and La+2 allowed), for comparison only.

    Returns:
        ``np.ndarray`` of dtype bool and shape ``(n,)``.

    Example:
        >>> oxide_rule(["MgAl2O4", "BaTiO3", "Re10Os8O7", "Au3I5Br2O2", "TiO"]).tolist()
        [True, True, False, False, True]
    """
    rule = _rule(oxidation_states, oxide=True, common_only=common_only)
    if _batchable(compositions):  # oxygen present, not alone, and balanced
        return (compositions[:, _O] > 0) & (np.count_nonzero(compositions, axis=1) >= 2) & rule.batch(
            compositions, True)
    test = rule.balanced
    keys = _keys(compositions)
    out = np.zeros(len(keys), dtype=bool)
    for r, key in enumerate(keys):
        # oxygen present (keys are in element order, so look it up) and not alone
        out[r] = len(key) >= 4 and _O in key[::2] and test(key)
    return out


def _paper_rule(compositions: object, test) -> np.ndarray:
    counts = as_count_matrix(compositions)  # the amounts as given: not reduced
    g = np.gcd.reduce(counts, axis=1) if len(counts) else np.zeros(0, np.int64)
    single = np.count_nonzero(counts, axis=1) == 1  # SMACT's single-element fast path
    return ((g == 1) | single) & test(counts)


def charge_neutral_paper_rule(
    compositions: str | Sequence[str] | Sequence[Sequence[int]] | np.ndarray,
) -> np.ndarray:
    """Charge neutrality as the paper's checker computed it: SMACT 2014 on *unreduced* amounts.

    The authors passed the generated amounts (repeated elements summed, not reduced) to a
    2019-era ``smact_validity``, whose ``neutral_ratios`` kept only ratios with gcd 1. So a
    composition passes iff its amounts have gcd 1 and it is :func:`charge_neutral`: ``Ti2O4``
    fails where ``TiO2`` passes (a single element still passes, SMACT's fast path). This reproduces the authors' printed fractions on their own
    generated lists (``tests/test_rules.py``). Use it only to compare with the paper.

    Args:
        compositions: formulas *as generated* (``"Os6Re1Os6Ru5O5"`` sums Os) or a count
            matrix of unreduced integer amounts.

    Example:
        >>> charge_neutral_paper_rule(["TiO2", "Ti2O4", "Re7O7"]).tolist()
        [True, False, False]
    """
    return _paper_rule(compositions, charge_neutral)


def electronegativity_balanced_paper_rule(
    compositions: str | Sequence[str] | Sequence[Sequence[int]] | np.ndarray,
) -> np.ndarray:
    """Electronegativity balance as the paper's checker computed it (unreduced amounts).

    Like :func:`charge_neutral_paper_rule`, with :func:`electronegativity_balanced`.

    Example:
        >>> electronegativity_balanced_paper_rule(["BaTiO3", "Ba2Ti2O6"]).tolist()
        [True, False]
    """
    return _paper_rule(compositions, electronegativity_balanced)


def clear_cache() -> None:
    """Empty the memoisation caches (used by benchmarks to time cold calls)."""
    for name in OXIDATION_STATE_SETS:
        for rule in (_rule(name), _rule(name, True), _rule(name, True, False)):
            rule.cache_clear()
    _formula_key.cache_clear()
