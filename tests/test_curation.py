"""Tests of predictors.curation: parsing pieces on hand-written inputs, and the shipped tables.

Nothing here reads ../shared/datasets except the ``slow`` rebuild test, which is skipped
when the raw files are absent.
"""

from __future__ import annotations

import gzip
import json
import lzma
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oxide_env.chemistry.composition import formula_to_amounts
from predictors import curation as C

DATA_DIR = Path(C.__file__).resolve().parent / "data"
TABLES = ("formation_energy", "bulk_modulus", "shear_modulus", "sintering_temperature", "calcination_temperature")


# --- formulas --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ti2O4", "TiO2"),
        ("C1Pt1", "PtC"),
        ("Li0.5Co1O2", "Li0.5CoO2"),
        ("NaN", "NaN"),  # sodium nitride, not a missing value
        ("Ba(TiO3)2", "BaTi2O6"),
        ("Fe4O6", "Fe2O3"),
    ],
)
def test_normalize_formula_canonical(raw, expected):
    nf = C.normalize_formula(raw)
    assert nf.formula == expected
    assert C.composition_key(formula_to_amounts(nf.formula)) == nf.key


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("LnO", C.R_PLACEHOLDER),
        ("M2O3", C.R_PLACEHOLDER),
        ("REO2", C.R_PLACEHOLDER),
        ("XO", C.R_PLACEHOLDER),
        ("Gd0.5Ln0.5O", C.R_PLACEHOLDER),
        ("Xe2O", C.R_OUTSIDE_ELEMENTS),
        ("TcO2", C.R_OUTSIDE_ELEMENTS),
        ("", C.R_MALFORMED_FORMULA),
        ("Fe2O3)", C.R_MALFORMED_FORMULA),
        ("Fe-2O3", C.R_MALFORMED_FORMULA),
    ],
)
def test_normalize_formula_rejects_with_reason(raw, reason):
    with pytest.raises(C.CurationError) as info:
        C.normalize_formula(raw)
    assert info.value.reason == reason


def test_composition_key_is_scale_free():
    key = lambda f: C.normalize_formula(f).key  # noqa: E731
    assert key("Li0.5CoO2") == key("LiCo2O4") == key("Li2Co4O8")
    assert key("TiO2") != key("Ti2O3")


def test_normalize_amounts_rounding_and_errors():
    a = np.zeros(80)
    a[C.ELEMENT_INDEX["Bi"]] = 0.94 * 0.5
    a[C.ELEMENT_INDEX["Na"]] = 0.94 * 0.5
    a[C.ELEMENT_INDEX["Ba"]] = 0.06
    a[C.ELEMENT_INDEX["Ti"]] = 1.0
    a[C.ELEMENT_INDEX["O"]] = 3.0
    nf = C.normalize_amounts(a)
    assert nf.formula == "Ba0.06Na0.47TiBi0.47O3"
    assert nf.has_oxygen and nf.n_elements == 5
    neg = a.copy()
    neg[C.ELEMENT_INDEX["Ti"]] = -0.5
    with pytest.raises(C.CurationError) as info:
        C.normalize_amounts(neg)
    assert info.value.reason == C.R_NEGATIVE_AMOUNT
    with pytest.raises(C.CurationError) as info:
        C.normalize_amounts(np.zeros(80))
    assert info.value.reason == C.R_EMPTY_COMPOSITION


# --- amounts and variables -----------------------------------------------------------------


def test_evaluate_amount():
    assert C.evaluate_amount("5.5-x", {"x": 0.5}) == pytest.approx(5.0)
    assert C.evaluate_amount("3 - del_O") == 3.0  # unspecified oxygen deficiency -> 0
    assert C.evaluate_amount("(1-x)/2", {"x": 0.2}) == pytest.approx(0.4)
    assert C.evaluate_amount("1.5*z+26", {"z": 2}) == pytest.approx(29.0)
    assert C.evaluate_amount("+3") == 3.0
    assert C.evaluate_amount(2) == 2.0


