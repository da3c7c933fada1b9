"""Plausible share vs property shift: what each design constraint and diversity setting costs.

Trains ``ConstrainedDQN`` (exact electronegativity-balance masks, 10 gradient steps per
iteration, as our Table 1 method) on one task under a few settings, generates 1,000 materials
per run *without* redrawing duplicates, and reports for each: % plausible (oxide rule, predicted
E_f <= -0.5 eV/atom, inside the formation-energy and task domains), % unique of the plain
policy, % novel, ElMD and the shift of the task's property against the random baseline of the
same seed. Writes ``plausibility_tradeoff.md``, ``.csv`` and ``.png`` (plausible share vs shift).

Settings (cumulative names):

* ``unconstrained``: Table 1's previous method (exact masks only);
* ``+plausible``: env ``constraints={"oxide_rule", "formation_energy" <= -0.5, "in_domain"}``;
* ``+merge_noops``: the 80 count-0 actions ranked as one in top-n% sampling;
* ``+novel``: the ``novel`` constraint too;
* ``+novel +merge_noops``, and the same with top 20 % instead of 10 %, or with a learned
  oracle on ``constraints_satisfied``;
* with the exact oxide-rule masks instead of the EN masks, and ``+lookahead``: the env's
  ``constraint_lookahead`` (at the last step only oxygen counts whose design meets every
  constraint);
* ``E_hull <= 0.1`` (our Table 1 method) and ``shaping 0.1``: a design that breaks a constraint
  earns less the further it misses (``constraints["shaping"]``) instead of the flat worst reward;
  ``relative oracle 0.5``: where no action reaches the oracle threshold, the actions at least half
  as likely to succeed as the best stay allowed (``ConstrainedDQN(oracle_relative=0.5)``).

Usage:
    python benchmarks/plausibility_tradeoff.py [--task bulk_modulus] [--iterations 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

PLAUSIBLE = {"oxide_rule": True, "formation_energy": ("<=", -0.5), "in_domain": True}
SETTINGS = {
    "unconstrained": dict(constraints=None, merge_noops=False, top_n_pct=10.0, oracles=()),
    "+plausible": dict(constraints=PLAUSIBLE, merge_noops=False, top_n_pct=10.0, oracles=()),
    "+plausible +merge_noops": dict(constraints=PLAUSIBLE, merge_noops=True, top_n_pct=10.0, oracles=()),
    "+plausible +novel": dict(constraints={**PLAUSIBLE, "novel": True}, merge_noops=False, top_n_pct=10.0,
                              oracles=()),
    "+plausible +novel +merge_noops": dict(constraints={**PLAUSIBLE, "novel": True}, merge_noops=True,
                                           top_n_pct=10.0, oracles=()),
    "+plausible +novel +merge_noops, top 20 %": dict(constraints={**PLAUSIBLE, "novel": True}, merge_noops=True,
                                                     top_n_pct=20.0, oracles=()),
    "+plausible +novel +merge_noops +oracle": dict(constraints={**PLAUSIBLE, "novel": True}, merge_noops=True,
                                                   top_n_pct=10.0, oracles=("constraints_satisfied",)),
    "oxide-rule masks +plausible +novel +merge_noops": dict(constraints={**PLAUSIBLE, "novel": True},
                                                            merge_noops=True, top_n_pct=10.0, oracles=(),
                                                            exact_masks="oxide_rule"),
    "oxide-rule masks +plausible +novel +merge_noops, top 20 %": dict(
        constraints={**PLAUSIBLE, "novel": True}, merge_noops=True, top_n_pct=20.0, oracles=(), exact_masks="oxide_rule"),
    "oxide-rule masks +plausible +novel +merge_noops +lookahead": dict(
        constraints={**PLAUSIBLE, "novel": True}, merge_noops=True, top_n_pct=10.0, oracles=(),
        exact_masks="oxide_rule", lookahead=True),
    "oxide-rule masks +plausible +novel +merge_noops +lookahead +oracle": dict(
        constraints={**PLAUSIBLE, "novel": True}, merge_noops=True, top_n_pct=10.0, oracles=("constraints_satisfied",),
        exact_masks="oxide_rule", lookahead=True),
    "oxide-rule masks +plausible +novel +merge_noops +lookahead +oracle, top 20 %": dict(
        constraints={**PLAUSIBLE, "novel": True}, merge_noops=True, top_n_pct=20.0, oracles=("constraints_satisfied",),
        exact_masks="oxide_rule", lookahead=True),
    "oxide-rule masks +plausible +novel +merge_noops +lookahead +oracle, top 20 %, E_hull <= 0.1": dict(
        constraints={**PLAUSIBLE, "novel": True, "e_above_hull": ("<=", 0.1)}, merge_noops=True, top_n_pct=20.0,
        oracles=("constraints_satisfied",), exact_masks="oxide_rule", lookahead=True),
    "oxide-rule masks +plausible +novel +merge_noops +lookahead +oracle, top 20 %, E_hull <= 0.1, shaping 0.1": dict(
        constraints={**PLAUSIBLE, "novel": True, "e_above_hull": ("<=", 0.1), "shaping": 0.1}, merge_noops=True,
        top_n_pct=20.0, oracles=("constraints_satisfied",), exact_masks="oxide_rule", lookahead=True),
    "oxide-rule masks +plausible +novel +merge_noops +lookahead +oracle, top 20 %, E_hull <= 0.1, shaping 0.1, "
    "relative oracle 0.5": dict(
        constraints={**PLAUSIBLE, "novel": True, "e_above_hull": ("<=", 0.1), "shaping": 0.1}, merge_noops=True,
        top_n_pct=20.0, oracles=("constraints_satisfied",), exact_masks="oxide_rule", lookahead=True,
        oracle_relative=0.5),
    "oxide-rule masks +plausible +novel +merge_noops +lookahead +oracle, top 20 %, E_hull <= 0.1, shaping 0.1, "
    "relative oracle 0.5, strict novel": dict(
        constraints={**PLAUSIBLE, "novel": "strict", "e_above_hull": ("<=", 0.1), "shaping": 0.1}, merge_noops=True,
        top_n_pct=20.0, oracles=("constraints_satisfied",), exact_masks="oxide_rule", lookahead=True,
        oracle_relative=0.5),
    "oxide-rule masks +plausible +novel +merge_noops +lookahead +oracle 0.7, top 20 %": dict(
        constraints={**PLAUSIBLE, "novel": True}, merge_noops=True, top_n_pct=20.0, oracles=("constraints_satisfied",),
        exact_masks="oxide_rule", lookahead=True, oracle_threshold=0.7),
    "oxide-rule masks +plausible +novel +merge_noops +lookahead, top 5 %": dict(
        constraints={**PLAUSIBLE, "novel": True}, merge_noops=True, top_n_pct=5.0, oracles=(), exact_masks="oxide_rule",
        lookahead=True),
    "oxide-rule masks +plausible +novel +merge_noops +lookahead, top 20 %": dict(
        constraints={**PLAUSIBLE, "novel": True}, merge_noops=True, top_n_pct=20.0, oracles=(),
        exact_masks="oxide_rule", lookahead=True),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="bulk_modulus",
                        choices=["formation_energy", "bulk_modulus", "shear_modulus", "sintering_temperature"])
    parser.add_argument("--iterations", type=int, default=100, help="training iterations of 100 episodes (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=1000, help="materials generated per setting (default 1000)")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)

    import pandas as pd
    import torch
    from tqdm.auto import tqdm

    from agents import ConstrainedDQN
    from agents.vec_env import make_oxide_vec_env
    from oxide_env.chemistry.baseline import random_oxides
    from oxide_env.files import atomic_save_figure, atomic_write_text
    from predictors.assess import assess

    torch.set_num_threads(args.threads)
    random_metrics, _ = assess(random_oxides(args.n, seed=args.seed), domain_properties=[args.task], novelty=False)
    rows = []
    for name in tqdm(args.settings, desc="settings"):
        cfg = SETTINGS[name]
        env = make_oxide_vec_env(n_envs=100, seed=args.seed, task=args.task,
                                 exact_masks=cfg.get("exact_masks", "electronegativity_balanced"),
                                 constraints=cfg["constraints"], constraint_lookahead=cfg.get("lookahead", False))
        model = ConstrainedDQN(env=env, seed=args.seed, constraints=cfg["oracles"], gradient_steps=10,
                               top_n_pct=cfg["top_n_pct"], merge_noops=cfg["merge_noops"],
                               oracle_threshold=cfg.get("oracle_threshold", 0.5),
                               oracle_relative=cfg.get("oracle_relative", 0.0))
        t0 = time.perf_counter()
        model.learn(total_timesteps=(args.iterations + 1) * 500)
        seconds = time.perf_counter() - t0
        formulas = model.generate(args.n, seed=args.seed)  # plain policy: no redraws
        m, checks = assess(formulas, domain_properties=[args.task])
        shift = (m[f"{args.task}_mean"] - random_metrics[f"{args.task}_mean"]) / random_metrics[f"{args.task}_std"]
        best = sorted({f for f, ok in zip(formulas, checks["plausible"]) if ok})[:8]
        rows.append({"setting": name, "pct_plausible": m["pct_plausible"],
                     "pct_plausible_e_hull_le_0.1": m["pct_plausible_near_hull"],
                     "pct_new_plausible": m["pct_new_plausible"], "pct_unique": m["pct_unique"],
                     "pct_novel": m["pct_novel"], "elmd_mean": m["elmd_mean"], "shift": shift,
                     "pct_oxide_rule": m["pct_oxide_rule"], "pct_in_domain": m["pct_in_domain"],
                     "median_e_above_hull": m["median_e_above_hull"], "train_seconds": seconds,
                     "examples": " ".join(best)})
    df = pd.DataFrame(rows)
    command = (f"python benchmarks/plausibility_tradeoff.py --task {args.task} --iterations {args.iterations} "
               f"--seed {args.seed}")
    if args.n != 1000:
        command += f" --n {args.n}"
    if args.settings != list(SETTINGS):
        command += " --settings " + " ".join(f'"{name}"' for name in args.settings)
    if args.out.resolve() != (Path(__file__).parent / "results").resolve():
        command += f" --out {args.out}"
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "plausibility_tradeoff.csv", df.to_csv(index=False, float_format="%.3f"))
    lines = [
        f"# Plausible share vs shift ({args.task}, seed {args.seed}, {args.iterations} iterations, "
        f"{args.n} materials, no redraws)", "",
        f"`{command}`. Random baseline (seed {args.seed}): {random_metrics['pct_plausible']:.1f} % plausible.",
        "*% new plausible*: distinct plausible designs that are no known compound, per 100 designs.",
        "", "| setting | % plausible | % plausible and E_hull ≤ 0.1 | % new plausible | % unique (policy) | % novel "
        "| ElMD | shift (σ) | % oxide rule | % in domain | median E_hull | train (s) | plausible examples |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['pct_plausible']:.1f} | {r['pct_plausible_e_hull_le_0.1']:.1f} | "
                     f"{r['pct_new_plausible']:.1f} | {r['pct_unique']:.1f} | {r['pct_novel']:.1f} | "
                     f"{r['elmd_mean']:.1f} | {r['shift']:+.2f} | {r['pct_oxide_rule']:.1f} | {r['pct_in_domain']:.1f} "
                     f"| {r['median_e_above_hull']:.2f} | {r['train_seconds']:.0f} | {r['examples']} |")
    lines += ["", "![plausible share vs shift](plausibility_tradeoff.png)", ""]
    atomic_write_text(args.out / "plausibility_tradeoff.md", "\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        ax.scatter(r["shift"], r["pct_plausible"], s=20 + r["pct_unique"] * 1.5, alpha=0.7)
        ax.annotate(r["setting"], (r["shift"], r["pct_plausible"]), fontsize=7, xytext=(4, 2),
                    textcoords="offset points")
    ax.set_xlabel(f"{args.task} shift vs random (σ)")
    ax.set_ylabel("% plausible")
    ax.set_title("Plausible share vs property shift (marker size: % unique)")
    ax.axhline(90, color="grey", lw=0.8, ls="--")
    atomic_save_figure(fig, args.out / "plausibility_tradeoff.png", dpi=130)
    plt.close(fig)
    print("\n".join(lines))
    print(json.dumps({"wrote": str(args.out / "plausibility_tradeoff.md")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
