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
    "design_checks",
    "summarize_checks",
    "pct_new",
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


KEY_DECIMALS = 6
"""Atomic fractions are rounded to this many decimals in :func:`composition_keys`."""


def composition_keys(compositions: Sequence[str] | np.ndarray) -> list[tuple]:
    """Hashable keys equal for compositions with the same reduced formula: the one composition key.

    A key is ``((element index, atomic fraction), ...)`` over the present elements, fractions
    rounded to :data:`KEY_DECIMALS` decimals with Python's exact ``round``; so ``Ti2O4`` and
    ``TiO2`` share a key, and fractional rows (e.g. reference data such as ``Li0.5CoO2``) match
    their integer multiples (``LiCo2O4``). Novelty, uniqueness and the curation's de-duplication
    all use it.

    Example:
        >>> composition_keys(["Ti2O4", "TiO2"])[0] == composition_keys(["TiO2"])[0]
        True
    """
    amounts = as_amount_matrix(compositions)
    total = amounts.sum(axis=1, keepdims=True)
    total[total == 0] = 1.0
    frac = amounts / total
    rows, cols = np.nonzero(frac)
    values = frac[rows, cols]
    # numpy's rounding equals Python's except where the scaled value sits at a half: redo those exactly
    rounded = np.round(values, KEY_DECIMALS)
    scaled = values * 10.0**KEY_DECIMALS
    for j in np.flatnonzero(np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6):
        rounded[j] = round(float(values[j]), KEY_DECIMALS)
    pairs = list(zip(cols.tolist(), rounded.tolist()))
    bounds = np.searchsorted(rows, np.arange(len(frac) + 1)).tolist()
    return [tuple(pairs[bounds[i] : bounds[i + 1]]) for i in range(len(frac))]


def pct_unique(compositions: Sequence[str] | np.ndarray) -> float:
    """Percentage of distinct reduced formulas (NaN for empty input).

    Example:
        >>> pct_unique(["TiO2", "Ti2O4", "MgO", "CaO"])
        75.0
    """
    keys = composition_keys(compositions)
    return 100.0 * len(set(keys)) / len(keys) if keys else math.nan


def _reference_keys(reference: Iterable[str] | set) -> set | frozenset:
    """``reference`` as a set of :func:`composition_keys` (a set is taken to be one already)."""
    return reference if isinstance(reference, (set, frozenset)) else set(composition_keys(list(reference)))


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
    reference = _reference_keys(reference)
    return 100.0 * sum(k not in reference for k in keys) / len(keys)


def pct_new(compositions: Sequence[str] | np.ndarray, keep: Sequence[bool] | np.ndarray,
            reference: Iterable[str] | set) -> float:
    """Percentage of the ``n`` designs that are *new keepers*: distinct reduced formulas among the
    designs flagged ``keep`` (e.g. plausible) that are not in ``reference``; repeats count once.

    ``pct_new(designs, plausible, known)`` is the number of new plausible compositions a chemist
    gets per 100 designs asked for: a known compound or a repeat adds nothing (NaN for empty input).

    Example:
        >>> pct_new(["MgAl2O4", "Mg2Al4O8", "TiO2", "CaTiO3"], [True, True, True, False], ["TiO2"])
        25.0
    """
    keys = composition_keys(compositions)
    keep = np.asarray(keep, dtype=bool).reshape(-1)
    if keep.shape != (len(keys),):
        raise ValueError(f"Invalid keep of shape {keep.shape}: expected one flag per design ({len(keys)},).")
    if not keys:
        return math.nan
    reference = _reference_keys(reference)
    new = {k for k, ok in zip(keys, keep) if ok and k not in reference}
    return 100.0 * len(new) / len(keys)


PropertyFn = Callable[[np.ndarray], np.ndarray]

PLAUSIBLE_FORMATION_ENERGY = -0.5
"""eV/atom: a design is plausible only if its predicted formation energy is at most this."""
NEAR_HULL = 0.1
"""eV/atom: ``pct_plausible_near_hull`` counts plausible designs whose predicted formation energy is
at most this above the convex hull of the known compounds (farther above, a design would decompose
into known compounds; 0.1 eV/atom is a common bound for synthesizable metastable phases)."""