@pytest.mark.parametrize(
    "expr", ["2x", "x**2", "__import__('os')", "", "1/0", "5.5-x)", "a.b", "1j"]
)
def test_evaluate_amount_non_evaluable(expr):
    with pytest.raises(C.CurationError) as info:
        C.evaluate_amount(expr, {"x": 0.1, "a": 1.0})
    assert info.value.reason == C.R_AMOUNT_SYNTAX


def test_evaluate_amount_undefined_variable():
    with pytest.raises(C.CurationError) as info:
        C.evaluate_amount("100-x", {})
    assert info.value.reason == C.R_AMOUNT_UNDEFINED


def _target(elements, amount="1", avars=None, evars=None, formula="T", parts=None):
    if parts is None:
        parts = [{"formula": formula, "elements": elements, "amount": amount}]
    comp = parts
    return {
        "material_string": formula,
        "material_formula": formula,
        "composition": comp,
        "amounts_vars": avars or {},
        "elements_vars": evars or {},
        "additives": [],
    }


def _formulas(target):
    vectors, _ = C.expand_target(target)
    return [C.normalize_amounts(v).formula for v in vectors]


def test_expand_target_substitutes_each_listed_value():
    t = _target(
        {"La": "3", "Nb": "0.5", "Ga": "5.5-x", "Al": "x", "O": "14"},
        avars={"x": {"values": [0.2, 0.2, 0.5], "max_value": 0.5, "min_value": 0.2}},
        formula="La3Nb0.5Ga5.5-xAlxO14",
    )
    assert _formulas(t) == ["La3Nb0.5Al0.2Ga5.3O14", "La3Nb0.5Al0.5Ga5O14"]


def test_expand_target_zero_amount_drops_the_element():
    t = _target(
        {"La": "1-x", "Sr": "x", "Mn": "1", "O": "3"},
        avars={"x": {"values": [0.0, 0.3]}},
    )
    assert _formulas(t) == ["LaMnO3", "Sr0.3La0.7MnO3"]


def test_expand_target_two_variables_product():
    t = _target(
        {"Sr": "2-x-y", "Eu": "x", "Dy": "y", "Al": "2", "O": "5"},
        avars={"x": {"values": [0.01, 0.02]}, "y": {"values": [0.1, 0.2, 0.2]}},
    )
    assert len(C.expand_target(t)[0]) == 4


def test_expand_target_mixture_adds_parts():
    parts = [
        {
            "formula": "Bi0.5Na0.5TiO3",
            "elements": {"Bi": "0.5", "Na": "0.5", "Ti": "1", "O": "3"},
            "amount": "0.94",
        },
        {"formula": "BaTiO3", "elements": {"Ba": "1", "Ti": "1", "O": "3"}, "amount": "0.06"},
    ]
    assert _formulas(_target(None, parts=parts)) == ["Ba0.06Na0.47TiBi0.47O3"]


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        (
            _target({"Ln": "1", "Ti": "1", "Ta": "1", "O": "6"}, evars={"Ln": ["Nd", "Pr"]}),
            C.R_ELEMENT_VARIABLES,
        ),
        (_target({"M": "1", "Ba": "1", "O": "2"}), C.R_PLACEHOLDER),
        (_target({"RE": "2", "O": "3"}), C.R_PLACEHOLDER),
        (_target({"Tc": "1", "O": "2"}), C.R_OUTSIDE_ELEMENTS),
        (_target({"Si": "n", "O": "2"}, avars={"n": {"values": []}}), C.R_AMOUNT_UNDEFINED),
        (_target({"B": "2", "O": "3"}, amount="100-x"), C.R_AMOUNT_UNDEFINED),
        (_target({"Ga": "5.5-x)", "O": "3"}, avars={"x": {"values": [0.1]}}), C.R_AMOUNT_SYNTAX),
        (
            _target({"Y": "1", "Ba": "2", "Cu": "3", "O": "1 - del_O"}, formula="YBa2Cu3Oy"),
            C.R_UNSPECIFIED_OXYGEN,
        ),
        (_target(None, parts=[]), C.R_NO_TARGET),
        ("not a target", C.R_NO_TARGET),
    ],
)
def test_expand_target_skips_with_reason(target, reason):
    with pytest.raises(C.CurationError) as info:
        C.expand_target(target)
    assert info.value.reason == reason


