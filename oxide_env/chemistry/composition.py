"""Compositions as count vectors over the 80-element alphabet, and formula strings.

A composition is a length-80 vector of amounts, one per element of
:data:`~oxide_env.chemistry.elements.ELEMENTS`. The environment works with integer
counts; predictor training data may carry fractional amounts, so the parsing helpers
come in an integer and a float flavour.

Formula strings follow pymatgen's grammar (so ``"Ba(TiO3)2"``, ``"Ba[TiO3]2"`` or
``"Fe2 O3"`` work) and are written in pymatgen's order (increasing electronegativity,
amounts of 1 omitted). The parser is this module's own, linear in the length of the string.

Every public chemistry function (validity, features, metrics) and the predictors turn
their input into amounts with :func:`as_amount_matrix` / :func:`as_count_matrix`, so one
set of rules holds everywhere:

* **Forms.** A formula string is *one* composition (``"NO"`` is nitric oxide, never the
  two materials ``"N"`` and ``"O"``); a ``{symbol: amount}`` mapping (a ``dict`` or a
  pymatgen ``Composition``) is one composition; a sequence of formulas or of mappings is
  many; a numeric array of shape ``(80,)`` or ``(n, 80)`` holds amounts in ELEMENTS order.
* **Types.** ``None``, a bare number, ``bytes`` (decode them first), complex numbers,
  sets (no order) and other objects raise ``TypeError``.
* **Limits** (documented bounds on the cost of every function):
  at most :data:`MAX_FORMULA_LENGTH` (1,000) characters per formula, at most
  :data:`MAX_ELEMENTS` (20) distinct elements per composition, every amount finite, > 0 in
  a formula or mapping (leave an absent element out; ``"Fe0O"`` raises) and at most
  :data:`MAX_AMOUNT` (``2**63 - 1``, the int64 range). Past a limit: ``ValueError``.
* **Messages** name the (truncated) value and the fix.

Example:
    >>> from oxide_env.chemistry.composition import formula_to_counts, counts_to_formula
    >>> counts = formula_to_counts("Ti2O4")
    >>> counts_to_formula(counts), counts_to_formula(counts, reduce=True)
    ('Ti2O4', 'TiO2')
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence, Set

import numpy as np

from oxide_env.chemistry.checks import describe
from oxide_env.chemistry.elements import ELEMENT_INDEX, ELEMENTS, N_ELEMENTS

__all__ = [
    "MAX_AMOUNT",
    "MAX_ELEMENTS",
    "MAX_FORMULA_LENGTH",
    "as_amount_matrix",
    "as_count_matrix",
    "counts_to_formula",
    "counts_to_formulas",
    "formula_to_amounts",
    "formula_to_counts",
    "formulas_to_amounts",
    "formulas_to_counts",
    "reduce_counts",
    "reduced_formula",
    "validate_counts",
]

MAX_FORMULA_LENGTH = 1000
"""Longest accepted formula string, in characters (the training data's longest is 66)."""
MAX_ELEMENTS = 20
"""Most distinct elements in one composition (the training data has at most 10). It bounds
the cost of every function: one composition of up to 20 elements is featurized, checked
and predicted in well under 1 s and 200 MB (see the README's "Limits")."""
MAX_AMOUNT = 2**63 - 1
"""Largest amount of one element: the int64 range, so every integer composition is a count vector."""

_FORMULA_CHARS = re.compile(r"^[A-Za-z0-9.()\[\]{}\s]+$")
_BRACKETS = str.maketrans("[]{}", "()()")
# pymatgen's grammar on the allowed characters: a symbol (capital + lower case letters) or a
# closing bracket, optional spaces, then an optional amount of digits, dots and "e".
_SYMBOL = re.compile(r"\s*([A-Z][a-z]*)\s*([.e\d]*)")
_CLOSE = re.compile(r"\s*\)\s*([.e\d]*)")
_OPEN = re.compile(r"\s*\(")
_SPACE = re.compile(r"\s*")
_DIGITS = re.compile(r"\d+")


def _electronegativity_order() -> np.ndarray:
    from pymatgen.core import Element

    keys = []
    for i, symbol in enumerate(ELEMENTS):
        x = Element(symbol).X
        keys.append((x if not math.isnan(x) else float("inf"), symbol, i))
    return np.array([i for _, _, i in sorted(keys)], dtype=np.int64)


_WRITE_ORDER = _electronegativity_order()
_WRITE_RANK = np.argsort(_WRITE_ORDER)
_WRITE_SYMBOLS = np.array(ELEMENTS)[_WRITE_ORDER]

_SUPPORTED = (
    "the 80 supported elements (Z <= 83 without noble gases, Tc and Pm, plus Th, U, Pu, Am); "
    "see oxide_env.ELEMENTS"
)


def _amount(text: str, formula: str, what: str) -> int | float:
    """An amount token: exact ``int`` for digits, ``float`` otherwise (``"0.5"``, ``"1e3"``)."""
    if not text:
        return 1
    if _DIGITS.fullmatch(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"Invalid formula={describe(formula)}: {text!r} after {what} is not a number."
        ) from None


def _parse(formula: str) -> dict[int, int | float]:
    """``{element index: amount}`` of a formula, in one left-to-right pass (linear time).

    Amounts are exact Python ints while every factor is an integer.
    """
    try:
        return _parse_groups(formula)
    except OverflowError:  # an int amount too large to multiply with a float one
        raise ValueError(
            f"Invalid formula={describe(formula)}: an amount is larger than MAX_AMOUNT={MAX_AMOUNT}."
        ) from None


def _parse_groups(formula: str) -> dict[int, int | float]:
    text = formula.translate(_BRACKETS)
    stack: list[dict[int, int | float]] = [{}]
    pos, end = 0, len(text)
    while True:
        pos = _SPACE.match(text, pos).end()
        if pos == end:
            break
        m = _SYMBOL.match(text, pos)
        if m:
            symbol = m[1]
            index = ELEMENT_INDEX.get(symbol)
            if index is None:
                raise ValueError(
                    f"Invalid formula={describe(formula)}: element {symbol!r} is not one of {_SUPPORTED}."
                )
            amount = _amount(m[2], formula, symbol)
            group = stack[-1]
            group[index] = group.get(index, 0) + amount
            pos = m.end()
            continue
        m = _OPEN.match(text, pos)
        if m:
            stack.append({})
            pos = m.end()
            continue
        m = _CLOSE.match(text, pos)
        if m:
            if len(stack) == 1:
                raise ValueError(f"Invalid formula={describe(formula)}: a ')' at character {pos} has no '('.")
            inner = stack.pop()
            if not inner:
                raise ValueError(f"Invalid formula={describe(formula)}: empty brackets at character {pos}.")
            factor = _amount(m[1], formula, "')'")
            group = stack[-1]
            for index, amount in inner.items():
                amount = group.get(index, 0) + amount * factor
                if amount > MAX_AMOUNT:  # stop early: keeps exact ints small, parsing linear
                    raise OverflowError
                group[index] = amount
            pos = m.end()
            continue
        raise ValueError(
            f"Invalid formula={describe(formula)}: cannot read {text[pos:pos + 10]!r} at character {pos}; "
            "write element symbols with a capital letter, e.g. 'Fe2O3'."
        )
    if len(stack) > 1:
        raise ValueError(f"Invalid formula={describe(formula)}: a '(' is never closed.")
    return stack[0]


def _check_amounts(parsed: Mapping[int, int | float], value: object) -> None:
    """The limits of the module docstring on one ``{element index: amount}`` mapping."""
    if not parsed:
        raise ValueError(f"Invalid composition {describe(value)}: it contains no element.")
    for index, amount in parsed.items():
        if amount > 0 and amount <= MAX_AMOUNT:
            continue
        shown = f"the amount {describe(amount)} of {ELEMENTS[index]}"
        if amount == 0:
            why = "amounts must be > 0; leave an absent element out"
        elif amount < 0:
            why = "amounts must be > 0"
        elif not math.isfinite(amount):
            why = "amounts must be finite"
        else:
            why = f"amounts must be <= MAX_AMOUNT={MAX_AMOUNT} (the int64 range)"
        raise ValueError(f"Invalid composition {describe(value)}: {shown}: {why}.")
    if len(parsed) > MAX_ELEMENTS:
        raise ValueError(
            f"Invalid composition {describe(value)}: it has {len(parsed)} distinct elements; at most "
            f"MAX_ELEMENTS={MAX_ELEMENTS} are supported (this bounds the cost of features and validity)."
        )


def formula_to_amounts(formula: str) -> np.ndarray:
    """Parse a formula string into a float amount vector over the 80 elements.

    Parsing takes time linear in the length of the formula (at most
    :data:`MAX_FORMULA_LENGTH` characters).

    Args:
        formula: a chemical formula, e.g. ``"Li0.5La0.5TiO3"`` or ``"Ba(TiO3)2"``.

    Returns:
        ``np.ndarray`` of shape ``(80,)``, dtype float64.

    Raises:
        TypeError: if ``formula`` is not a ``str`` (``bytes`` must be decoded first).
        ValueError: if the formula is empty, longer than :data:`MAX_FORMULA_LENGTH`,
            malformed, has an amount that is zero, not finite or above :data:`MAX_AMOUNT`,
            more than :data:`MAX_ELEMENTS` distinct elements, or an element outside the
            80-element set (noble gases, Tc, Pm, ...), whatever its amount.

    Example:
        >>> formula_to_amounts("Li0.5CoO2")[:8]
        array([0. , 0.5, 0. , 0. , 0. , 0. , 2. , 0. ])
    """
    amounts = np.zeros(N_ELEMENTS, dtype=np.float64)
    for index, amount in _parse_checked(formula).items():
        amounts[index] = amount
    return amounts


def _parse_checked(formula: str) -> dict[int, int | float]:
    if not isinstance(formula, str):
        hint = "; decode bytes first, e.g. formula.decode()" if isinstance(formula, (bytes, bytearray)) else ""
        raise TypeError(f"Invalid formula={describe(formula)}: expected a string such as 'Fe2O3'{hint}.")
    if len(formula) > MAX_FORMULA_LENGTH:
        raise ValueError(
            f"Invalid formula={describe(formula)}: longer than MAX_FORMULA_LENGTH={MAX_FORMULA_LENGTH} characters."
        )
    text = formula.strip()
    if not text:
        raise ValueError(f"Invalid formula={formula!r}: it is empty; give e.g. 'Fe2O3'.")
    if not _FORMULA_CHARS.match(text):
        raise ValueError(
            f"Invalid formula={describe(formula)}: only element symbols, amounts and brackets are allowed."
        )
    parsed = _parse(text)
    try:
        _check_amounts(parsed, formula)
    except ValueError as exc:
        raise ValueError(str(exc).replace("Invalid composition ", "Invalid formula=", 1)) from None
    return parsed


def formula_to_counts(formula: str) -> np.ndarray:
    """Parse a formula with integer amounts into an int64 count vector of shape ``(80,)``.

    Raises:
        TypeError, ValueError: as :func:`formula_to_amounts`, or if an amount is not an integer.

    Example:
        >>> int(formula_to_counts("Fe3O4").sum())
        7
    """
    counts = np.zeros(N_ELEMENTS, dtype=np.int64)
    for index, amount in _parse_checked(formula).items():
        if not isinstance(amount, int):
            rounded = round(amount)
            if abs(amount - rounded) > 1e-8 or rounded > MAX_AMOUNT:
                raise ValueError(
                    f"Invalid formula={describe(formula)}: amounts must be integers here (found "
                    f"{amount!r} {ELEMENTS[index]}); use formula_to_amounts for fractional compositions."
                )
            amount = rounded
        counts[index] = amount
    return counts


def formulas_to_amounts(formulas: Iterable[str]) -> np.ndarray:
    """Parse many formulas into a float matrix of shape ``(n, 80)``."""
    rows = [formula_to_amounts(f) for f in _formula_items(formulas)]
    return np.stack(rows) if rows else np.zeros((0, N_ELEMENTS))


def formulas_to_counts(formulas: Iterable[str]) -> np.ndarray:
    """Parse many integer formulas into an int64 matrix of shape ``(n, 80)``."""
    rows = [formula_to_counts(f) for f in _formula_items(formulas)]
    return np.stack(rows) if rows else np.zeros((0, N_ELEMENTS), dtype=np.int64)


def _formula_items(formulas: Iterable[str]) -> Iterable[str]:
    if isinstance(formulas, str):
        return [formulas]  # one formula, never its characters
    if isinstance(formulas, (bytes, bytearray)) or not isinstance(formulas, Iterable):
        raise TypeError(f"Invalid formulas={describe(formulas)}: expected a sequence of formula strings.")
    return formulas


_EXPECTED = (
    "expected a formula string, a {symbol: amount} dict, a sequence of those, or an amount array "
    "of shape (80,) or (n, 80) in oxide_env.ELEMENTS order"
)


def _mapping_row(mapping: Mapping, *, integer: bool) -> np.ndarray:
    """One ``{symbol: amount}`` mapping (a dict or a pymatgen ``Composition``) as an amount row."""
    parsed: dict[int, int | float] = {}
    for key, amount in mapping.items():
        symbol = key if isinstance(key, str) else getattr(key, "symbol", None)
        if not isinstance(symbol, str):
            raise TypeError(
                f"Invalid composition {describe(mapping)}: key {describe(key)} is not an element symbol "
                "such as 'Fe'."
            )
        index = ELEMENT_INDEX.get(symbol)
        if index is None:
            raise ValueError(f"Invalid composition {describe(mapping)}: {symbol!r} is not one of {_SUPPORTED}.")
        if not isinstance(amount, numbers.Real) or isinstance(amount, (bool, np.bool_)):
            raise TypeError(
                f"Invalid composition {describe(mapping)}: the amount {describe(amount)} of {symbol} is not a "
                "real number."
            )
        if integer and not float(amount).is_integer():
            raise ValueError(
                f"Invalid composition {describe(mapping)}: the amount {describe(amount)} of {symbol} must be an "
                "integer here."
            )
        parsed[index] = parsed.get(index, 0) + (int(amount) if isinstance(amount, numbers.Integral) else float(amount))
    _check_amounts(parsed, mapping)
    row = np.zeros(N_ELEMENTS, dtype=np.int64 if integer else np.float64)
    for index, amount in parsed.items():
        row[index] = amount
    return row


def _array_rows(arr: np.ndarray, value: object, *, integer: bool) -> np.ndarray:
    """Check a numeric array of shape ``(80,)`` / ``(n, 80)`` and return it as ``(n, 80)``."""
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"Invalid compositions {describe(value)}: complex amounts; give real numbers.")
    if kind not in "biuf":
        raise TypeError(f"Invalid compositions of dtype {arr.dtype}: {_EXPECTED}.")
    if arr.ndim not in (1, 2) or arr.shape[-1] != N_ELEMENTS:
        raise ValueError(
            f"Invalid compositions with shape {arr.shape}: expected (80,) or (n, 80), one entry per "
            "element of oxide_env.ELEMENTS."
        )
    rows = arr.reshape(-1, N_ELEMENTS)
    if kind == "f":
        bad = ~np.isfinite(rows)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(
                f"Invalid compositions: row {r} has {rows[r, c].item()!r} {ELEMENTS[c]}; amounts must be finite "
                "and >= 0."
            )
        if integer:
            bad = rows != np.rint(rows)
            if bad.any():
                r, c = np.argwhere(bad)[0]
                raise ValueError(
                    f"Invalid counts: row {r} has {rows[r, c].item()!r} {ELEMENTS[c]}; counts must be integers."
                )
    if kind in "if" and np.any(rows < 0):
        r, c = np.argwhere(rows < 0)[0]
        raise ValueError(
            f"Invalid {'counts' if integer else 'compositions'}: row {r} has {rows[r, c].item()!r} {ELEMENTS[c]}; "
            "amounts must be finite and >= 0 (counts must be >= 0)."
        )
    too_big = (rows > MAX_AMOUNT) if kind == "u" else (rows >= 2.0**63) if kind == "f" else None
    if too_big is not None and too_big.any():
        r, c = np.argwhere(too_big)[0]
        raise ValueError(
            f"Invalid compositions: row {r} has {rows[r, c].item()!r} {ELEMENTS[c]}; amounts must be <= "
            f"MAX_AMOUNT={MAX_AMOUNT} (the int64 range)."
        )
    n_elements = np.count_nonzero(rows, axis=1)
    if n_elements.size and n_elements.max() > MAX_ELEMENTS:
        r = int(np.argmax(n_elements > MAX_ELEMENTS))
        raise ValueError(
            f"Invalid compositions: row {r} has {n_elements[r]} distinct elements; at most "
            f"MAX_ELEMENTS={MAX_ELEMENTS} are supported (this bounds the cost of features and validity)."
        )
    if integer:
        return rows if rows.dtype == np.int64 else rows.astype(np.int64)
    return rows.astype(np.float64, copy=False)


