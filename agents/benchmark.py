"""The paper's Table 1 and Figure 2, reproduced side by side with other algorithms.

``oxide-rl benchmark table1`` (or ``python benchmarks/table1.py``) trains every method on
every Table 1 task for each seed, generates ``n`` materials per run, evaluates them with
the shipped predictors and writes, in ``--out``:

* ``table1.md`` / ``table1.csv`` — per task and method, mean ± std over seeds of the Table 1
  metrics, each property, and its shift versus the random baseline in units of the
  baseline's std; the paper's numbers beside ours; the goals and whether they are met;
  hypervolumes of the λ sweep; wall times.
* ``pareto.png`` (Figure 2) and ``histograms.png`` (one panel per single-property task).
* ``table1_runs/<task>/<method>/seed<k>/`` — ``result.json`` and ``formulas.csv`` of every run
  (plus the trained ``model.zip``, not kept in git). A finished run is reused only when every
  setting that produced it matches (:func:`agents.runs.run_settings`, stored in its ``result.json``); runs of
  other settings are refused before any work (``force=True`` / ``--force`` reruns them). An
  interrupted DQN run resumes exactly from its last checkpoint (same parameters and materials as
  an uninterrupted run); PPO restarts. Rerun the same command to continue; ``--out`` is locked.

Methods (:data:`agents.runs.METHODS`; all see the same environment budget: ``(iterations + 1) x 100``
episodes):

* ``constrained_dqn`` — ours: :class:`~agents.dqn.ConstrainedDQN` on the environment with
  *exact* oxide-rule masks (an action is allowed only if some completion of the episode passes
  the oxide rule: icsd24 states pymatgen counts as common, oxygen -2, no negative metal, charge
  neutral and electronegativity balanced) and the terminal
  design constraints :data:`oxide_env.tasks.STABLE_PLAUSIBLE_DESIGN` (oxide rule, predicted E_f <= -0.5
  eV/atom, at most 0.1 eV/atom above the hull of the known compounds, inside the domains of the
  formation-energy and the task's predictors, novel: a design that breaks one earns the task's
  worst reward); 10 gradient steps per iteration
  instead of 1 (the paper's single step leaves Q undertrained); the env's last-step lookahead
  (``constraint_lookahead``: at step 5 only oxygen counts whose design meets every constraint); a
  learned oracle on ``constraints_satisfied`` (masks actions it predicts lead to a failing design);
  sampling among the top 20 % with the 80 count-0 actions merged into one candidate
  (``merge_noops``); no redraws: the reported % unique is the policy's own.
* ``constrained_dqn_graded`` — ours with two additions for rare constraints: a violating design
  earns less the further it misses (``constraints["shaping"] = 0.1``) and, where no action reaches
  the oracle threshold, the actions at least half as likely to succeed as the best one stay
  allowed (``oracle_relative=0.5``) instead of the whole mask. Measured on seed 0 at 500
  iterations: sintering 0.0 -> 64.9 % plausible, bulk 89.4 -> 96.7 %.
* ``paper_dqn`` — the paper's method and settings: learned constraint oracles, hard-rule masks.
* ``dqn_no_oracles`` — ablation: the paper's DQN without oracles (hard-rule masks only).
* ``maskable_ppo`` — sb3-contrib's MaskablePPO with exact electronegativity-balance masks.
* ``maskable_ppo_plausible`` — MaskablePPO on our environment: exact oxide-rule masks, the design
  constraints and the last-step lookahead (no learned oracle: that is ConstrainedDQN's).
* ``random`` — the paper's random baseline.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.runs import (
    METHODS,
    PROPERTIES,
    RESULT_FORMAT,
    TASKS_BY_KEY,
    BenchTask,
    assess_run,
    metrics_current,
    predictor_ids,
    run_settings,
    settings_conflict,
)
from oxide_env.chemistry.checks import check_number
from oxide_env.chemistry.validity import tables_fingerprint
from oxide_env.files import atomic_save_figure, atomic_write_text, read_json_dict

SHORT = {"formation_energy": "E_f (eV/atom)", "bulk_modulus": "ln K (ln GPa)", "shear_modulus": "ln G (ln GPa)",
         "sintering_temperature": "T_s (°C)"}


# Paper Table 1 (one seed, 1,000 materials). The formation-energy row's validity columns are
# swapped in the paper (its notebook gives 60.1 % charge neutral, 41.0 % EN balanced; EN
# balanced can never exceed charge neutral): corrected here.
PAPER: dict[str, dict[str, float]] = {
    "formation_energy": dict(cn=60.1, en=41.0, elmd=14.1, elmd_sd=7.6, formation_energy=-2.54,
                             formation_energy_sd=0.72),
    "bulk_modulus": dict(cn=85.3, en=65.8, elmd=7.5, elmd_sd=4.0, bulk_modulus=5.35, bulk_modulus_sd=0.21),
    "shear_modulus": dict(cn=82.8, en=69.2, elmd=11.0, elmd_sd=5.0, shear_modulus=4.46, shear_modulus_sd=0.40),
    "sintering_temperature": dict(cn=85.7, en=64.7, elmd=12.1, elmd_sd=7.4, sintering_temperature=827,
                                  sintering_temperature_sd=98),
    "sintering_bulk_62.5": dict(cn=85.9, en=61.6, elmd=11.1, elmd_sd=6.2, sintering_temperature=826,
                                sintering_temperature_sd=103, bulk_modulus=4.24, bulk_modulus_sd=0.77),
    "sintering_bulk_125": dict(cn=84.7, en=62.8, elmd=10.1, elmd_sd=5.0, sintering_temperature=886,
                               sintering_temperature_sd=102, bulk_modulus=4.73, bulk_modulus_sd=0.67),
    "sintering_bulk_250": dict(cn=92.6, en=63.9, elmd=8.8, elmd_sd=4.4, sintering_temperature=935,
                               sintering_temperature_sd=64, bulk_modulus=5.22, bulk_modulus_sd=0.36),
}
PAPER_RANDOM = dict(cn=59.9, en=42.8, elmd=20.1, elmd_sd=9.8, formation_energy=-1.37, formation_energy_sd=0.73,
                    bulk_modulus=4.29, bulk_modulus_sd=0.60, shear_modulus=3.65, shear_modulus_sd=0.72,
                    sintering_temperature=1011, sintering_temperature_sd=131)

# The goal of this benchmark (mean over >= 3 seeds, 1,000 materials per run).
GOAL_PLAUSIBLE = 90.0
GOAL_UNIQUE_POLICY = 99.0
GOAL_METHODS = ("constrained_dqn", "constrained_dqn_graded")  # ours (flat and graded penalty): the goal is
# ours to reach, and both are checked against it; other methods are for comparison
GOAL_SHIFT = {"formation_energy": -1.6, "bulk_modulus": 1.8, "shear_modulus": 1.1, "sintering_temperature": -1.4}


PAPER_LISTS = {
    "formation_energy": ("oxides_form_e", "oxides_form_e-2", "oxides_form_e-3"),
    "bulk_modulus": ("oxides_bulk_mod", "oxides_bulk_mod-2", "oxides_bulk_mod-3"),
    "shear_modulus": ("oxides_shear_mod", "oxides_shear_mod-2", "oxides_shear_mod-3"),
    "sintering_temperature": ("oxides_sinter", "oxides_sinter-2", "oxides_sinter-3"),
    "sintering_bulk_62.5": ("oxides_sinter_bulk_mod_1-62",),
    "sintering_bulk_125": ("oxides_sinter_bulk_mod_1-125",),
    "sintering_bulk_250": ("oxides_sinter_bulk_mod_1-250",),
}
"""The authors' generated lists per task (``../shared/datasets/paper_generated/<name>.txt``;
runs 1, 2, 3 are given seeds 0, 1, 2 so each is compared with a random baseline)."""
PAPER_PUBLISHED = "paper_published"


def default_paper_lists() -> Path | None:
    """``../shared/datasets/paper_generated`` beside this checkout, if present (not shipped)."""
    here = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "paper_generated"
    return here if here.is_dir() else None


def paper_list_results(folder: Path, tasks: Sequence[BenchTask], out: Path, reference: Any,
                       models: Sequence[Any]) -> list[dict[str, Any]]:
    """Our metrics of the paper's own generated materials, as results of a method ``paper_published``.

    Only derived numbers are written (``table1_runs/<task>/paper_published/run<k>/result.json``,
    keyed by the list's sha256 and the predictors), never the lists themselves.
    """
    import hashlib

    from oxide_env.files import atomic_write_json

    results = []
    for task in tasks:
        for seed, name in enumerate(PAPER_LISTS.get(task.key, ())):
            path = Path(folder) / f"{name}.txt"
            if not path.is_file():
                continue  # e.g. the sintering run 1 is missing from the authors' repository
            raw = path.read_bytes()
            settings = {"paper_list": name, "sha256": hashlib.sha256(raw).hexdigest(),
                        "predictors": predictor_ids(models), "format": RESULT_FORMAT,
                        "rules": tables_fingerprint()}
            result_path = out / "table1_runs" / task.key / PAPER_PUBLISHED / f"run{seed + 1}" / "result.json"
            cached = read_json_dict(result_path)
            if cached is None or cached.get("settings") != settings or not metrics_current(cached):
                formulas = [line.strip() for line in raw.decode().splitlines() if line.strip()]
                t0 = time.perf_counter()
                metrics, _ = assess_run(formulas, task, METHODS["paper_dqn"], reference)
                cached = dict(task=task.key, method=PAPER_PUBLISHED, seed=seed, n=len(formulas), iterations=0,
                              train_seconds=0.0, generate_seconds=0.0, evaluate_seconds=time.perf_counter() - t0,
                              metrics=metrics, settings=settings, metric_rules=tables_fingerprint())
                result_path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_json(result_path, cached)
            results.append(cached)
    return results


def read_formulas_csv(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Formulas (reduced; as generated in files from before the ``generated`` column) and predicted
    properties of one run's ``formulas.csv``."""
    from agents.generation import read_materials_csv

    formulas, _, props = read_materials_csv(path)
    return formulas, props


# --------------------------------------------------------------------------------- summary
def _shift(metrics: dict[str, float], random: dict[str, float], prop: str) -> float:
    return (metrics[f"{prop}_mean"] - random[f"{prop}_mean"]) / random[f"{prop}_std"]


def summarize_runs(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """Mean and std over seeds of every metric and property shift, per (task, method)."""
    random_by_seed = {r["seed"]: r["metrics"] for r in results if r["method"] == "random"}
    groups: dict[tuple[str, str], list[dict[str, float]]] = {}
    for r in results:
        row = {k: v for k, v in r["metrics"].items() if "@" not in k}
        for key in ("pct_in_domain", "pct_plausible", "pct_plausible_near_hull", "pct_new_plausible"):  # random
            if f"{key}@{r['task']}" in r["metrics"]:
                row[key] = r["metrics"][f"{key}@{r['task']}"]
        row.update(train_seconds=r["train_seconds"], generate_seconds=r["generate_seconds"],
                   evaluate_seconds=r["evaluate_seconds"])
        if r["seed"] in random_by_seed:
            for prop in PROPERTIES:
                row[f"{prop}_shift"] = _shift(r["metrics"], random_by_seed[r["seed"]], prop)
        groups.setdefault((r["task"], r["method"]), []).append(row)
    summary = {}
    for key, rows in groups.items():
        out: dict[str, float] = {"n_seeds": len(rows)}
        for name in rows[0]:
            values = np.array([row[name] for row in rows if name in row], dtype=float)
            out[name] = float(values.mean())
            out[f"{name}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        summary[key] = out
    return summary


def hypervolume(sintering: np.ndarray, bulk: np.ndarray, reference: tuple[float, float]) -> float:
    """Area dominated by the points (minimise sintering, maximise bulk) beyond ``reference``.

    Example:
        >>> hypervolume(np.array([1.0, 2.0]), np.array([2.0, 3.0]), reference=(3.0, 1.0))
        3.0
    """
    s, k = np.asarray(sintering, float), np.asarray(bulk, float)
    keep = (s < reference[0]) & (k > reference[1])
    s, k = s[keep], k[keep]
    front = pareto_front(s, k)  # by increasing sintering, so increasing bulk
    xs, ks = s[front], k[front]
    right = np.append(xs[1:], reference[0])
    return float(np.sum((right - xs) * (ks - reference[1])))


def pareto_front(sintering: np.ndarray, bulk: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points (minimise sintering, maximise bulk), by sintering."""
    s, k = np.asarray(sintering, float), np.asarray(bulk, float)
    order = np.lexsort((-k, s))
    front, best = [], -math.inf
    for i in order:
        if k[i] > best:
            front.append(i)
            best = k[i]
    return np.array(front, dtype=np.int64)


# ---------------------------------------------------------------------------------- report
def _pm(mean: float, sd: float, digits: int = 1, signed: bool = False) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{mean:+.{digits}f}" if signed else f"{mean:.{digits}f}"
    return text if sd is None or math.isnan(sd) else f"{text} ± {sd:.{digits}f}"


def _digits(prop: str) -> int:
    return 0 if prop == "sintering_temperature" else 2


def goal_status(task: BenchTask, row: dict[str, float]) -> list[str]:
    """Unmet goals of one (task, method) summary row, as readable strings (empty: all met).

    The goals (issue "designs a chemist would keep"): % plausible >= 90; the plain policy's own
    % unique >= 99 (redrawn duplicates do not count); ElMD at least the paper's; shift vs random at
    least the paper's (λ = 250: better than random on both properties).
    """
    def below(value: float, goal: float) -> str:  # "98.97 < 99", not "99.0 < 99"
        return f"{value:.2f}" if round(value, 1) >= goal else f"{value:.1f}"

    missed = []
    if row.get("pct_plausible", math.nan) < GOAL_PLAUSIBLE or math.isnan(row.get("pct_plausible", math.nan)):
        missed.append(f"% plausible {below(row.get('pct_plausible', math.nan), GOAL_PLAUSIBLE)} < {GOAL_PLAUSIBLE:g}")
    unique = row.get("pct_unique_policy", row["pct_unique"])
    if unique < GOAL_UNIQUE_POLICY:
        missed.append(f"% unique (policy) {below(unique, GOAL_UNIQUE_POLICY)} < {GOAL_UNIQUE_POLICY:g}")
    paper = PAPER.get(task.key)
    if paper is not None and row["elmd_mean"] < paper["elmd"]:
        missed.append(f"ElMD {below(row['elmd_mean'], paper['elmd'])} < the paper's {paper['elmd']:.1f}")
    if task.task == "sintering_bulk":
        if task.lam == 250.0:
            for prop, direction in zip(task.properties, task.directions):
                if direction * row[f"{prop}_shift"] <= 0:
                    missed.append(f"{prop} not better than random ({row[f'{prop}_shift']:+.2f} σ)")
    else:
        prop = task.properties[0]
        target, shift = GOAL_SHIFT[prop], row[f"{prop}_shift"]
        if (shift > target) if target < 0 else (shift < target):
            missed.append(f"{prop} shift {shift:+.2f} σ (goal {target:+.1f} σ)")
    return missed


def _header_lines(header: Sequence[str]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]


def _present_rows(summary: dict, task: BenchTask, keys: Sequence[str]):
    """``(method, summary row)`` of the methods in ``keys`` that have results for ``task``."""
    for key in keys:
        row = summary.get((task.key, key))
        if row is not None:
            yield key, row


def _label(key: str) -> str:
    return "The paper's published materials (its lists, our checks and predictors)" if key == PAPER_PUBLISHED \
        else METHODS[key].label


def _paper_cell(task_key: str | None, props: Sequence[str]) -> str:
    p = PAPER_RANDOM if task_key is None else PAPER[task_key]
    parts = [f"{p['cn']:.1f} / {p['en']:.1f}", f"ElMD {p['elmd']:.1f}"]
    parts += [f"{p[q]:.{_digits(q)}f}" for q in props if q in p]
    return "; ".join(parts)


def write_report(out: Path, results: list[dict[str, Any]], *, methods: Sequence[str], tasks: Sequence[BenchTask],
                 seeds: Sequence[int], n: int, iterations: int, wall_seconds: float, command: str) -> str:
    """Write ``table1.md``, ``table1.csv`` and the figures of :func:`figure_names`; return the Markdown."""
    summary = summarize_runs(results)
    lines = [
        "# Table 1 and Figure 2: reproduced, and compared with other algorithms", "",
        f"{n:,} materials per run, seeds {', '.join(map(str, seeds))}; every cell is the mean ± std over seeds "
        "(property and ElMD cells: mean over seeds of the per-run mean, ± its std over seeds; "
        "`σ` is the per-run spread, the paper's subscript). *Shift* is (mean − random mean) / random std, "
        "against the random baseline of the same seed. Properties are predicted by the shipped "
        "predictors (ours, not the paper's). Paper column: % charge neutral / % EN balanced; ElMD; "
        "property means (one seed; its formation-energy validity columns are swapped in the paper "
        "and corrected here, and its random baseline's 59.9 / 42.8 came from checking unreduced "
        "formulas: a correct check of the same sampling gives ~62 / 43.5).", "",
        f"Budget: {iterations} iterations x 100 episodes + 1 warm-up iteration "
        f"({(iterations + 1) * 500:,} environment steps) for every trained method.", "",
    ]
    csv_rows = []
    rows_of = [*methods, PAPER_PUBLISHED]
    for task in tasks:
        props = task.properties
        paper = PAPER.get(task.key)
        lines += [f"## {task.label}", "",
                  "Validity under each rule, in separate columns (ours: SMACT 2014 states on reduced formulas; "
                  "the paper's rule: the authors' checker, unreduced amounts; icsd24: the commonly observed states; "
                  "oxide rule: icsd24 states pymatgen counts as common, O −2, no negative metal), and plausibility "
                  "(oxide rule AND predicted "
                  "E_f ≤ −0.5 eV/atom AND inside the applicability domain of the formation-energy and the task's "
                  "predictors); the last column also asks a predicted E_f at most 0.1 eV/atom above the convex hull of the "
                  "known compounds (stable enough to be worth making). *% new plausible*: distinct plausible "
                  "compositions that are none of the predictors' training compositions, per 100 designs (a known "
                  "compound or a repeat adds nothing: what a chemist keeps).", ""]
        header = ["method", "% CN (ours)", "% EN (ours)", "% CN (paper's rule)", "% EN (paper's rule)",
                  "% icsd24", "% oxide rule", "% E_f ≤ −0.5", "median E_hull (eV/atom)", "% in domain",
                  "% plausible", "% plausible and E_hull ≤ 0.1", "% new plausible"]
        lines += _header_lines(header)
        for key, row in _present_rows(summary, task, rows_of):
            cells = [_label(key)]
            for metric in ("pct_charge_neutral", "pct_electronegativity_balanced", "pct_charge_neutral_paper_rule",
                           "pct_electronegativity_balanced_paper_rule", "pct_icsd24", "pct_oxide_rule",
                           "pct_formation_energy_le_-0.5"):
                cells.append(_pm(row.get(metric, math.nan), row.get(f"{metric}_sd", math.nan)))
            cells.append(_pm(row.get("median_e_above_hull", math.nan), row.get("median_e_above_hull_sd", math.nan), 2))
            for metric in ("pct_in_domain", "pct_plausible", "pct_plausible_near_hull", "pct_new_plausible"):
                cells.append(_pm(row.get(metric, math.nan), row.get(f"{metric}_sd", math.nan)))
            lines.append("| " + " | ".join(cells) + " |")
        if paper is not None:
            lines.append(f"| the paper's Table 1, as printed (its rule) | – | – | {paper['cn']:.1f} | {paper['en']:.1f} "
                         "| – | – | – | – | – | – | – | – |")
        lines.append("")
        header = ["method", "% unique", "% novel", "ElMD"]
        for prop in props:
            header += [SHORT[prop], f"shift ({prop.split('_')[0]}, σ)"]
        header += ["paper", "goal"]
        lines += _header_lines(header)
        for key, row in _present_rows(summary, task, rows_of):
            cells = [_label(key)]
            for metric in ("pct_unique", "pct_novel"):
                cells.append(_pm(row.get(metric, math.nan), row.get(f"{metric}_sd", math.nan)))
            if "pct_unique_policy" in row:
                cells[-2] += f" (policy {row['pct_unique_policy']:.1f})"
            cells.append(_pm(row["elmd_mean"], row["elmd_mean_sd"]) + f" (σ {row['elmd_std']:.1f})")
            for prop in props:
                d = _digits(prop)
                cells.append(_pm(row[f"{prop}_mean"], row[f"{prop}_mean_sd"], d) + f" (σ {row[f'{prop}_std']:.{d}f})")
                cells.append(_pm(row.get(f"{prop}_shift", math.nan), row.get(f"{prop}_shift_sd", math.nan), 2,
                                 signed=True) if key != "random" else "0")
            cells.append(_paper_cell(task.key, props) if key in ("paper_dqn", PAPER_PUBLISHED) else
                         _paper_cell(None, props) if key == "random" else "")
            missed = goal_status(task, row) if key in GOAL_METHODS else None
            cells.append("" if missed is None else "missed: " + "; ".join(missed) if missed else "met")
            lines.append("| " + " | ".join(cells) + " |")
            csv_row = {"task": task.key, "method": key, "label": _label(key)}
            csv_row.update({k: v for k, v in row.items()})
            if paper is not None and key in ("paper_dqn", PAPER_PUBLISHED):
                csv_row.update({f"paper_{k}": v for k, v in paper.items()})
            if key == "random":
                csv_row.update({f"paper_{k}": v for k, v in PAPER_RANDOM.items()})
            if missed is not None:
                csv_row["goal_missed"] = "; ".join(missed)
            csv_rows.append(csv_row)
        lines.append("")

    lam_tasks = [t for t in tasks if t.task == "sintering_bulk"]
    if lam_tasks and "random" in methods:
        lines += ["## Hypervolume of the λ sweep", "",
                  "Area of the (sintering temperature, ln bulk modulus) plane dominated by each run's 1,000 "
                  "materials beyond the reference point = the same seed's random baseline means "
                  "(°C x ln GPa; larger is better), mean ± std over seeds.", "",
                  "| method | " + " | ".join(f"λ = {t.lam:g}" for t in lam_tasks) + " |",
                  "|---|" + "---|" * len(lam_tasks)]
        hv = _hypervolumes(out, results, lam_tasks)
        for key in methods:
            cells = [_pm(*hv[(t.key, key)], digits=1) if (t.key, key) in hv else "–" for t in lam_tasks]
            lines.append(f"| {METHODS[key].label} | " + " | ".join(cells) + " |")
        lines.append("")

    lines += ["## Wall time (2 CPU cores)", "",
              "| method | training per run (s) | generation (materials/s) | evaluation per run (s) | runs |",
              "|---|---|---|---|---|"]
    unique_runs = list({_formulas_of(out, r): r for r in results}.values())  # one random run serves all tasks
    for key in methods:
        runs = [r for r in unique_runs if r["method"] == key]
        if not runs:
            continue
        train = np.mean([r["train_seconds"] for r in runs])
        rate = np.mean([r["n"] / max(r["generate_seconds"], 1e-9) for r in runs])
        ev = np.mean([r["evaluate_seconds"] for r in runs])
        lines.append(f"| {METHODS[key].label} | {train:.1f} | {rate:,.0f} | {ev:.2f} | {len(runs)} |")
    total = sum(r["train_seconds"] + r["generate_seconds"] + r["evaluate_seconds"] for r in unique_runs)
    lines += ["", f"Sum over all {len(unique_runs)} runs: {total / 60:.1f} min of training, generation and evaluation; "
              f"this invocation took {wall_seconds / 60:.1f} min (finished runs are reused, not redone). "
              "The paper reports 2-3 h per agent on an RTX A5000 GPU.", ""]
    figures = figure_names(tasks, methods)  # link only the figures written below
    if "pareto.png" in figures:
        lines += ["![Figure 2](pareto.png)", ""]
    if "histograms.png" in figures:
        lines += ["![Histograms](histograms.png)", ""]
    lines += [f"Command: `{command}`", ""]
    text = "\n".join(lines)
    atomic_write_text(out / "table1.md", text)  # atomic: a kill never leaves a half-written report
    keys: list[str] = []
    for row in csv_rows:
        keys += [k for k in row if k not in keys]
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(csv_rows)
    atomic_write_text(out / "table1.csv", buffer.getvalue())
    _plot_pareto(out, results, lam_tasks, methods)
    _plot_histograms(out, results, [t for t in tasks if t.task != "sintering_bulk"], methods)
    return text


def figure_names(tasks: Sequence[BenchTask], methods: Sequence[str]) -> list[str]:
    """The figures :func:`write_report` writes for these tasks and methods.

    ``pareto.png`` needs a λ task and a trained method; ``histograms.png`` a single-property task.

    Example:
        >>> figure_names([TASKS_BY_KEY["bulk_modulus"]], ["constrained_dqn", "random"])
        ['histograms.png']
    """
    names = []
    if any(t.task == "sintering_bulk" for t in tasks) and any(m in _PARETO_AGENTS for m in methods):
        names.append("pareto.png")
    if any(t.task != "sintering_bulk" for t in tasks):
        names.append("histograms.png")
    return names


_PARETO_AGENTS = ("constrained_dqn", "constrained_dqn_graded", "paper_dqn", "dqn_no_oracles", "maskable_ppo", "maskable_ppo_plausible")


def _run_dir(out: Path, task: str, method: str, seed: int) -> Path:
    task = "all" if method == "random" else task  # one random run per seed serves every task
    return out / "table1_runs" / task / method / f"seed{seed}"


def _formulas_of(out: Path, r: dict[str, Any]) -> Path:
    return _run_dir(out, r["task"], r["method"], r["seed"]) / "formulas.csv"


def _hypervolumes(out: Path, results: list[dict[str, Any]], lam_tasks: Sequence[BenchTask]):
    reference = {r["seed"]: (r["metrics"]["sintering_temperature_mean"], r["metrics"]["bulk_modulus_mean"])
                 for r in results if r["method"] == "random"}
    lam_keys = {t.key for t in lam_tasks}
    values: dict[tuple[str, str], list[float]] = {}
    for r in results:
        if r["task"] in lam_keys and r["seed"] in reference and r["method"] != PAPER_PUBLISHED:  # no lists kept
            _, props = read_formulas_csv(_formulas_of(out, r))
            hv = hypervolume(props["sintering_temperature"], props["bulk_modulus"], reference[r["seed"]])
            values.setdefault((r["task"], r["method"]), []).append(hv)
    return {k: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else math.nan) for k, v in values.items()}


def _pooled(out: Path, results: list[dict[str, Any]], task_key: str | None, method: str):
    formulas, props, seen = [], {}, set()
    for r in results:
        path = _formulas_of(out, r)
        if r["method"] == method and (task_key is None or r["task"] == task_key) and path not in seen:
            seen.add(path)
            f, p = read_formulas_csv(path)
            formulas += f
            for k, v in p.items():
                props.setdefault(k, []).append(v)
    return formulas, {k: np.concatenate(v) for k, v in props.items()}


def _plot_pareto(out: Path, results, lam_tasks: Sequence[BenchTask], methods: Sequence[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from oxide_env.chemistry.metrics import composition_keys
    from predictors.data import training_keys

    if not lam_tasks:
        return
    agent = next((m for m in _PARETO_AGENTS if m in methods), None)
    if agent is None:
        return
    known = training_keys()
    fig, axes = plt.subplots(1, len(lam_tasks), figsize=(5 * len(lam_tasks), 4.5), sharex=True, sharey=True,
                             squeeze=False)
    _, rand = _pooled(out, results, None, "random") if "random" in methods else ([], {})
    for ax, task in zip(axes[0], lam_tasks):
        if rand:
            ax.scatter(rand["sintering_temperature"], rand["bulk_modulus"], s=4, c="0.7", alpha=0.5,
                       label="random")
        formulas, props = _pooled(out, results, task.key, agent)
        if not formulas:
            continue
        s, k = props["sintering_temperature"], props["bulk_modulus"]
        ax.scatter(s, k, s=5, alpha=0.5, c="tab:blue", label=METHODS[agent].label)
        front = pareto_front(s, k)
        ax.plot(s[front], k[front], "-o", c="tab:red", ms=3, lw=1, label="non-dominated front (all designs)")
        # the stars: what a chemist would keep from the front, i.e. the non-dominated designs among the
        # plausible ones (oxide rule, E_f <= -0.5, in domain) that are no known compound; files from
        # before the plausible column fall back to the whole front
        if "plausible" in props:
            candidates = np.flatnonzero(props["plausible"] > 0.5)
            ax.scatter(s[candidates], k[candidates], s=12, c="black", marker="D", label="plausible designs")
            chosen = candidates[pareto_front(s[candidates], k[candidates])] if candidates.size else candidates
        else:
            chosen = front
        keys = composition_keys(np.array(formulas, dtype=object)[chosen].tolist())
        novel = [i for i, key in zip(chosen, keys) if key not in known]
        for i in (novel[:: max(1, len(novel) // 3)][:3] if novel else []):
            ax.annotate(formulas[i], (s[i], k[i]), xytext=(6, -10), textcoords="offset points", fontsize=8,
                        color="darkgreen")
            ax.plot(s[i], k[i], "*", c="green", ms=12)
        ax.set_title(task.label)
        ax.set_xlabel("predicted sintering temperature (°C)")
    axes[0][0].set_ylabel("predicted ln bulk modulus (ln GPa)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle("Figure 2 (stars: novel compositions on the front of the plausible designs)")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    atomic_save_figure(fig, out / "pareto.png", dpi=110)
    plt.close(fig)


def _plot_histograms(out: Path, results, single_tasks: Sequence[BenchTask], methods: Sequence[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not single_tasks:
        return
    fig, axes = plt.subplots(1, len(single_tasks), figsize=(4.5 * len(single_tasks), 3.8), squeeze=False)
    colors = {"random": "0.6", "constrained_dqn": "tab:blue", "constrained_dqn_graded": "tab:cyan", "paper_dqn": "tab:orange",
              "dqn_no_oracles": "tab:purple", "maskable_ppo": "tab:green", "maskable_ppo_plausible": "tab:olive"}
    for ax, task in zip(axes[0], single_tasks):
        prop = task.properties[0]
        for key in methods:
            _, props = _pooled(out, results, None if key == "random" else task.key, key)
            if prop in props:
                ax.hist(props[prop], bins=40, histtype="step" if key != "random" else "stepfilled",
                        alpha=0.6 if key == "random" else 1.0, color=colors.get(key), label=METHODS[key].label,
                        density=True)
        ax.set_title(task.label)
        ax.set_xlabel(SHORT[prop])
    axes[0][0].set_ylabel("density")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    atomic_save_figure(fig, out / "histograms.png", dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------- driver
def run_table1(seeds: Sequence[int] = (0, 1, 2), n: int = 1000, iterations: int = 500,
               out: str | Path = "runs/table1", tasks: Sequence[str] | None = None,
               methods: Sequence[str] | None = None, progress: bool = True, command: str | None = None,
               force: bool = False, paper_lists: str | Path | None = "auto", backend: Any = None) -> str:
    """Run (or resume) the whole benchmark and write the report; returns the Markdown.

    ``out`` is locked while the benchmark runs (a second invocation on it is refused). A finished
    run in ``out`` is reused only when every setting that produced it matches; before any work,
    runs of other recorded settings raise ``ValueError`` naming the first differing setting
    (``force=True`` reruns them). Runs without recorded settings (older versions, such as the
    committed reference in ``benchmarks/results``) are rerun.

    ``paper_lists``: folder of the authors' generated lists (``"auto"``: :func:`default_paper_lists`;
    ``None``: skip), evaluated with our checks and predictors as the row "the paper's published
    materials".

    ``backend``: where the runs execute (:mod:`agents.backends`: ``SerialBackend()``, the default, or
    ``RayBackend(...)``); the results are the same. A run that raises does not stop the others:
    once all have finished, :class:`agents.backends.RunsFailed` names each failed run and its error
    (no report is written; rerunning retries them and reuses the finished ones).

    Example:
        ``run_table1(seeds=[0], n=100, iterations=2, tasks=["bulk_modulus"], out="/tmp/t1")``
    """
    tasks = list(tasks or TASKS_BY_KEY)
    methods = list(methods or METHODS)
    for t in tasks:
        if t not in TASKS_BY_KEY:
            raise ValueError(f"Unknown task {t!r}; choose from {', '.join(TASKS_BY_KEY)}.")
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"Unknown method {m!r}; choose from {', '.join(METHODS)}.")
    check_number(n, "n", integer=True, minimum=2)  # materials per run
    check_number(iterations, "iterations", integer=True, minimum=1)
    if not seeds:
        raise ValueError("Invalid seeds=[]: give at least one seed (the goal is stated for >= 3).")
    for s in seeds:
        check_number(s, "seed", integer=True, minimum=0)
    from oxide_env.files import DirectoryLock, check_output_folder

    out = check_output_folder(out)
    with DirectoryLock(out):
        if paper_lists == "auto":
            paper_lists = default_paper_lists()
        elif paper_lists is not None and not Path(paper_lists).is_dir():
            raise ValueError(f"Invalid paper_lists={str(paper_lists)!r}: not a folder (the authors' lists, "
                             "../shared/datasets/paper_generated).")
        return _run_table1_locked(seeds, n, iterations, out, tasks, methods, progress, command, force,
                                  None if paper_lists is None else Path(paper_lists), backend)


STATUS_METRICS = ("pct_plausible", "pct_plausible_near_hull", "pct_new_plausible", "pct_unique", "elmd_mean")


def table1_status(seeds: Sequence[int] = (0, 1, 2), n: int = 1000, iterations: int = 500,
                  out: str | Path = "runs/table1", tasks: Sequence[str] | None = None,
                  methods: Sequence[str] | None = None) -> str:
    """Which runs of a Table 1 benchmark in ``out`` are finished with today's settings (reusable as
    they are), and their headline metrics; trains nothing, writes nothing, takes no lock (so it can
    watch a benchmark that is running). Returns Markdown.

    A run counts as finished when its ``result.json`` holds exactly the settings
    :func:`agents.runs.run_settings` gives today and metrics computed under today's validity
    tables; a run whose metrics are stale would be re-assessed from its designs (no retraining).

    Example:
        ``print(table1_status(seeds=[0], out="benchmarks/results"))``
    """
    import predictors

    tasks = list(tasks or TASKS_BY_KEY)
    methods = list(methods or METHODS)
    unknown = [t for t in tasks if t not in TASKS_BY_KEY] + [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown task or method {unknown[0]!r}; tasks: {', '.join(TASKS_BY_KEY)}; "
                         f"methods: {', '.join(METHODS)}.")
    out = Path(out)
    ids = predictor_ids([predictors.load(name) for name in predictors.PREDICTOR_NAMES])
    lines = [f"# Table 1 runs in {str(out)!r}: status", "", "", "",
             "| task | method | seed | state | " + " | ".join(STATUS_METRICS) + " |",
             "|---|---|---|---|" + "---|" * len(STATUS_METRICS)]
    done = total = 0
    for seed in seeds:
        for task in tasks:
            for method in methods:
                if method == "random" and task != tasks[0]:
                    continue
                total += 1
                cached = read_json_dict(_run_dir(out, task, method, seed) / "result.json")
                wanted = run_settings(TASKS_BY_KEY[task], METHODS[method], seed, n=n, iterations=iterations,
                                      predictors=ids)
                if cached is None:
                    state = "pending"
                elif cached.get("settings") != wanted:
                    state = "pending (other settings)"
                else:
                    state = "finished" if metrics_current(cached) else "finished (metrics to refresh)"
                    done += 1
                values = [f"{cached['metrics'][k]:.1f}" if state.startswith("finished") and k in cached["metrics"]
                          else "" for k in STATUS_METRICS]
                lines.append(f"| {'all' if method == 'random' else task} | {method} | {seed} | {state} | "
                             + " | ".join(values) + " |")
    lines[2] = f"{done} of {total} runs finished with today's settings."
    return "\n".join(lines) + "\n"


def _run_table1_locked(seeds: Sequence[int], n: int, iterations: int, out: Path, tasks: list[str],
                       methods: list[str], progress: bool, command: str | None, force: bool,
                       paper_lists: Path | None, backend: Any = None) -> str:
    import predictors

    from agents.backends import RunSpec, execute_runs
    from predictors.data import training_keys

    models = [predictors.load(name) for name in predictors.PREDICTOR_NAMES]
    jobs = [(TASKS_BY_KEY[t], METHODS[m], s) for s in seeds for t in tasks for m in methods
            if not (m == "random" and t != tasks[0])]
    # the random baseline does not depend on the task: one run per seed, shared by all tasks
    ids = predictor_ids(models)
    conflicts = [c for task, method, seed in jobs
                 if (c := settings_conflict(task, method, seed, directory=_run_dir(out, task.key, method.key, seed),
                                    settings=run_settings(task, method, seed, n=n, iterations=iterations,
                                                          predictors=ids), iterations=iterations)) is not None]
    if conflicts and not force:
        raise ValueError(f"{len(conflicts)} run(s) in {str(out)!r} were made with other settings, e.g. {conflicts[0]}; "
                         "use another --out, or --force to rerun them (their files are replaced).")
    reference = training_keys()
    t0 = time.perf_counter()
    specs = [RunSpec(task, method, seed, n=n, iterations=iterations,
                     directory=str(_run_dir(out, task.key, method.key, seed)), force=force)
             for task, method, seed in jobs]
    results = execute_runs(specs, backend, progress=progress, desc="table1")  # RunsFailed after all, if any
    if paper_lists is not None:
        results += paper_list_results(paper_lists, [TASKS_BY_KEY[t] for t in tasks], out, reference, models)
    expanded = []
    for r in results:
        if r["method"] == "random":
            expanded += [dict(r, task=t) for t in tasks]
        else:
            expanded.append(r)
    if command is None:
        command = (f"oxide-rl benchmark table1 --seeds {' '.join(map(str, seeds))} --n {n} "
                   f"--iterations {iterations} --out {out}")
        if set(tasks) != set(TASKS_BY_KEY):
            command += " --tasks " + " ".join(tasks)
        if set(methods) != set(METHODS):
            command += " --methods " + " ".join(methods)
    return write_report(out, expanded, methods=methods, tasks=[TASKS_BY_KEY[t] for t in tasks], seeds=seeds, n=n,
                        iterations=iterations, wall_seconds=time.perf_counter() - t0, command=command)