def test_expand_target_too_many_combinations():
    many = {"values": [0.01 * i for i in range(1, 10)]}
    t = _target({"Sr": "2-x-y", "Eu": "x", "Dy": "y", "O": "2"}, avars={"x": many, "y": many})
    with pytest.raises(C.CurationError) as info:
        C.expand_target(t)
    assert info.value.reason == C.R_TOO_MANY_COMBINATIONS


# --- temperatures and the sintering step ---------------------------------------------------


def test_to_celsius():
    assert C.to_celsius(1273.15, "K") == pytest.approx(1000.0)
    assert C.to_celsius(1000, "C") == 1000.0
    assert C.to_celsius(1000, "°C") == 1000.0
    with pytest.raises(C.CurationError) as info:
        C.to_celsius(1800, "F")
    assert info.value.reason == C.R_BAD_UNITS


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("sintered", True),
        ("Sintering", True),
        ("re-sintered", True),
        ("co-sintered", True),
        ("sinter", True),
        ("pre-sintered", False),
        ("presintering", False),
        ("calcined", False),
        ("fired", False),
        ("heated", False),
        ("annealed", False),
        ("melted", False),
        (None, False),
        ("", False),
    ],
)
def test_is_sintering_token(token, expected):
    assert C.is_sintering_token(token) is expected


def _temp(values, units="C", max_value=None, min_value=None):
    if max_value is None and values:
        max_value = max(values)
    return {"values": values, "units": units, "max_value": max_value, "min_value": min_value}


def _heat(token, *temps, conditions=True):
    cond = {"heating_temperature": list(temps), "heating_time": []} if conditions else None
    return {"token": token, "type": "HeatingOperation", "conditions": cond}


def test_step_temperature_takes_the_peak():
    assert C.step_temperature(_heat("sintered", _temp([1100.0, 1150.0, 1200.0])))[0] == 1200.0
    # "heated from room temperature to 1173 K": values only hold RT, the peak is max_value
    op = _heat("sintered", _temp([26.85]), _temp([], max_value=899.85))
    assert C.step_temperature(op)[0] == pytest.approx(899.85)
    kelvin = _heat("sintered", _temp([1473.15], units="K"))
    assert C.step_temperature(kelvin)[0] == pytest.approx(1200.0)


@pytest.mark.parametrize(
    ("op", "reason"),
    [
        (_heat("sintered", _temp([], max_value=None)), C.R_EMPTY_VALUES),
        (_heat("sintered", _temp([1800.0], units="F")), C.R_BAD_UNITS),
        (_heat("sintered"), C.R_NO_TEMPERATURE),
        (_heat("sintered", conditions=False), C.R_NO_TEMPERATURE),
    ],
)
def test_step_temperature_missing(op, reason):
    t, why = C.step_temperature(op)
    assert t is None and why[reason] == 1


def _reaction(ops, target=None, doi="10.1/a"):
    if target is None:
        target = _target({"Ba": "1", "Ti": "1", "O": "3"}, formula="BaTiO3")
    return {"doi": doi, "target": target, "operations": ops}


