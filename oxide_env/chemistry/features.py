"""The 145 "Magpie" composition features of the paper, vectorized.

The paper featurizes every (partial) composition with matminer's
``Stoichiometry() + ElementProperty.from_preset("magpie") + ValenceOrbital(props=["avg"])
+ IonProperty(fast=True)``. This module computes exactly those 145 numbers (checked
against matminer to 1e-9 in the tests) for a whole batch at once with numpy, from the
element tables of the *installed* matminer and pymatgen (nothing is copied into this
repository). The tables are loaded lazily on first use.

Conventions:
    * Amount vectors follow :data:`~oxide_env.chemistry.elements.ELEMENTS` order and may be
      fractional (``Li0.5CoO2``); the environment passes integer counts.
    * The empty composition (all zeros) gets all-zero features, the environment's start
      state; matminer itself cannot featurize it.
    * Features do not depend on the scale of the amounts (Fe2O3 and Fe4O6 are equal), except
      that "compound possible" tests charge balance with matminer's absolute 1e-8 tolerance.
    * Inputs follow :func:`~oxide_env.chemistry.composition.as_amount_matrix` (a bare string
      is one formula, a dict maps element -> amount, at most 20 distinct elements).

Cost. matminer decides "compound possible" by enumerating every combination of common
oxidation states (``itertools.product``), which is exponential in the number of
multivalent elements (14 of them took > 3.5 GB). Here the same test (some combination has
``|sum(amount * state)| <= 1e-8``) is a meet-in-the-middle search: the combinations of
two halves of the elements are summed separately and matched after a sort, so one
composition of up to 20 elements (at most ~10^5 partial sums per half) costs < 0.1 s and
a few MB; large batches are processed in blocks of rows, so memory stays bounded.

Example:
    >>> from oxide_env.chemistry.features import featurize, FEATURE_LABELS
    >>> x = featurize(["MgO", "Al2O3"])
    >>> x.shape, FEATURE_LABELS[0], float(x[1, 0])
    ((2, 145), '0-norm', 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

try:  # numba is a dependency; the kernel is compiled once and cached on disk
    from numba import njit
except ImportError:  # pragma: no cover
    def njit(*args, **kwargs):
        return (lambda f: f) if not (len(args) == 1 and callable(args[0])) else args[0]

from oxide_env.chemistry.composition import as_amount_matrix
from oxide_env.chemistry.elements import ELEMENTS, N_ELEMENTS

__all__ = ["FEATURE_LABELS", "N_FEATURES", "as_amount_matrix", "featurize", "featurize_counts"]

STOICHIOMETRY_P = (0, 2, 3, 5, 7, 10)
MAGPIE_PROPERTIES = (
    "Number", "MendeleevNumber", "AtomicWeight", "MeltingT", "Column", "Row",
    "CovalentRadius", "Electronegativity", "NsValence", "NpValence", "NdValence",
    "NfValence", "NValence", "NsUnfilled", "NpUnfilled", "NdUnfilled", "NfUnfilled",
    "NUnfilled", "GSvolume_pa", "GSbandgap", "GSmagmom", "SpaceGroupNumber",
)  # fmt: skip
MAGPIE_STATS = ("minimum", "maximum", "range", "mean", "avg_dev", "mode")
ORBITALS = ("s", "p", "d", "f")

FEATURE_LABELS: tuple[str, ...] = (
    tuple(f"{p}-norm" for p in STOICHIOMETRY_P)
    + tuple(f"MagpieData {s} {p}" for p in MAGPIE_PROPERTIES for s in MAGPIE_STATS)
    + tuple(f"avg {o} valence electrons" for o in ORBITALS)
    + ("compound possible", "max ionic char", "avg ionic char")
)
"""The 145 feature names, identical to matminer's ``feature_labels()``."""
N_FEATURES: int = len(FEATURE_LABELS)

_MODE_RTOL, _MODE_ATOL = 1e-5, 1e-8  # np.isclose defaults used by matminer's mode
_NEUTRAL_ATOL = 1e-8  # np.isclose(x, 0) in IonProperty(fast=True)
_ROW_BLOCK = 4096  # featurize large batches in blocks of rows: bounded working memory
_ENUMERATE_MAX = 256  # up to this many combinations, enumerate; above, meet in the middle
_P_NORMS = np.array(STOICHIOMETRY_P[1:], dtype=np.float64)


