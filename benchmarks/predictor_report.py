"""Predictor report: accuracy beside the paper's Table 2, training time, size, throughput.

Retrains each predictor with the shipped configuration and seed (the same command as
``oxide-rl train-predictors``), evaluates on the seeded 10 % test split, writes
``benchmarks/results/predictors.md`` (+ ``predictors.csv``), a parity plot per property, and
(with ``--save``) the weights into the package.

Usage:
    python benchmarks/predictor_report.py [--property NAME ...] [--seed 0] [--save]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

PAPER = {  # Table 2 of the paper: test R2, MAE, RMSE
    "formation_energy": (0.913, 0.1367, 0.3467),
    "bulk_modulus": (0.753, 0.2331, 0.4323),
    "shear_modulus": (0.701, 0.3321, 0.5135),
    "sintering_temperature": (0.854, 52.09, 96.63),
}
RESULTS = Path(__file__).parent / "results"


def parity_plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y, p, s = (np.array(report[k]) for k in ("test_true", "test_pred", "test_std"))
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    sc = ax.scatter(y, p, c=s, s=4, cmap="viridis", alpha=0.7)
    lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    t = report["test"]
    ax.set_title(f"{report['name']}\nR² {t['r2']:.3f}  MAE {t['mae']:.3g} {report['units']}", fontsize=9)
    ax.set_xlabel(f"true ({report['units']})")
    ax.set_ylabel(f"predicted ({report['units']})")
    fig.colorbar(sc, ax=ax, label="ensemble std")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def throughput(predictor, n: int = 20_000, seed: int = 0) -> tuple[float, float]:
    """Compositions/s of batch prediction (features included) and seconds of one single call."""
    from oxide_env.chemistry.baseline import random_oxide_counts

    counts = random_oxide_counts(n, seed=seed)
    counts = counts[counts.sum(axis=1) > 0]
    predictor.predict(counts[:10])
    t0 = time.perf_counter()
    predictor.predict(counts)
    batch = len(counts) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for row in counts[:200]:
        predictor.predict(row)
    single = (time.perf_counter() - t0) / 200
    return batch, single


def calibrated_coverage(report: dict) -> tuple[float, float, float]:
    """% of test errors within ±1σ, ±2σ and ±z95·σ of the calibrated σ (fitted on validation by train())."""
    from predictors.calibration import calibrated_std, coverage

    err = np.array(report["test_pred"]) - np.array(report["test_true"])
    cal = report.get("std_calibration")
    if cal is None:
        return (float("nan"),) * 3
    sigma = calibrated_std(np.array(report["test_std"]), cal)
    return tuple(100 * coverage(err, sigma, k) for k in (1.0, 2.0, cal["z95"]))


def _paper(value) -> str:
    return "–" if value is None else str(value)


def main(argv: list[str] | None = None) -> int:
    import dataclasses

    import predictors
    from predictors.training import DEFAULT_CONFIGS, train

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--property", nargs="+", default=list(predictors.PREDICTOR_NAMES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", action="store_true", help="write the trained weights into the package")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.property:
        cfg = dataclasses.replace(DEFAULT_CONFIGS[name], seed=args.seed)
        model, report = train(name, cfg, progress=True)
        if args.save:
            model.save()
        parity_plot(report, out / f"parity_{name}.png")
        size = sum(v.numel() * v.element_size() for v in model.net.state_dict().values())
        batch, single = throughput(model)
        t = report["test"]
        within = calibrated_coverage(report)
        paper = PAPER.get(name, (None, None, None))  # calcination: not in the paper's Table 2
        rows.append({
            "property": name, "units": report["units"], "n_total": report["n_total"],
            "n_train": report["n_train"], "n_test": report["n_test"],
            "r2": t["r2"], "mae": t["mae"], "rmse": t["rmse"],
            "paper_r2": paper[0], "paper_mae": paper[1], "paper_rmse": paper[2],
            "beats_paper": (None if paper[0] is None else
                            t["r2"] > paper[0] and t["mae"] < paper[1] and t["rmse"] < paper[2]),
            "train_seconds": report["train_seconds"], "model_bytes": size,
            "batch_per_s": batch, "single_call_ms": single * 1e3,
            "within_1sigma": within[0], "within_2sigma": within[1], "within_z95sigma": within[2],
        })
        print(json.dumps(rows[-1]))
    with open(out / "predictors.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "# Property predictors (test split: seeded random 10 %, as the paper)",
        "",
        "| property | units | compounds (train / test) | R² (paper) | MAE (paper) | RMSE (paper) | train time | model size | batch predictions/s | single call |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['property']} | {r['units']} | {r['n_total']} ({r['n_train']} / {r['n_test']}) | "
            f"{r['r2']:.3f} ({_paper(r['paper_r2'])}) | {r['mae']:.4g} ({_paper(r['paper_mae'])}) | "
            f"{r['rmse']:.4g} ({_paper(r['paper_rmse'])}) | "
            f"{r['train_seconds']:.0f} s | {r['model_bytes'] / 1e6:.2f} MB | {r['batch_per_s']:,.0f} | {r['single_call_ms']:.2f} ms |"
        )
    lines += [
        "",
        "Uncertainty (calibrated σ, fitted on the validation split; goal 68 / 95 %; details and the raw std in "
        "`calibration.md`, `python benchmarks/calibration.py`):",
        "",
        "| property | test errors within ±1σ | ±2σ | ±z95·σ |",
        "|---|---|---|---|",
        *[f"| {r['property']} | {r['within_1sigma']:.1f} % | {r['within_2sigma']:.1f} % | {r['within_z95sigma']:.1f} % |"
          for r in rows],
    ]
    lines += [
        "",
        "Models: ensembles of MLPs (SiLU) on the project's 145 Magpie features, smooth-L1 loss, "
        "AdamW with a one-cycle schedule, best epoch chosen on a validation split carved from the "
        "training 90 %; prediction = ensemble mean, uncertainty = calibrated ensemble std. The paper used Roost "
        "(formation energy, moduli) and a random forest (sintering) on its own curation of similar data; "
        "calcination temperature (the journal extension's property) has no figure in the paper's Table 2.",
        "",
        "Parity plots: " + ", ".join(f"`parity_{r['property']}.png`" for r in rows) + ".",
        "",
        "Against experiment: the known-oxides tables (moduli of MgO, Al2O3, TiO2, ZrO2, SiO2, ZnO, CaO, SrTiO3, "
        "MgAl2O4, Fe2O3 from single-crystal elastic constants; formation enthalpies; sintering practice ranges; "
        "with sources) are in `known_oxides.md` (`python benchmarks/known_oxides.py`, run on the shipped weights). "
        "Matbench protocol: `matbench.md` (`python benchmarks/matbench.py`).",
        "",
        f"Command: `python benchmarks/predictor_report.py --seed {args.seed}{' --save' if args.save else ''}` "
        "(2 CPU cores).",
    ]
    (out / "predictors.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
