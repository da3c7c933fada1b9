"""Predictions per second from formula strings: the fast plain-formula parser vs the general one.

Both parsers live in ``oxide_env.chemistry.composition``. "general" is the bracket parser
that read every formula before the fast path was added (``_parse`` + ``_check_amounts`` per
formula, rows stacked: the old ``formulas_to_amounts``); "fast" is today's
``formulas_to_amounts`` (plain formulas lexed in one pass, the rest by the general parser).
One run, same inputs, same process, so the ratio is meaningful on a loaded machine.

Rows:
  * parsing alone, on the training formulas (``predictors.data.training_formulas()``, all) and
    on the paper's generated lists (``../shared/datasets/paper_generated``, if present); the
    two parsers' amount matrices are compared exactly (``np.array_equal``);
  * one predictor: ``predictor.predict(formulas)`` (parse + featurize + ensemble), per
    predictor, against ``predict`` of the general parser's amounts and of a ready amount matrix;
  * all five from one list: parse once, featurize once, five ensembles (what
    ``predictors.assess`` and the environment's reward do); predictions/s counts compositions
    (each gets five properties).

Goal (issue 13): >= 20,000 predictions/s from formula strings on 2 CPU cores.

Usage:
    python benchmarks/formula_speed.py [--n 20000] [--threads 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
PAPER_LISTS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "paper_generated"


def general_amounts(formulas: list[str]) -> np.ndarray:
    """The general parser on every formula (the pre-fast-path ``formulas_to_amounts``)."""
    from oxide_env.chemistry import composition as c

    rows = []
    for formula in formulas:
        parsed = c._parse(formula.strip())
        c._check_amounts(parsed, formula)
        row = np.zeros(c.N_ELEMENTS)
        for index, amount in parsed.items():
            row[index] = amount
        rows.append(row)
    return np.stack(rows)


def best_seconds(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="formulas per prediction timing")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the target is 2 cores)")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many timings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    import predictors
    from oxide_env.chemistry.composition import formulas_to_amounts
    from oxide_env.chemistry.features import featurize
    from predictors.data import training_formulas

    lists = {"training formulas": training_formulas()}
    if PAPER_LISTS.is_dir():
        lists["paper's generated lists"] = [
            line.strip() for p in sorted(PAPER_LISTS.glob("*.txt")) for line in p.read_text().splitlines() if line.strip()
        ]
    rows = []
    for name, formulas in lists.items():
        fast, general = formulas_to_amounts(formulas), general_amounts(formulas)
        if not np.array_equal(fast, general):
            raise AssertionError(f"fast and general parsers differ on the {name}")
        t_general = best_seconds(lambda: general_amounts(formulas), args.repeat)
        t_fast = best_seconds(lambda: formulas_to_amounts(formulas), args.repeat)
        rows.append({"what": f"parse only ({name}, identical amounts)", "n": len(formulas),
                     "general_per_s": len(formulas) / t_general, "fast_per_s": len(formulas) / t_fast,
                     "amounts_per_s": float("nan")})
        print(rows[-1], flush=True)

    rng = np.random.default_rng(args.seed)
    all_formulas = lists["training formulas"]
    sample = [all_formulas[i] for i in rng.choice(len(all_formulas), size=min(args.n, len(all_formulas)), replace=False)]
    amounts = formulas_to_amounts(sample)
    models = [predictors.load(name) for name in predictors.PREDICTOR_NAMES]
    for model in models:
        model.predict(sample[:100])
        np.testing.assert_array_equal(model.predict(sample[:2000]), model.predict(general_amounts(sample[:2000])))
        rows.append({
            "what": f"one predictor: {model.name}", "n": len(sample),
            "general_per_s": len(sample) / best_seconds(lambda: model.predict(general_amounts(sample)), args.repeat),
            "fast_per_s": len(sample) / best_seconds(lambda: model.predict(sample), args.repeat),
            "amounts_per_s": len(sample) / best_seconds(lambda: model.predict(amounts), args.repeat),
        })
        print(rows[-1], flush=True)

    def every(parse):
        x = featurize(parse(sample))
        return [m.members_from_features(x).mean(axis=0) for m in models]

    rows.append({
        "what": "all five from one list (one parse, one featurization)", "n": len(sample),
        "general_per_s": len(sample) / best_seconds(lambda: every(general_amounts), args.repeat),
        "fast_per_s": len(sample) / best_seconds(lambda: every(formulas_to_amounts), args.repeat),
        "amounts_per_s": len(sample) / best_seconds(lambda: every(lambda s: amounts), args.repeat),
    })
    print(rows[-1], flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "formula_speed.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "# Predictions per second from formula strings (fast plain-formula parser vs general parser)",
        "",
        f"{len(sample):,} training formulas (random sample, seed {args.seed}); torch threads {args.threads}; "
        f"best of {args.repeat}; one process, so the ratio holds on a loaded machine. Goal: >= 20,000/s from strings.",
        "",
        "| what | n | general parser (/s) | fast parser (/s) | speed-up | from an amount matrix (/s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        amounts_cell = "" if np.isnan(r["amounts_per_s"]) else f"{r['amounts_per_s']:,.0f}"
        lines.append(f"| {r['what']} | {r['n']:,} | {r['general_per_s']:,.0f} | {r['fast_per_s']:,.0f} | "
                     f"{r['fast_per_s'] / r['general_per_s']:.1f}x | {amounts_cell} |")
    lines += [
        "",
        "\"one predictor\" is `predictor.predict(formulas)`: parse, featurize, ensemble of that "
        "property. \"all five\" counts compositions that get all five properties. The string rate "
        "cannot exceed the amount-matrix rate; what is left above it is the network.",
        "",
        f"Command: `python benchmarks/formula_speed.py --n {args.n} --threads {args.threads} --repeat {args.repeat}`",
    ]
    text = "\n".join(lines)
    (out / "formula_speed.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
