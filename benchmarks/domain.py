"""Does the applicability-domain score work? AUROC and error correlation per predictor.

For each shipped predictor and its shipped domain model (:mod:`predictors.domain`):

* AUROC of the score for telling the held-out test compositions (label 0) from random-baseline
  compositions (label 1; the paper's random policy, ``oxide_env.random_oxides``);
* Spearman correlation of the score with the absolute error on the test split;
* % of test and of random compositions inside the domain;
* the same two numbers for the ensemble standard deviation, the uncertainty used before.

Writes ``benchmarks/results/domain.md`` and ``domain.csv``.

Usage:
    python benchmarks/domain.py [--n-random 3000] [--seed 0] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-random", type=int, default=3000, help="random-baseline compositions (default 3000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random baseline (default 0)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)

    import pandas as pd
    import torch
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score
    from tqdm.auto import tqdm

    import predictors
    from oxide_env.chemistry.baseline import random_oxides
    from oxide_env.chemistry.features import featurize
    from predictors.domain import _features_and_split, load_domain

    torch.set_num_threads(args.threads)
    random_features = featurize(random_oxides(args.n_random, seed=args.seed))
    rows = []
    for name in tqdm(predictors.PREDICTOR_NAMES, desc="predictors"):
        t = time.perf_counter()
        table, features, _, test_idx, _ = _features_and_split(name)
        model, domain = predictors.load(name), load_domain(name)
        x_test = features[test_idx]
        members = model.members_from_features(x_test)
        error = np.abs(members.mean(axis=0) - table["target"].to_numpy()[test_idx])
        std_test, std_random = members.std(axis=0), model.members_from_features(random_features).std(axis=0)
        s_test, s_random = domain.score_features(x_test), domain.score_features(random_features)
        labels = np.r_[np.zeros(len(s_test)), np.ones(len(s_random))]
        rows.append({
            "predictor": name,
            "n_test": len(s_test),
            "auroc_domain": roc_auc_score(labels, np.r_[s_test, s_random]),
            "spearman_domain_abs_error": spearmanr(s_test, error).statistic,
            "pct_test_in_domain": 100 * float(np.mean(s_test <= domain.threshold)),
            "pct_random_in_domain": 100 * float(np.mean(s_random <= domain.threshold)),
            "auroc_ensemble_std": roc_auc_score(labels, np.r_[std_test, std_random]),
            "spearman_ensemble_std_abs_error": spearmanr(std_test, error).statistic,
            "threshold": domain.threshold,
            "seconds": time.perf_counter() - t,
        })
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "domain.csv", index=False, float_format="%.4f")
    lines = [
        "# Applicability domain of the predictors",
        "",
        "`python benchmarks/domain.py` (shipped predictors and domain models; "
        f"{args.n_random} random-baseline compositions, seed {args.seed}).",
        "",
        "Score = distance to the nearest training composition in standardized, PCA-projected (32-d)",
        "Magpie feature space; in domain = score <= the 95th percentile of the leave-one-out score on",
        "the training split. AUROC: held-out test compositions (0) vs random baseline (1).",
        "",
        "| predictor | test rows | AUROC, domain score | AUROC, ensemble std | Spearman(score, abs error) | "
        "Spearman(std, abs error) | % test in domain | % random in domain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['predictor']} | {r['n_test']} | {r['auroc_domain']:.3f} | {r['auroc_ensemble_std']:.3f} | "
            f"{r['spearman_domain_abs_error']:.3f} | {r['spearman_ensemble_std_abs_error']:.3f} | "
            f"{r['pct_test_in_domain']:.1f} | {r['pct_random_in_domain']:.1f} |"
        )
    better_auroc = [r["predictor"] for r in rows if r["auroc_domain"] > r["auroc_ensemble_std"]]
    better_rho = [r["predictor"] for r in rows if r["spearman_domain_abs_error"] > r["spearman_ensemble_std_abs_error"]]
    lines += [
        "",
        f"The domain score separates held-out compounds from random compositions better than the ensemble "
        f"spread for {len(better_auroc)} of {len(rows)} predictors ({', '.join(better_auroc) or 'none'}); it "
        f"correlates better with the test error for {len(better_rho)} of {len(rows)} "
        f"({', '.join(better_rho) or 'none'}). `oxide_env.evaluate` reports both: `pct_in_domain` (domain "
        "score) and the ensemble std of each property.",
    ]
    text = "\n".join(lines) + "\n"
    (args.out / "domain.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
