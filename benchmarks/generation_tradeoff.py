"""Plausible share vs diversity vs shift of trained Table 1 agents, over the top-n% they generate with.

Top-n% sampling is the diversity knob of our method (Section 2.3 of the paper): the policy draws
uniformly among the best ``n`` % of the allowed actions. A larger ``n`` gives more distinct and more
varied designs (% unique, ElMD) at the cost of plausible share and property shift. This script loads
the finished runs of one Table 1 method (``model.zip`` of ``oxide-rl benchmark table1``; the models
are not committed, so run the benchmark first), generates 1,000 designs per run with each top-n%
(no retraining, no redraws: the plain policy) and reports, per task and top-n% (mean over the seeds
found), the goal's metrics: % plausible, % new plausible (distinct, not a known compound), % unique,
ElMD and the shift of the task's properties vs the random baseline of the same seed.

Usage:
    python benchmarks/generation_tradeoff.py --runs benchmarks/results --method constrained_dqn_graded
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
TOP_N = (10.0, 20.0, 40.0, 60.0, 80.0)


def _plot(summary, shown, method: str, path: Path) -> None:
    """One panel per task: % plausible, % new plausible and % unique against the shift, one point per top-n%."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agents.benchmark import GOAL_SHIFT
    from oxide_env.files import atomic_save_figure

    cols = min(4, len(shown))
    n_rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.2 * cols, 3.6 * n_rows), squeeze=False)
    for ax, task in zip(axes.flat, shown):
        part = summary.loc[task.key]
        prop = task.properties[0]
        x = part[f"{prop}_shift"].to_numpy()
        ax.plot(x, part["pct_plausible"], "o-", label="% plausible")
        ax.plot(x, part["pct_new_plausible"], "s--", label="% new plausible")
        ax.plot(x, part["pct_unique"], "^:", label="% unique")
        for pct, xi, yi in zip(part.index, x, part["pct_plausible"]):
            ax.annotate(f"{pct:g}%", (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
        target = GOAL_SHIFT.get(prop) if task.task != "sintering_bulk" else None
        if target is not None:
            ax.axvline(target, color="grey", lw=0.8, ls="--")
        ax.axhline(90, color="grey", lw=0.6, ls=":")
        ax.set_title(task.label, fontsize=9)
        ax.set_xlabel(f"{prop} shift vs random (σ)")
        ax.set_ylabel("%")
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{method}: generating with top-n% (labels); ElMD in the table", fontsize=10)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Example: python benchmarks/generation_tradeoff.py "
                                     "--tasks formation_energy")
    parser.add_argument("--runs", type=Path, default=RESULTS,
                        help="the --out of `oxide-rl benchmark table1` (default benchmarks/results)")
    parser.add_argument("--method", default="constrained_dqn_graded", help="a DQN method of agents.runs.METHODS")
    parser.add_argument("--tasks", nargs="+", default=None, help="Table 1 task keys (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--top-n", nargs="+", type=float, default=list(TOP_N), metavar="PCT",
                        help=f"top-n%% values to generate with (default {' '.join(f'{t:g}' for t in TOP_N)})")
    parser.add_argument("--n", type=int, default=1000, help="designs per run and top-n%% (default 1000)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, default=RESULTS / "generation_tradeoff")
    args = parser.parse_args(argv)

    import numpy as np
    import pandas as pd
    import torch
    from tqdm.auto import tqdm

    from agents.benchmark import PAPER, _run_dir, goal_status
    from agents.runs import METHODS, TASKS, TASKS_BY_KEY, assess_run
    from agents.train import load_agent
    from oxide_env.chemistry.baseline import random_oxides
    from oxide_env.files import atomic_write_text
    from predictors.data import training_keys

    if args.method not in METHODS or METHODS[args.method].kind != "dqn":
        parser.error(f"--method {args.method!r}: choose a DQN method ("
                     + ", ".join(k for k, m in METHODS.items() if m.kind == "dqn") + ")")
    tasks = [TASKS_BY_KEY[t] for t in args.tasks] if args.tasks else list(TASKS)
    for pct in args.top_n:
        if not 0 <= pct <= 100:
            parser.error(f"--top-n {pct:g}: expected percentages in [0, 100]")
    torch.set_num_threads(args.threads)
    method = METHODS[args.method]
    reference = training_keys()
    jobs = [(t, s) for t in tasks for s in args.seeds
            if (_run_dir(args.runs, t.key, args.method, s) / "model.zip").is_file()
            and (_run_dir(args.runs, t.key, args.method, s) / "result.json").is_file()]
    if not jobs:
        parser.error(f"no finished {args.method} runs with a model.zip under {str(args.runs)!r}: run "
                     "`oxide-rl benchmark table1` there first")
    random_props: dict[int, dict[str, float]] = {}
    rows = []
    t0 = time.perf_counter()
    for task, seed in tqdm(jobs, desc="runs", unit="run"):
        if seed not in random_props:
            m, _ = assess_run(random_oxides(args.n, seed=seed), task, METHODS["random"], reference)
            random_props[seed] = m
        model = load_agent(_run_dir(args.runs, task.key, args.method, seed), device="cpu")
        trained_top_n = model.top_n_pct
        for pct in args.top_n:
            model.top_n_pct = pct
            formulas = model.generate(args.n, seed=seed)  # the plain policy: no redraws
            m, _ = assess_run(formulas, task, method, reference)
            row = {"task": task.key, "seed": seed, "top_n_pct": pct, "trained_top_n_pct": trained_top_n}
            for key in ("pct_plausible", "pct_plausible_near_hull", "pct_new_plausible", "pct_unique", "elmd_mean"):
                row[key] = m[key]
            for prop in task.properties:
                rnd = random_props[seed]
                row[f"{prop}_mean"] = m[f"{prop}_mean"]
                row[f"{prop}_shift"] = (m[f"{prop}_mean"] - rnd[f"{prop}_mean"]) / rnd[f"{prop}_std"]
            rows.append(row)
    df = pd.DataFrame(rows)
    summary = df.drop(columns=["seed"]).groupby(["task", "top_n_pct"], sort=False).mean(numeric_only=True)
    seeds_found = df.groupby("task", sort=False)["seed"].nunique()

    command = f"python benchmarks/generation_tradeoff.py --runs {args.runs} --method {args.method}"
    if args.tasks:
        command += " --tasks " + " ".join(args.tasks)
    if args.seeds != [0, 1, 2]:
        command += " --seeds " + " ".join(map(str, args.seeds))
    if list(args.top_n) != list(TOP_N):
        command += " --top-n " + " ".join(f"{t:g}" for t in args.top_n)
    if args.n != 1000:
        command += f" --n {args.n}"
    if args.out.resolve() != (RESULTS / "generation_tradeoff").resolve():
        command += f" --out {args.out}"
    lines = [f"# Generation trade-off: top-n% of trained `{args.method}` agents", "",
             f"{METHODS[args.method].label}. Each finished Table 1 run's policy generates {args.n:,} designs "
             "with each top-n% (trained with "
             f"{', '.join(sorted({f'{v:g} %' for v in df['trained_top_n_pct']}))}; the plain policy, no redraws, "
             "no retraining). Means over the seeds found; shift = (mean − random mean) / random std against the "
             "random baseline of the same seed (goal: the paper's shift; λ = 250: better than random on both). "
             "*% new plausible*: "
             "distinct plausible designs that are no known compound, per 100 designs.", "",
             f"`{command}` ({(time.perf_counter() - t0) / 60:.1f} min on 2 CPU cores).", ""]
    for task in tasks:
        if task.key not in seeds_found:
            continue
        paper_elmd = PAPER[task.key]["elmd"] if task.key in PAPER else math.nan
        lines += [f"## {task.label} ({seeds_found[task.key]} seed{'s' if seeds_found[task.key] > 1 else ''})", "",
                  f"| top-n % | % plausible | % plausible and E_hull ≤ 0.1 | % new plausible | % unique | "
                  f"ElMD (paper {paper_elmd:.1f}) | "
                  + " | ".join(f"shift {p.split('_')[0]} (σ)" for p in task.properties) + " | goal |",
                  "|---|---|---|---|---|---|" + "---|" * len(task.properties) + "---|"]
        for pct, r in summary.loc[task.key].iterrows():
            cells = [f"{pct:g}" + (" (trained)" if pct == r["trained_top_n_pct"] else ""),
                     *(f"{r[k]:.1f}" for k in ("pct_plausible", "pct_plausible_near_hull", "pct_new_plausible",
                                               "pct_unique", "elmd_mean")),
                     *(f"{r[f'{p}_shift']:+.2f}" for p in task.properties)]
            missed = goal_status(task, dict(r))
            cells.append("missed: " + "; ".join(missed) if missed else "met")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["![plausible share vs shift over top-n%](generation_tradeoff.png)", ""]
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "generation_tradeoff.csv", df.to_csv(index=False, float_format="%.4f"))
    atomic_write_text(args.out / "generation_tradeoff.md", "\n".join(lines))

    _plot(summary, [t for t in tasks if t.key in seeds_found], args.method, args.out / "generation_tradeoff.png")
    print("\n".join(lines))
    print(json.dumps({"wrote": str(args.out / "generation_tradeoff.md")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
