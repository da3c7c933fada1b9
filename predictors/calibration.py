"""Calibrated uncertainty: the ensemble std mapped to a 68 % half-width, fitted on validation data.

The raw ensemble standard deviation measures how much the members disagree, not how large the
error is: on the test splits only 17-24 % of the errors lie within ±1 raw std (68 % for a
calibrated Gaussian σ), because it misses the label noise (polymorph averaging, text-mined
temperatures) and the part of the error the members share. The calibration is

    σ = sqrt((scale · std)² + floor²)

two numbers per property: ``scale`` stretches the disagreement, ``floor`` is the error a
composition has even where the members agree (a noise floor, in the property's units). They
are fitted on the **validation split** (the 10 % of the training 90 % that chose the best
epoch; the test split stays untouched) by quantile regression: ``σ`` is the conditional
68.27 % quantile of ``|error|`` given the std (pinball loss), so that ±1σ holds 68 % of the
errors at small and large std alike. The map is increasing, so the ranking of compositions by
uncertainty (and the Spearman correlation of σ with ``|error|``) is the raw std's.

Why not a single scale factor with unit-RMS validation z-scores: the errors are heavy-tailed
(at any std, the 95 % quantile of ``|error|`` is ~3x its 68 % quantile; 2x for a Gaussian), so
an RMS fit is dominated by the tail and ±1σ then holds 82-95 % of the errors. For the same
reason ±2σ holds only ~85-90 %; ``z95`` (also fitted on validation) is the multiplier of a
95.45 % interval: ``mean ± z95 · σ`` (2.7-4.0 instead of 2). See
``benchmarks/results/calibration.md``.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> std = rng.uniform(0.01, 0.1, 4000)
    >>> error = rng.normal(0.0, np.sqrt((3 * std) ** 2 + 0.05**2))
    >>> cal = fit_std_calibration(std, error)
    >>> bool(abs(coverage(error, calibrated_std(std, cal)) - 0.6827) < 0.03)
    True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["ONE_SIGMA", "TWO_SIGMA", "calibrated_std", "coverage", "fit_std_calibration"]

ONE_SIGMA = math.erf(1 / math.sqrt(2))
"""Share of a Gaussian within ±1σ (0.6827)."""
TWO_SIGMA = math.erf(2 / math.sqrt(2))
"""Share of a Gaussian within ±2σ (0.9545)."""
METHOD = "quantile-68: sigma = sqrt((scale * std)**2 + floor**2)"


def _checked(std: np.ndarray, error: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    std = np.asarray(std, dtype=np.float64)
    if std.ndim != 1 or not np.all(np.isfinite(std)) or np.any(std < 0):
        raise ValueError(f"Invalid std of shape {std.shape}: expected a 1-d array of finite values >= 0.")
    if error is not None:
        error = np.asarray(error, dtype=np.float64)
        if error.shape != std.shape or not np.all(np.isfinite(error)):
            raise ValueError(f"Invalid error of shape {error.shape}: expected finite values, shape {std.shape}.")
    return std, error


def calibrated_std(std: np.ndarray, calibration: dict[str, Any] | None) -> np.ndarray:
    """The calibrated σ of raw ensemble stds (``calibration`` ``None``: the raw std, a copy).

    Example:
        >>> calibrated_std(np.array([0.0, 0.1]), {"scale": 3.0, "floor": 0.4}).round(3).tolist()
        [0.4, 0.5]
    """
    std = np.asarray(std, dtype=np.float64)
    if calibration is None:
        return std.copy()
    return np.hypot(float(calibration["scale"]) * std, float(calibration["floor"]))


def coverage(error: np.ndarray, sigma: np.ndarray, k: float = 1.0) -> float:
    """Share of ``|error| <= k * sigma``."""
    return float(np.mean(np.abs(np.asarray(error)) <= k * np.asarray(sigma)))


def fit_std_calibration(std: np.ndarray, error: np.ndarray, *, quantile: float = ONE_SIGMA) -> dict[str, Any]:
    """Fit ``scale`` and ``floor`` (see the module docstring) and the 95.45 % multiplier ``z95``.

    Args:
        std: raw ensemble stds of the validation rows.
        error: prediction minus target on the same rows.
        quantile: the share of errors ``σ`` should cover (±1σ of a Gaussian by default).

    Returns:
        ``{"method", "scale", "floor", "z95", "n", "quantile"}`` (plain floats, JSON-ready).

    Raises:
        ValueError: for mismatched, non-finite or negative inputs, or fewer than 20 rows.
    """
    from scipy.optimize import minimize

    std, error = _checked(std, error)
    if len(std) < 20:
        raise ValueError(f"Invalid calibration data: {len(std)} rows; at least 20 are needed.")
    if not 0 < quantile < 1:
        raise ValueError(f"Invalid quantile={quantile!r}: expected a value in (0, 1).")
    r = np.abs(error)
    s0 = float(np.quantile(r, quantile)) or 1.0  # parameters in units of the marginal quantile
    t0 = float(np.median(std)) or 1.0

    def pinball(theta: np.ndarray) -> float:
        a, b = np.exp(theta)
        d = r - s0 * np.hypot(a * std / t0, b)
        return float(np.mean(np.maximum(quantile * d, (quantile - 1) * d)))

    starts = ([0.0, -1.0], [-1.0, -0.1], [0.5, -3.0], [-3.0, 0.0])
    best = min((minimize(pinball, np.array(x0), method="Nelder-Mead",
                         options={"xatol": 1e-7, "fatol": 1e-12, "maxiter": 5000}) for x0 in starts),
               key=lambda res: res.fun)
    a, b = np.exp(best.x)
    calibration = {"method": METHOD, "scale": float(a * s0 / t0), "floor": float(b * s0),
                   "quantile": float(quantile), "n": int(len(std))}
    z = r / calibrated_std(std, calibration)
    calibration["z95"] = float(np.quantile(z, TWO_SIGMA))
    return calibration
