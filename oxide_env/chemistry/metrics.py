"""The paper's Table 1 metrics for a set of generated compositions.

All functions are pure: they take formulas (or count matrices) and return numbers.

* validity: % charge neutral and % electronegativity balanced
  (:mod:`oxide_env.chemistry.validity`, SMACT 2014 oxidation states, reduced formulas);
* diversity: % unique reduced formulas and the Element Mover's Distance (ElMD, Hargreaves
  et al. 2020) mean and std over all pairs, on the modified Pettifor scale. On a 1-D scale
  the earth mover's distance between two normalised compositions is the L1 distance
  between their cumulative distributions along the scale, so all pairs reduce to one
  ``scipy.spatial.distance.pdist(..., "cityblock")`` call;
* novelty: % of generated compositions (reduced) absent from a reference set, by default
  the predictors' training data;
* properties: mean and std of each predicted property.

Empty input gives ``n = 0`` and NaN for every percentage and statistic; fewer than two
materials give NaN ElMD statistics.

Example:
    >>> from oxide_env.chemistry.metrics import elmd
    >>> round(elmd("CaTiO3", "SrTiO3"), 6)
    0.2
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

import numpy as np
from scipy.spatial.distance import pdist

from oxide_env.chemistry.composition import as_count_matrix, reduce_counts
from oxide_env.chemistry.elements import ELEMENTS
from oxide_env.chemistry.features import as_amount_matrix

__all__ = [
    "composition_keys",
    "elmd",
    "elmd_pairwise",
    "evaluate",
    "pct_novel",
    "pct_unique",
]


def _load_mod_petti() -> tuple[np.ndarray, np.ndarray]:
    with resources.files("oxide_env").joinpath("data/mod_petti.json").open() as fh:
        position = json.load(fh)["position"]
    pos = np.array([position[e] for e in ELEMENTS], dtype=np.float64)
    order = np.argsort(pos, kind="stable")
    gaps = np.diff(pos[order])
    return order, np.append(gaps, 0.0)  # the last cumulative value is 1 - 1 = 0 anyway


_PETTI_ORDER, _PETTI_GAPS = _load_mod_petti()


def _cumulative(compositions: str | Sequence[str] | np.ndarray) -> np.ndarray:
    amounts = as_amount_matrix(compositions)
    total = amounts.sum(axis=1, keepdims=True)
    if np.any(total == 0):
        raise ValueError("ElMD is undefined for an empty composition; remove it first.")
    frac = amounts[:, _PETTI_ORDER] / total
    return np.cumsum(frac, axis=1) * _PETTI_GAPS


def elmd_pairwise(compositions: str | Sequence[str] | np.ndarray) -> np.ndarray:
    """ElMD (mod_petti) of every pair, as a condensed distance vector (``scipy`` layout).

    Example:
        >>> elmd_pairwise(["CaTiO3", "SrTiO3", "NaCl"]).shape
        (3,)
    """
    return pdist(_cumulative(compositions), metric="cityblock")


def elmd(a: str | np.ndarray, b: str | np.ndarray) -> float:
    """ElMD (mod_petti scale) between two compositions, as ``ElMD(a).elmd(b)``.

    Example:
        >>> elmd("NaCl", "NaCl")
        0.0
    """
    ca, cb = _cumulative(a), _cumulative(b)
    return float(np.abs(ca - cb).sum())


def composition_keys(compositions: Sequence[str] | np.ndarray) -> list[tuple]:
    """Hashable keys equal for compositions with the same reduced formula.

    Integer rows are reduced by their gcd; fractional rows (e.g. reference data such as
    ``Li0.5CoO2``) are compared by their atomic fractions rounded to 1e-6, so ``LiCo2O4``
    and ``Li0.5CoO2`` share a key.
    """
    amounts = as_amount_matrix(compositions)
    total = amounts.sum(axis=1, keepdims=True)
    total[total == 0] = 1.0
    frac = np.round(amounts / total, 6)
    keys = []
    for row in frac:
        nz = np.flatnonzero(row)
        keys.append(tuple(zip(nz.tolist(), row[nz].tolist())))
    return keys


def pct_unique(compositions: Sequence[str] | np.ndarray) -> float:
    """Percentage of distinct reduced formulas (NaN for empty input).

    Example:
        >>> pct_unique(["TiO2", "Ti2O4", "MgO", "CaO"])
        75.0
    """
    keys = composition_keys(compositions)
    return 100.0 * len(set(keys)) / len(keys) if keys else math.nan


def pct_novel(compositions: Sequence[str] | np.ndarray, reference: Iterable[str] | set) -> float:
    """Percentage of compositions whose reduced formula is not in ``reference``.

    Args:
        compositions: generated formulas or count matrix.
        reference: known formulas, or a set of keys from :func:`composition_keys`.

    Example:
        >>> pct_novel(["Ti2O4", "Os5WO5"], reference=["TiO2", "MgO"])
        50.0
    """
    keys = composition_keys(compositions)
    if not keys:
        return math.nan
    if not isinstance(reference, (set, frozenset)):
        reference = set(composition_keys(list(reference)))
    return 100.0 * sum(k not in reference for k in keys) / len(keys)


PropertyFn = Callable[[np.ndarray], np.ndarray]


def evaluate(
    formulas: Sequence[str] | np.ndarray,
    *,
    reference: Iterable[str] | set | None = None,
    predictors: Mapping[str, PropertyFn] | Sequence[Any] | None = None,
) -> dict[str, float]:
    """The paper's Table 1 metrics for a list of generated materials.

    Args:
        formulas: generated formulas with integer amounts (or an ``(n, 80)`` count matrix,
            or ``{element: count}`` dicts). A bare string is *one* formula:
            ``evaluate("NO")`` evaluates nitric oxide, not ``"N"`` and ``"O"``.
        reference: known formulas for % novel (omitted: no ``pct_novel`` key).
        predictors: property models, either a mapping ``name -> callable(counts) -> values``
            or objects with ``.name`` and ``.predict(counts)`` (the ``predictors`` package);
            adds ``<name>_mean`` and ``<name>_std`` (population std, as numpy).

    Returns:
        dict with ``n``, ``pct_charge_neutral``, ``pct_electronegativity_balanced``,
        ``pct_unique``, ``elmd_mean``, ``elmd_std`` (+ ``pct_novel`` and property keys).

    Raises:
        TypeError: for ``None``, numbers, bytes or complex amounts (see
            :func:`~oxide_env.chemistry.composition.as_count_matrix`).
        ValueError: naming the first formula that cannot be parsed or is not integer.

    Example:
        >>> m = evaluate(["MgO", "Al2O3", "CaTiO3", "Fe3O4", "BaTiO3"])
        >>> m["pct_charge_neutral"], m["pct_unique"]  # one state per element: Fe3O4 fails
        (80.0, 100.0)
    """
    from oxide_env.chemistry.validity import charge_neutral, electronegativity_balanced

    counts = reduce_counts(as_count_matrix(formulas))  # a bare string is one formula
    n = counts.shape[0]
    nan = math.nan
    result: dict[str, float] = {"n": n}
    if n == 0:
        result.update(
            pct_charge_neutral=nan, pct_electronegativity_balanced=nan, pct_unique=nan,
            elmd_mean=nan, elmd_std=nan,
        )
    else:
        result["pct_charge_neutral"] = 100.0 * float(np.mean(charge_neutral(counts)))
        result["pct_electronegativity_balanced"] = 100.0 * float(
            np.mean(electronegativity_balanced(counts))
        )
        result["pct_unique"] = pct_unique(counts)
        nonempty = counts[counts.sum(axis=1) > 0]
        if nonempty.shape[0] >= 2:
            d = elmd_pairwise(nonempty)
            result["elmd_mean"], result["elmd_std"] = float(d.mean()), float(d.std())
        else:
            result["elmd_mean"] = result["elmd_std"] = nan
    if reference is not None:
        result["pct_novel"] = pct_novel(counts, reference) if n else nan
    if predictors is not None:
        items = (
            predictors.items()
            if isinstance(predictors, Mapping)
            else [(p.name, p.predict) for p in predictors]
        )
        for name, fn in items:
            values = np.asarray(fn(counts), dtype=np.float64) if n else np.zeros(0)
            result[f"{name}_mean"] = float(values.mean()) if n else nan
            result[f"{name}_std"] = float(values.std()) if n else nan
    return result


