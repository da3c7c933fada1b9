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

from oxide_env.chemistry.composition import as_amount_matrix
from oxide_env.chemistry.elements import ELEMENTS, N_ELEMENTS

__all__ = ["FEATURE_LABELS", "N_FEATURES", "as_amount_matrix", "featurize"]

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
_VECTOR_SUMS = 1 << 21  # most partial sums held at once by the vectorized charge test
_ENUMERATE_MAX = 256  # up to this many combinations, enumerate; above, meet in the middle


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


def _padded(amounts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Element indices (n, K), amounts (n, K) and validity mask (n, K) of the present elements."""
    present = amounts > 0
    n_present = present.sum(axis=1)
    k = max(int(n_present.max(initial=0)), 1)
    # stable argsort puts present elements first, in ELEMENTS order
    order = np.argsort(~present, axis=1, kind="stable")[:, :k]
    mask = np.take_along_axis(present, order, axis=1)
    amt = np.where(mask, np.take_along_axis(amounts, order, axis=1), 0.0)
    return order, amt, mask


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


def _compound_possible(idx: np.ndarray, amt: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """matminer ``IonProperty(fast=True)``: some combination of common oxidation states is neutral."""
    t = _tables()
    n_states = np.where(mask, t.n_states[idx], 1)
    multi = n_states > 1
    fixed = np.where(mask & ~multi, amt * t.states[idx, 0], 0.0).sum(axis=1)
    result = np.abs(fixed) <= _NEUTRAL_ATOL
    n_multi = multi.sum(axis=1)
    for n_slots in range(1, int(n_multi.max(initial=0)) + 1):
        all_rows = np.flatnonzero(n_multi == n_slots)
        if all_rows.size == 0:
            continue
        if n_slots > 3:  # rare: row by row, meeting in the middle
            for r in all_rows:
                cols = np.flatnonzero(multi[r])
                choices = [[a * s for s in t.oxidation_states[idx[r, c]]] for a, c in zip(amt[r, cols], cols)]
                result[r] = _neutral_combination(float(fixed[r]), choices)
            continue
        block = max(1, _VECTOR_SUMS // int(t.n_states.max()) ** n_slots)
        for b0 in range(0, all_rows.size, block):
            rows = all_rows[b0 : b0 + block]
            cols = np.argsort(~multi[rows], axis=1, kind="stable")[:, :n_slots]
            el = np.take_along_axis(idx[rows], cols, axis=1)
            a = np.take_along_axis(amt[rows], cols, axis=1)
            sums = fixed[rows][:, None]
            for s in range(n_slots):
                width = int(t.n_states[el[:, s]].max())
                contrib = a[:, s, None] * t.states[el[:, s], :width]  # (b, width)
                sums = (sums[:, :, None] + contrib[:, None, :]).reshape(rows.size, -1)
            result[rows] = (np.abs(sums) <= _NEUTRAL_ATOL).any(axis=1)
    return result


def featurize(compositions: str | Sequence[str] | np.ndarray) -> np.ndarray:
    """Compute the paper's 145 Magpie features for a batch of compositions.

    Args:
        compositions: formula strings, an amount vector of shape ``(80,)`` or a matrix of
            shape ``(n, 80)`` (integer counts or fractional amounts, ELEMENTS order).

    Returns:
        ``np.ndarray`` of shape ``(n, 145)``, float64, columns as :data:`FEATURE_LABELS`.
        Rows of empty compositions are all zeros.

    Cost: linear in the number of rows; one composition of up to 20 elements takes < 0.1 s
    (see the module docstring).

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
    if n == 1:
        return featurize_one(amounts[0])[None, :]
    if n > _ROW_BLOCK:
        return np.concatenate([_featurize_rows(amounts[i : i + _ROW_BLOCK]) for i in range(0, n, _ROW_BLOCK)])
    return _featurize_rows(amounts)


def _featurize_rows(amounts: np.ndarray) -> np.ndarray:
    """:func:`featurize` of a checked ``(n, 80)`` amount matrix."""
    n = amounts.shape[0]
    out = np.zeros((n, N_FEATURES), dtype=np.float64)
    if n == 0:
        return out
    t = _tables()
    idx, amt, mask = _padded(amounts)
    total = amt.sum(axis=1)
    nonempty = total > 0
    if not nonempty.any():
        return out
    idx, amt, mask, total = idx[nonempty], amt[nonempty], mask[nonempty], total[nonempty]
    frac = amt / total[:, None]
    n_el = mask.sum(axis=1)
    cols: list[np.ndarray] = []

    # Stoichiometry: number of elements, then Lp norms of the atomic fractions.
    cols.append(n_el[:, None].astype(np.float64))
    for p in STOICHIOMETRY_P[1:]:
        cols.append(((frac**p).sum(axis=1) ** (1.0 / p))[:, None])

    # ElementProperty("magpie"): six statistics of 22 element properties.
    props = t.magpie[idx]  # (n, K, 22)
    m3 = mask[:, :, None]
    pmin = np.where(m3, props, np.inf).min(axis=1)
    pmax = np.where(m3, props, -np.inf).max(axis=1)
    w3 = amt[:, :, None]
    mean = (w3 * props).sum(axis=1) / total[:, None]
    avg_dev = (w3 * np.abs(props - mean[:, None, :])).sum(axis=1) / total[:, None]
    wmax = amt.max(axis=1, keepdims=True)
    top = mask & (np.abs(amt - wmax) <= _MODE_ATOL + _MODE_RTOL * np.abs(wmax))
    mode = np.where(top[:, :, None], props, np.inf).min(axis=1)
    stats = np.stack([pmin, pmax, pmax - pmin, mean, avg_dev, mode], axis=2)  # (n, 22, 6)
    cols.append(stats.reshape(stats.shape[0], -1))

    # ValenceOrbital(props=["avg"]): fraction-weighted mean valence electrons per orbital.
    cols.append((w3 * t.valence[idx]).sum(axis=1) / total[:, None])

    # IonProperty(fast=True).
    x = t.electronegativity[idx]
    ionic = 1.0 - np.exp(-0.25 * (x[:, :, None] - x[:, None, :]) ** 2)
    k = idx.shape[1]
    pairs = mask[:, :, None] & mask[:, None, :] & np.triu(np.ones((k, k), dtype=bool), 1)[None]
    max_ionic = np.where(pairs, ionic, 0.0).max(axis=(1, 2))
    avg_ionic = np.where(pairs, frac[:, :, None] * frac[:, None, :] * ionic, 0.0).sum(axis=(1, 2))
    possible = np.ones(idx.shape[0], dtype=bool)
    multi = n_el >= 2
    if multi.any():
        possible[multi] = _compound_possible(idx[multi], amt[multi], mask[multi])
    cols.append(np.stack([possible.astype(np.float64), max_ionic, avg_ionic], axis=1))

    out[nonempty] = np.concatenate(cols, axis=1)
    return out


def _compound_possible_one(idx: list[int], amt: list[float]) -> bool:
    """Single-row :func:`_compound_possible` in plain Python (same arithmetic)."""
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
    """Features of one amount vector ``(80,)`` (a faster path than the batch code for one row).

    Same numbers as :func:`featurize` (tested); used by the environment at every step.
    """
    t = _tables()
    out = np.zeros(N_FEATURES, dtype=np.float64)
    idx = np.flatnonzero(amounts)
    k = idx.size
    if k == 0:
        return out
    amt = amounts[idx].astype(np.float64)
    amt_list = amt.tolist()
    total = sum(amt_list)
    frac = [a / total for a in amt_list]
    out[0] = k
    for j, p in enumerate(STOICHIOMETRY_P[1:], start=1):
        out[j] = sum(f**p for f in frac) ** (1.0 / p)
    props = t.magpie_valence[idx]  # (k, 26): 22 Magpie properties then 4 valence counts
    pmin, pmax = props.min(axis=0), props.max(axis=0)
    mean = (amt @ props) / total
    wmax = max(amt_list)
    tol = _MODE_ATOL + _MODE_RTOL * abs(wmax)
    top = [i for i, a in enumerate(amt_list) if abs(a - wmax) <= tol]
    mode = props[top[0]] if len(top) == 1 else props[top].min(axis=0)
    n_props = len(MAGPIE_PROPERTIES)
    block = out[len(STOICHIOMETRY_P) : len(STOICHIOMETRY_P) + n_props * 6].reshape(n_props, 6)
    block[:, 0] = pmin[:n_props]
    block[:, 1] = pmax[:n_props]
    block[:, 2] = pmax[:n_props] - pmin[:n_props]
    block[:, 3] = mean[:n_props]
    block[:, 4] = (amt @ np.abs(props[:, :n_props] - mean[:n_props])) / total
    block[:, 5] = mode[:n_props]
    base = len(STOICHIOMETRY_P) + n_props * 6
    out[base : base + 4] = mean[n_props:]
    if k >= 2:
        x = t.electronegativity_list
        els = idx.tolist()
        max_ionic, avg_ionic = 0.0, 0.0
        for a in range(k):
            for b in range(a + 1, k):
                ionic = 1.0 - math.exp(-0.25 * (x[els[a]] - x[els[b]]) ** 2)
                max_ionic = max(max_ionic, ionic)
                avg_ionic += frac[a] * frac[b] * ionic
        out[base + 4] = float(_compound_possible_one(els, amt_list))
        out[base + 5] = max_ionic
        out[base + 6] = avg_ionic
    else:
        out[base + 4] = 1.0
    return out


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