def _as_matrix(compositions: object, *, integer: bool) -> np.ndarray:
    if isinstance(compositions, str):
        return (formulas_to_counts if integer else formulas_to_amounts)([compositions])
    if isinstance(compositions, Mapping):
        return _mapping_row(compositions, integer=integer)[None, :]
    if isinstance(compositions, np.ndarray):
        if compositions.dtype.kind == "U":
            items = compositions.reshape(-1).tolist()
            return (formulas_to_counts if integer else formulas_to_amounts)(items)
        if compositions.dtype.kind == "S":
            raise TypeError(f"Invalid compositions of dtype {compositions.dtype} (bytes): decode them to str first.")
        if compositions.dtype != object:
            return _array_rows(compositions, compositions, integer=integer)
        compositions = compositions.tolist()
    if isinstance(compositions, (bytes, bytearray, memoryview)):
        raise TypeError(f"Invalid compositions={describe(compositions)}: bytes; decode them to str first "
                        "(e.g. formula.decode()).")
    if isinstance(compositions, Set):
        raise TypeError(f"Invalid compositions={describe(compositions)}: a set has no order; pass a list.")
    if compositions is None or isinstance(compositions, (numbers.Number, np.generic)) \
            or not isinstance(compositions, Iterable):
        raise TypeError(f"Invalid compositions={describe(compositions)}: {_EXPECTED}.")
    items = list(compositions)
    if not items:
        return np.zeros((0, N_ELEMENTS), dtype=np.int64 if integer else np.float64)
    n_str = sum(isinstance(x, str) for x in items)
    if n_str == len(items):
        return (formulas_to_counts if integer else formulas_to_amounts)(items)
    if n_str:
        bad = next(x for x in items if not isinstance(x, str))
        raise ValueError(
            f"Invalid compositions: a list mixes formula strings and {describe(bad)}; give either "
            "formula strings or count vectors of length 80."
        )
    if all(isinstance(x, Mapping) for x in items):
        return np.stack([_mapping_row(x, integer=integer) for x in items])
    for x in items:
        if isinstance(x, (bytes, bytearray, memoryview, Mapping, Set)) or x is None:
            raise TypeError(f"Invalid compositions: item {describe(x)} is not a formula string or an amount row; "
                            f"{_EXPECTED}.")
    arr = _as_array(items, "compositions")
    if arr.dtype.kind in "US":
        raise TypeError(f"Invalid compositions {describe(items)}: nested formula strings; {_EXPECTED}.")
    return _array_rows(arr, items, integer=integer)


