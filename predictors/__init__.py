"""Composition-only property predictors, pretrained and shipped in the package.

Five models, one interface (:class:`~predictors.base.Predictor`): ``predict(compositions)``,
``predict_std(compositions)`` (ensemble spread: large = extrapolation), ``.name``, ``.units``.

Example:
    >>> import predictors
    >>> predictors.PREDICTOR_NAMES
    ('formation_energy', 'bulk_modulus', 'shear_modulus', 'sintering_temperature', 'calcination_temperature')
    >>> model = predictors.load("sintering_temperature")
    >>> model.units, model.predict(["BaTiO3"]).shape
    ('degC', (1,))
"""

from __future__ import annotations

from predictors.base import (
    PREDICTOR_NAMES,
    UNITS,
    NotFittedError,
    Predictor,
    load,
    load_from,
    weights_dir,
)

__all__ = ["PREDICTOR_NAMES", "UNITS", "NotFittedError", "Predictor", "load", "load_from", "weights_dir"]
