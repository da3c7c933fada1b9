"""Energy above the convex hull of known compounds: a stability proxy for generated designs.

A composition whose (predicted) formation energy lies above the lower convex hull of the
known compounds of its chemical system would decompose into them. :class:`FormationHull`
holds known compounds (composition, formation energy per atom; elements at 0 eV/atom) and
answers, for any composition, the hull energy at that composition and the distance of a
given energy above it: the lowest-energy mixture of the known compounds of its chemical
system (every known compound whose elements are a subset of the query's, plus the pure
elements) with the same atomic fractions, a small linear programme — the same number as
pymatgen's :class:`~pymatgen.analysis.phase_diagram.PhaseDiagram` gives (the tests compare
them), about 10x faster because no hull is built.

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
from collections.abc import Sequence

import numpy as np

from oxide_env.chemistry.elements import N_ELEMENTS
from oxide_env.chemistry.features import as_amount_matrix
from oxide_env.chemistry.metrics import composition_keys

__all__ = ["FormationHull"]

_MAX_SUBSET_ELEMENTS = 12
_MAX_FACETS = 256
"""Hull facets remembered per chemical system (each lets later compositions skip the LP)."""
_TIGHT = 1e-9
"""A compound is on a facet when its energy is within this (times 1 + |E|) of the facet's plane."""
_INSIDE = 1e-12
"""A composition is inside a facet when no vertex weight is below -_INSIDE."""
_MEMO_SIZE = 200_000
"""Hull energies remembered per composition (a linear programme each; ~2 ms)."""
"""Up to this many elements the known compounds of a system are found by enumerating its
subsystems (2**k dictionary lookups); above it, by one vectorized scan."""


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
        self._systems: dict[frozenset[int], tuple[np.ndarray, np.ndarray, list[int]]] = {}
        self._memo: dict[tuple, float] = {}
        self._facets: dict[frozenset[int], list[tuple[np.ndarray, np.ndarray]]] = {}
        self._facet_stacks: dict[frozenset[int], tuple[np.ndarray, np.ndarray]] = {}
        self.n_linear_programs = 0
        """Linear programmes solved so far (the rest were memo or facet hits)."""

    def __getstate__(self) -> dict:
        # the memos are not state: a pickled hull (an env sent to a subprocess) carries only the compounds
        state = self.__dict__.copy()
        state.update(_memo={}, _systems={}, _facets={}, _facet_stacks={})
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
        """The known compounds of a system as (fractions over its elements, energies, elements)."""
        cached = self._systems.get(system)
        if cached is None:
            members = sorted(system)
            rows = self._known_in(system)
            fractions = np.vstack([np.eye(len(members)), self._fractions[np.ix_(rows, members)]]) if rows \
                else np.eye(len(members))
            energies = np.concatenate([np.zeros(len(members)), self._energies[rows]])
            cached = self._systems[system] = (fractions, energies, members)
        return cached

    def _add_facet(self, system: frozenset[int], fractions: np.ndarray, energies: np.ndarray,
                   potentials: np.ndarray) -> None:
        """Remember the hull facet an LP found: its chemical potentials ``mu`` (the LP's dual) and
        the inverse of the matrix of its vertices, if it is a simplex (exactly k tight compounds)."""
        facets = self._facets.setdefault(system, [])
        if len(facets) >= _MAX_FACETS or potentials.shape != (fractions.shape[1],):
            return
        slack = energies - fractions @ potentials  # >= 0 for every compound: mu is dual feasible
        scale = 1.0 + np.abs(energies)
        if (slack < -_TIGHT * scale).any():
            return
        tight = np.flatnonzero(slack <= _TIGHT * scale)
        if len(tight) != fractions.shape[1]:
            return  # a degenerate face (more or fewer tight compounds than elements): not cached
        vertices = fractions[tight].T  # (k, k): column v = fractions of tight compound v
        if np.linalg.cond(vertices) > 1e8:
            return
        facets.append((potentials.copy(), np.linalg.inv(vertices)))
        self._facet_stacks.pop(system, None)

    def _on_known_facet(self, system: frozenset[int], target: np.ndarray) -> float | None:
        """The hull energy at ``target`` if it lies in a remembered facet of ``system``, else None.

        A facet is a simplex of k known compounds (or elements) whose energies all lie on the
        plane ``mu . x``, with every known compound of the system on or above it (``mu`` is dual
        feasible). If ``target`` is a non-negative mixture of the k vertices, that mixture is
        optimal (complementary slackness), so the hull energy is ``mu . target``: the LP's
        answer without the LP.
        """
        facets = self._facets.get(system)
        if not facets:
            return None
        stack = self._facet_stacks.get(system)
        if stack is None:
            stack = self._facet_stacks[system] = (np.stack([f[0] for f in facets]), np.stack([f[1] for f in facets]))
        potentials, inverses = stack
        weights = inverses @ target  # (facets, k): the mixture of each facet's vertices that gives target
        inside = np.flatnonzero((weights >= -_INSIDE).all(axis=1))
        if inside.size == 0:
            return None
        return float(potentials[inside[0]] @ target)

    def hull_energy(self, compositions: Sequence[str] | np.ndarray) -> np.ndarray:
        """Formation energy of the hull at each composition (eV/atom; 0 for an element).

        The lowest energy of any mixture of known compounds (and elements) with the composition's
        atomic fractions: a small linear programme per composition (scipy's HiGHS), equal to
        pymatgen's ``PhaseDiagram.get_hull_energy_per_atom`` (tested to 1e-9). A composition
        inside a facet an earlier LP of its system found is answered from that facet without an
        LP (:attr:`n_linear_programs` counts the LPs). The empty composition gives NaN.
        """
        from scipy.optimize import linprog

        amounts = as_amount_matrix(compositions)
        out = np.full(len(amounts), math.nan)
        for r, row in enumerate(amounts):
            nz = np.flatnonzero(row)
            if len(nz) == 0:
                continue
            if len(nz) == 1:
                out[r] = 0.0
                continue
            system = frozenset(nz.tolist())
            fractions, energies, members = self._system(system)
            target = row[members] / row[members].sum()
            key = (tuple(members), target.tobytes())
            value = self._memo.get(key)
            if value is None:
                value = self._on_known_facet(system, target)
            if value is None:
                res = linprog(energies, A_eq=fractions.T, b_eq=target, bounds=(0, None), method="highs")
                value = float(res.fun) if res.status == 0 else math.nan
                if res.status == 0:
                    self._add_facet(system, fractions, energies, np.asarray(res.eqlin.marginals, dtype=np.float64))
                self.n_linear_programs += 1
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = value
            out[r] = value
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
