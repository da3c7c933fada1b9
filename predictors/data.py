"""The curated training tables shipped in ``predictors/data/`` (built by :mod:`predictors.curation`).

Example:
    >>> from predictors.data import load_table
    >>> table = load_table("bulk_modulus")
    >>> list(table.columns[:2])
    ['formula', 'target']
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from predictors.base import PREDICTOR_NAMES, check_name


def data_dir() -> Path:
    return Path(str(resources.files("predictors").joinpath("data")))


@lru_cache(maxsize=None)
def load_table(name: str) -> pd.DataFrame:
    """The curated table of one property: columns ``formula``, ``target`` (and extras).

    Read with ``na_filter=False`` so that the formula ``NaN`` (sodium nitride) stays a formula.
    """
    path = data_dir() / f"{check_name(name)}.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; rebuild it with `python -m predictors.curation`.")
    df = pd.read_csv(path, na_filter=False)
    df["target"] = df["target"].astype(np.float64)
    return df


def training_formulas() -> list[str]:
    """Every formula of the five training tables: the reference set for % novel."""
    formulas: list[str] = []
    for name in PREDICTOR_NAMES:
        formulas += load_table(name)["formula"].tolist()
    return formulas


@lru_cache(maxsize=1)
def training_keys() -> frozenset:
    """Reduced-composition keys of :func:`training_formulas` (computed once; pass as ``reference``)."""
    from oxide_env.chemistry.metrics import composition_keys

    return frozenset(composition_keys(training_formulas()))


@lru_cache(maxsize=1)
def known_hull():
    """The convex hull of the known compounds: the formation-energy table (lowest per composition).

    Returns an :class:`oxide_env.chemistry.hull.FormationHull` (built once, ~3 s).

    Example:
        >>> hull = known_hull()
        >>> float(hull.hull_energy(["MgO"])[0]) < -2.5
        True
    """
    from oxide_env.chemistry.hull import FormationHull

    table = load_table("formation_energy")
    return FormationHull(table["formula"].tolist(), table["target"].to_numpy())
