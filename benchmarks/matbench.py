"""Our predictors under the Matbench protocol (composition only), beside the leaderboard.

Matbench's tasks ``matbench_log_kvrh``, ``matbench_log_gvrh`` and ``matbench_mp_e_form`` are the
raw tables in ``../shared/datasets/`` (``mp_log10_K_VRH``, ``mp_log10_G_VRH``, ``mp_e_form``), in
Matbench's row order. The protocol is the matbench package's: 5 folds of
``KFold(n_splits=5, shuffle=True, random_state=18012019)`` over the rows; each fold trains on
the other four (the raw rows, one per structure: formulas repeat with other targets) and is
scored on its test rows by MAE in the leaderboard's units (log10 GPa for the moduli, eV/atom
for the formation energy). Inside each training part, a seeded 10 % is held out to choose the
best epoch, exactly as the shipped models are trained (``predictors.training.train`` with the
shipped hyperparameters, ``DEFAULT_CONFIGS``; the moduli are trained in log10 here, which the
standardised targets make equivalent to ln).

Rows with an element outside the project's 80 (noble gases, Tc, Pm, actinides beyond U/Pu/Am,
...) cannot be featurized: they are never trained on, and when they are test rows they are
predicted with the median of the fold's training targets, counted and included in the MAE (a
leaderboard entry must score every test row).

Each finished fold is stored in ``<out>/matbench_folds/<task>/fold<k>.json`` with every setting
that produced it; a rerun reuses a fold only when they match, so an interrupted run loses no
finished fold. Writes ``matbench.md`` and ``matbench.csv`` (``task, mae_mean, mae_std, unit``).

Usage:
    python benchmarks/matbench.py [--tasks matbench_log_kvrh ...] [--threads 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

TASKS = {
    # task: (raw file, our predictor whose hyperparameters are used, leaderboard unit)
    "matbench_log_kvrh": ("mp_log10_K_VRH.csv.gz", "bulk_modulus", "log10(GPa)"),
    "matbench_log_gvrh": ("mp_log10_G_VRH.csv.gz", "shear_modulus", "log10(GPa)"),
    "matbench_mp_e_form": ("mp_e_form.csv.gz", "formation_energy", "eV/atom"),
}
LEADERBOARD = {
    # best composition-only MAE on the Matbench leaderboard, as quoted in issue 13 (v0.1 protocol)
    "matbench_log_kvrh": (0.0758, "CrabNet"),
    "matbench_log_gvrh": (0.0996, "Finder (composition)"),
    "matbench_mp_e_form": (0.0839, "Finder (composition)"),
}
SEED = 18012019
FORMAT = 1


def fold_indices(n: int) -> list[tuple]:
    """The matbench package's folds: ``KFold(5, shuffle=True, random_state=18012019)`` over ``n`` rows."""
    import numpy as np
    from sklearn.model_selection import KFold

    return [(np.sort(a), np.sort(b)) for a, b in KFold(n_splits=5, shuffle=True, random_state=SEED).split(
        np.arange(n))]


def supported_rows(formulas: list[str]):
    """``bool (n,)``: the formula parses with the project's 80 elements."""
    import numpy as np

    from oxide_env.chemistry.composition import formula_to_amounts

    ok = np.ones(len(formulas), dtype=bool)
    for i, formula in enumerate(formulas):
        try:
            formula_to_amounts(formula)
        except ValueError:
            ok[i] = False
    return ok


def matminer_features(formulas: list[str]):
    """The 145 features of any formulas with matminer's own featurizers (the reference our
    :func:`~oxide_env.chemistry.features.featurize` reproduces for the 80 elements, to 1e-13),
    for compositions with an element outside our 80 (noble gases, Tc, Pm, heavy actinides)."""
    import numpy as np
    from matminer.featurizers.base import MultipleFeaturizer
    from matminer.featurizers.composition import ElementProperty, IonProperty, Stoichiometry, ValenceOrbital
    from pymatgen.core import Composition

    from oxide_env.chemistry.features import FEATURE_LABELS

    featurizer = MultipleFeaturizer([Stoichiometry(), ElementProperty.from_preset("magpie", impute_nan=True),
                                     ValenceOrbital(props=["avg"], impute_nan=True),
                                     IonProperty(fast=True, impute_nan=True)])
    if list(featurizer.feature_labels()) != list(FEATURE_LABELS):
        raise RuntimeError("matminer's feature labels differ from the project's 145")
    return np.array([featurizer.featurize(Composition(f)) for f in formulas], dtype=np.float64).reshape(-1, 145)


