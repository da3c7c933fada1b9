"""oxide_env: the paper's oxide-composition design environment and its chemistry layer.

Example:
    >>> import oxide_env
    >>> len(oxide_env.ELEMENTS), oxide_env.featurize(["MgO"]).shape
    (80, (1, 145))
    >>> oxide_env.charge_neutral(["Ti2O4", "Fe3O4"]).tolist()
    [True, False]
"""

from __future__ import annotations

from oxide_env.chemistry.baseline import random_oxide_counts, random_oxides
from oxide_env.chemistry.composition import counts_to_formula, formula_to_counts, reduced_formula
from oxide_env.chemistry.elements import ELEMENTS
from oxide_env.chemistry.features import FEATURE_LABELS, featurize
from oxide_env.chemistry.metrics import elmd, elmd_pairwise, evaluate
from oxide_env.chemistry.validity import charge_neutral, electronegativity_balanced

__all__ = [
    "ELEMENTS",
    "FEATURE_LABELS",
    "charge_neutral",
    "counts_to_formula",
    "electronegativity_balanced",
    "elmd",
    "elmd_pairwise",
    "evaluate",
    "featurize",
    "formula_to_counts",
    "random_oxide_counts",
    "random_oxides",
    "reduced_formula",
]
__version__ = "0.1.0"

from gymnasium.envs.registration import register  # noqa: E402

# The factories build the reward model from the shipped predictors; oxide_env itself never
# imports the predictors package (gymnasium resolves these strings when an env is made).
register(id="OxideComposition-v0", entry_point="predictors.envs:make_env",
         vector_entry_point="predictors.envs:make_vector_env")
