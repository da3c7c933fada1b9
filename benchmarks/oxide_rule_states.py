"""What the oxide rule's "common states only" condition costs and buys.

The oxide rule (:func:`oxide_env.chemistry.validity.oxide_rule`) keeps only the ``icsd24``
oxidation states that pymatgen also counts as common and that are not rare in pymatgen's ICSD
bond-valence statistics (``common_only=True``, the default since it was found that agents masked
by ``icsd24`` alone balanced their designs with Zn+3, Ga+4 or Pr+2, and by the pymatgen states
alone with La+2). This script measures both sides, old rule (``common_only=False``) against new:

* **Cost**: the share of *real* oxides that pass -- compounds made in laboratories (the
  sintering and calcination tables, text-mined from synthesis papers) and the computed
  compounds of the formation-energy table, all of them and those on its convex hull.
* **Gain**: for generated designs (``formulas.csv`` files of benchmark runs), the share that
  passes each rule, and how many of the old rule's passes have *no* charge-balanced assignment
  by pymatgen's ``Composition.oxi_state_guesses()`` (oxygen -2, metals >= 0, pymatgen's
  default ICSD states; mixed valence allowed), and how many of the new rule's passes still get a
  rare state in pymatgen's most probable assignment, on samples.

Writes ``oxide_rule_states.md`` and ``.csv`` to ``--out``.

Example:
    python benchmarks/oxide_rule_states.py --designs benchmarks/results/table1_runs \
        --out benchmarks/results/oxide_rule_states
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def pymatgen_assignable(formula: str) -> bool:
    """Whether pymatgen finds a charge-balanced assignment with O at -2 and no negative metal."""
    from oxide_env.chemistry.validity import pymatgen_oxide_guesses

    return bool(pymatgen_oxide_guesses(formula))


def rare_state(formula: str) -> str | None:
    """The first rare state of pymatgen's most probable assignment (e.g. ``"La+2"``: not among
    :func:`oxide_env.chemistry.validity.frequent_states`; elements without statistics, such as Os,
    are not judged), else ``None``; ``"none"`` when pymatgen finds no assignment. Mixed valence (a
    fractional state) is not judged rare."""
    from oxide_env.chemistry.elements import ELEMENTS
    from oxide_env.chemistry.validity import frequent_states, pymatgen_oxide_guesses

    guesses = pymatgen_oxide_guesses(formula)
    if not guesses:
        return "none"
    frequent = frequent_states()
    for el, v in guesses[0].items():
        common = frequent[ELEMENTS.index(el)] if el in ELEMENTS else None
        if el != "O" and float(v).is_integer() and common is not None and int(v) not in common:
            return f"{el}{int(v):+d}"
    return None


def _oxides(formulas: list[str]) -> list[str]:
    """The formulas with integer amounts (doped, fractional ones are left out), oxygen and
    another element."""
    from oxide_env.chemistry.composition import formula_to_amounts, formulas_to_counts
    from oxide_env.chemistry.elements import OXYGEN_INDEX

    formulas = [f for f in formulas if np.all(np.mod(formula_to_amounts(f), 1) == 0)]
    counts = formulas_to_counts(formulas)
    keep = (counts[:, OXYGEN_INDEX] > 0) & (np.count_nonzero(counts, axis=1) >= 2)
    return [f for f, k in zip(formulas, keep) if k]


def known_rows() -> list[dict]:
    from oxide_env.chemistry.validity import oxide_rule
    from predictors.data import known_hull, load_table

    rows = []
    sets: dict[str, list[str]] = {}
    for name, label in (("sintering_temperature", "made in the laboratory: sintered (text-mined)"),
                        ("calcination_temperature", "made in the laboratory: calcined (text-mined)")):
        sets[label] = _oxides(load_table(name)["formula"].tolist())
    table = load_table("formation_energy")
    oxides = _oxides(table["formula"].tolist())
    sets["computed (formation-energy table)"] = oxides
    hull = known_hull()
    lowest = table.groupby("formula")["target"].min()
    e = lowest.reindex(oxides).to_numpy()
    above = hull.e_above_hull(oxides, e)
    sets["computed, on the convex hull"] = [f for f, a in zip(oxides, above) if a <= 1e-6]
    for label, formulas in sets.items():
        old = oxide_rule(formulas, common_only=False)
        new = oxide_rule(formulas)
        rows.append({"set": label, "n": len(formulas), "pct_old_rule": 100 * old.mean(),
                     "pct_new_rule": 100 * new.mean(), "lost_examples": " ".join(
                         [f for f, a, b in zip(formulas, old, new) if a and not b][:6])})
    return rows


def design_rows(root: Path, sample: int, seed: int) -> list[dict]:
    from agents.generation import read_materials_csv
    from oxide_env.chemistry.validity import oxide_rule

    rng = np.random.default_rng(seed)
    rows = []
    for path in sorted(root.rglob("formulas.csv")):
        formulas, _, _ = read_materials_csv(path)
        old = oxide_rule(formulas, common_only=False)
        new = oxide_rule(formulas)
        passed = [f for f, ok in zip(formulas, old) if ok]
        picked = rng.choice(len(passed), min(sample, len(passed)), replace=False) if passed else []
        no_pmg = [passed[i] for i in picked if not pymatgen_assignable(passed[i])]
        passed_new = sorted({f for f, ok in zip(formulas, new) if ok})
        picked_new = rng.choice(len(passed_new), min(sample, len(passed_new)), replace=False) if passed_new else []
        rare = [(passed_new[i], r) for i in picked_new if (r := rare_state(passed_new[i])) is not None]
        rel = path.parent.relative_to(root)
        rows.append({"run": str(rel), "n": len(formulas), "pct_old_rule": 100 * old.mean(),
                     "pct_new_rule": 100 * new.mean(), "sampled_old_passes": len(picked),
                     "pct_sample_without_pymatgen_assignment": 100 * len(no_pmg) / max(len(picked), 1),
                     "examples_without_assignment": " ".join(no_pmg[:4]),
                     "sampled_new_passes": len(picked_new),
                     "pct_sample_rare_state": 100 * len(rare) / max(len(picked_new), 1),
                     "examples_rare_state": " ".join(f"{f} ({r})" for f, r in rare[:3])})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--designs", type=Path, default=None,
                        help="folder searched for formulas.csv files of runs (default: none, real oxides only)")
    parser.add_argument("--sample", type=int, default=200,
                        help="old-rule passes per run checked with pymatgen (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of that sample (default 0)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/oxide_rule_states"))
    args = parser.parse_args(argv)
    if args.sample < 1:
        parser.error(f"Invalid --sample {args.sample}: expected an integer >= 1.")
    if args.designs is not None and not args.designs.is_dir():
        parser.error(f"Invalid --designs {str(args.designs)!r}: not a folder.")
    from oxide_env.chemistry.validity import RARE_STATE_SHARE
    from oxide_env.files import atomic_write_text

    known = pd.DataFrame(known_rows())
    designs = pd.DataFrame(design_rows(args.designs, args.sample, args.seed)) if args.designs else pd.DataFrame()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["# Oxide rule: common oxidation states only", "",
             "Old rule: `icsd24` states, oxygen -2, no negative metal. New rule (the default since): "
             "also only states pymatgen counts as common and not rare in its ICSD bond-valence statistics "
             "(`oxide_env.chemistry.validity.oxide_states`).", "",
             f"Command: `python benchmarks/oxide_rule_states.py{' --designs ' + str(args.designs) if args.designs else ''}"
             f" --sample {args.sample} --seed {args.seed} --out {args.out}`", "",
             "## Real oxides (what the new rule costs)", "", known.to_markdown(index=False, floatfmt=".1f"), ""]
    if len(designs):
        lines += ["## Generated designs (what it buys)", "",
                  f"`pct_sample_without_pymatgen_assignment`: of up to {args.sample} random old-rule passes, the "
                  "share for which pymatgen's `oxi_state_guesses` (O -2, metals >= 0) finds no assignment. "
                  f"`pct_sample_rare_state`: of up to {args.sample} distinct new-rule passes, the share whose most "
                  "probable pymatgen assignment gives some element a *rare* state: one held by under "
                  f"{RARE_STATE_SHARE:.0%} of that element's charged sites in pymatgen's ICSD bond-valence "
                  "statistics (La+2, Mn+7...; what a rule without that condition lets through).", "",
                  designs.to_markdown(index=False, floatfmt=".1f"), ""]
        designs.to_csv(args.out / "oxide_rule_states_designs.csv", index=False)
    atomic_write_text(args.out / "oxide_rule_states.md", "\n".join(lines))
    known.to_csv(args.out / "oxide_rule_states.csv", index=False)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
