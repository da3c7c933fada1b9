"""Speed of the chemistry layer against the reference libraries, in one run.

Times, on the same random inputs:
  * featurization: ``oxide_env.featurize`` (batch) vs matminer's four featurizers (one
    composition at a time, ``featurize`` on a pymatgen Composition, 1 process);
  * validity: ``oxide_env.charge_neutral`` + ``electronegativity_balanced`` vs
    ``smact.screening.smact_validity`` (both tests, smact14), ours cold (fresh cache) and warm;
  * all-pairs ElMD of N materials: ``oxide_env.chemistry.metrics.elmd_pairwise`` vs the
    ``ElMD`` package (ElMD objects built once, then ``.elmd`` for every pair).

Targets (2 CPU cores): featurization >= 100x, validity >= 50x, ElMD >= 20x.

Usage:
    python benchmarks/chemistry_speed.py [--n-features 1000] [--n-validity 10000] [--n-elmd 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np


def random_counts(n: int, seed: int) -> np.ndarray:
    from oxide_env.chemistry.baseline import random_oxide_counts

    return random_oxide_counts(n, seed=seed)


def timed(fn, *args, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-features", type=int, default=1000)
    parser.add_argument("--n-validity", type=int, default=10000)
    parser.add_argument("--n-elmd", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "chemistry_speed.md"))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    from pymatgen.core import Composition

    from oxide_env import ELEMENTS
    from oxide_env.chemistry import validity
    from oxide_env.chemistry.composition import counts_to_formula
    from oxide_env.chemistry.features import featurize
    from oxide_env.chemistry.metrics import elmd_pairwise

    rows = []

    # --- features
    from matminer.featurizers.base import MultipleFeaturizer
    from matminer.featurizers.composition import ElementProperty, IonProperty, Stoichiometry, ValenceOrbital

    mm = MultipleFeaturizer([Stoichiometry(), ElementProperty.from_preset("magpie"),
                             ValenceOrbital(props=["avg"]), IonProperty(fast=True)])
    counts = random_counts(args.n_features, args.seed)
    comps = [Composition({ELEMENTS[i]: int(r[i]) for i in np.flatnonzero(r)}) for r in counts]
    featurize(counts[:2])  # load tables
    t_ours = timed(featurize, counts, repeat=5)
    t_ref = timed(lambda: [mm.featurize(c) for c in comps])
    rows.append(("featurize 145 Magpie features", args.n_features, t_ref, t_ours, 100))

    # --- validity
    from smact.screening import smact_validity

    counts = random_counts(args.n_validity, args.seed + 1)
    reduced = [counts_to_formula(r, reduce=True) for r in counts]

    def ref_validity():
        for f in reduced:
            smact_validity(f, use_pauling_test=False, include_alloys=False, oxidation_states_set="smact14")
            smact_validity(f, use_pauling_test=True, include_alloys=False, oxidation_states_set="smact14")

    def ours_validity():
        validity.charge_neutral(counts)
        validity.electronegativity_balanced(counts)

    t_ref = timed(ref_validity)
    clear = getattr(validity, "clear_cache", None)
    if clear is not None:
        clear()
    t_cold = timed(ours_validity)
    t_warm = timed(ours_validity, repeat=3)
    rows.append(("charge neutral + EN balanced (cold cache)", args.n_validity, t_ref, t_cold, 50))
    rows.append(("charge neutral + EN balanced (warm cache)", args.n_validity, t_ref, t_warm, 50))

    # --- ElMD
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        sys.modules["pkg_resources"] = types.ModuleType("pkg_resources")
    from ElMD import ElMD

    counts = random_counts(args.n_elmd, args.seed + 2)
    formulas = [counts_to_formula(r) for r in counts]
    t_ours = timed(elmd_pairwise, counts, repeat=3)

    def ref_elmd():
        objs = [ElMD(f, metric="mod_petti") for f in formulas]
        n = len(objs)
        return [objs[i].elmd(objs[j]) for i in range(n) for j in range(i + 1, n)]

    t_ref = timed(ref_elmd)
    rows.append((f"all-pairs ElMD ({args.n_elmd * (args.n_elmd - 1) // 2} pairs)", args.n_elmd, t_ref, t_ours, 20))

    lines = [
        "# Chemistry layer speed (oxide_env vs reference libraries, same inputs, one run)",
        "",
        "| operation | n | reference (s) | oxide_env (s) | speed-up | target |",
        "|---|---|---|---|---|---|",
    ]
    for name, n, tr, to, target in rows:
        lines.append(f"| {name} | {n} | {tr:.3f} | {to:.4f} | {tr / to:.0f}x | >= {target}x |")
    lines += ["", f"Command: `python benchmarks/chemistry_speed.py --n-features {args.n_features} "
              f"--n-validity {args.n_validity} --n-elmd {args.n_elmd}`"]
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