def _as_array(value: object, what: str) -> np.ndarray:
    """``np.asarray(value)``; ragged rows raise ``ValueError``, object arrays as :func:`_object_array_error`."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"Invalid {what} {describe(value)}: ragged or non-numeric rows ({exc}).") from None
    if arr.dtype == object:
        _object_array_error(arr, value)
    return arr


def _object_array_error(arr: np.ndarray, value: object) -> None:
    """Raise for an object array: Python ints beyond int64 (``ValueError``) or other objects (``TypeError``)."""
    flat = arr.reshape(-1).tolist()
    if flat and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in flat):
        big = next((v for v in flat if not -MAX_AMOUNT <= v <= MAX_AMOUNT), flat[0])
        raise ValueError(f"Invalid compositions: amount {describe(big)} does not fit int64 "
                         f"(must be <= MAX_AMOUNT={MAX_AMOUNT}).")
    raise TypeError(f"Invalid compositions {describe(value)}: {_EXPECTED}.")


def as_amount_matrix(compositions: object) -> np.ndarray:
    """Any accepted form of compositions as a float64 amount matrix ``(n, 80)``.

    The one input normaliser of the chemistry layer (see the module docstring for the forms,
    types and limits). Empty rows (all zeros) are allowed in arrays.

    Raises:
        TypeError: ``None``, numbers, ``bytes``, complex numbers, sets or other objects.
        ValueError: bad formulas, wrong shapes, negative / non-finite / too large amounts,
            more than :data:`MAX_ELEMENTS` elements in a composition.

    Example:
        >>> as_amount_matrix({"Fe": 2, "O": 3}).shape, as_amount_matrix("NO").shape
        ((1, 80), (1, 80))
    """
    return _as_matrix(compositions, integer=False)


def as_count_matrix(compositions: object) -> np.ndarray:
    """:func:`as_amount_matrix` for integer counts: an int64 matrix ``(n, 80)``.

    Raises:
        TypeError, ValueError: as :func:`as_amount_matrix`, or for non-integer amounts.

    Example:
        >>> int(as_count_matrix({"Fe": 1, "O": 5}).sum())
        6
    """
    return _as_matrix(compositions, integer=True)


def validate_counts(counts: Sequence[int] | np.ndarray, *, allow_empty: bool = True) -> np.ndarray:
    """Check a count vector or matrix and return it as int64 (same shape).

    Raises:
        TypeError: for complex, bytes, object or string arrays.
        ValueError: if the last axis is not 80 long, or counts are negative, non-integer,
            non-finite or beyond int64, a row has more than :data:`MAX_ELEMENTS` elements, or
            (with ``allow_empty=False``) a row is all zeros.
    """
    if isinstance(counts, np.ndarray):
        arr = counts
    elif isinstance(counts, (str, bytes, bytearray, Mapping, Set)) or counts is None or isinstance(counts, numbers.Number):
        raise TypeError(f"Invalid counts={describe(counts)}: expected an integer array of shape (80,) or (n, 80).")
    else:
        arr = _as_array(counts, "counts")
    if arr.dtype.kind not in "biuf":
        if arr.dtype.kind == "c":
            raise TypeError(f"Invalid counts of dtype {arr.dtype}: complex numbers; counts must be integers.")
        raise TypeError(f"Invalid counts of dtype {arr.dtype}: counts must be integers.")
    out = _array_rows(arr, counts, integer=True).reshape(arr.shape)
    if not allow_empty and np.any(out.reshape(-1, N_ELEMENTS).sum(axis=1) == 0):
        raise ValueError("Invalid counts: a composition is empty (all zeros).")
    return out


def reduce_counts(counts: np.ndarray) -> np.ndarray:
    """Divide each composition (row) by the greatest common divisor of its counts.

    Example:
        >>> from oxide_env.chemistry.composition import formula_to_counts
        >>> counts_to_formula(reduce_counts(formula_to_counts("Ti2O4")))
        'TiO2'
    """
    arr = validate_counts(counts)
    g = np.gcd.reduce(arr, axis=-1, keepdims=True)
    g[g == 0] = 1
    return arr // g


def _format_amount(x: float) -> str:
    if x == 1:
        return ""
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.8g}"


def counts_to_formula(counts: Sequence[float] | np.ndarray, *, reduce: bool = False) -> str:
    """Write a count (or amount) vector of shape ``(80,)`` as a formula string.

    Elements appear in increasing Pauling electronegativity as in pymatgen; an empty
    composition gives ``""``.

    Example:
        >>> from oxide_env.chemistry.composition import formula_to_counts
        >>> counts_to_formula(formula_to_counts("O3Ti1Ca"))
        'CaTiO3'
    """
    arr = np.asarray(counts)
    if arr.shape != (N_ELEMENTS,):
        raise ValueError(f"Invalid counts with shape {arr.shape}: expected (80,).")
    if reduce:
        arr = reduce_counts(arr)
    elif np.any(arr < 0):
        raise ValueError(f"Invalid counts: {ELEMENTS[int(np.argmin(arr))]} is negative; counts must be >= 0.")
    nonzero = np.flatnonzero(arr)
    order = nonzero[np.argsort(_WRITE_RANK[nonzero])]
    return "".join(ELEMENTS[i] + _format_amount(arr[i]) for i in order.tolist())


def counts_to_formulas(counts: np.ndarray) -> list[str]:
    """:func:`counts_to_formula` of every row of an integer ``(n, 80)`` array, vectorized (~5x faster).

    Example:
        >>> from oxide_env.chemistry.composition import formula_to_counts
        >>> counts_to_formulas(np.stack([formula_to_counts("CaTiO3"), np.zeros(80, int)]))
        ['CaTiO3', '']
    """
    arr = np.asarray(counts)
    if arr.ndim != 2 or arr.shape[1] != N_ELEMENTS or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"Invalid counts: expected an integer array (n, 80), got {arr.dtype} {arr.shape}; "
                         "use counts_to_formula for fractional amounts.")
    if arr.size and arr.min() < 0:
        raise ValueError("Invalid counts: counts must be >= 0.")
    ordered = arr[:, _WRITE_ORDER]
    rows, cols = np.nonzero(ordered)
    amounts = ordered[rows, cols].tolist()
    parts = [s if a == 1 else f"{s}{a}" for s, a in zip(_WRITE_SYMBOLS[cols].tolist(), amounts)]
    bounds = np.searchsorted(rows, np.arange(arr.shape[0] + 1)).tolist()
    return ["".join(parts[bounds[i] : bounds[i + 1]]) for i in range(arr.shape[0])]


def reduced_formula(formula_or_counts: str | Sequence[int] | np.ndarray) -> str:
    """The reduced formula (counts divided by their gcd) of a formula or count vector.

    Example:
        >>> reduced_formula("Ti2O4")
        'TiO2'
    """
    if isinstance(formula_or_counts, str):
        formula_or_counts = formula_to_counts(formula_or_counts)
    return counts_to_formula(formula_or_counts, reduce=True)