def test_sintering_step_choice():
    mix = {"token": "mixed", "type": "Mixing", "conditions": None}
    # calcination and a later low-temperature anneal are not sintering
    ops = [
        mix,
        _heat("calcined", _temp([900.0])),
        _heat("sintered", _temp([1300.0])),
        _heat("annealed", _temp([500.0])),
    ]
    assert C.sintering_temperature_of_reaction(_reaction(ops))[0] == 1300.0
    # several sintering steps: the last in order
    ops = [_heat("sintered", _temp([1200.0])), _heat("re-sintered", _temp([1400.0]))]
    assert C.sintering_temperature_of_reaction(_reaction(ops))[0] == 1400.0
    # ... that reports a temperature
    ops = [_heat("sintered", _temp([1200.0])), _heat("sintered", conditions=False)]
    assert C.sintering_temperature_of_reaction(_reaction(ops))[0] == 1200.0
    # pre-sintering is not the sintering step
    ops = [_heat("sintered", _temp([1250.0])), _heat("pre-sintered", _temp([900.0]))]
    assert C.sintering_temperature_of_reaction(_reaction(ops))[0] == 1250.0
    # Kelvin
    ops = [_heat("sintered", _temp([1573.15], units="K"))]
    assert C.sintering_temperature_of_reaction(_reaction(ops))[0] == pytest.approx(1300.0)


@pytest.mark.parametrize(
    ("ops", "reason"),
    [
        (
            [_heat("calcined", _temp([900.0])), _heat("fired", _temp([1100.0]))],
            C.R_NO_SINTERING_STEP,
        ),
        ([], C.R_NO_SINTERING_STEP),
        ([_heat("melted", _temp([1400.0])), _heat("sintered", _temp([800.0]))], C.R_MELT),
        ([_heat("sintered", _temp([2100.0]))], C.R_OUT_OF_RANGE),
        ([_heat("sintered", _temp([150.0]))], C.R_OUT_OF_RANGE),
        ([_heat("sintered", _temp([], max_value=None))], C.R_EMPTY_VALUES),
        ([_heat("sintered", _temp([1200.0], units="F"))], C.R_BAD_UNITS),
        ("not a list", C.R_MALFORMED_REACTION),
    ],
)
def test_sintering_step_rejections(ops, reason):
    with pytest.raises(C.CurationError) as info:
        C.sintering_temperature_of_reaction(_reaction(ops))
    assert info.value.reason == reason


def _fake_reactions():
    """A tiny Kononova-like list with good and malformed entries (17 reactions)."""
    s = lambda t, **kw: [_heat("sintered", _temp([t], **kw))]  # noqa: E731
    bt = _target({"Ba": "1", "Ti": "1", "O": "3"}, formula="BaTiO3")
    lsm = _target(
        {"La": "1-x", "Sr": "x", "Mn": "1", "O": "3"},
        avars={"x": {"values": [0.2, 0.3]}},
        formula="La1-xSrxMnO3",
    )
    return [
        # BaTiO3: article a reports 1200 and 1300 (mean 1250), article b 1350 -> (1250+1350)/2
        _reaction(s(1200.0), bt, doi="10.1/A"),
        _reaction(s(1300.0), bt, doi="10.1/a"),
        _reaction(s(1623.15, units="K"), _target({"Ba": "2", "Ti": "2", "O": "6"}), doi="10.1/b"),
        # two compositions from one target with a variable
        _reaction(s(1400.0), lsm, doi="10.1/c"),
        # TiO2 reported by two articles 600 C apart -> dropped as disagreeing
        _reaction(s(900.0), _target({"Ti": "1", "O": "2"}), doi="10.1/d"),
        _reaction(s(1500.0), _target({"Ti": "1", "O": "2"}), doi="10.1/e"),
        # malformed ones, each skipped and counted
        _reaction(s(1200.0), _target({"Ga": "5.5-x)", "O": "3"}, avars={"x": {"values": [0.1]}})),
        _reaction([_heat("sintered", _temp([]))]),  # empty value list
        _reaction(s(1200.0, units="F")),  # unknown units
        _reaction(s(1200.0), _target({"M": "1", "Ti": "1", "O": "3"})),  # placeholder
        _reaction(s(1200.0), _target({"Ln": "1", "O": "2"}, evars={"Ln": ["Ce"]})),  # element vars
        _reaction(  # x = 2 makes Pb negative
            s(1200.0),
            _target({"Pb": "1-x", "La": "x", "O": "1"}, avars={"x": {"values": [2.0]}}),
        ),
        _reaction([_heat("calcined", _temp([900.0]))]),  # no sintering step
        _reaction(s(2500.0)),  # out of range
        _reaction(s(1200.0), _target({"Si": "n", "O": "2"}, avars={"n": {"values": []}})),
        "not a reaction",
        {"doi": "x", "target": None},  # no operations
    ]


