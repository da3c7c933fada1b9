"""Speed of the hull energy (the ``e_above_hull`` constraint): the compiled simplex against scipy's LP and pymatgen.

The last-step lookahead asks for the hull energy of every oxygen completion of each state
(oxygen 1-9). This script builds such queries from ``--states`` random oxide states (the
paper's random policy, oxygen replaced by 1-9) over the predictors' known compounds
(:func:`predictors.data.known_hull`) and times, in one run:

* ``simplex, compiled pass``: :meth:`FormationHull.hull_energy`: one compiled pass gathers each
  system's compounds (from the hull's subsystem table, built once per hull and timed apart) and
  runs the simplex per composition;
* ``simplex, systems gathered in Python``: the same simplex, each system's compounds gathered in
  Python (the path of systems of 8 or more elements, and of every system before the compiled pass);
* ``linear programme``: the same programme by scipy's ``linprog`` (HiGHS), one per composition
  (the method before 2026-12-07, which also skipped compositions inside a facet an earlier LP had
  found: ~40 % of the queries of a training run still needed an LP);
* ``pymatgen``: :class:`~pymatgen.analysis.phase_diagram.PhaseDiagram` built per chemical
  system from the same compounds (the reference), on ``--reference-states`` states.

Max |difference| against the LP and pymatgen must be ~1e-12. The first call compiles the kernel
(cached on disk), so a short warm-up call precedes the timings.

Usage:
    python benchmarks/hull_speed.py [--states 1000] [--reference-states 100] [--seed 0]

Writes ``benchmarks/results/hull_speed.md`` and ``.csv``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def oxygen_lines(states: int, seed: int) -> np.ndarray:
    """The 9 oxygen completions (O1-O9) of ``states`` random oxide states, ``(9 * states, 80)``."""
    from oxide_env.chemistry.baseline import random_oxide_counts
    from oxide_env.chemistry.elements import OXYGEN_INDEX

    base = random_oxide_counts(states, seed=seed)
    base[:, OXYGEN_INDEX] = 0
    queries = np.repeat(base, 9, axis=0)
    queries[:, OXYGEN_INDEX] = np.tile(np.arange(1, 10), states)
    return queries


def pymatgen_hull(hull, queries: np.ndarray) -> np.ndarray:
    """Hull energies by pymatgen's PhaseDiagram, one diagram per chemical system of the same known compounds."""
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition

    from oxide_env.chemistry.elements import ELEMENTS

    out = np.full(len(queries), np.nan)
    diagrams: dict[frozenset, PhaseDiagram] = {}
    for r, row in enumerate(queries):
        nz = np.flatnonzero(row)
        if len(nz) < 2:
            out[r] = 0.0
            continue
        system = frozenset(nz.tolist())
        if system not in diagrams:
            fractions, energies, members = hull._system(system)
            entries = [PDEntry(Composition({ELEMENTS[m]: f for m, f in zip(members, x) if f > 0}), e)
                       for x, e in zip(fractions, energies)]
            diagrams[system] = PhaseDiagram(entries)
        out[r] = diagrams[system].get_hull_energy_per_atom(
            Composition({ELEMENTS[m]: int(row[m]) for m in nz}))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", type=int, default=1000, help="random states (9 compositions each)")
    parser.add_argument("--reference-states", type=int, default=100, help="states also timed with pymatgen")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "hull_speed.md"))
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from predictors.data import known_hull

    known = known_hull()
    queries = oxygen_lines(args.states, args.seed)
    n_systems = len({tuple(np.flatnonzero(q)) for q in queries if np.count_nonzero(q) > 1})
    hull = copy.copy(known)  # a copy drops the subsystem table (FormationHull.__getstate__)
    assert hull._table is None
    copy.copy(known).hull_energy(oxygen_lines(2, args.seed + 1))  # compile the kernel (other systems)
    t0 = time.perf_counter()
    hull._subsystem_table()
    table_seconds = time.perf_counter() - t0
    rows = []
    t0 = time.perf_counter()
    simplex = hull.hull_energy(queries)
    rows.append(("simplex, compiled pass", len(queries), time.perf_counter() - t0, 0.0))
    from oxide_env.chemistry import hull as module

    kernel_elements, module._KERNEL_ELEMENTS = module._KERNEL_ELEMENTS, 1  # every system through Python
    try:
        t0 = time.perf_counter()
        python = hull.hull_energy(queries)
        rows.append(("simplex, systems gathered in Python", len(queries), time.perf_counter() - t0,
                     float(np.nanmax(np.abs(python - simplex)))))
    finally:
        module._KERNEL_ELEMENTS = kernel_elements
    t0 = time.perf_counter()
    lp = np.array([hull._linear_program(frozenset(np.flatnonzero(q).tolist()),
                                        q[q > 0] / q.sum()) if np.count_nonzero(q) > 1 else 0.0
                   for q in tqdm(queries, desc="linear programmes")])
    rows.append(("linear programme", len(queries), time.perf_counter() - t0, float(np.nanmax(np.abs(lp - simplex)))))
    ref_queries = queries[: 9 * args.reference_states]
    t0 = time.perf_counter()
    reference = pymatgen_hull(hull, ref_queries)
    rows.append(("pymatgen PhaseDiagram", len(ref_queries), time.perf_counter() - t0,
                 float(np.nanmax(np.abs(reference - simplex[: len(ref_queries)])))))

    compiled = rows[0][2] / rows[0][1]
    lines = [f"# Hull energy speed: {args.states:,} random oxide states x oxygen 1-9 ({len(queries):,} compositions, "
             f"{n_systems:,} chemical systems)", "",
             f"Known compounds: {len(known):,} (the formation-energy training data). One process, one run. "
             f"The hull's subsystem table (once per hull, before the first answer): {table_seconds:.2f} s.", "",
             "| method | compositions | seconds | µs / composition | vs compiled pass | max abs diff vs compiled pass (eV/atom) |",
             "|---|---|---|---|---|---|"]
    for name, n, seconds, diff in rows:
        lines.append(f"| {name} | {n:,} | {seconds:.2f} | {seconds / n * 1e6:.0f} | "
                     f"{seconds / n / compiled:.1f}x | {diff:.1e} |")
    lines += ["", f"Command: `python benchmarks/hull_speed.py --states {args.states} --reference-states "
              f"{args.reference_states} --seed {args.seed}`", ""]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    with out.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "compositions", "seconds", "max_abs_diff_vs_compiled_pass"])
        writer.writerows(rows)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