class _Tables:
    """Element tables for the 80 elements, read from matminer / pymatgen."""

    def __init__(self) -> None:
        from matminer.utils.data import MagpieData, PymatgenData
        from pymatgen.core import Element

        magpie = MagpieData(impute_nan=True)
        pmg = PymatgenData(impute_nan=True)
        elements = [Element(s) for s in ELEMENTS]
        self.magpie = np.array(
            [[magpie.get_elemental_property(e, p) for p in MAGPIE_PROPERTIES] for e in elements],
            dtype=np.float64,
        )  # (80, 22)
        self.valence = self.magpie[:, [MAGPIE_PROPERTIES.index(f"N{o}Valence") for o in ORBITALS]]
        self.electronegativity = np.array(
            [pmg.get_elemental_property(e, "X") for e in elements], dtype=np.float64
        )
        self.electronegativity_list = self.electronegativity.tolist()
        self.magpie_valence = np.ascontiguousarray(np.hstack([self.magpie, self.valence]))
        self.oxidation_states = [tuple(pmg.get_oxidation_states(e)) for e in elements]
        self.n_states = np.array([len(s) for s in self.oxidation_states])
        max_states = int(self.n_states.max())
        self.states = np.zeros((N_ELEMENTS, max_states), dtype=np.float64)
        for i, s in enumerate(self.oxidation_states):
            self.states[i, : len(s)] = s
            self.states[i, len(s) :] = s[0] if s else np.nan  # padding repeats a real state
        if not np.all(np.isfinite(self.magpie)) or not np.all(np.isfinite(self.electronegativity)):
            raise RuntimeError("matminer/pymatgen element tables contain NaN for a supported element")


@lru_cache(maxsize=1)
def _tables() -> _Tables:
    return _Tables()


def _neutral_combination(fixed: float, choices: list[list[float]]) -> bool:
    """Whether ``fixed + sum(c_i)`` is within 1e-8 of 0 for some choice of ``c_i`` in ``choices[i]``.

    matminer's exhaustive ``itertools.product`` test, done by meeting in the middle: the
    sums of two halves of the choices are formed separately (each at most ~the square root
    of the number of combinations), one half is sorted, and for every sum of the other the
    nearest opposite is found by binary search. Exact for integer amounts (the sums are
    exact); for fractional amounts the sums differ from matminer's ``np.dot`` only in
    rounding (~1e-16 relative), far below the 1e-8 tolerance.
    """
    n_combinations = math.prod(len(c) for c in choices)
    if n_combinations <= _ENUMERATE_MAX:
        sums = [fixed]
        for options in choices:
            sums = [x + c for x in sums for c in options]
        return any(abs(x) <= _NEUTRAL_ATOL for x in sums)
    halves: tuple[list, list] = ([], [])
    sizes = [1, 1]
    for options in sorted(choices, key=len, reverse=True):  # balance the two products
        side = 0 if sizes[0] <= sizes[1] else 1
        halves[side].append(options)
        sizes[side] *= len(options)

    def all_sums(half: list[list[float]], start: float) -> np.ndarray:
        sums = np.array([start])
        for options in half:
            sums = np.unique((sums[:, None] + np.asarray(options)[None, :]).ravel())
        return sums

    left = all_sums(halves[0], fixed)
    right = all_sums(halves[1], 0.0)  # sorted (np.unique)
    pos = np.searchsorted(right, -left)
    best = np.full(left.shape, np.inf)
    for shift in (-1, 0):
        j = np.clip(pos + shift, 0, right.size - 1)
        best = np.minimum(best, np.abs(left + right[j]))
    return bool((best <= _NEUTRAL_ATOL).any())


_KERNEL_COMBINATIONS = 1 << 16
"""Up to this many oxidation-state combinations per row, the kernel enumerates them; above,
the row's charge test is a meet-in-the-middle search (:func:`_neutral_combination`)."""