def test_curate_sintering_on_fake_reactions():
    df, log = C.curate_sintering_temperature(_fake_reactions(), progress=False)
    steps = {s["step"]: s for s in log.steps}
    first = log.steps[0]
    assert first["rows_in"] == 17
    assert first["dropped"] == {
        C.R_MALFORMED_REACTION: 2,
        C.R_EMPTY_VALUES: 1,
        C.R_BAD_UNITS: 1,
        C.R_NO_SINTERING_STEP: 1,
        C.R_OUT_OF_RANGE: 1,
    }
    second = log.steps[1]
    assert second["rows_in"] == 11
    assert second["dropped"] == {
        C.R_AMOUNT_SYNTAX: 1,
        C.R_PLACEHOLDER: 1,
        C.R_ELEMENT_VARIABLES: 1,
        C.R_AMOUNT_UNDEFINED: 1,
        C.R_NO_VALID_COMPOSITION: 1,
    }
    assert second["rows_out"] == 6
    assert log.steps[2]["dropped"] == {C.R_NEGATIVE_AMOUNT: 1}
    assert log.steps[2]["rows_out"] == 7
    disagree = steps["drop compositions whose articles disagree"]
    assert disagree["dropped"] == {C.R_DISAGREEING_REPORTS: 1}
    for s in log.steps:  # every step balances
        assert s["rows_in"] - sum(s["dropped"].values()) == s["rows_out"]

    rows = df.set_index("formula")
    assert list(df.columns) == ["formula", "target", "n_reports", "target_std"]
    assert set(rows.index) == {"BaTiO3", "Sr0.2La0.8MnO3", "Sr0.3La0.7MnO3"}
    assert rows.loc["BaTiO3", "target"] == pytest.approx((1250.0 + 1350.0) / 2)
    assert rows.loc["BaTiO3", "n_reports"] == 2  # DOIs compared case-insensitively
    assert rows.loc["BaTiO3", "target_std"] == pytest.approx(50.0)
    assert rows.loc["Sr0.3La0.7MnO3", "target"] == 1400.0

    kept, _ = C.curate_sintering_temperature(_fake_reactions(), progress=False, max_report_sem=None)
    assert "TiO2" in set(kept["formula"])


# --- Materials Project tables ----------------------------------------------------------------


def _write_csv(path: Path, rows) -> Path:
    with gzip.open(path, "wt") as fh:
        fh.write("formula,target\n")
        for f, t in rows:
            fh.write(f"{f},{t}\n")
    return path


def test_curate_formation_energy(tmp_path):
    rows = [(f"Li{k}O{k + 1}", -1.0 - 0.01 * k) for k in range(1, 60)]
    rows += [
        ("Ti2O4", -3.0),
        ("Ti1O2", -3.2),  # same reduced composition: keep the lowest
        ("Ti4O8", -2.9),
        ("NaN", -0.1),  # sodium nitride survives na_filter=False
        ("O2", 0.0),  # single element
        ("Fe2", 0.1),
        ("Ln2O3", -3.0),  # placeholder
        ("Xe1F2", -1.0),  # outside the 80
        ("Mg1O1", "abc"),  # non-numeric target
        ("Ca1O1", "nan"),
        ("Sr1O1", 100.0),  # > 5 sigma
    ]
    df, log = C.curate_formation_energy(_write_csv(tmp_path / "e.csv.gz", rows))
    got = dict(zip(df["formula"], df["target"]))
    assert got["TiO2"] == -3.2
    assert "NaN" in got and "O2" not in got and "Fe" not in got and "SrO" not in got
    dropped = {}
    for s in log.steps:
        dropped.update(s["dropped"])
    assert dropped[C.R_NON_FINITE] == 2
    assert dropped[C.R_PLACEHOLDER] == 1
    assert dropped[C.R_OUTSIDE_ELEMENTS] == 1
    assert dropped[C.R_DUPLICATE] == 2
    assert dropped[C.R_SINGLE_ELEMENT] == 2
    assert dropped[C.R_OUTLIER] == 1
    assert len(df) == 59 + 2
    assert df["formula"].is_monotonic_increasing


