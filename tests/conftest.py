"""Shared test set-up."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

# ElMD 0.5.x does `import pkg_resources` (never used); recent setuptools no longer ships it.
try:
    import pkg_resources  # noqa: F401
except ImportError:
    sys.modules["pkg_resources"] = types.ModuleType("pkg_resources")


def random_compositions(n: int, seed: int, *, max_elements: int = 5, max_count: int = 9) -> np.ndarray:
    """Random integer count matrix (n, 80): 1..max_elements distinct elements, counts 1..max_count."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((n, 80), dtype=np.int64)
    for r in range(n):
        k = rng.integers(1, max_elements + 1)
        counts[r, rng.choice(80, k, replace=False)] = rng.integers(1, max_count + 1, k)
    return counts


@pytest.fixture(scope="session")
def golden_oxides() -> list[str]:
    return ["MgO", "Al2O3", "CaTiO3", "Fe3O4", "BaTiO3"]