@njit(cache=True)
def _feature_kernel(amounts, props, electronegativity, states, n_states, p_norms, max_combinations,
                    out):  # pragma: no cover - compiled
    """Every feature of every row of ``amounts (n, 80)`` into ``out (n, 145)``, in one pass per row.

    ``props`` holds the 22 Magpie properties then the 4 valence counts per element. Rows with no
    elements stay zero. Sums run in the present elements' ELEMENTS order, as the numpy
    reductions of matminer. Returns the rows whose charge test has more than
    ``max_combinations`` combinations (``out`` holds 0 there; the caller decides them).
    """
    n, n_el = amounts.shape
    n_props = 22
    n_p = p_norms.shape[0]
    base = n_p + 1 + n_props * 6
    hard = np.zeros(n, dtype=np.bool_)
    idx = np.empty(n_el, dtype=np.int64)
    amt = np.empty(n_el, dtype=np.float64)
    slots = np.empty(n_el, dtype=np.int64)
    odometer = np.empty(n_el, dtype=np.int64)
    for r in range(n):
        k = 0
        total = 0.0
        for e in range(n_el):
            a = amounts[r, e]
            if a > 0:
                idx[k] = e
                amt[k] = a
                total += a
                k += 1
        if k == 0:
            continue
        out[r, 0] = k
        for j in range(n_p):
            p = p_norms[j]
            acc = 0.0
            for i in range(k):
                acc += (amt[i] / total) ** p
            out[r, 1 + j] = acc ** (1.0 / p)
        wmax = amt[0]
        for i in range(1, k):
            if amt[i] > wmax:
                wmax = amt[i]
        tol = _MODE_ATOL + _MODE_RTOL * abs(wmax)
        for q in range(n_props):
            lo = np.inf
            hi = -np.inf
            weighted = 0.0
            mode = np.inf
            for i in range(k):
                v = props[idx[i], q]
                lo = min(lo, v)
                hi = max(hi, v)
                weighted += amt[i] * v
                if abs(amt[i] - wmax) <= tol and v < mode:
                    mode = v
            mean = weighted / total
            dev = 0.0
            for i in range(k):
                dev += amt[i] * abs(props[idx[i], q] - mean)
            col = 1 + n_p + 6 * q
            out[r, col] = lo
            out[r, col + 1] = hi
            out[r, col + 2] = hi - lo
            out[r, col + 3] = mean
            out[r, col + 4] = dev / total
            out[r, col + 5] = mode
        for o in range(4):
            weighted = 0.0
            for i in range(k):
                weighted += amt[i] * props[idx[i], n_props + o]
            out[r, base + o] = weighted / total
        if k < 2:
            out[r, base + 4] = 1.0
            continue
        max_ionic = 0.0
        avg_ionic = 0.0
        for i in range(k):
            for j in range(i + 1, k):
                d = electronegativity[idx[i]] - electronegativity[idx[j]]
                ionic = 1.0 - np.exp(-0.25 * d * d)
                max_ionic = max(max_ionic, ionic)
                avg_ionic += (amt[i] / total) * (amt[j] / total) * ionic
        out[r, base + 5] = max_ionic
        out[r, base + 6] = avg_ionic
        # compound possible: some combination of common oxidation states sums to ~0
        fixed = 0.0
        m = 0
        combinations = 1.0
        for i in range(k):
            e = idx[i]
            if n_states[e] > 1:
                slots[m] = i
                odometer[m] = 0
                combinations *= n_states[e]
                m += 1
            else:
                fixed += amt[i] * states[e, 0]
        if m == 0:
            out[r, base + 4] = 1.0 if abs(fixed) <= _NEUTRAL_ATOL else 0.0
            continue
        if combinations > max_combinations:
            hard[r] = True
            continue
        found = False
        while True:
            total_charge = fixed
            for s in range(m):
                i = slots[s]
                total_charge += amt[i] * states[idx[i], odometer[s]]
            if abs(total_charge) <= _NEUTRAL_ATOL:
                found = True
                break
            s = m - 1
            while s >= 0:
                odometer[s] += 1
                if odometer[s] < n_states[idx[slots[s]]]:
                    break
                odometer[s] = 0
                s -= 1
            if s < 0:
                break
        out[r, base + 4] = 1.0 if found else 0.0
    return hard


def _featurize_rows(amounts: np.ndarray) -> np.ndarray:
    """:func:`featurize` of a checked ``(n, 80)`` amount matrix."""
    t = _tables()
    amounts = np.ascontiguousarray(amounts, dtype=np.float64)
    out = np.zeros((amounts.shape[0], N_FEATURES), dtype=np.float64)
    hard = _feature_kernel(amounts, t.magpie_valence, t.electronegativity, t.states, t.n_states,
                           _P_NORMS, float(_KERNEL_COMBINATIONS), out)
    column = FEATURE_LABELS.index("compound possible")
    for r in np.flatnonzero(hard):  # rare: many multivalent elements, meet in the middle
        idx = np.flatnonzero(amounts[r])
        out[r, column] = float(_compound_possible_one(idx.tolist(), amounts[r, idx].tolist()))
    return out