def test_curate_modulus_ln_and_mean(tmp_path):
    rows = [
        ("Mg1O1", 2.0),
        ("Mg2O2", 2.2),
        ("Al2O3", 2.3),
        ("Si1", 2.0),
        ("Ca1O1", "inf"),
        ("Ln1O1", 2.0),
    ]
    df, log = C.curate_modulus(_write_csv(tmp_path / "k.csv.gz", rows), "bulk_modulus")
    got = dict(zip(df["formula"], df["target"]))
    assert got["MgO"] == pytest.approx(math.log(10) * 2.1)
    assert got["Al2O3"] == pytest.approx(math.log(10 ** 2.3))
    assert got["Al2O3"] == pytest.approx(2.302585093 * 2.3)
    assert "Si" in got  # single elements are kept for the moduli
    assert len(df) == 3
    assert log.steps[0]["dropped"] == {C.R_NON_FINITE: 1}


def test_curate_modulus_keeps_the_lowest_energy_polymorph(tmp_path):
    k = _write_csv(tmp_path / "k.csv.gz", [("Mg1O1", 2.179), ("Mg4O4", 2.061),  # rocksalt, another polymorph
                                           ("Al4O6", 2.2), ("Al4O6", 2.4), ("Al8O12", 2.0),  # a tie in Al4O6
                                           ("Zn1O1", 2.1), ("Zn2O2", 2.2)])  # no energies: mean
    e = _write_csv(tmp_path / "e.csv.gz", [("Mg1O1", -3.065), ("Mg1O1", -2.5), ("Mg4O4", -2.974),
                                           ("Al4O6", -3.42), ("Al8O12", -3.40), ("Ca1O1", -3.2)])
    df, log = C.curate_modulus(k, "bulk_modulus", e)
    got = dict(zip(df["formula"], df["target"]))
    assert got["MgO"] == pytest.approx(math.log(10) * 2.179)  # rocksalt's K, not the mean
    assert got["Al2O3"] == pytest.approx(math.log(10) * 2.3)  # the two Al4O6 rows, not Al8O12
    assert got["ZnO"] == pytest.approx(math.log(10) * 2.15)
    step = next(s for s in log.steps if s["step"].startswith("keep the lowest-energy"))
    assert step["dropped"] == {C.R_GROUND_STATE: 2}
    assert "1 resolved to one row, 1 whose lowest-energy cell formula holds several rows" in step["note"]
    assert "1 without a matching cell formula" in step["note"]
    plain, _ = C.curate_modulus(k, "bulk_modulus")  # without the energies: the mean of every row
    assert dict(zip(plain["formula"], plain["target"]))["MgO"] == pytest.approx(math.log(10) * 2.12)


