"""Compositions as count vectors over the 80-element alphabet, and formula strings.

A composition is a length-80 vector of amounts, one per element of
:data:`~oxide_env.chemistry.elements.ELEMENTS`. The environment works with integer
counts; predictor training data may carry fractional amounts, so the parsing helpers
come in an integer and a float flavour.

Formula strings follow pymatgen's grammar (so ``"Ba(TiO3)2"``, ``"Ba[TiO3]2"`` or
``"Fe2 O3"`` work) and are written in pymatgen's order (increasing electronegativity,
amounts of 1 omitted). The parser is this module's own, linear in the length of the string.
Plain formulas (element symbols with optional integer or decimal amounts: ``"BaTiO3"``,
``"Li0.5CoO2"``, ``"C1Pt1"``; all of the training data) take a fast path: one regular
expression per formula, and for a batch one lexer pass over all of them with vectorized
checks (~1-2 µs per formula instead of ~10). Anything else (brackets, spaces, exponents,
``".5"``) and every case a check flags (zero or huge amounts, unknown symbols, too many
elements) goes through the general bracket parser, which raises the
documented errors. Both paths read the same tokens and amounts, so results are identical
(tested on every training formula and on fuzzed batches; ``benchmarks/formula_speed.py``).

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
from itertools import compress, repeat

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
# The fast path: a plain formula is symbols, each with an optional amount of ASCII digits with
# at most one inner dot. Each token starts with a capital letter, so matching is linear. Where
# it matches, the general parser reads the same tokens (a symbol is followed by a digit, a
# capital or the end; an amount by a capital or the end).
_PLAIN = re.compile(r"(?:[A-Z][a-z]?(?:[0-9]+(?:\.[0-9]+)?)?)+", re.ASCII)
_PLAIN_TOKEN = re.compile(r"([A-Z][a-z]?)([0-9.]*)", re.ASCII)
# A batch of formulas is joined by newlines and lexed by one findall into flat tokens (symbols,
# amounts, newlines), each mapped to a code by one dict look-up: an element index, -1 for an
# unknown symbol, _SEPARATOR for a newline, _NUMBER (absent from the dict) for an amount.
_FLAT_TOKEN = re.compile(r"[A-Z][a-z]?|[0-9]+(?:\.[0-9]+)?|\n", re.ASCII)
_SEPARATOR = N_ELEMENTS
_NUMBER = -2
_TOKEN_CODE = {
    **{a + b: -1 for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for b in ["", *"abcdefghijklmnopqrstuvwxyz"]},
    **ELEMENT_INDEX,
    "\n": _SEPARATOR,
}
_EXACT_FLOAT = 2.0**53  # integers below it are exact floats


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


def _parse_plain(formula: str) -> dict[int, int | float] | None:
    """``{element index: amount}`` of a plain formula (see ``_PLAIN``), else ``None``.

    The same amounts as :func:`_parse`: an absent amount is 1, digits an exact ``int``, a
    decimal ``float(text)``, repeated symbols added left to right. An unknown symbol gives
    ``None`` so that the general parser raises its message.
    """
    if _PLAIN.fullmatch(formula) is None:
        return None
    parsed: dict[int, int | float] = {}
    for symbol, text in _PLAIN_TOKEN.findall(formula):
        index = ELEMENT_INDEX.get(symbol)
        if index is None:
            return None
        amount = (float(text) if "." in text else int(text)) if text else 1
        parsed[index] = parsed.get(index, 0) + amount
    return parsed


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
    parsed = _parse_plain(formula)
    if parsed is None:
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
    for index, amount in _integer_amounts(_parse_checked(formula), formula).items():
        counts[index] = amount
    return counts


def _integer_amounts(parsed: dict[int, int | float], formula: str) -> dict[int, int | float]:
    """``parsed`` with float amounts within 1e-8 of an integer rounded; other floats raise."""
    for index, amount in parsed.items():
        if not isinstance(amount, int):
            rounded = round(amount)
            if abs(amount - rounded) > 1e-8 or rounded > MAX_AMOUNT:
                raise ValueError(
                    f"Invalid formula={describe(formula)}: amounts must be integers here (found "
                    f"{amount!r} {ELEMENTS[index]}); use formula_to_amounts for fractional compositions."
                )
            parsed[index] = rounded
    return parsed


def _formula_matrix(formulas: Iterable[str], *, integer: bool) -> np.ndarray:
    """Rows of :func:`formula_to_counts` / :func:`formula_to_amounts` for many formulas.

    Plain formulas are filled together by :func:`_fill_plain`; every other row goes through
    the per-formula parser, in order, so the first bad formula raises as it would alone.
    """
    items = _formula_items(formulas)
    items = items if isinstance(items, list) else list(items)
    out = np.zeros((len(items), N_ELEMENTS), dtype=np.int64 if integer else np.float64)
    for row in _fill_plain(out, items, integer=integer):
        _fill_row(out, row, items[row], integer=integer)
    return out


def _fill_row(out: np.ndarray, row: int, formula: str, *, integer: bool) -> None:
    """``out[row]`` = :func:`formula_to_counts` / :func:`formula_to_amounts` of ``formula``."""
    parsed = _parse_checked(formula)
    if integer:
        parsed = _integer_amounts(parsed, formula)
    for index, amount in parsed.items():
        out[row, index] = amount


def _fill_plain(out: np.ndarray, items: list[str], *, integer: bool) -> list[int]:
    """Fill the rows of plain formulas in one pass over their tokens; return the other rows.

    The returned rows (ascending) are left to :func:`_fill_row`: formulas that are not plain
    or longer than :data:`MAX_FORMULA_LENGTH`, and plain ones with an unknown symbol, a zero
    amount, amounts adding up to 2**52 or more (beyond exact integer sums; int64 overflow for
    counts), more than :data:`MAX_ELEMENTS` symbols or, for counts, a decimal amount. What is
    filled here equals :func:`_fill_row` on the same formula (repeated symbols included).
    """
    try:
        text = "\n".join(items) + "\n"
    except TypeError:  # a non-string item: the per-formula parser names it
        return list(range(len(items)))
    rows_of = None  # local row -> row of items (None: the same)
    tokens = _FLAT_TOKEN.findall(text)
    codes = np.fromiter(map(_TOKEN_CODE.get, tokens, repeat(_NUMBER)), dtype=np.int64, count=len(tokens))
    if not _plain_tokens(tokens, codes, text, items):
        plain = [_PLAIN.fullmatch(f) is not None and len(f) <= MAX_FORMULA_LENGTH for f in items]
        rows_of = np.flatnonzero(plain)
        if not len(rows_of):
            return list(range(len(items)))
        text = "\n".join(compress(items, plain)) + "\n"
        tokens = _FLAT_TOKEN.findall(text)
        codes = np.fromiter(map(_TOKEN_CODE.get, tokens, repeat(_NUMBER)), dtype=np.int64, count=len(tokens))
    is_number = codes == _NUMBER
    is_separator = codes == _SEPARATOR
    is_symbol = ~(is_number | is_separator)
    numbers = list(compress(tokens, is_number.tolist()))
    if integer:
        if "." in text:  # decimal amounts in counts: rounded or refused per formula
            numbers = [t if "." not in t else "0" for t in numbers]
        numbers = [int(t) for t in numbers]
        if numbers and max(numbers) > MAX_AMOUNT:
            numbers = [v if v <= MAX_AMOUNT else 0 for v in numbers]
    else:
        numbers = [float(t) for t in numbers]
    values = np.ones(int(is_symbol.sum()), dtype=out.dtype)
    values[np.append(is_number[1:], False)[is_symbol]] = numbers
    rows = np.cumsum(is_separator)[is_symbol]
    index = codes[is_symbol]
    n_rows = int(is_separator.sum())
    slow = np.zeros(n_rows + 1, dtype=bool)
    slow[rows[(index < 0) | (values <= 0)]] = True
    # a row's amounts are added in token order (np.add.at), the same float operations as
    # Python's; while a row's total stays below 2**52 integer partial sums are exact, as in Python
    slow[:n_rows] |= np.bincount(rows, weights=values, minlength=n_rows) >= _EXACT_FLOAT / 2
    slow[:n_rows] |= np.bincount(rows, minlength=n_rows) > MAX_ELEMENTS
    fast = ~slow[rows]
    targets = rows[fast] if rows_of is None else rows_of[rows[fast]]
    np.add.at(out, (targets, index[fast]), values[fast])
    slow_rows = np.flatnonzero(slow[:n_rows])
    if rows_of is None:
        return slow_rows.tolist()
    not_plain = np.ones(len(items), dtype=bool)
    not_plain[rows_of] = False
    not_plain[rows_of[slow_rows]] = True
    return np.flatnonzero(not_plain).tolist()


def _plain_tokens(tokens: list[str], codes: np.ndarray, text: str, items: list[str]) -> bool:
    """Whether ``text`` (the ``items`` joined, newline-terminated) is all plain formulas of at
    most :data:`MAX_FORMULA_LENGTH` characters: the tokens cover it, exactly one newline ends
    each item, each formula starts with a symbol and each amount follows a symbol."""
    if not len(codes) or codes[0] == _NUMBER or codes[0] == _SEPARATOR:
        return False
    is_number = codes == _NUMBER
    is_separator = codes == _SEPARATOR
    is_symbol = ~(is_number | is_separator)
    return (
        int(is_separator.sum()) == len(items)
        and not (is_number[1:] & ~is_symbol[:-1]).any()
        and not (is_separator[1:] & is_separator[:-1]).any()
        and sum(map(len, tokens)) == len(text)
        and max(map(len, items)) <= MAX_FORMULA_LENGTH
    )


def formulas_to_amounts(formulas: Iterable[str]) -> np.ndarray:
    """Parse many formulas into a float matrix of shape ``(n, 80)`` (rows of :func:`formula_to_amounts`).

    About 2 µs per plain formula (the fast path of the module docstring).

    Example:
        >>> formulas_to_amounts(["Li0.5CoO2", "Ba(TiO3)2"]).sum(axis=1)
        array([3.5, 9. ])
    """
    return _formula_matrix(formulas, integer=False)


def formulas_to_counts(formulas: Iterable[str]) -> np.ndarray:
    """Parse many integer formulas into an int64 matrix of shape ``(n, 80)`` (rows of :func:`formula_to_counts`).

    Example:
        >>> formulas_to_counts(["BaTiO3", "Fe2O3"]).sum(axis=1)
        array([5, 5])
    """
    return _formula_matrix(formulas, integer=True)


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
