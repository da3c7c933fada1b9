"""The fast plain-formula path of the parser gives exactly what the general parser gives."""

from __future__ import annotations

import random

import numpy as np
import pytest

from oxide_env.chemistry import composition as c
from oxide_env.chemistry.elements import ELEMENTS


def _outcome(fn, value):
    try:
        out = fn(value)
    except (TypeError, ValueError) as exc:
        return type(exc).__name__, str(exc)
    return "ok", out


def _same(a, b) -> bool:
    if a[0] != b[0]:
        return False
    if a[0] == "ok":
        return a[1].dtype == b[1].dtype and np.array_equal(a[1], b[1])
    return a[1] == b[1]


@pytest.fixture
def general(monkeypatch):
    """The public functions with both fast paths switched off: the general parser alone."""

    def run(fn, value):
        with monkeypatch.context() as m:
            m.setattr(c, "_parse_plain", lambda formula: None)
            m.setattr(c, "_fill_plain", lambda out, items, integer: list(range(len(items))))
            return _outcome(fn, value)

    return run


def test_training_formulas_identical(general):
    from predictors.data import training_formulas

    formulas = training_formulas()
    fast = c.formulas_to_amounts(formulas)
    assert _same(("ok", fast), general(c.formulas_to_amounts, formulas))
    assert _same(("ok", c.as_amount_matrix(np.array(formulas[:500]))), ("ok", fast[:500]))
    one = [c.formula_to_amounts(f) for f in formulas[::97]]
    assert np.array_equal(np.stack(one), fast[::97])


def _random_plain(rng: random.Random) -> str:
    """Plain formulas with repeated symbols, decimals, 1s and big amounts."""
    parts = []
    for _ in range(rng.randint(1, 8)):
        symbol = rng.choice(ELEMENTS[:12] + ("Xe", "Q"))
        k = rng.random()
        amount = ("" if k < 0.3 else str(rng.randint(0, 12)) if k < 0.7 else
                  f"{rng.randint(0, 3)}.{rng.randint(0, 999):03d}" if k < 0.95 else str(rng.randint(2**50, 2**63)))
        parts.append(symbol + amount)
    return "".join(parts)


def test_random_batches_identical_including_errors(general):
    rng = random.Random(0)
    junk = ["", " ", "Ba(TiO3)2", "Fe2 O3", "Fe\nO", "Fe.5", "O1e3", "Fe" * 600, "O" * 21, "Fe0O",
            "Fe0Fe2O", "Fex", "CaO\n", None, b"MgO", 3.0, "Fe9223372036854775808", "Li0.5CoO2"]
    n_ok = 0
    for _ in range(1500):
        items = [_random_plain(rng) if rng.random() < 0.85 else rng.choice(junk) for _ in range(rng.randint(0, 6))]
        for fn in (c.formulas_to_amounts, c.formulas_to_counts):
            fast = _outcome(fn, items)
            assert _same(fast, general(fn, items)), items
            n_ok += fast[0] == "ok"
        for item in items[:1]:
            for fn in (c.formula_to_amounts, c.formula_to_counts):
                assert _same(_outcome(fn, item), general(fn, item)), item
    assert n_ok > 300  # the comparison is not only of errors


def test_repeated_symbols_add_exactly():
    assert c.formula_to_counts("Fe2Fe3O")[ELEMENTS.index("Fe")] == 5
    big = c.formulas_to_counts(["Fe4611686018427387904Fe4611686018427387903", "MgO"])
    assert big[0, ELEMENTS.index("Fe")] == 2**63 - 1
    amounts = c.formulas_to_amounts(["O0.1O0.2", "MgO"])
    assert amounts[0, ELEMENTS.index("O")] == 0.1 + 0.2
    with pytest.raises(ValueError, match=r"Invalid formula='Fe0O': the amount 0 of Fe"):
        c.formulas_to_amounts(["MgO", "Fe0O"])
    with pytest.raises(ValueError, match="MAX_ELEMENTS=20"):
        c.formulas_to_amounts(["MgO", "".join(ELEMENTS[:21])])
    with pytest.raises(ValueError, match="'Xe' is not one of"):
        c.formulas_to_counts(["BaTiO3", "XeO3"])