def test_calcination_step_choice():
    mix = {"token": "mixed", "type": "Mixing", "conditions": None}
    ops = [mix, _heat("calcined", _temp([800.0])), _heat("re-calcined", _temp([950.0])),
           _heat("sintered", _temp([1300.0]))]
    assert C.heating_temperature_of_reaction(_reaction(ops), "calcination")[0] == 950.0  # the last calcination
    assert C.heating_temperature_of_reaction(_reaction(ops), "sintering")[0] == 1300.0
    ops = [_heat("pre-calcined", _temp([700.0])), _heat("sintered", _temp([1250.0]))]
    assert C.heating_temperature_of_reaction(_reaction(ops), "calcination")[0] == 700.0
    with pytest.raises(C.CurationError) as info:
        C.heating_temperature_of_reaction(_reaction([_heat("sintered", _temp([1300.0]))]), "calcination")
    assert info.value.reason == "no heating step counted as calcination"
    with pytest.raises(C.CurationError) as info:
        C.heating_temperature_of_reaction(_reaction([_heat("calcined", _temp([2500.0]))]), "calcination")
    assert info.value.reason == "calcination temperature outside 200-2000 C"
    with pytest.raises(ValueError, match="step='drying'"):
        C.heating_temperature_of_reaction(_reaction(ops), "drying")


def test_curate_calcination_on_fake_reactions():
    df, log = C.curate_calcination_temperature(_fake_reactions(), progress=False)
    assert log.name == "calcination_temperature"
    assert log.steps[0]["step"] == "calcination temperature of each reaction"
    assert df["target"].between(C.T_MIN_C, C.T_MAX_C).all()
    assert "BaTiO3" in set(df["formula"])  # the fake reactions' one calcination (900 C)
    assert dict(zip(df["formula"], df["target"]))["BaTiO3"] == 900.0


def test_curate_writes_tables_and_report(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    _write_csv(raw / C.RAW_FILES["bulk_modulus"], [("Mg1O1", 2.0), ("Al2O3", 2.3)])
    _write_csv(raw / C.RAW_FILES["formation_energy"], [("Mg1O1", -3.0), ("Al2O3", -3.4)])  # the ground-state rule
    with lzma.open(raw / C.RAW_FILES["sintering_temperature"], "wt") as fh:
        json.dump({"reactions": _fake_reactions()}, fh)
    out = tmp_path / "out"
    rc = C.main(
        [
            *("--datasets", str(raw), "--out", str(out)),
            *("--property", "bulk_modulus", "sintering_temperature", "--no-progress"),
        ]
    )
    assert rc == 0
    k = pd.read_csv(out / "bulk_modulus.csv.gz", na_filter=False)
    assert list(k.columns) == ["formula", "target"] and len(k) == 2
    s = pd.read_csv(out / "sintering_temperature.csv.gz", na_filter=False)
    assert len(s) == 3
    report = json.loads((out / "curation_report.json").read_text())
    assert set(report) == {"bulk_modulus", "sintering_temperature"}
    assert report["sintering_temperature"]["rows_out"] == 3
    assert len(report["bulk_modulus"]["sha256"]) == 64
    # a second run of one property keeps the other's report entry
    C.main(
        ["--datasets", str(raw), "--out", str(out), "--property", "bulk_modulus", "--no-progress"]
    )
    report = json.loads((out / "curation_report.json").read_text())
    assert set(report) == {"bulk_modulus", "sintering_temperature"}


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as info:
        C.main(["--help"])
    assert info.value.code == 0
    assert "--datasets" in capsys.readouterr().out


def test_missing_raw_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="--datasets"):
        C.curate(tmp_path, None, ["bulk_modulus"], verbose=False)


# --- the shipped tables ------------------------------------------------------------------------

EXPECTED_ROWS = {
    "formation_energy": (80_000, 100_000),
    "bulk_modulus": (8_500, 10_500),
    "shear_modulus": (8_500, 10_500),
    "sintering_temperature": (9_000, 14_000),
    "calcination_temperature": (8_000, 12_000),
}


def _load(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA_DIR / f"{name}.csv.gz", na_filter=False)


