"""The paper's 80-element action alphabet, in a pinned order.

The order is part of the environment's action encoding (``action = 10 * element_index
+ count``), so it must never change within a version of ``OxideComposition``: it is
atomic-number order over Z <= 83 without He, Ne, Ar, Kr, Xe, Tc, Pm, followed by Th, U,
Pu and Am.

Example:
    >>> from oxide_env.chemistry.elements import ELEMENTS, ELEMENT_INDEX, OXYGEN_INDEX
    >>> len(ELEMENTS), ELEMENTS[OXYGEN_INDEX], ELEMENT_INDEX["Fe"]
    (80, 'O', 22)
"""

from __future__ import annotations

ELEMENTS: tuple[str, ...] = (
    "H", "Li", "Be", "B", "C", "N", "O", "F", "Na", "Mg",
    "Al", "Si", "P", "S", "Cl", "K", "Ca", "Sc", "Ti", "V",
    "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As",
    "Se", "Br", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Ru", "Rh",
    "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I", "Cs", "Ba",
    "La", "Ce", "Pr", "Nd", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho",
    "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os", "Ir",
    "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Th", "U", "Pu", "Am",
)  # fmt: skip
"""The 80 element symbols; position = element index in the action encoding."""

N_ELEMENTS: int = len(ELEMENTS)
ELEMENT_INDEX: dict[str, int] = {symbol: i for i, symbol in enumerate(ELEMENTS)}
OXYGEN_INDEX: int = ELEMENT_INDEX["O"]
MAX_COUNT: int = 9
"""Largest count a single action adds (counts are 0-9)."""
