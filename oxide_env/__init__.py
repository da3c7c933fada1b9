"""oxide_env: the paper's oxide-composition design environment and its chemistry layer."""

from __future__ import annotations

from oxide_env.chemistry.elements import ELEMENTS
from oxide_env.chemistry.features import FEATURE_LABELS, featurize

__all__ = ["ELEMENTS", "FEATURE_LABELS", "featurize"]
__version__ = "0.1.0"