def run_fold(task: str, k: int, table, supported, folds, config, *, epochs: int | None,
             device: str = "cpu", features=None) -> dict:
    """Train on the other folds and score fold ``k``; returns the fold's record.

    Without ``features`` the rows with an element outside our 80 (``~supported``) are left out of
    training and predicted with the training median; with ``features`` (every row's 145 features)
    they are trained on and predicted like the others.
    """
    import dataclasses

    import numpy as np

    from predictors.training import split_indices, train

    _, predictor_name, _ = TASKS[task]
    train_rows, test_rows = folds[k]
    trainable = np.ones(len(table), dtype=bool) if features is not None else supported
    usable = train_rows[trainable[train_rows]]
    fit_pos, val_pos = split_indices(len(usable), seed=config.seed + 1, test_fraction=config.val_fraction)
    test_trainable = trainable[test_rows]
    test_ok = test_rows[test_trainable]
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    position = np.cumsum(trainable) - 1  # row of the table -> row of its trainable part
    t0 = time.perf_counter()
    _, report = train(predictor_name, config, table=table[trainable].reset_index(drop=True),
                      splits=(position[usable[fit_pos]], position[usable[val_pos]], position[test_ok]),
                      device=device, features=None if features is None else features[trainable])
    seconds = time.perf_counter() - t0
    y = table["target"].to_numpy(np.float64)
    pred = np.full(len(test_rows), float(np.median(y[usable])))
    pred[test_trainable] = report["test_pred"]  # test_ok keeps the order of test_rows
    errors = np.abs(pred - y[test_rows])
    test_supported = supported[test_rows]
    return {"task": task, "fold": k, "n_train": int(len(usable)), "n_test": int(len(test_rows)),
            "n_test_unsupported": int((~test_supported).sum()), "mae": float(errors.mean()),
            "mae_supported": float(errors[test_supported].mean()),
            "best_epoch": report["best_epoch"], "train_seconds": seconds}


def _without_device(settings: dict | None) -> dict | None:
    return None if settings is None else {k: v for k, v in settings.items() if k != "device"}


