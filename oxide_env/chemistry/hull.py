"""Energy above the convex hull of known compounds: a stability proxy for generated designs.

A composition whose (predicted) formation energy lies above the lower convex hull of the
known compounds of its chemical system would decompose into them. :class:`FormationHull`
holds known compounds (composition, formation energy per atom; elements at 0 eV/atom) and
answers, for any composition, the hull energy at that composition and the distance of a
given energy above it: the lowest-energy mixture of the known compounds of its chemical
system (every known compound whose elements are a subset of the query's, plus the pure
elements) with the same atomic fractions — the same number as pymatgen's
:class:`~pymatgen.analysis.phase_diagram.PhaseDiagram` gives (the tests compare them).

How: the lower hull of a chemical system is a convex piecewise-linear function of the atomic
fractions ``x``, so it is the largest of its facets' planes, ``max_f mu_f . x`` (``mu_f``: the
facet's chemical potentials; by LP duality the same number as the lowest-energy mixture).
The planes of a system come from one Qhull call (:class:`scipy.spatial.ConvexHull`) over the
elements and the known compounds below zero, and are remembered per system; every query of
that system is then a matrix product. About 8x faster than a linear programme per
composition (``python benchmarks/hull_speed.py``), which remains the fallback where Qhull
fails.

The known compounds the project uses are the predictors' formation-energy training data
(lowest energy per composition: :func:`predictors.data.known_hull`).

Example:
    >>> hull = FormationHull(["MgO", "Al2O3", "MgAl2O4"], [-3.0, -3.4, -3.2])
    >>> hull.hull_energy(["MgAl2O4"]).round(3).tolist()  # MgO + Al2O3 mix: (2*-3 + 5*-3.4)/7
    [-3.286]
    >>> hull.e_above_hull(["MgAl2O4", "MgO", "Mg2O2"], [-3.2, -2.9, -3.1]).round(3).tolist()
    [0.086, 0.1, -0.1]
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from oxide_env.chemistry.elements import N_ELEMENTS
from oxide_env.chemistry.features import as_amount_matrix
from oxide_env.chemistry.metrics import composition_keys

__all__ = ["FormationHull"]

_MAX_SUBSET_ELEMENTS = 12
"""Up to this many elements the known compounds of a system are found by enumerating its
subsystems (2**k dictionary lookups); above it, by one vectorized scan."""
_BELOW_ZERO = 1e-9
"""Compounds with a formation energy above -this cannot lower a hull that the elements put at 0."""
_LOWER = 1e-6
"""A Qhull facet is part of the lower hull when its unit normal's energy component is below -this
(vertical facets, at the simplex's boundary, have ~0; real lower facets at least ~1e-2)."""
_SYSTEMS_REMEMBERED = 4096
"""Chemical systems whose hull planes are kept (least recently used dropped first; ~10 kB each)."""


class FormationHull:
    """Lower convex hull of known formation energies (eV/atom), per chemical system.

    Args:
        compositions: known compounds (formulas or an ``(n, 80)`` amount matrix).
        formation_energies: their formation energies in eV/atom. Where a composition repeats
            (same reduced formula) the lowest energy is kept. Pure elements are added at 0.

    Raises:
        ValueError: if the lengths differ or an energy is not finite.
    """

    def __init__(self, compositions: Sequence[str] | np.ndarray, formation_energies: Sequence[float] | np.ndarray) -> None:
        amounts = as_amount_matrix(compositions)
        energies = np.asarray(formation_energies, dtype=np.float64).reshape(-1)
        if len(energies) != len(amounts):
            raise ValueError(
                f"FormationHull got {len(amounts)} compositions but {len(energies)} energies."
            )
        if not np.isfinite(energies).all():
            bad = int(np.flatnonzero(~np.isfinite(energies))[0])
            raise ValueError(f"FormationHull: energy {energies[bad]!r} of row {bad} is not finite.")
        keep = amounts.sum(axis=1) > 0
        amounts, energies = amounts[keep], energies[keep]
        fractions = amounts / amounts.sum(axis=1, keepdims=True)
        # lowest energy per composition (the one composition key)
        best: dict[tuple, tuple[float, int]] = {}
        for r, key in enumerate(composition_keys(amounts)):
            if len(key) > 1 and (key not in best or energies[r] < best[key][0]):
                best[key] = (float(energies[r]), r)
        rows = np.array(sorted(r for _, r in best.values()), dtype=np.int64)
        self._fractions = fractions[rows] if len(rows) else np.zeros((0, N_ELEMENTS))
        self._energies = energies[rows] if len(rows) else np.zeros(0)
        self._present = self._fractions > 0
        self._by_system: dict[frozenset[int], list[int]] = {}
        for r, row in enumerate(self._present):
            self._by_system.setdefault(frozenset(np.flatnonzero(row).tolist()), []).append(r)
        self._planes: OrderedDict[frozenset[int], tuple[list[int], np.ndarray]] = OrderedDict()
        self.n_hulls = 0
        """Qhull calls so far (one per chemical system not remembered)."""
        self.n_linear_programs = 0
        """Linear programmes solved so far (only where Qhull failed)."""

    def __getstate__(self) -> dict:
        # the planes are a cache, not state: a pickled hull (an env sent to a subprocess) carries only the compounds
        state = self.__dict__.copy()
        state["_planes"] = OrderedDict()
        return state

    def __len__(self) -> int:
        """Number of known compounds (distinct compositions with two or more elements)."""
        return len(self._energies)

    def _known_in(self, system: frozenset[int]) -> list[int]:
        if len(system) <= _MAX_SUBSET_ELEMENTS:
            out: list[int] = []
            members = sorted(system)
            for k in range(2, len(members) + 1):
                for sub in itertools.combinations(members, k):
                    out += self._by_system.get(frozenset(sub), [])
            return out
        outside = np.ones(N_ELEMENTS, dtype=bool)
        outside[list(system)] = False
        return np.flatnonzero(~self._present[:, outside].any(axis=1)).tolist()

    def _system(self, system: frozenset[int]) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """The known compounds of a system as (fractions over its elements, energies, elements); elements first."""
        members = sorted(system)
        rows = self._known_in(system)
        fractions = np.vstack([np.eye(len(members)), self._fractions[np.ix_(rows, members)]]) if rows \
            else np.eye(len(members))
        energies = np.concatenate([np.zeros(len(members)), self._energies[rows]])
        return fractions, energies, members

    def _system_planes(self, system: frozenset[int]) -> tuple[list[int], np.ndarray]:
        """The system's elements and its lower hull's planes ``mu`` ``(facets, k)``: hull(x) = max(mu @ x).

        ``None`` planes where Qhull failed (the caller solves linear programmes instead).
        """
        cached = self._planes.get(system)
        if cached is not None:
            self._planes.move_to_end(system)
            return cached
        fractions, energies, members = self._system(system)
        k = len(members)
        below = energies < -_BELOW_ZERO
        if not below.any():
            planes: np.ndarray | None = np.zeros((1, k))  # nothing below the elements' plane at 0
        else:
            from scipy.spatial import ConvexHull, QhullError

            keep = below.copy()
            keep[:k] = True  # the elements
            points = np.column_stack([fractions[keep, : k - 1], energies[keep]])  # x_k = 1 - the others
            try:
                equations = ConvexHull(points, qhull_options="Qt").equations  # n . (x', E) + d = 0, unit n
                self.n_hulls += 1
            except (QhullError, ValueError):
                planes = None
            else:
                lower = equations[equations[:, k - 1] < -_LOWER]
                slope = -lower[:, : k - 1] / lower[:, k - 1 : k]  # E = slope . x' + offset on the facet
                offset = -lower[:, k] / lower[:, k - 1]
                planes = np.column_stack([slope + offset[:, None], offset])  # mu . x with sum(x) = 1
        while len(self._planes) >= _SYSTEMS_REMEMBERED:
            self._planes.popitem(last=False)
        self._planes[system] = (members, planes)
        return members, planes

    def _linear_program(self, system: frozenset[int], target: np.ndarray) -> float:
        """The hull energy at ``target`` (fractions over the system's sorted elements) by a linear programme."""
        from scipy.optimize import linprog

        fractions, energies, _ = self._system(system)
        res = linprog(energies, A_eq=fractions.T, b_eq=target, bounds=(0, None), method="highs")
        self.n_linear_programs += 1
        return float(res.fun) if res.status == 0 else math.nan

    def hull_energy(self, compositions: Sequence[str] | np.ndarray) -> np.ndarray:
        """Formation energy of the hull at each composition (eV/atom; 0 for an element).

        The lowest energy of any mixture of known compounds (and elements) with the composition's
        atomic fractions, equal to pymatgen's ``PhaseDiagram.get_hull_energy_per_atom`` (tested
        to 1e-9): the largest of the system's lower-hull planes at the composition (one Qhull
        call per chemical system, :attr:`n_hulls`; a linear programme per composition where
        Qhull fails, :attr:`n_linear_programs`). The empty composition gives NaN.
        """
        amounts = as_amount_matrix(compositions)
        out = np.full(len(amounts), math.nan)
        present = amounts > 0
        n_present = present.sum(axis=1)
        out[n_present == 1] = 0.0
        rows = np.flatnonzero(n_present > 1)
        if not len(rows):
            return out
        _, group = np.unique(np.packbits(present[rows], axis=1), axis=0, return_inverse=True)
        group = group.reshape(-1)
        order = np.argsort(group, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0])
        for block in np.split(rows[order], starts[1:]):
            system = frozenset(np.flatnonzero(present[block[0]]).tolist())
            members, planes = self._system_planes(system)
            targets = amounts[np.ix_(block, members)]
            targets = targets / targets.sum(axis=1, keepdims=True)
            if planes is not None:
                out[block] = (targets @ planes.T).max(axis=1)
            else:
                out[block] = [self._linear_program(system, t) for t in targets]
        return out

    def e_above_hull(
        self, compositions: Sequence[str] | np.ndarray, formation_energies: Sequence[float] | np.ndarray
    ) -> np.ndarray:
        """Energy above the hull (eV/atom) of each composition at the given formation energy.

        Negative values mean the composition would lie *below* today's hull (a predicted new
        stable phase). NaN where the composition is empty or its energy is not finite.

        Raises:
            ValueError: if the lengths differ.
        """
        energies = np.asarray(formation_energies, dtype=np.float64).reshape(-1)
        hull = self.hull_energy(compositions)
        if len(hull) != len(energies):
            raise ValueError(f"e_above_hull got {len(hull)} compositions but {len(energies)} energies.")
        return energies - hull
