"""The paper's random baseline and its Table 1 metrics, from Python.

    python examples/random_baseline.py
"""

from __future__ import annotations

import oxide_env
import predictors
from predictors.data import training_keys

models = [predictors.load(name) for name in predictors.PREDICTOR_NAMES]
formulas = oxide_env.random_oxides(1000, seed=0)
metrics = oxide_env.evaluate(formulas, reference=training_keys(),
                             predictors=models)
for key, value in metrics.items():
    print(f"{key:40s} {value:.3f}" if isinstance(value, float) else f"{key:40s} {value}")