def design_checks(
    formulas: Sequence[str] | np.ndarray,
    *,
    predictors: Mapping[str, PropertyFn] | Sequence[Any] | None = None,
    hull: Any = None,
    domains: Mapping[str, Any] | Sequence[Any] | None = None,
    formation_energy_max: float = PLAUSIBLE_FORMATION_ENERGY,
) -> dict[str, np.ndarray]:
    """Every check of every design, one array per check (the per-material half of :func:`evaluate`).

    Args: as for :func:`evaluate`.

    Returns:
        dict of arrays of length ``n``: ``charge_neutral``, ``electronegativity_balanced``
        (ours), ``charge_neutral_paper_rule``, ``electronegativity_balanced_paper_rule``,
        ``icsd24``, ``oxide_rule``; with predictors each ``<name>``; with a hull and
        ``formation_energy`` ``e_above_hull``; with domains ``in_domain_<name>`` and
        ``in_domain``; with domains and ``formation_energy`` ``plausible``.

    Example:
        >>> checks = design_checks(["MgO", "Ti2O4", "Os7W9O"])
        >>> checks["charge_neutral"].tolist(), checks["charge_neutral_paper_rule"].tolist()
        ([True, True, True], [True, False, True])
        >>> checks["oxide_rule"].tolist()  # Os7W9O is neutral only with Os-1
        [True, True, False]
    """
    from oxide_env.chemistry.validity import (
        charge_neutral,
        charge_neutral_paper_rule,
        electronegativity_balanced,
        electronegativity_balanced_paper_rule,
        oxide_rule,
    )

    generated = as_count_matrix(formulas)  # a bare string is one formula
    counts = reduce_counts(generated)
    n = len(counts)
    checks: dict[str, np.ndarray] = {
        "charge_neutral": charge_neutral(counts),
        "electronegativity_balanced": electronegativity_balanced(counts),
        "charge_neutral_paper_rule": charge_neutral_paper_rule(generated),
        "electronegativity_balanced_paper_rule": electronegativity_balanced_paper_rule(generated),
        "icsd24": electronegativity_balanced(counts, oxidation_states="icsd24"),
        "oxide_rule": oxide_rule(counts),
    }
    if predictors is not None:
        items = (
            predictors.items()
            if isinstance(predictors, Mapping)
            else [(p.name, p.predict) for p in predictors]
        )
        for name, fn in items:
            checks[name] = np.asarray(fn(counts), dtype=np.float64).reshape(-1) if n else np.zeros(0)
    energy = checks.get("formation_energy")
    if energy is not None and hull is not None:
        checks["e_above_hull"] = hull.e_above_hull(counts, energy) if n else np.zeros(0)
    if domains is not None:
        models = list(domains.values()) if isinstance(domains, Mapping) else list(domains)
        inside = np.ones(n, dtype=bool)
        for model in models:
            ok = np.asarray(model.in_domain(counts), dtype=bool) if n else np.zeros(0, dtype=bool)
            checks[f"in_domain_{model.name}"] = ok
            inside &= ok
        checks["in_domain"] = inside
        if energy is not None:
            checks["plausible"] = checks["oxide_rule"] & (energy <= formation_energy_max) & inside
    return checks


_PCT_KEYS = {
    "charge_neutral": "pct_charge_neutral",
    "electronegativity_balanced": "pct_electronegativity_balanced",
    "charge_neutral_paper_rule": "pct_charge_neutral_paper_rule",
    "electronegativity_balanced_paper_rule": "pct_electronegativity_balanced_paper_rule",
    "icsd24": "pct_icsd24",
    "oxide_rule": "pct_oxide_rule",
    "in_domain": "pct_in_domain",
    "plausible": "pct_plausible",
}