def featurize_counts(counts: np.ndarray) -> np.ndarray:
    """:func:`featurize` of an integer count matrix ``(n, 80)`` that is already known to be valid.

    No input checks (counts must be non-negative, at most 20 elements per row): for callers that
    built the counts themselves, such as the episode core, where the checks of :func:`featurize`
    cost more than the features.

    Example:
        >>> from oxide_env.chemistry.composition import formulas_to_counts
        >>> counts = formulas_to_counts(["MgO", "BaTiO3"])
        >>> bool((featurize_counts(counts) == featurize(counts)).all())
        True
    """
    counts = np.asarray(counts)
    if counts.shape[0] > _ROW_BLOCK:
        return np.concatenate([_featurize_rows(counts[i : i + _ROW_BLOCK]) for i in range(0, len(counts), _ROW_BLOCK)])
    return _featurize_rows(counts)


def featurize(compositions: str | Sequence[str] | np.ndarray) -> np.ndarray:
    """Compute the paper's 145 Magpie features for a batch of compositions.

    Args:
        compositions: formula strings, an amount vector of shape ``(80,)`` or a matrix of
            shape ``(n, 80)`` (integer counts or fractional amounts, ELEMENTS order).

    Returns:
        ``np.ndarray`` of shape ``(n, 145)``, float64, columns as :data:`FEATURE_LABELS`.
        Rows of empty compositions are all zeros.

    Cost: linear in the number of rows (~1-2 µs per row of up to 5 elements, a compiled
    kernel); one composition of up to 20 elements takes < 0.1 s (see the module docstring).

    Raises:
        TypeError: for ``None``, numbers, bytes, complex amounts or other objects.
        ValueError: for a bad formula, wrong shape, negative / non-finite / too large
            amounts, or more than 20 distinct elements in a composition.

    Example:
        >>> import numpy as np
        >>> from oxide_env.chemistry.composition import formula_to_counts
        >>> x = featurize(np.stack([formula_to_counts("BaTiO3"), np.zeros(80, int)]))
        >>> float(x[0, FEATURE_LABELS.index("MagpieData mean Number")]), float(x[1].sum())
        (20.4, 0.0)
    """
    amounts = as_amount_matrix(compositions)
    n = amounts.shape[0]
    if n > _ROW_BLOCK:
        return np.concatenate([_featurize_rows(amounts[i : i + _ROW_BLOCK]) for i in range(0, n, _ROW_BLOCK)])
    return _featurize_rows(amounts)


def _compound_possible_one(idx: list[int], amt: list[float]) -> bool:
    """Whether some combination of common oxidation states of one row is neutral (matminer's test)."""
    t = _tables()
    fixed = 0.0
    choices = []
    for i, a in zip(idx, amt):
        states = t.oxidation_states[i]
        if len(states) == 1:
            fixed += a * states[0]
        else:
            choices.append([a * s for s in states])
    if not choices:
        return abs(fixed) <= _NEUTRAL_ATOL
    return _neutral_combination(fixed, choices)


def featurize_one(amounts: np.ndarray) -> np.ndarray:
    """Features of one amount vector ``(80,)``: :func:`featurize` of one row."""
    return _featurize_rows(np.asarray(amounts, dtype=np.float64)[None, :])[0]


def feature_bounds(max_elements: int = N_ELEMENTS) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of every feature (element-table ranges; zeros included).

    Args:
        max_elements: largest number of distinct elements in a composition (bounds "0-norm").
    """
    t = _tables()
    low = np.zeros(N_FEATURES)
    high = np.zeros(N_FEATURES)
    high[0] = max_elements
    high[1 : len(STOICHIOMETRY_P)] = 1.0
    pmin, pmax = t.magpie.min(axis=0), t.magpie.max(axis=0)
    base = len(STOICHIOMETRY_P)
    for i in range(len(MAGPIE_PROPERTIES)):
        for j, stat in enumerate(MAGPIE_STATS):
            col = base + i * len(MAGPIE_STATS) + j
            if stat in ("range", "avg_dev"):
                low[col], high[col] = 0.0, pmax[i] - pmin[i]
            else:
                low[col], high[col] = min(0.0, pmin[i]), max(0.0, pmax[i])
    base += len(MAGPIE_PROPERTIES) * len(MAGPIE_STATS)
    low[base : base + 4] = np.minimum(0.0, t.valence.min(axis=0))
    high[base : base + 4] = t.valence.max(axis=0)
    high[base + 4 : base + 7] = 1.0
    return low, high
