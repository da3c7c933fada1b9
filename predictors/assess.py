"""Every check of a list of designs with the shipped models: the one call behind the CLI and Table 1.

:func:`assess` joins the pure metrics (:func:`oxide_env.chemistry.metrics.evaluate` and
:func:`~oxide_env.chemistry.metrics.design_checks`) with what the ``predictors`` package
ships: the five property models, the convex hull of the known compounds
(:func:`predictors.data.known_hull`) and the applicability domains
(:func:`predictors.domain.load_domain`).

Which domains count for ``in_domain`` / ``pct_plausible``: ``formation_energy`` (the
stability proxy is part of plausibility) plus the properties named in ``domain_properties``
— by default all five; the Table 1 benchmark passes the properties of each task.

Example:
    >>> from predictors.assess import assess
    >>> metrics, checks = assess(["MgAl2O4", "Os7W9O"], domain_properties=["bulk_modulus"])
    >>> checks["plausible"].tolist(), metrics["pct_plausible"]
    ([True, False], 50.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from predictors.base import PREDICTOR_NAMES, check_name

__all__ = ["assess", "domain_names"]


def domain_names(properties: Sequence[str] | None) -> list[str]:
    """``formation_energy`` followed by the other ``properties`` (every predictor for ``None``)."""
    names = list(PREDICTOR_NAMES if properties is None else properties)
    for name in names:
        check_name(name)
    return ["formation_energy", *[n for n in dict.fromkeys(names) if n != "formation_energy"]]


def assess(
    formulas: Sequence[str] | np.ndarray,
    *,
    domain_properties: Sequence[str] | None = None,
    novelty: bool = True,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Aggregate metrics and per-design checks of ``formulas`` with the shipped models.

    Args:
        formulas: designs as generated (formulas or an ``(n, 80)`` count matrix).
        domain_properties: predictors whose applicability domain a plausible design must be
            inside, besides ``formation_energy`` (``None``: every predictor).
        novelty: add ``pct_novel`` against the predictors' training data.

    Returns:
        ``(metrics, checks)``: the dict of :func:`~oxide_env.chemistry.metrics.evaluate` and
        the per-design arrays of :func:`~oxide_env.chemistry.metrics.design_checks`.
    """
    from oxide_env.chemistry.composition import as_count_matrix
    from oxide_env.chemistry.metrics import design_checks, summarize_checks
    from predictors.base import load
    from predictors.data import known_hull, training_keys
    from predictors.domain import load_domain

    models = [load(name) for name in PREDICTOR_NAMES]
    domains = [load_domain(name) for name in domain_names(domain_properties)]
    hull = known_hull()
    generated = as_count_matrix(formulas)  # parsed once for the checks and the summary
    checks = design_checks(generated, predictors=models, hull=hull, domains=domains)
    metrics = summarize_checks(generated, checks, reference=training_keys() if novelty else None)
    return metrics, checks