def evaluate(
    formulas: Sequence[str] | np.ndarray,
    *,
    reference: Iterable[str] | set | None = None,
    predictors: Mapping[str, PropertyFn] | Sequence[Any] | None = None,
    hull: Any = None,
    domains: Mapping[str, Any] | Sequence[Any] | None = None,
    formation_energy_max: float = PLAUSIBLE_FORMATION_ENERGY,
) -> dict[str, float]:
    """Table 1 metrics, under the paper's rule and ours, plus what makes a design plausible.

    Args:
        formulas: generated formulas with integer amounts *as generated* (or an ``(n, 80)``
            count matrix, or ``{element: count}`` dicts). A bare string is *one* formula:
            ``evaluate("NO")`` evaluates nitric oxide, not ``"N"`` and ``"O"``.
        reference: known formulas for % novel (omitted: no ``pct_novel`` key).
        predictors: property models, either a mapping ``name -> callable(counts) -> values``
            or objects with ``.name`` and ``.predict(counts)`` (the ``predictors`` package);
            adds ``<name>_mean`` and ``<name>_std`` (population std, as numpy).
        hull: a :class:`~oxide_env.chemistry.hull.FormationHull` of known compounds
            (``predictors.data.known_hull()``); with a ``formation_energy`` predictor adds
            ``median_e_above_hull`` (eV/atom).
        domains: applicability-domain models (objects with ``.name`` and
            ``.in_domain(compositions)``, e.g. ``predictors.domain.load_domain(name)``, or a
            mapping ``name -> model``); adds ``pct_in_domain`` (inside *every* given domain)
            and ``pct_in_domain_<name>``.
        formation_energy_max: the plausibility bound on the predicted formation energy (eV/atom).

    Returns:
        dict with

        * ``n``; ``pct_charge_neutral``, ``pct_electronegativity_balanced`` (ours: SMACT 2014
          states on reduced formulas); ``pct_charge_neutral_paper_rule``,
          ``pct_electronegativity_balanced_paper_rule`` (the authors' checker: unreduced
          amounts); ``pct_icsd24`` (charge neutral and EN balanced with the ``icsd24`` states);
          ``pct_oxide_rule`` (:func:`~oxide_env.chemistry.validity.oxide_rule`);
        * ``pct_unique``, ``elmd_mean``, ``elmd_std`` (+ ``pct_novel``);
        * with predictors: ``<name>_mean``, ``<name>_std``; with ``formation_energy`` among
          them ``pct_formation_energy_le_-0.5`` (the bound in the key follows
          ``formation_energy_max``), and with a hull too ``median_e_above_hull``;
        * with domains: ``pct_in_domain``, ``pct_in_domain_<name>``; with domains and
          ``formation_energy``: ``pct_plausible`` = oxide rule AND predicted E_f <=
          ``formation_energy_max`` AND inside every domain given; with ``reference`` too
          ``pct_new_plausible`` (:func:`pct_new`: distinct novel plausible designs per 100
          asked, the yield a chemist keeps; a known compound or a repeat adds nothing).

        Empty input gives ``n = 0`` and NaN for every statistic.

    Raises:
        TypeError: for ``None``, numbers, bytes or complex amounts (see
            :func:`~oxide_env.chemistry.composition.as_count_matrix`).
        ValueError: naming the first formula that cannot be parsed or is not integer.

    Example:
        >>> m = evaluate(["MgO", "Al2O3", "CaTiO3", "Fe3O4", "Ba2Ti2O6"])
        >>> m["pct_charge_neutral"], m["pct_charge_neutral_paper_rule"], m["pct_oxide_rule"]
        (80.0, 60.0, 80.0)
    """
    generated = as_count_matrix(formulas)  # parsed once for the checks and the summary
    checks = design_checks(
        generated, predictors=predictors, hull=hull, domains=domains, formation_energy_max=formation_energy_max
    )
    return summarize_checks(generated, checks, reference=reference, formation_energy_max=formation_energy_max)


def summarize_checks(
    formulas: Sequence[str] | np.ndarray,
    checks: Mapping[str, np.ndarray],
    *,
    reference: Iterable[str] | set | None = None,
    formation_energy_max: float = PLAUSIBLE_FORMATION_ENERGY,
) -> dict[str, float]:
    """The aggregate metrics of :func:`evaluate` from already computed :func:`design_checks`.

    Lets a caller that keeps the per-design checks (to write them out) avoid computing them twice.
    """
    counts = reduce_counts(as_count_matrix(formulas))
    # the remaining keys are the predicted properties
    predictor_names = [
        k for k in checks if k not in _PCT_KEYS and k != "e_above_hull" and not k.startswith("in_domain_")
    ]
    n = counts.shape[0]
    nan = math.nan
    result: dict[str, float] = {"n": n}
    for check, key in _PCT_KEYS.items():
        if check in checks:
            result[key] = 100.0 * float(np.mean(checks[check])) if n else nan
    result["pct_unique"] = pct_unique(counts) if n else nan
    nonempty = counts[counts.sum(axis=1) > 0]
    if nonempty.shape[0] >= 2:
        d = elmd_pairwise(nonempty)
        result["elmd_mean"], result["elmd_std"] = float(d.mean()), float(d.std())
    else:
        result["elmd_mean"] = result["elmd_std"] = nan
    if reference is not None:
        reference = _reference_keys(reference)  # converted once for both metrics
        result["pct_novel"] = pct_novel(counts, reference) if n else nan
        if "plausible" in checks:
            result["pct_new_plausible"] = pct_new(counts, checks["plausible"], reference) if n else nan
    for name in predictor_names:
        values = checks[name]
        result[f"{name}_mean"] = float(values.mean()) if n else nan
        result[f"{name}_std"] = float(values.std()) if n else nan
    energy = checks.get("formation_energy")
    if energy is not None:
        result[f"pct_formation_energy_le_{formation_energy_max:g}"] = (
            100.0 * float(np.mean(energy <= formation_energy_max)) if n else nan
        )
    if "e_above_hull" in checks:
        above = checks["e_above_hull"]
        result["median_e_above_hull"] = float(np.nanmedian(above)) if np.isfinite(above).any() else nan
        if "plausible" in checks:
            near = checks["plausible"] & (np.nan_to_num(above, nan=np.inf) <= NEAR_HULL)
            result["pct_plausible_near_hull"] = 100.0 * float(np.mean(near)) if n else nan
    for key, values in checks.items():
        if key.startswith("in_domain_"):
            result[f"pct_{key}"] = 100.0 * float(np.mean(values)) if n else nan
    return result