@pytest.mark.parametrize("name", TABLES)
def test_shipped_table(name):
    df = _load(name)
    lo, hi = EXPECTED_ROWS[name]
    assert lo <= len(df) <= hi
    assert list(df.columns[:2]) == ["formula", "target"]
    assert np.all(np.isfinite(df["target"].to_numpy(dtype=float)))
    keys = [C.composition_key(formula_to_amounts(f)) for f in df["formula"]]  # all parse
    assert len(set(keys)) == len(keys), "duplicate reduced compositions"
    assert df["formula"].is_unique


def test_shipped_value_ranges():
    e = _load("formation_energy")
    assert e["target"].between(-6, 5).all()
    assert "NaN" in set(e["formula"])  # sodium nitride kept as a formula
    for name in ("bulk_modulus", "shear_modulus"):
        m = _load(name)
        assert m["target"].between(-1, 7.5).all()  # ln(GPa); the paper's random baseline K = 4.29
        assert 3.0 < m["target"].mean() < 5.0
    s = _load("sintering_temperature")
    assert list(s.columns) == ["formula", "target", "n_reports", "target_std"]
    assert s["target"].between(C.T_MIN_C, C.T_MAX_C).all()
    assert (s["n_reports"] >= 1).all() and (s["target_std"] >= 0).all()
    assert (s.loc[s["n_reports"] == 1, "target_std"] == 0).all()
    assert 900 < s["target"].mean() < 1400
    c = _load("calcination_temperature")
    assert list(c.columns) == ["formula", "target", "n_reports", "target_std"]
    assert c["target"].between(C.T_MIN_C, C.T_MAX_C).all()
    assert 800 < c["target"].mean() < s["target"].mean()  # one calcines below the sintering temperature
    both = s.merge(c, on="formula", suffixes=("_s", "_c"))
    assert len(both) > 2000 and (both["target_c"] < both["target_s"]).mean() > 0.8


def test_shipped_report_matches_tables():
    report = json.loads((DATA_DIR / "curation_report.json").read_text())
    assert set(report) == set(TABLES)
    for name in TABLES:
        entry = report[name]
        assert entry["rows_out"] == len(_load(name))
        assert entry["steps"][-1]["rows_out"] == entry["rows_out"]
        assert entry["sha256"] == C.EXPECTED_SHA256[entry["raw_file"]]


def test_shipped_data_is_small():
    total = sum(p.stat().st_size for p in DATA_DIR.iterdir() if p.is_file())
    assert total < 5 * 2**20


# --- full rebuild from the raw files (CI has them) -------------------------------------------


@pytest.mark.slow
def test_rebuild_from_raw_matches_shipped(tmp_path):
    if not all((C.DEFAULT_DATASETS / f).is_file() for f in C.RAW_FILES.values()):
        pytest.skip(f"raw datasets not found in {C.DEFAULT_DATASETS}")
    C.curate(C.DEFAULT_DATASETS, tmp_path, progress=False, verbose=False)
    for name in TABLES:
        rebuilt = (tmp_path / f"{name}.csv.gz").read_bytes()
        shipped = (DATA_DIR / f"{name}.csv.gz").read_bytes()
        assert gzip.decompress(rebuilt) == gzip.decompress(shipped), name


def test_median_over_articles_resists_a_misread_article():
    bt = _target({"Ba": "1", "Ti": "1", "O": "3"}, formula="BaTiO3")
    reactions = [_reaction([_heat("sintered", _temp([t]))], bt, doi=doi)
                 for t, doi in ((1300.0, "10.1/a"), (1250.0, "10.1/b"), (400.0, "10.1/c"))]  # c: a nanopowder anneal
    median, _ = C.curate_sintering_temperature(reactions, progress=False, max_report_sem=None)
    mean, _ = C.curate_sintering_temperature(reactions, progress=False, max_report_sem=None, over_articles="mean")
    assert median["target"].tolist() == [1250.0] and mean["target"].tolist() == [pytest.approx(983.33, abs=0.01)]
    assert median["n_reports"].tolist() == [3]
    with pytest.raises(ValueError, match="over_articles='max'"):
        C.curate_sintering_temperature(reactions, progress=False, over_articles="max")