def parse_overrides(items: list[str]) -> dict:
    """``["hidden=512", "lr=0.001"]`` -> TrainConfig field values, typed as the fields' defaults.

    Example:
        >>> parse_overrides(["hidden=512", "lr=1e-3"])
        {'hidden': 512, 'lr': 0.001}
        >>> parse_overrides(["width=3"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Invalid override 'width=3': width is not a TrainConfig field (seed, ..., max_steps); write KEY=VALUE.
    """
    import dataclasses

    from predictors.training import TrainConfig

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    defaults = TrainConfig()
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"Invalid override {item!r}: {key} is not a TrainConfig field "
                             f"({', '.join(fields)}); write KEY=VALUE.")
        kind = float if isinstance(getattr(defaults, key), float) else int  # max_steps: None or an int
        try:
            out[key] = None if value == "None" else (int(value) if kind is int else float(value))
        except ValueError:
            raise ValueError(f"Invalid override {item!r}: expected a number for {key}.") from None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     epilog="Reruns reuse every finished fold of the same settings.")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--datasets", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets",
                        help="folder of the raw tables (default ../shared/datasets beside the checkout)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the shipped configuration's epochs (a quick check; not the reported protocol)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override fields of the shipped TrainConfig, e.g. --set hidden=512 lr=0.001 "
                             "(a hyperparameter search; recorded in each fold's settings)")
    parser.add_argument("--unsupported", choices=["median", "matminer"], default="median",
                        help="test rows with an element outside our 80: predicted with the training median "
                             "(default; such rows are not trained on) or featurized with matminer and trained on "
                             "and predicted like the others")
    parser.add_argument("--device", default="cpu", help="torch device to train on (default cpu; e.g. cuda)")
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="folds to run (default all)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)

    import numpy as np
    import pandas as pd
    import torch
    from tqdm.auto import tqdm

    from oxide_env.files import atomic_write_json, atomic_write_text, read_json_dict
    from predictors.training import DEFAULT_CONFIGS

    torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.overrides)
    records = []
    for task in TASKS:  # the requested tasks are run; the others are reported from stored folds of equal settings
        raw, predictor_name, unit = TASKS[task]
        path = args.datasets / raw
        if not path.is_file():
            if task not in args.tasks:
                continue
            raise SystemExit(f"error: {str(path)!r} not found; pass --datasets DIR (the raw Matbench tables).")
        config = dataclasses.replace(DEFAULT_CONFIGS[predictor_name], **overrides)
        settings = {"format": FORMAT, "task": task, "config": dict(vars(config)), "epochs": args.epochs,
                    "data_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        if args.device != "cpu":  # other kernels: other last digits (absent for CPU runs, as before)
            settings["device"] = args.device
        if args.unsupported != "median":  # absent for the original protocol, as before
            settings["unsupported"] = args.unsupported
        if task not in args.tasks:
            for k in args.folds:
                stored = read_json_dict(args.out / "matbench_folds" / task / f"fold{k}.json")
                if stored is not None and _without_device(stored.get("settings")) == _without_device(settings):
                    records.append({**stored["record"], "device": stored["settings"].get("device", "cpu")})
            continue
        table = pd.read_csv(path, na_filter=False)
        table["target"] = table["target"].astype(float)
        supported = supported_rows(table["formula"].tolist())
        folds = fold_indices(len(table))
        features = None
        if args.unsupported == "matminer":
            from oxide_env.chemistry.features import featurize

            features = np.zeros((len(table), 145))
            formulas = table["formula"].tolist()
            features[supported] = featurize([f for f, ok in zip(formulas, supported) if ok])
            features[~supported] = matminer_features([f for f, ok in zip(formulas, supported) if not ok])
        for k in tqdm(args.folds, desc=task, unit="fold"):
            fold_path = args.out / "matbench_folds" / task / f"fold{k}.json"
            stored = read_json_dict(fold_path)
            if stored is not None and stored.get("settings") == settings:
                records.append({**stored["record"], "device": args.device})
                continue
            record = run_fold(task, k, table, supported, folds, config, epochs=args.epochs, device=args.device,
                              features=features)
            fold_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(fold_path, {"settings": settings, "record": record})
            records.append({**record, "device": args.device})
    df = pd.DataFrame(records)
    summary = []
    for task, group in df.groupby("task", sort=False):
        summary.append({"task": task, "mae_mean": group["mae"].mean(), "mae_std": group["mae"].std(ddof=0),
                        "unit": TASKS[task][2], "n_folds": len(group)})
    out = pd.DataFrame(summary, columns=["task", "mae_mean", "mae_std", "unit", "n_folds"])
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "matbench.csv", out[["task", "mae_mean", "mae_std", "unit"]].to_csv(
        index=False, float_format="%.5f"))
    command = "python benchmarks/matbench.py" + (f" --tasks {' '.join(args.tasks)}" if args.tasks != list(TASKS)
                                                 else "")
    if args.epochs is not None:
        command += f" --epochs {args.epochs}"
    if args.overrides:
        command += " --set " + " ".join(args.overrides)
    if args.device != "cpu":
        command += f" --device {args.device}"
    if args.unsupported != "median":
        command += f" --unsupported {args.unsupported}"
    if args.folds != [0, 1, 2, 3, 4]:
        command += " --folds " + " ".join(map(str, args.folds))
    lines = ["# Matbench protocol, composition only", "",
             f"`{command}` ({args.threads} torch threads). 5-fold `KFold(shuffle=True, random_state=18012019)` "
             "over the raw Matbench rows, as the matbench package; our shipped model type and hyperparameters "
             "retrained on each fold's four training folds; MAE on the fold's test rows in the leaderboard's units. "
             "Tasks not named by `--tasks` are reported from their stored folds of the same settings; the device "
             "column says where each fold was trained (`cuda`: with `--device cuda` on a lent GPU machine; "
             "GPU and CPU runs differ in float rounding only).",
             "", "| task | our MAE (mean ± std over folds) | unit | folds | best composition-only on the "
             "leaderboard | met |", "|---|---|---|---|---|---|"]
    for r in summary:
        best, who = LEADERBOARD[r["task"]]
        lines.append(f"| {r['task']} | {r['mae_mean']:.4f} ± {r['mae_std']:.4f} | {r['unit']} | {r['n_folds']} | "
                     f"{best} ({who}) | {'yes' if r['mae_mean'] <= best else 'no'} |")
    outside = "featurized with matminer" if args.unsupported == "matminer" else "predicted with the training median"
    lines += ["", "Per fold:", "", "| task | fold | train rows | test rows | test rows with an element outside our 80 "
              f"({outside}) | MAE | MAE on supported rows | best epoch | train (s) | device |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['task']} | {r['fold']} | {r['n_train']} | {r['n_test']} | {r['n_test_unsupported']} | "
                     f"{r['mae']:.4f} | {r['mae_supported']:.4f} | {r['best_epoch']} | {r['train_seconds']:.0f} | "
                     f"{r['device']} |")
    atomic_write_text(args.out / "matbench.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({"wrote": str(args.out / "matbench.md")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
