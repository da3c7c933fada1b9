"""The paper's random baseline and its Table 1 metrics, from Python.

    python examples/random_baseline.py --n 1000 --seed 0
"""

from __future__ import annotations

import argparse

import oxide_env
import predictors
from predictors.data import training_keys

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--n", type=int, default=1000, help="materials (default 1000)")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

models = [predictors.load(name) for name in predictors.PREDICTOR_NAMES]
formulas = oxide_env.random_oxides(args.n, seed=args.seed)
metrics = oxide_env.evaluate(formulas, reference=training_keys(),
                             predictors=models)
for key, value in metrics.items():
    print(f"{key:40s} {value:.3f}" if isinstance(value, float) else f"{key:40s} {value}")
