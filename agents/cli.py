"""The ``oxide-rl`` command line: a thin layer over the package's functions.

Run ``oxide-rl --help`` or ``oxide-rl COMMAND --help``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from oxide_env.tasks import PREDICTOR_NAMES  # the predictors' names (one home)

METRIC_NAMES = {
    "n": "n",
    "pct_charge_neutral": "% charge neutral (ours)",
    "pct_electronegativity_balanced": "% EN balanced (ours)",
    "pct_charge_neutral_paper_rule": "% charge neutral (paper's rule)",
    "pct_electronegativity_balanced_paper_rule": "% EN balanced (paper's rule)",
    "pct_icsd24": "% valid, icsd24 states",
    "pct_oxide_rule": "% oxide rule",
    "pct_in_domain": "% in domain",
    "pct_plausible": "% plausible",
    "pct_formation_energy_le_-0.5": "% E_f <= -0.5 eV/atom",
    "median_e_above_hull": "median E above hull (eV/atom)",
    "pct_unique": "% unique",
    "pct_novel": "% novel",
    "elmd_mean": "ElMD mean",
    "elmd_std": "ElMD std",
}


def package_version() -> str:
    """The installed version of ``oxide-rl`` (``importlib.metadata``; the source's if not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("oxide-rl")
    except PackageNotFoundError:
        from oxide_env import __version__

        return __version__


def read_formulas(path: str | Path) -> list[str]:
    """Formulas from a text file (one per line) or a CSV file with a ``formula`` column.

    A CSV of generated materials (``oxide-rl generate``, the benchmark's ``formulas.csv``) is read
    from its ``generated`` column (the amounts as generated; ``formula`` is their reduced form).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Invalid file {str(path)!r}: it does not exist.")
    text = path.read_text()
    first = text.splitlines()[0] if text.strip() else ""
    if "," in first or path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if not rows or "formula" not in rows[0]:
            raise ValueError(
                f"Invalid CSV {str(path)!r}: it needs a 'formula' column (found {first!r})."
            )
        column = "generated" if "generated" in rows[0] else "formula"
        return [r[column].strip() for r in rows if r[column].strip()]
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _fmt(value: float) -> str:
    if isinstance(value, (int, np.integer)):
        return str(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return f"{value:.2f}" if abs(value) < 1e4 else f"{value:.4g}"


def metrics_table(rows: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per named result, one column per metric.

    A ``<key>_sd`` entry (spread between seeds) is shown as ``mean ± sd`` in the ``key`` column.
    """
    keys: list[str] = []
    for metrics in rows.values():
        keys += [k for k in metrics if k not in keys and not k.endswith("_sd")]
    header = ["run"] + [METRIC_NAMES.get(k, k) for k in keys]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, metrics in rows.items():
        cells = [name]
        for k in keys:
            cell = _fmt(metrics.get(k, math.nan))
            if f"{k}_sd" in metrics:
                cell += f" ± {_fmt(metrics[f'{k}_sd'])}"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarize(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean over runs, plus ``<key>_sd`` (std between runs) for every percentage and ElMD."""
    out: dict[str, float] = {}
    for key in runs[0]:
        values = np.array([r[key] for r in runs], dtype=float)
        out[key] = int(values[0]) if key == "n" and np.all(values == values[0]) else float(values.mean())
        if key != "n" and len(runs) > 1:
            out[f"{key}_sd"] = float(values.std(ddof=1))
    return out


def _reference_formulas(arg: str | None) -> list[str] | frozenset | None:
    if arg is None or arg == "none":
        return None
    if arg == "training":
        from predictors.data import training_keys

        return training_keys()
    return read_formulas(arg)


MAX_BASELINE_N = 10_000
"""Largest ``baseline --n``: the ElMD statistics compare all n (n - 1) / 2 pairs (~400 MB at 10,000)."""


def _output_file(path: str, option: str) -> Path:
    """The file ``path`` of an output option, its missing parent folders created."""
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"Invalid {option} {path[:200]!r}: it is a folder; give a file name, e.g. {option} "
                         "results/metrics.json.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"Invalid {option} {path[:200]!r}: a parent of it is a file, not a folder.") from None
    return out


def _write_text(path: str, option: str, text: str) -> None:
    from oxide_env.files import atomic_write_text

    atomic_write_text(_output_file(path, option), text)
    print(f"wrote {path}")


def _write_outputs(args: argparse.Namespace, data: dict, table: str, *, title: str) -> None:
    if args.json:
        _write_text(args.json, "--json", json.dumps(data, indent=2) + "\n")
    if args.markdown:
        command = "oxide-rl " + " ".join(sys.argv[1:]) if sys.argv[1:] else "oxide-rl"
        _write_text(args.markdown, "--markdown", f"# {title}\n\n{table}\n\nCommand: `{command}`\n")


def cmd_evaluate(args: argparse.Namespace) -> int:
    formulas = read_formulas(args.file)
    if args.no_predictors:
        from oxide_env.chemistry.metrics import evaluate

        metrics = evaluate(formulas, reference=_reference_formulas(args.reference))
    else:
        from predictors.assess import assess

        metrics, _ = assess(formulas, domain_properties=args.domain, novelty=False)
        reference = _reference_formulas(args.reference)
        if reference is not None:
            from oxide_env.chemistry.metrics import pct_novel

            metrics["pct_novel"] = pct_novel(formulas, reference) if formulas else float("nan")
    table = metrics_table({Path(args.file).name: metrics})
    print(table)
    _write_outputs(args, metrics, table, title=f"Metrics of {args.file}")
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from oxide_env.chemistry.baseline import random_oxides
    from oxide_env.chemistry.checks import check_number
    from oxide_env.chemistry.metrics import evaluate

    try:
        check_number(args.n, "--n", integer=True, minimum=1, maximum=MAX_BASELINE_N)
    except ValueError as exc:
        raise ValueError(f"{exc} (the ElMD statistics compare all pairs; run several seeds with --seed "
                         "for more materials)") from None
    reference = _reference_formulas(args.reference)
    rows: dict[str, dict[str, float]] = {}
    runs = []
    for seed in tqdm(args.seeds, desc="random baseline", unit="seed", disable=len(args.seeds) < 2):
        formulas = random_oxides(args.n, seed=seed)
        metrics = evaluate(formulas, reference=reference)
        runs.append(metrics)
        rows[f"random seed {seed}"] = metrics
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"random_seed{seed}.txt").write_text("\n".join(formulas) + "\n")
    if len(runs) > 1:
        rows["mean"] = summarize(runs)
    table = metrics_table(rows)
    print(table)
    _write_outputs(args, rows, table, title=f"Random baseline ({args.n} materials per seed)")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import predictors

    from oxide_env.chemistry.composition import as_amount_matrix

    names = args.property or list(predictors.PREDICTOR_NAMES)
    models = [predictors.load(name) for name in names]
    for formula in args.formulas:  # every formula checked before anything is printed
        as_amount_matrix(formula)
    header = ["formula"] + [f"{m.name} ({m.units})" for m in models]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    results = {}
    for formula in args.formulas:
        cells, results[formula] = [formula], {}
        for m in models:
            mean, std = m.predict_with_std([formula])
            cells.append(f"{mean[0]:.3f} ± {std[0]:.3f}")
            results[formula][m.name] = {"mean": float(mean[0]), "std": float(std[0]), "units": m.units}
        lines.append("| " + " | ".join(cells) + " |")
    print("\n".join(lines))
    print("± is the calibrated σ (the ensemble std scaled on validation data: about 68 % of test errors lie within "
          "±σ); large values mean the composition is unlike the training data.")
    if args.json:
        _write_text(args.json, "--json", json.dumps(results, indent=2) + "\n")
    return 0


def cmd_train_predictors(args: argparse.Namespace) -> int:
    import dataclasses

    import predictors
    from predictors.training import DEFAULT_CONFIGS, train

    out = Path(args.out) if args.out else predictors.weights_dir()
    for name in args.property or list(predictors.PREDICTOR_NAMES):
        config = dataclasses.replace(DEFAULT_CONFIGS[name], seed=args.seed)
        if args.epochs is not None:
            config = dataclasses.replace(config, epochs=args.epochs)
        model, report = train(name, config, progress=True)
        model.save(out)
        t = report["test"]
        print(f"{name}: test R2 {t['r2']:.3f}  MAE {t['mae']:.4g}  RMSE {t['rmse']:.4g} {report['units']}"
              f"  ({report['n_train']} train / {report['n_test']} test, {report['train_seconds']:.0f} s)"
              f" -> {out / (name + '.safetensors')}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from agents.train import AgentRun, train_agent
    from oxide_env.tasks import PLAUSIBLE_DESIGN

    design = dict(PLAUSIBLE_DESIGN) if args.plausible else None
    if args.max_e_above_hull is not None:
        if design is None:
            raise SystemExit("error: --max-e-above-hull needs --plausible (it adds to those design constraints).")
        design["e_above_hull"] = ["<=", args.max_e_above_hull]
    if args.shaping is not None:
        if design is None:
            raise SystemExit("error: --shaping needs --plausible (it grades the penalty of those design constraints).")
        design["shaping"] = args.shaping
    if args.strict_novel:
        if not args.shaping:
            raise SystemExit("error: --strict-novel needs --shaping (it sets how a known compound's violation is "
                             "graded).")
        design["novel"] = "strict"
    run = AgentRun(task=args.task, lam=args.lam, seed=args.seed, iterations=args.iterations, n_envs=args.n_envs,
                   exact_masks=args.exact_masks, constraints=() if args.no_oracles else tuple(args.oracles),
                   top_n_pct=args.top_n_pct, gradient_steps=args.gradient_steps,
                   model_kwargs={**({"merge_noops": True} if args.merge_noops else {}),
                                 **({"oracle_relative": args.oracle_relative} if args.oracle_relative else {})},
                   design_constraints=design, constraint_lookahead=args.lookahead)
    model, seconds = train_agent(run, args.out, progress=True, resume=not args.restart,
                                 checkpoint_every=args.checkpoint_every, log=lambda m: print(m, file=sys.stderr))
    print(f"trained {run.task} (seed {run.seed}) in {seconds:.0f} s -> {Path(args.out) / 'model.zip'}")
    print(f"TensorBoard: tensorboard --logdir {Path(args.out) / 'tb'}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    import predictors
    from agents.generation import write_materials_csv
    from agents.train import load_agent
    from predictors.assess import assess

    model = load_agent(args.model, device="cpu", allow_pickle=args.allow_pickle)
    formulas = model.generate(args.n, seed=args.seed, distinct=args.distinct, progress=True)

    metrics, checks = assess(formulas, domain_properties=args.domain)
    columns = {name: checks[name] for name in PREDICTOR_NAMES}  # properties first, then every check
    columns.update((k, v) for k, v in checks.items() if k not in columns)
    out = write_materials_csv(args.out, formulas, columns)
    units = ", ".join(f"{name} in {unit}" for name, unit in predictors.UNITS.items())
    print(f"wrote {len(formulas)} materials to {out}: formula (reduced), generated (the amounts as generated), "
          f"{units}, e_above_hull in eV/atom, and each check (1 = passed)")
    print(metrics_table({Path(args.model).name: metrics}))
    return 0


def _backend(args: argparse.Namespace):
    from agents.backends import make_backend

    return make_backend(args.backend, address=args.address, cpus_per_run=args.cpus_per_run)


def _report_failures(exc: Exception) -> int:
    print(f"oxide-rl: {exc}", file=sys.stderr)
    return 1


def cmd_benchmark_table1(args: argparse.Namespace) -> int:
    from agents.backends import RunsFailed
    from agents.benchmark import TASKS_BY_KEY, figure_names, run_table1, table1_status

    if args.status:
        print(table1_status(seeds=args.seeds, n=args.n, iterations=args.iterations, out=args.out, tasks=args.tasks,
                            methods=args.methods))
        return 0
    try:
        text = run_table1(seeds=args.seeds, n=args.n, iterations=args.iterations, out=args.out, tasks=args.tasks,
                          methods=args.methods, progress=True, force=args.force, backend=_backend(args),
                          paper_lists=None if args.paper_lists == "none" else args.paper_lists)
    except RunsFailed as exc:  # every other run finished and is kept
        return _report_failures(exc)
    print(text)
    figures = figure_names([TASKS_BY_KEY[t] for t in args.tasks], args.methods)
    print(f"wrote {Path(args.out) / 'table1.md'}, " + ", ".join(["table1.csv", *figures]))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from agents.backends import RunsFailed
    from agents.sweep import load_config, run_sweep

    config = load_config(args.config)
    command = "oxide-rl " + " ".join(sys.argv[1:]) if sys.argv[1:] else f"oxide-rl sweep {args.config}"
    try:
        text = run_sweep(config, args.out, backend=_backend(args), progress=True, force=args.force, command=command)
    except RunsFailed as exc:  # every other run finished and is kept
        return _report_failures(exc)
    print(text)
    figure = ", sweep.png" if (Path(args.out) / "sweep.png").is_file() else ""
    print(f"wrote {Path(args.out) / 'sweep.md'}, sweep.csv{figure}")
    return 0




def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text[:60]!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def _add_report_arguments(p: argparse.ArgumentParser) -> None:
    """``--json`` / ``--markdown``: where a metrics command also writes its table."""
    p.add_argument("--json", metavar="PATH", help="also write the metrics as JSON")
    p.add_argument("--markdown", metavar="PATH", help="also write the table as Markdown")


def build_parser() -> argparse.ArgumentParser:
    from oxide_env.chemistry.completion import CONSTRAINTS as EXACT_MASKS

    parser = argparse.ArgumentParser(
        prog="oxide-rl",
        description="Reinforcement learning for inverse design of oxide compositions.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("evaluate", help="Table 1 metrics of a list of generated formulas.",
                       description="Validity under the paper's rule and ours, the oxide rule, predicted "
                       "properties, hull distance, applicability domain, % plausible, uniqueness, ElMD (and "
                       "novelty) of a list of formulas. Give the amounts as generated (unreduced) for the "
                       "paper's rule.")
    p.add_argument("file", help="formulas, one per line, or a CSV file with a 'formula' column")
    p.add_argument("--no-predictors", action="store_true",
                   help="only the composition metrics (no properties, hull, domain or %% plausible)")
    p.add_argument("--domain", nargs="+", choices=PREDICTOR_NAMES, default=None, metavar="PROPERTY",
                   help="predictors whose applicability domain a plausible design must be inside, besides "
                   "formation_energy (default: all of them)")

    p.add_argument("--reference", default=None,
                   help="formulas for %% novel: a file, 'training' (the predictors' training data) "
                   "or 'none' (default: none)")
    _add_report_arguments(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("baseline", help="Generate and evaluate the paper's random baseline.",
                       description="The paper's random policy: 4 x (uniform element, count 0-9), "
                       "then oxygen 1-9. Prints the Table 1 metrics per seed and their mean.")
    p.add_argument("--n", type=int, default=1000,
                   help=f"materials per seed, 1 to {MAX_BASELINE_N:,} (default 1000)")
    p.add_argument("--seed", dest="seeds", type=int, nargs="+", default=[0],
                   help="one or more seeds (default 0)")
    p.add_argument("--seeds", dest="seeds", type=int, nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--reference", default=None, help="as for 'evaluate'")
    p.add_argument("--out", metavar="DIR", help="write the generated formulas to DIR/random_seedS.txt")
    _add_report_arguments(p)
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser("predict", help="Predict the five properties of formulas, with uncertainty.",
                       description="Predicted formation energy (eV/atom), ln bulk and shear modulus "
                       "(ln GPa) and sintering temperature (degC) with the shipped predictors.")
    p.add_argument("formulas", nargs="+", help="formulas, e.g. BaTiO3 MgAl2O4")
    p.add_argument("--property", nargs="+", choices=PREDICTOR_NAMES, metavar="PROPERTY",
                   help=f"only these predictors: {', '.join(PREDICTOR_NAMES)} (default: all)")
    p.add_argument("--json", metavar="PATH", help="also write the predictions as JSON")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("train-predictors", help="Retrain the property predictors from the curated data.",
                       description="Train the ensemble MLP predictors on predictors/data/ (seeded "
                       "90/10 split) and write safetensors weights.")
    p.add_argument("--property", nargs="+", choices=PREDICTOR_NAMES, metavar="PROPERTY",
                   help=f"only these predictors: {', '.join(PREDICTOR_NAMES)} (default: all)")
    p.add_argument("--seed", type=int, default=0, help="split and initialisation seed (default 0)")
    p.add_argument("--epochs", type=_positive_int, default=None, help="override the number of epochs (>= 1)")
    p.add_argument("--out", metavar="DIR", help="where to write weights (default: the package's weights/)")
    p.set_defaults(func=cmd_train_predictors)

    p = sub.add_parser("train", help="Train the paper's constrained DQN agent on a task.",
                       description="Train agents.ConstrainedDQN (paper defaults: 500 iterations of 100 "
                       "episodes) and save it with checkpoints and TensorBoard logs in --out. Rerunning the "
                       "same command continues the run in --out: a finished run is reused, an interrupted one "
                       "resumes exactly from its newest checkpoint. A run of other settings there is refused "
                       "(use another --out, or --restart).")
    p.add_argument("--task", default="bulk_modulus", help="formation_energy, bulk_modulus, shear_modulus, "
                   "sintering_temperature or sintering_bulk (default bulk_modulus)")
    p.add_argument("--lam", type=float, default=None,
                   help="bulk weight λ of sintering_bulk, >= 0 (paper: 62.5, 125, 250; default 125); "
                   "only for sintering_bulk")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, metavar="DIR", help="run directory")
    p.add_argument("--iterations", type=int, default=500, help="iterations of 100 episodes (default 500)")
    p.add_argument("--n-envs", type=int, default=100, help="environments stepped together (default 100)")
    p.add_argument("--exact-masks", choices=list(EXACT_MASKS),
                   help="also apply the environment's exact constraint masks")
    p.add_argument("--oracles", nargs="+", default=["charge_neutral", "electronegativity_balanced"], metavar="FLAG",
                   help="terminal info flags the learned constraint oracles predict (default: charge_neutral "
                   "electronegativity_balanced; with --plausible e.g. constraints_satisfied)")
    p.add_argument("--no-oracles", action="store_true", help="no learned constraint oracles (ablation)")
    p.add_argument("--top-n-pct", type=float, default=20.0, help="sample among the top n%% actions (default 20)")
    p.add_argument("--gradient-steps", type=int, default=1, help="updates per iteration (paper: 1)")
    p.add_argument("--plausible", action="store_true",
                   help="terminal design constraints: oxide rule, predicted E_f <= -0.5 eV/atom, inside the "
                   "applicability domains, novel (a design that breaks one earns the worst reward)")
    p.add_argument("--max-e-above-hull", type=float, default=None, metavar="EV",
                   help="with --plausible: also require the predicted E_f to lie at most EV eV/atom above the convex "
                   "hull of the known compounds (e.g. 0.1; a linear programme per new design)")
    p.add_argument("--shaping", type=float, default=None, metavar="S",
                   help="with --plausible: a design that breaks a constraint earns less the further it misses "
                   "(worst - S * reward range * violation) instead of the flat worst reward (e.g. 0.1)")
    p.add_argument("--strict-novel", action="store_true",
                   help="with --shaping: a known compound earns the lowest graded penalty, as if it broke every "
                   "constraint (else it breaks only 'novel' and is the best-paid violation)")
    p.add_argument("--lookahead", action="store_true",
                   help="with --plausible: at the last step only oxygen counts whose design meets every constraint "
                   "(the env's constraint_lookahead)")
    p.add_argument("--oracle-relative", type=float, default=0.0, metavar="R",
                   help="where no action reaches the oracles' threshold, keep the actions at least R times as likely "
                   "to succeed as the best one instead of the whole mask (default 0: the whole mask, the paper's)")
    p.add_argument("--merge-noops", action="store_true",
                   help="rank the 80 count-0 actions as one in top-n%% sampling (more diverse designs)")
    p.add_argument("--checkpoint-every", type=int, default=50, metavar="K",
                   help="write a resumable checkpoint every K iterations (default 50)")
    p.add_argument("--restart", action="store_true",
                   help="discard the run in --out (model, checkpoints) and train afresh")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("generate", help="Generate materials with a trained agent.",
                       description="Generate formulas with a trained agent, write them with predicted "
                       "properties as CSV and print the Table 1 metrics.")
    p.add_argument("--model", required=True, metavar="DIR", help="run directory of `oxide-rl train`")
    p.add_argument("-n", type=int, default=1000, help="number of materials (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, metavar="FILE", help="CSV file to write")
    p.add_argument("--distinct", action="store_true",
                   help="n distinct reduced formulas (duplicates are redrawn)")
    p.add_argument("--domain", nargs="+", choices=PREDICTOR_NAMES, default=None, metavar="PROPERTY",
                   help="predictors whose applicability domain a plausible design must be inside, besides "
                   "formation_energy (default: all of them)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="also load a model file that needs unpickling (plain SB3 or older files): unpickling "
                   "runs any code the file holds, so only for files you trust")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("benchmark", help="Reproduce the paper's results (Table 1 and Figure 2).",
                       description="Benchmarks that reproduce the paper.")
    bench = p.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    b = bench.add_parser(
        "table1", help="Table 1 + Figure 2 for every method, task and seed (resumable).",
        description="Train every method (ConstrainedDQN with exact masks, the paper's ConstrainedDQN, DQN "
        "without oracles, MaskablePPO with EN masks and with our plausibility means) on every Table 1 task for "
        "each seed, generate --n materials per run beside the random baseline, and write table1.md, table1.csv, "
        "pareto.png and histograms.png to --out. "
        "Finished runs are reused only when every setting that produced them matches: rerun the same command "
        "to resume (an interrupted DQN run continues exactly from its checkpoint). --out is locked while it runs. "
        "See agents/benchmark.py.")
    tasks = ["formation_energy", "bulk_modulus", "shear_modulus", "sintering_temperature",
             "sintering_bulk_62.5", "sintering_bulk_125", "sintering_bulk_250"]
    from agents.runs import METHODS

    methods = list(METHODS)
    b.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    b.add_argument("--n", type=int, default=1000, help="materials generated per run (default 1000)")
    b.add_argument("--iterations", type=int, default=500,
                   help="training iterations of 100 episodes for every trained method (paper: 500)")
    b.add_argument("--out", default="runs/table1",
                   help="output folder (default runs/table1; the committed reference is benchmarks/results)")
    b.add_argument("--force", action="store_true",
                   help="rerun the runs in --out that were made with other settings (their files are replaced)")
    b.add_argument("--status", action="store_true",
                   help="only list which runs in --out are finished with these settings, with their headline "
                   "metrics (trains nothing; safe while the benchmark runs)")
    b.add_argument("--tasks", nargs="+", choices=tasks, default=tasks, help="tasks (default: all seven rows)")
    b.add_argument("--methods", nargs="+", choices=methods, default=methods,
                   help="methods (default: all; 'random' is needed for the shifts)")
    b.add_argument("--paper-lists", default="auto", metavar="DIR",
                   help="folder of the authors' generated lists, evaluated with our checks as the row \"the "
                   "paper's published materials\" (default: ../shared/datasets/paper_generated beside the "
                   "checkout, if present; 'none' to skip). Only derived numbers are written.")
    _backend_options(b)
    b.set_defaults(func=cmd_benchmark_table1)

    from agents.sweep import SWEEP_METRICS, SWEEP_SETTINGS

    p = sub.add_parser(
        "sweep", help="A grid of agent settings x tasks x methods x seeds from a TOML file (resumable).",
        description="Run every (task, method, combination of the grid's settings, seed) of a sweep config (TOML; "
        "examples/sweep.toml) with the Table 1 harness, the random baseline once per seed, and write sweep.md, "
        "sweep.csv and sweep.png (each metric against each swept setting) to --out. Every run is keyed by all "
        "its settings: rerun the same command to resume; a changed setting is never served from an old result. "
        f"Grid settings: {', '.join(f'{s.name} ({s.allowed()})' for s in SWEEP_SETTINGS.values())}. "
        f"Metrics: {', '.join(SWEEP_METRICS)}. See agents/sweep.py.")
    p.add_argument("config", help="the sweep's TOML file (keys: tasks, methods, seeds, n, iterations, metrics, "
                   "[grid])")
    p.add_argument("--out", default="runs/sweep", help="output folder (default runs/sweep)")
    p.add_argument("--force", action="store_true",
                   help="rerun the runs in --out that were made with other settings (their files are replaced)")
    _backend_options(p)
    p.set_defaults(func=cmd_sweep)
    return parser


def _backend_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["serial", "ray"], default="serial",
                   help="where the runs execute: one after another in this process (serial, the default) or as "
                   "Ray tasks (ray; pip install -e \".[ray]\"); the results are the same")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="Ray cluster to join, e.g. auto or HOST:6379 (what `ray start --head` prints; default: "
                   "start a local Ray instance on this machine). --out should then be on storage every node sees")
    p.add_argument("--cpus-per-run", type=_positive_int, default=None, metavar="N",
                   help="CPUs (and torch threads) per run (ray default 1; serial default: torch's own thread count)")


USER_ERRORS = (ValueError, TypeError, OSError)
"""Exceptions that ``main`` reports as ``error: ...`` (exit code 2) when they come from user input."""


def _is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` reports bad user input rather than a bug (which keeps its traceback).

    Every ``ValueError`` of the package names a bad value (the project's rule), and a missing
    or unwritable file is the user's; a ``TypeError`` is the user's only when it is one of the
    package's own input checks (their messages start with "Invalid "): others are bugs.
    """
    if isinstance(exc, (ValueError, OSError)):
        return True
    return isinstance(exc, TypeError) and str(exc).startswith("Invalid ")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; bad input ends in one line ``error: ...`` and exit code 2.

    Set ``OXIDE_RL_TRACEBACK=1`` to see the full traceback of such errors too.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        if not _is_user_error(exc) or os.environ.get("OXIDE_RL_TRACEBACK"):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) not in message:
            message += f": {exc.filename}"
        print(f"{parser.prog}: error: {message[:2000]}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
