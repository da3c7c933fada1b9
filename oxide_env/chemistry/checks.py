"""Argument checks shared by the whole package: one number check, one way to show a bad value.

Every public function that takes a number (a weight, a threshold, a count of materials)
checks it with :func:`check_number`, so the rules and the messages are the same
everywhere: a wrong type (``None``, a string, a bool, a complex number) raises
``TypeError``, a number out of range (or NaN / infinite) raises ``ValueError``, and both
name the argument, the (truncated) value and what is expected.

Example:
    >>> check_number(0.5, "oracle_threshold", minimum=0, maximum=1)
    0.5
    >>> check_number(-1, "lam", minimum=0)
    Traceback (most recent call last):
    ...
    ValueError: Invalid lam=-1: expected a finite number >= 0.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["MAX_SHOWN", "check_number", "describe"]

MAX_SHOWN = 60
"""Error messages show at most this many characters of a bad value."""


def describe(value: object, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` cut to ``limit`` characters, saying how long a long str/bytes was.

    Example:
        >>> describe("Fe" * 500)
        "'FeFeFeFeFeFeFeFeFeFeFeFeFeFeFeFeFeFeFeFeFeFeFeFeFeFeFeFeFeFe... (1000 characters)"
    """
    if isinstance(value, (str, bytes, bytearray)) and len(value) > limit:
        return f"{value[:limit]!r}"[:-1] + f"... ({len(value)} {'characters' if isinstance(value, str) else 'bytes'})"
    if isinstance(value, (list, tuple)) and len(value) > 8:
        text = repr(value[:8])
        text = text[:-1] + f", ... ({len(value)} items)" + text[-1]
    else:
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def check_number(
    value: object,
    name: str,
    *,
    integer: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
) -> int | float:
    """Check one numeric argument and return it as a Python ``int`` (``integer=True``) or ``float``.

    Args:
        value: the argument as the user gave it.
        name: its name, used in the message (``"lam"``, ``"--n"``).
        integer: require an integer (``int`` or a numpy integer; ``2.0`` is refused).
        minimum: smallest allowed value (inclusive unless ``exclusive_minimum``).
        maximum: largest allowed value (inclusive).
        exclusive_minimum: make ``minimum`` exclusive (e.g. ``> 0``).

    Returns:
        ``int(value)`` or ``float(value)``.

    Raises:
        TypeError: ``value`` is not a real number (``None``, ``str``, ``bool``, ``complex``,
            arrays), or not an integer when ``integer=True``.
        ValueError: ``value`` is NaN, infinite or outside ``[minimum, maximum]``.

    Example:
        >>> check_number(3, "n", integer=True, minimum=1)
        3
        >>> check_number(None, "n", integer=True, minimum=1)
        Traceback (most recent call last):
        ...
        TypeError: Invalid n=None: expected an integer >= 1.
    """
    kind = "an integer" if integer else "a finite number"
    bounds = []
    if minimum is not None:
        bounds.append(f"{'>' if exclusive_minimum else '>='} {minimum:g}")
    if maximum is not None:
        bounds.append(f"<= {maximum:g}")
    expected = f"expected {kind}" + (" " + " and ".join(bounds) if bounds else "")
    is_real = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if not is_real or (integer and not isinstance(value, numbers.Integral)):
        raise TypeError(f"Invalid {name}={describe(value)}: {expected}.")
    number = int(value) if integer else float(value)
    if not integer and not math.isfinite(number):
        raise ValueError(f"Invalid {name}={describe(value)}: {expected}.")
    if minimum is not None and (number < minimum or (exclusive_minimum and number == minimum)):
        raise ValueError(f"Invalid {name}={describe(value)}: {expected}.")
    if maximum is not None and number > maximum:
        raise ValueError(f"Invalid {name}={describe(value)}: {expected}.")
    return number
