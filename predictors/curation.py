"""Re-runnable curation of the five predictor training tables from the raw datasets.

Builds, from the raw files described in ``predictors/DATA.md`` (Materials Project via
Matbench, and the Kononova et al. 2019 text-mined solid-state synthesis dataset):

* ``formation_energy.csv.gz``: formula, target (eV/atom);
* ``bulk_modulus.csv.gz``, ``shear_modulus.csv.gz``: formula, target (ln GPa);
* ``sintering_temperature.csv.gz``, ``calcination_temperature.csv.gz``: formula, target (°C),
  n_reports (articles), target_std (°C, over articles).

Every written formula parses with :func:`oxide_env.chemistry.composition.formula_to_amounts`
(only the project's 80 elements) and no two rows share a reduced composition. Malformed raw
entries are skipped and counted by reason, never raised; each property gets a per-step count
table (rows in, dropped per reason, rows out), printed, returned and written to
``curation_report.json``. Every rule and its justification is in ``predictors/DATA.md``.

Command line::

    python -m predictors.curation [--datasets DIR] [--out DIR] [--property NAME ...]

Example:
    >>> from predictors.curation import normalize_formula
    >>> normalize_formula("Ti2O4").formula
    'TiO2'
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import lzma
import math
import operator
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from oxide_env.chemistry.composition import counts_to_formula, formula_to_amounts
from oxide_env.chemistry.elements import ELEMENT_INDEX, N_ELEMENTS
from oxide_env.chemistry.metrics import KEY_DECIMALS, composition_keys
from oxide_env.files import sha256_file
from predictors.base import PREDICTOR_NAMES

__all__ = [
    "PROPERTIES",
    "RAW_FILES",
    "CurationError",
    "NormalizedFormula",
    "StepLog",
    "composition_key",
    "curate",
    "curate_formation_energy",
    "curate_modulus",
    "curate_sintering_temperature",
    "curate_calcination_temperature",
    "heating_temperature_of_reaction",
    "is_calcination_token",
    "evaluate_amount",
    "expand_target",
    "is_sintering_token",
    "main",
    "normalize_amounts",
    "normalize_formula",
    "sintering_temperature_of_reaction",
    "step_temperature",
    "to_celsius",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATASETS = REPO_ROOT.parent / "shared" / "datasets"
DEFAULT_OUT = Path(__file__).resolve().parent / "data"

PROPERTIES: tuple[str, ...] = PREDICTOR_NAMES

RAW_FILES: dict[str, str] = {
    "formation_energy": "mp_e_form.csv.gz",
    "bulk_modulus": "mp_log10_K_VRH.csv.gz",
    "shear_modulus": "mp_log10_G_VRH.csv.gz",
    "sintering_temperature": "kononova2019_solid-state_dataset_2019-12-03.json.xz",
    "calcination_temperature": "kononova2019_solid-state_dataset_2019-12-03.json.xz",
}
"""Raw file of each property, inside the datasets directory."""

EXPECTED_SHA256: dict[str, str] = {
    "mp_e_form.csv.gz": "5760edc988b71651cc76d334f400e0559ecdff7620841a2b59d80b403db55faf",
    "mp_log10_K_VRH.csv.gz": "ab89373ee4d45326f8757869ead531474abf3a24cf06cf2baf1f1a1f86d675ef",
    "mp_log10_G_VRH.csv.gz": "0d76896e46af29862f4fbd75e150c29d366cddf72d5206ab8f59a5c166d61d59",
    "kononova2019_solid-state_dataset_2019-12-03.json.xz": (
        "7559aafabfbe6be5ceef5cfeb5cbf046ce95f10c1ae0b3536d4e5eb427777e94"
    ),
}
"""sha256 of the raw files these tables were built from (a mismatch only warns)."""

PAPER_COUNTS: dict[str, int] = {
    "formation_energy": 68_708,
    "bulk_modulus": 9_888,
    "shear_modulus": 9_888,
    "sintering_temperature": 12_296,
    "calcination_temperature": None,  # the conference paper has no calcination table
}

LN10 = math.log(10.0)  # ln x = LN10 * log10 x  (2.302585093...)

# --- rules (documented in predictors/DATA.md) --------------------------------------------

SIGMA_CUT = 5.0
"""Formation energy: drop compounds outside mean +- SIGMA_CUT * std."""

T_MIN_C, T_MAX_C = 200.0, 2000.0
"""Sintering temperatures kept, in degrees Celsius (inclusive)."""

MAX_REPORT_SEM_C = 150.0
"""Sintering: drop a composition whose per-article mean temperatures have a standard error
(std / sqrt(n_articles)) above this: e.g. two articles more than 424 C apart."""

MAX_VARIABLE_COMBINATIONS = 64
"""Sintering: skip a target whose variable values combine into more compositions."""

AMOUNT_DECIMALS = 6
"""Amounts are rounded to this many decimals before a formula is written."""

"""Atomic fractions are rounded to this many decimals to compare reduced compositions."""

SINTERING_STEM = "sinter"
"""A HeatingOperation is a sintering step when its token contains this stem ..."""

NOT_SINTERING_PREFIXES: tuple[str, ...] = ("pre",)
"""... and does not start with one of these (pre-sintering is a pre-firing, not sintering)."""

# Reasons for dropping rows; kept as constants so tests and the report agree on the wording.
R_MALFORMED_FORMULA = "malformed formula"
R_OUTSIDE_ELEMENTS = "element outside the 80 supported elements"
R_PLACEHOLDER = "placeholder element symbol (M, Ln, RE, A, R, X, ...)"
R_NON_FINITE = "non-finite or non-numeric target"
R_SINGLE_ELEMENT = "single-element compound"
R_DUPLICATE = "duplicate reduced composition (merged)"
R_OUTLIER = "outside mean +- 5 sigma"
R_NEGATIVE_AMOUNT = "negative element amount"
R_EMPTY_COMPOSITION = "empty composition (all amounts zero)"


# --- small helpers ----------------------------------------------------------------------


class CurationError(ValueError):
    """A raw entry that must be skipped; ``reason`` is the category it is counted under."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class StepLog:
    """Per-step counts of one property's curation: rows in, dropped per reason, rows out."""

    name: str
    steps: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        step: str,
        rows_in: int,
        rows_out: int,
        dropped: Mapping[str, int] | None = None,
        unit: str = "rows",
        note: str = "",
    ) -> None:
        """Record one step; ``dropped`` maps reason -> count (zeros are omitted)."""
        entry: dict[str, Any] = {
            "step": step,
            "unit": unit,
            "rows_in": int(rows_in),
            "dropped": {k: int(v) for k, v in (dropped or {}).items() if v},
            "rows_out": int(rows_out),
        }
        if note:
            entry["note"] = note
        self.steps.append(entry)

    def to_dict(self) -> dict[str, Any]:
        return {"property": self.name, "steps": self.steps}

    def format_table(self) -> str:
        """A plain-text table of the steps (what the CLI prints)."""
        lines = [f"== {self.name} =="]
        width = 62
        for s in self.steps:
            lines.append(f"{s['step'] + ' [' + s['unit'] + ']':<{width}} in {s['rows_in']:>8,}")
            for reason, n in s["dropped"].items():
                lines.append(f"    - {reason:<{width - 6}} {n:>11,}")
            lines.append(f"{'':<{width}} out {s['rows_out']:>7,}")
            if s.get("note"):
                lines.append(f"    ({s['note']})")
        return "\n".join(lines)


sha256_of = sha256_file
"""Hex sha256 of a file (the provenance of the raw and curated tables)."""


# --- formulas and reduced compositions ---------------------------------------------------


@dataclass(frozen=True)
class NormalizedFormula:
    """A composition in the project's canonical form.

    Attributes:
        formula: canonical formula string (reduced for integer amounts; amounts rounded to
            :data:`AMOUNT_DECIMALS` decimals otherwise), parseable by ``formula_to_amounts``.
        key: hashable reduced-composition key (element index, rounded atomic fraction).
        n_elements: number of distinct elements.
        has_oxygen: whether it contains O.
    """

    formula: str
    key: tuple[tuple[int, float], ...]
    n_elements: int
    has_oxygen: bool


def composition_key(amounts: np.ndarray) -> tuple[tuple[int, float], ...]:
    """Reduced-composition key of one amount vector: :func:`oxide_env.chemistry.metrics.composition_keys`.

    Example:
        >>> from oxide_env.chemistry.composition import formula_to_amounts
        >>> key = lambda f: composition_key(formula_to_amounts(f))
        >>> key("Ti2O4") == key("TiO2")
        True
    """
    return composition_keys(np.asarray(amounts, dtype=np.float64)[None, :])[0]


def _classify_symbol(symbol: str) -> str | None:
    """None if ``symbol`` is one of the 80 elements, else the drop reason."""
    if symbol in ELEMENT_INDEX:
        return None
    from pymatgen.core import Element

    if Element.is_valid_symbol(symbol) and symbol not in ("D", "T"):
        return R_OUTSIDE_ELEMENTS
    return R_PLACEHOLDER


def _classify_formula_error(formula: str) -> str:
    """Why ``formula_to_amounts`` rejected ``formula`` (one of the R_* reasons)."""
    from pymatgen.core import Composition, Element

    try:
        comp = Composition(str(formula).strip())
    except Exception:
        return R_MALFORMED_FORMULA
    reasons = set()
    for species in comp:
        if not isinstance(species, Element):
            reasons.add(R_PLACEHOLDER)
        else:
            r = _classify_symbol(species.symbol)
            if r:
                reasons.add(r)
    if R_PLACEHOLDER in reasons:
        return R_PLACEHOLDER
    if R_OUTSIDE_ELEMENTS in reasons:
        return R_OUTSIDE_ELEMENTS
    return R_MALFORMED_FORMULA


def normalize_amounts(amounts: np.ndarray) -> NormalizedFormula:
    """Canonical formula and reduced-composition key of an amount vector of shape ``(80,)``.

    Integer amounts are divided by their gcd (``Ti2O4`` -> ``TiO2``); fractional amounts
    are rounded to :data:`AMOUNT_DECIMALS` decimals and written as they are
    (``Li0.5CoO2``). The key is computed from the written formula re-parsed, so the
    formula and the key always agree.

    Raises:
        CurationError: negative amounts, or nothing left after rounding.
    """
    a = np.asarray(amounts, dtype=np.float64)
    if a.shape != (N_ELEMENTS,) or not np.all(np.isfinite(a)):
        raise CurationError(R_MALFORMED_FORMULA, "amounts must be 80 finite numbers")
    if np.any(a < -(10.0**-AMOUNT_DECIMALS)):
        raise CurationError(R_NEGATIVE_AMOUNT, str({i: a[i] for i in np.flatnonzero(a < 0)}))
    a = np.round(np.clip(a, 0.0, None), AMOUNT_DECIMALS)
    if not np.any(a > 0):
        raise CurationError(R_EMPTY_COMPOSITION)
    ints = np.rint(a)
    if np.all(np.abs(a - ints) < 10.0 ** -(AMOUNT_DECIMALS + 2)):
        formula = counts_to_formula(ints.astype(np.int64), reduce=True)
    else:
        formula = counts_to_formula(a)
    parsed = formula_to_amounts(formula)  # the contract: every written formula parses
    key = composition_key(parsed)
    return NormalizedFormula(
        formula=formula,
        key=key,
        n_elements=len(key),
        has_oxygen=bool(parsed[ELEMENT_INDEX["O"]] > 0),
    )


def normalize_formula(formula: str) -> NormalizedFormula:
    """Parse a raw formula string and return its canonical form.

    Raises:
        CurationError: with ``reason`` one of malformed formula / element outside the 80 /
            placeholder element symbol / negative or empty amounts.

    Example:
        >>> normalize_formula("C1Pt1").formula, normalize_formula("Li0.5Co1O2").formula
        ('PtC', 'Li0.5CoO2')
    """
    try:
        amounts = formula_to_amounts(formula)
    except ValueError as exc:
        raise CurationError(_classify_formula_error(formula), str(exc)) from None
    return normalize_amounts(amounts)


# --- Materials Project tables --------------------------------------------------------------


def _read_formula_target_csv(path: Path) -> pd.DataFrame:
    # na_filter=False: the formula "NaN" (sodium nitride) must stay a string.
    return pd.read_csv(path, na_filter=False, dtype=str, keep_default_na=False)


def _normalize_rows(
    df: pd.DataFrame, log: StepLog, *, transform: Callable[[float], float] | None = None
) -> pd.DataFrame:
    """Parse targets and formulas of a formula,target table; log the drops.

    Returns a frame with columns formula, key, n_elements, target, raw (the raw formula
    string; one row per raw row).
    """
    n0 = len(df)
    dropped: Counter[str] = Counter()
    if not {"formula", "target"} <= set(df.columns):
        raise ValueError(f"expected columns formula,target; got {list(df.columns)}")
    target = pd.to_numeric(df["target"], errors="coerce").to_numpy(dtype=np.float64)
    if transform is not None:
        with np.errstate(all="ignore"):
            target = transform(target)
    ok = np.isfinite(target)
    dropped[R_NON_FINITE] = int((~ok).sum())
    df = pd.DataFrame({"raw": df["formula"].to_numpy()[ok], "target": target[ok]})
    log.add("parse target", n0, len(df), dropped)

    cache: dict[str, NormalizedFormula | str] = {}
    for raw in pd.unique(df["raw"]):
        try:
            cache[raw] = normalize_formula(raw)
        except CurationError as exc:
            cache[raw] = exc.reason
    dropped = Counter()
    rows = []
    for raw, t in zip(df["raw"], df["target"]):
        nf = cache[raw]
        if isinstance(nf, str):
            dropped[nf] += 1
            continue
        rows.append((nf.formula, nf.key, nf.n_elements, t, raw))
    out = pd.DataFrame(rows, columns=["formula", "key", "n_elements", "target", "raw"])
    log.add("parse formula (80 elements only)", len(df), len(out), dropped)
    return out


def _representative_formula(formulas: Iterable[str]) -> str:
    """Deterministic choice among formulas of one reduced composition: shortest, then A-Z."""
    return min(formulas, key=lambda f: (len(f), f))


def curate_formation_energy(path: Path) -> tuple[pd.DataFrame, StepLog]:
    """Formation energy per atom (eV/atom), paper Appendix A.1.

    Order: parse -> keep the lowest energy per reduced composition -> drop single-element
    compounds -> drop values outside mean +- 5 sigma (mean and sigma over the compounds
    left after the previous steps).
    """
    log = StepLog("formation_energy")
    df = _normalize_rows(_read_formula_target_csv(path), log)

    n = len(df)
    df = df.sort_values(["target", "formula"], kind="mergesort")
    best = df.drop_duplicates("key", keep="first")
    log.add(
        "keep lowest energy per reduced composition",
        n,
        len(best),
        {R_DUPLICATE: n - len(best)},
        note="rows of one reduced composition (polymorphs, cell multiples) -> the most stable",
    )
    df = best

    n = len(df)
    df = df[df["n_elements"] > 1]
    log.add(
        "drop single-element compounds",
        n,
        len(df),
        {R_SINGLE_ELEMENT: n - len(df)},
        unit="compounds",
    )

    n = len(df)
    mu, sigma = float(df["target"].mean()), float(df["target"].std(ddof=0))
    lo, hi = mu - SIGMA_CUT * sigma, mu + SIGMA_CUT * sigma
    df = df[(df["target"] >= lo) & (df["target"] <= hi)]
    log.add(
        "drop outside mean +- 5 sigma",
        n,
        len(df),
        {R_OUTLIER: n - len(df)},
        unit="compounds",
        note=f"mean={mu:.4f}, sigma={sigma:.4f} eV/atom -> keep [{lo:.3f}, {hi:.3f}]",
    )
    return _finish(df[["formula", "target"]]), log


R_GROUND_STATE = "other polymorph (not the lowest-energy cell formula)"


def curate_modulus(path: Path, name: str, formation_energy_path: Path | None = None
                   ) -> tuple[pd.DataFrame, StepLog]:
    """Bulk or shear modulus in ln(GPa) from Matbench's log10(GPa) (paper Appendix A.1).

    Several structures of one reduced composition -> **the lowest-energy polymorph**, found
    through the cell formula: Matbench writes each structure's unreduced cell formula
    (``Mg1O1`` is rocksalt MgO, ``Mg4O4`` a 4-formula-unit cell of another polymorph), and the
    formation-energy table of the same Materials Project snapshot uses the same strings. Each
    elastic row gets the lowest formation energy of its cell formula in
    ``formation_energy_path``; the rows whose cell formula has the lowest energy of the
    composition are kept, and the label is the mean of their ln values (several rows when one
    cell formula holds several polymorphs: then the energy cannot tell them apart). A
    composition with no cell formula in the energy table falls back to the mean over its rows
    (the geometric mean modulus), as does every composition when ``formation_energy_path`` is
    None. Single-element compounds are kept (the paper names that filter only for the
    formation energies, and elements are valid compositions here).

    Example: MgO has the rows ``Mg1O1`` (K = 151, G = 119 GPa; E_f -3.065 eV/atom) and
    ``Mg4O4`` (K = 115, G = 48; E_f -2.974): the label is rocksalt's 151 / 119 GPa, where the
    mean gave 132 / 75 (experiment: 162 / 131).
    """
    log = StepLog(name)
    df = _normalize_rows(_read_formula_target_csv(path), log, transform=lambda t: LN10 * t)
    n = len(df)
    if formation_energy_path is not None:
        energies = _read_formula_target_csv(formation_energy_path)
        energy = pd.to_numeric(energies["target"], errors="coerce")
        lowest = energy.groupby(energies["formula"].to_numpy()).min()
        df["energy"] = df["raw"].map(lowest).astype(float)
        best = df.groupby("key", sort=False)["energy"].transform("min")
        has_energy = best.notna()
        keep = ~has_energy | (df["energy"] == best)
        several = df[df.groupby("key", sort=False)["key"].transform("size") > 1]
        at_lowest = (several["energy"] == best[several.index]).groupby(several["key"]).sum()
        matched = several["energy"].notna().groupby(several["key"]).any()
        n_resolved = int(((at_lowest == 1) & matched).sum())
        n_tied = int(((at_lowest > 1) & matched).sum())
        n_unmatched = int((~matched).sum())
        df = df[keep]
        log.add(
            "keep the lowest-energy polymorph per reduced composition",
            n,
            len(df),
            {R_GROUND_STATE: n - len(df)},
            note=f"cell formulas matched in {formation_energy_path.name}; compositions with several rows: "
            f"{n_resolved:,} resolved to one row, {n_tied:,} whose lowest-energy cell formula holds several rows "
            f"(their mean), {n_unmatched:,} without a matching cell formula (mean of all rows)",
        )
        n = len(df)
    grouped = df.groupby("key", sort=False).agg(
        formula=("formula", _representative_formula), target=("target", "mean")
    )
    log.add(
        "mean of ln(modulus) per reduced composition",
        n,
        len(grouped),
        {R_DUPLICATE: n - len(grouped)},
        note="converted with ln x = 2.302585093 * log10 x",
    )
    return _finish(grouped.reset_index()[["formula", "target"]]), log


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values("formula", kind="mergesort").reset_index(drop=True)


# --- Kononova et al. (2019) sintering temperatures -----------------------------------------


_BIN_OPS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_UNARY_OPS: dict[type, Callable[[float], float]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}

R_AMOUNT_SYNTAX = "amount expression does not evaluate"
R_AMOUNT_UNDEFINED = "amount uses a variable without listed values"

OXYGEN_DEFICIENCY_VARIABLE = "del_O"
"""Kononova's placeholder for an unspecified oxygen non-stoichiometry; taken as 0."""


def evaluate_amount(expression: Any, variables: Mapping[str, float] | None = None) -> float:
    """Evaluate a Kononova amount expression such as ``"5.5-x"`` or ``"3 - del_O"``.

    Only numbers, variables, ``+ - * /`` and parentheses are allowed (no ``eval``).
    ``del_O`` (unspecified oxygen deficiency) evaluates to 0.

    Raises:
        CurationError: ``R_AMOUNT_SYNTAX`` if it does not parse or divides by zero,
            ``R_AMOUNT_UNDEFINED`` if it uses a variable missing from ``variables``.

    Example:
        >>> evaluate_amount("5.5-x", {"x": 0.5}), evaluate_amount("3 - del_O")
        (5.0, 3.0)
    """
    if isinstance(expression, bool):
        raise CurationError(R_AMOUNT_SYNTAX, repr(expression))
    if isinstance(expression, (int, float)):
        value = float(expression)
    else:
        text = str(expression).strip()
        if not text:
            raise CurationError(R_AMOUNT_SYNTAX, "empty amount")
        try:
            tree = ast.parse(text, mode="eval")
        except (SyntaxError, ValueError):
            raise CurationError(R_AMOUNT_SYNTAX, repr(text)) from None
        env = {OXYGEN_DEFICIENCY_VARIABLE: 0.0, **(variables or {})}
        value = _eval_node(tree.body, env, text)
    if not math.isfinite(value):
        raise CurationError(R_AMOUNT_SYNTAX, f"{expression!r} is not finite")
    return value


def _eval_node(node: ast.AST, env: Mapping[str, float], text: str) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(
        node.value, bool
    ):
        return float(node.value)
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise CurationError(R_AMOUNT_UNDEFINED, f"{node.id!r} in {text!r}")
        return float(env[node.id])
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN_OPS:
        left, right = _eval_node(node.left, env, text), _eval_node(node.right, env, text)
        try:
            return _BIN_OPS[type(node.op)](left, right)
        except ZeroDivisionError:
            raise CurationError(R_AMOUNT_SYNTAX, f"division by zero in {text!r}") from None
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY_OPS:
        return _UNARY_OPS[type(node.op)](_eval_node(node.operand, env, text))
    raise CurationError(R_AMOUNT_SYNTAX, repr(text))


def _expression_names(expression: Any) -> set[str]:
    """Variable names used in an amount expression (empty if it does not parse)."""
    if not isinstance(expression, str):
        return set()
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError):
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - {OXYGEN_DEFICIENCY_VARIABLE}


# Reasons a target yields no composition (counted per reaction).
R_ELEMENT_VARIABLES = "target has element variables (elements_vars)"
R_NO_TARGET = "no target composition"
R_TOO_MANY_COMBINATIONS = f"more than {MAX_VARIABLE_COMBINATIONS} variable combinations"
R_UNSPECIFIED_OXYGEN = "oxygen index unspecified (Ox, Oy, Oz, Oδ)"
_UNSPECIFIED_OXYGEN = re.compile(r"O[xyzwnδ](?![a-z])")
"""``YBa2Cu3Oy``: the text-miner turns such an oxygen index into ``1 - del_O`` (or into
another variable's value), a wrong composition, so these targets are skipped."""


def _variable_assignments(
    target: Mapping[str, Any], names: set[str]
) -> list[dict[str, float]]:
    """Concrete variable assignments of a target: the listed values of each used variable.

    One variable: each distinct listed value is one composition. Several variables: every
    combination of their distinct values (the Kononova files list each variable's values
    separately, so the pairing is unknown). Variables with no listed value raise.
    """
    if not names:
        return [{}]
    avars = target.get("amounts_vars") or {}
    if not isinstance(avars, Mapping):
        raise CurationError(R_AMOUNT_UNDEFINED, "amounts_vars is not a mapping")
    per_var: list[list[float]] = []
    ordered = sorted(names)
    for name in ordered:
        spec = avars.get(name)
        values = spec.get("values") if isinstance(spec, Mapping) else None
        clean: list[float] = []
        for v in values or []:
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                if float(v) not in clean:
                    clean.append(float(v))
        if not clean:
            raise CurationError(R_AMOUNT_UNDEFINED, f"variable {name!r} has no listed value")
        per_var.append(clean)
    n_comb = math.prod(len(v) for v in per_var)
    if n_comb > MAX_VARIABLE_COMBINATIONS:
        raise CurationError(R_TOO_MANY_COMBINATIONS, f"{n_comb} combinations")
    return [dict(zip(ordered, combo)) for combo in itertools.product(*per_var)]


def expand_target(target: Mapping[str, Any]) -> tuple[list[np.ndarray], Counter[str]]:
    """Concrete amount vectors of a Kononova target, one per variable assignment.

    The composition is ``sum_c amount_c * elements_c`` over the target's ``composition``
    list (mixtures such as ``0.94(Bi0.5Na0.5TiO3)-0.06BaTiO3`` add up), with the listed
    values of the variables substituted. Dopants in ``additives`` are not part of it.
    Targets with element variables (``elements_vars``: ``LnBa2Cu3O7``) or an oxygen index
    written as a bare variable (``YBa2Cu3Oy``) are skipped.

    Returns:
        (amount vectors, Counter of reasons for the assignments that failed). Failures of
        the whole target (element variables, no composition, variables without values,
        unknown element symbols) are raised.

    Raises:
        CurationError: when no assignment can give a composition.
    """
    if not isinstance(target, Mapping):
        raise CurationError(R_NO_TARGET, "target is not a mapping")
    if target.get("elements_vars"):
        raise CurationError(R_ELEMENT_VARIABLES)
    written = " ".join(str(target.get(k) or "") for k in ("material_formula", "material_string"))
    if _UNSPECIFIED_OXYGEN.search(written):
        raise CurationError(R_UNSPECIFIED_OXYGEN, written)
    parts = target.get("composition")
    if not isinstance(parts, list) or not parts:
        raise CurationError(R_NO_TARGET)
    names: set[str] = set()
    symbols: set[str] = set()
    for part in parts:
        if not isinstance(part, Mapping) or not isinstance(part.get("elements"), Mapping):
            raise CurationError(R_NO_TARGET, "composition part without elements")
        names |= _expression_names(part.get("amount", "1"))
        for symbol, expr in part["elements"].items():
            symbols.add(str(symbol))
            names |= _expression_names(expr)
    bad = {_classify_symbol(s) for s in symbols} - {None}
    if bad:
        reason = R_PLACEHOLDER if R_PLACEHOLDER in bad else R_OUTSIDE_ELEMENTS
        raise CurationError(reason, str(sorted(symbols)))
    assignments = _variable_assignments(target, names)
    vectors: list[np.ndarray] = []
    failures: Counter[str] = Counter()
    for env in assignments:
        try:
            a = np.zeros(N_ELEMENTS)
            for part in parts:
                mult = evaluate_amount(part.get("amount", "1"), env)
                for symbol, expr in part["elements"].items():
                    a[ELEMENT_INDEX[symbol]] += mult * evaluate_amount(expr, env)
            vectors.append(a)
        except CurationError as exc:
            failures[exc.reason] += 1
    if not vectors:
        raise CurationError(next(iter(failures)) if failures else R_NO_TARGET)
    return vectors, failures


# Temperature handling --------------------------------------------------------------------

R_NO_SINTERING_STEP = "no heating step counted as sintering"
R_NO_TEMPERATURE = "sintering steps report no temperature"
R_EMPTY_VALUES = "sintering steps only have empty value lists"
R_BAD_UNITS = "sintering temperature in units other than C/K"
R_OUT_OF_RANGE = f"sintering temperature outside {T_MIN_C:.0f}-{T_MAX_C:.0f} C"
R_MALFORMED_REACTION = "malformed reaction record"
R_MELT = "melt-quench recipe (a heating step melts)"

_CELSIUS_UNITS = {"c", "°c", "ºc", "degc", "deg c", "celsius", "oc", "℃"}
_KELVIN_UNITS = {"k", "kelvin"}


def to_celsius(value: float, units: str) -> float:
    """Convert a temperature in ``units`` (C or K, as the Kononova file tags them) to C.

    Raises:
        CurationError: ``R_BAD_UNITS`` for any other unit.

    Example:
        >>> to_celsius(1473.15, "K"), to_celsius(1000, "C")
        (1200.0, 1000.0)
    """
    u = str(units).strip().lower()
    if u in _CELSIUS_UNITS:
        return float(value)
    if u in _KELVIN_UNITS:
        return float(value) - 273.15
    raise CurationError(R_BAD_UNITS, repr(units))


def is_sintering_token(token: Any) -> bool:
    """Whether a HeatingOperation with this token counts as a sintering step.

    It does when the lower-cased token contains ``"sinter"`` ("sintered", "sintering",
    "re-sintered", "co-sintered", ...) and does not start with ``"pre"`` ("pre-sintered",
    "presintering" are pre-firings). Calcination, "heated", "fired", "annealed", ... do
    not count: on this dataset they carry much noisier temperatures (predictors/DATA.md).

    Example:
        >>> [is_sintering_token(t) for t in ("sintered", "re-sintered", "fired", "pre-sintered")]
        [True, True, False, False]
    """
    if not isinstance(token, str):
        return False
    t = token.strip().lower()
    return SINTERING_STEM in t and not t.startswith(NOT_SINTERING_PREFIXES)


CALCINATION_STEM = "calcin"
"""A HeatingOperation is a calcination step when its token contains this stem ("calcined",
"calcination", "calcinated", "pre-calcined", "re-calcined", ...)."""


def is_calcination_token(token: Any) -> bool:
    """Whether a HeatingOperation with this token counts as a calcination step.

    Pre- and re-calcinations count (unlike pre-sintering): the last calcination step of a
    recipe is its final calcination, and a recipe whose only calcination is called
    "pre-calcined" (before a sintering) calcines there.

    Example:
        >>> [is_calcination_token(t) for t in ("calcined", "pre-calcined", "sintered", "calcified")]
        [True, True, False, False]
    """
    return isinstance(token, str) and CALCINATION_STEM in token.strip().lower()


HEATING_STEPS: dict[str, Callable[[Any], bool]] = {
    "sintering": is_sintering_token,
    "calcination": is_calcination_token,
}
"""The heating steps a temperature table can be built from, with the token rule of each."""


def _for_step(reason: str, step: str) -> str:
    """A sintering reason string, reworded for another heating step."""
    return reason if step == "sintering" else reason.replace("sintering", step)


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def step_temperature(operation: Mapping[str, Any]) -> tuple[float | None, Counter[str]]:
    """The temperature (C) of one heating step, or None with the reasons it has none.

    A step can list several temperature entries (``heating_temperature``), each with
    several ``values`` ("sintered at 1100, 1150 and 1200 C", "heated from 25 C to 900 C",
    "1173 K (900 C)"). The step's temperature is the highest one: its peak (dwell)
    temperature, which is what "sintering temperature" means; room temperatures and
    cooling or ramp end points are below it. An entry with an empty value list but a
    ``max_value`` contributes its max_value (the text-miner stores "up to 1650 C" so);
    one with neither is skipped, as are entries in units other than C/K.
    """
    reasons: Counter[str] = Counter()
    conditions = operation.get("conditions") if isinstance(operation, Mapping) else None
    entries = conditions.get("heating_temperature") if isinstance(conditions, Mapping) else None
    if not entries or not isinstance(entries, list):
        reasons[R_NO_TEMPERATURE] += 1
        return None, reasons
    temps: list[float] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            reasons[R_NO_TEMPERATURE] += 1
            continue
        values = [v for v in (_number(x) for x in entry.get("values") or []) if v is not None]
        mx = _number(entry.get("max_value"))
        if mx is not None:
            values.append(mx)
        if not values:
            reasons[R_EMPTY_VALUES] += 1
            continue
        try:
            temps.extend(to_celsius(v, entry.get("units", "")) for v in values)
        except CurationError as exc:
            reasons[exc.reason] += 1
    if not temps:
        return None, reasons
    return max(temps), Counter()


def heating_temperature_of_reaction(
    reaction: Mapping[str, Any], step: str = "sintering"
) -> tuple[float, Mapping[str, Any]]:
    """The temperature (C) of a reaction's ``step`` (``"sintering"`` or ``"calcination"``).

    The steps are the HeatingOperations accepted by the step's token rule
    (:data:`HEATING_STEPS`); the last of them in order that reports a usable temperature is
    taken (the paper, for sintering: "if sintering occurred more than once in a recipe, the
    last operation in chronological order was taken"; for calcination the last one is the
    final calcination). A recipe that also melts (a heating step whose token starts with
    ``melt``) is a melt-quench (glass, glass-ceramic) route and is rejected.

    Raises:
        CurationError: no such step; or such steps without a usable temperature (the most
            specific reason); or the temperature outside 200-2000 C.
        ValueError: an unknown ``step``.
    """
    if step not in HEATING_STEPS:
        raise ValueError(f"Invalid step={step!r}: expected one of {sorted(HEATING_STEPS)}.")
    operations = reaction.get("operations")
    if not isinstance(operations, list):
        raise CurationError(R_MALFORMED_REACTION, "operations is not a list")
    heating = [
        op
        for op in operations
        if isinstance(op, Mapping) and op.get("type") == "HeatingOperation"
    ]
    chosen = [op for op in heating if HEATING_STEPS[step](op.get("token"))]
    if not chosen:
        raise CurationError(_for_step(R_NO_SINTERING_STEP, step))
    if any(str(op.get("token", "")).strip().lower().startswith("melt") for op in heating):
        raise CurationError(R_MELT)
    reasons: Counter[str] = Counter()
    for op in reversed(chosen):
        t, why = step_temperature(op)
        if t is not None:
            if not (T_MIN_C <= t <= T_MAX_C):
                raise CurationError(_for_step(R_OUT_OF_RANGE, step), f"{t:.1f} C")
            return t, op
        reasons.update(why)
    for reason in (R_BAD_UNITS, R_EMPTY_VALUES, R_NO_TEMPERATURE):
        if reasons[reason]:
            raise CurationError(_for_step(reason, step))
    raise CurationError(_for_step(R_NO_TEMPERATURE, step))


def sintering_temperature_of_reaction(
    reaction: Mapping[str, Any],
) -> tuple[float, Mapping[str, Any]]:
    """The sintering temperature (C) of a reaction and the operation it comes from
    (:func:`heating_temperature_of_reaction` with ``step="sintering"``)."""
    return heating_temperature_of_reaction(reaction, "sintering")


def load_kononova(path: Path) -> list[dict[str, Any]]:
    """The ``reactions`` list of the Kononova json(.xz) file."""
    opener = lzma.open if str(path).endswith(".xz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    reactions = data.get("reactions") if isinstance(data, Mapping) else data
    if not isinstance(reactions, list):
        raise ValueError(f"{path}: no 'reactions' list")
    return reactions


R_NO_VALID_COMPOSITION = "every composition invalid (negative or zero amounts)"
R_DISAGREEING_REPORTS = f"articles disagree (std/sqrt(n) > {MAX_REPORT_SEM_C:.0f} C)"


def curate_sintering_temperature(
    reactions: Sequence[Mapping[str, Any]] | Path,
    *,
    progress: bool = True,
    max_report_sem: float | None = MAX_REPORT_SEM_C,
    step: str = "sintering",
    over_articles: str = "median",
) -> tuple[pd.DataFrame, StepLog]:
    """Sintering (or, with ``step="calcination"``, calcination) temperature (C) per reduced
    composition from Kononova et al. (2019).

    Steps (all counted in the returned log):

    1. per reaction: the sintering temperature (:func:`sintering_temperature_of_reaction`:
       sintering steps, last one with a temperature, its peak, K -> C, 200-2000 C);
    2. per reaction: the concrete target compositions (:func:`expand_target`: skip element
       variables, substitute each listed value of the amount variables);
    3. per composition: the canonical formula (80 elements only, reduced);
    4. average per reduced composition: the mean within an article (DOI), then the
       ``over_articles`` aggregate (default the median: a few articles' mis-read
       "sintering" steps, e.g. 400-600 C heat treatments of ZnO nanopowders, pull a mean down
       but not a median); ``n_reports`` is the number of articles, ``target_std`` the
       standard deviation over articles (0 for one);
    5. drop compositions whose articles disagree: standard error of the per-article
       means (``target_std / sqrt(n_reports)``) above :data:`MAX_REPORT_SEM_C`, unless
       ``max_report_sem`` is None.

    Args:
        reactions: the reactions list, or a path to the Kononova json(.xz) file.
        progress: show a tqdm progress bar over the reactions.
        max_report_sem: the disagreement cut of step 5 in C (None keeps everything).
        over_articles: ``"median"`` or ``"mean"`` of the per-article temperatures.
        step: the heating step whose temperature is tabulated (:data:`HEATING_STEPS`).
    """
    if step not in HEATING_STEPS:
        raise ValueError(f"Invalid step={step!r}: expected one of {sorted(HEATING_STEPS)}.")
    if over_articles not in ("median", "mean"):
        raise ValueError(f"Invalid over_articles={over_articles!r}: expected 'median' or 'mean'.")
    if isinstance(reactions, (str, Path)):
        reactions = load_kononova(Path(reactions))
    log = StepLog(f"{step}_temperature")
    iterator: Iterable[Any] = reactions
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(reactions, desc="Kononova reactions", unit="rxn", file=sys.stderr)

    temp_drops: Counter[str] = Counter()
    comp_drops: Counter[str] = Counter()
    assignment_drops: Counter[str] = Counter()
    formula_drops: Counter[str] = Counter()
    n_with_temperature = 0
    n_reactions_out = 0
    n_compositions = 0
    records: list[tuple[tuple, str, str, float]] = []  # key, formula, doi, temperature
    for i, reaction in enumerate(iterator):
        if not isinstance(reaction, Mapping):
            temp_drops[R_MALFORMED_REACTION] += 1
            continue
        try:
            temperature, _ = heating_temperature_of_reaction(reaction, step)
        except CurationError as exc:
            temp_drops[exc.reason] += 1
            continue
        n_with_temperature += 1
        try:
            vectors, failures = expand_target(reaction.get("target"))
        except CurationError as exc:
            comp_drops[exc.reason] += 1
            continue
        assignment_drops.update(failures)
        doi = str(reaction.get("doi") or f"reaction-{i}").strip().lower()
        kept = 0
        for vec in vectors:
            n_compositions += 1
            try:
                nf = normalize_amounts(vec)
            except (CurationError, ValueError) as exc:
                formula_drops[getattr(exc, "reason", R_MALFORMED_FORMULA)] += 1
                continue
            records.append((nf.key, nf.formula, doi, temperature))
            kept += 1
        if kept:
            n_reactions_out += 1
        else:
            comp_drops[R_NO_VALID_COMPOSITION] += 1

    n_in = len(reactions)
    log.add(
        f"{step} temperature of each reaction",
        n_in,
        n_with_temperature,
        temp_drops,
        unit="reactions",
    )
    log.add(
        "concrete target compositions",
        n_with_temperature,
        n_reactions_out,
        comp_drops,
        unit="reactions",
        note=f"{n_compositions:,} compositions from {n_reactions_out:,} reactions "
        "(variable values substituted)"
        + (
            f"; failed variable assignments inside kept reactions: {dict(assignment_drops)}"
            if assignment_drops
            else ""
        ),
    )
    log.add(
        "canonical formula (80 elements, reduced)",
        n_compositions,
        len(records),
        formula_drops,
        unit="compositions",
    )

    df = pd.DataFrame(records, columns=["key", "formula", "doi", "target"])
    per_doi = df.groupby(["key", "doi"], sort=False).agg(
        formula=("formula", _representative_formula), target=("target", "mean")
    )
    per_doi = per_doi.reset_index()
    grouped = per_doi.groupby("key", sort=False).agg(
        formula=("formula", _representative_formula),
        target=("target", over_articles),
        n_reports=("doi", "nunique"),
        target_std=("target", lambda s: float(np.std(s.to_numpy(), ddof=0))),
    )
    log.add(
        f"average per reduced composition (mean within article, {over_articles} over articles)",
        len(df),
        len(grouped),
        {R_DUPLICATE: len(df) - len(grouped)},
        unit="compositions",
        note=f"{len(per_doi):,} (composition, article) pairs",
    )
    if max_report_sem is not None:
        n = len(grouped)
        sem = grouped["target_std"] / np.sqrt(grouped["n_reports"])
        grouped = grouped[sem <= max_report_sem]
        log.add(
            "drop compositions whose articles disagree",
            n,
            len(grouped),
            {R_DISAGREEING_REPORTS: n - len(grouped)},
            unit="compositions",
        )
    out = grouped.reset_index()[["formula", "target", "n_reports", "target_std"]]
    out["target"] = out["target"].round(2)
    out["target_std"] = out["target_std"].round(2)
    return _finish(out), log


def curate_calcination_temperature(
    reactions: Sequence[Mapping[str, Any]] | Path,
    *,
    progress: bool = True,
    max_report_sem: float | None = MAX_REPORT_SEM_C,
) -> tuple[pd.DataFrame, StepLog]:
    """Calcination temperature (C) per reduced composition from Kononova et al. (2019).

    The sintering rules with the calcination steps (:func:`is_calcination_token`): the last
    calcination step of a recipe with a temperature, its peak, K -> C, 200-2000 C, melt-quench
    recipes dropped, the mean within an article and then the median over articles, disagreeing articles
    dropped (:func:`curate_sintering_temperature`).
    """
    return curate_sintering_temperature(reactions, progress=progress, max_report_sem=max_report_sem,
                                        step="calcination")


# --- driver ---------------------------------------------------------------------------------


def _write_table(df: pd.DataFrame, path: Path, float_format: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(
        path,
        index=False,
        float_format=float_format,
        compression={"method": "gzip", "mtime": 0, "compresslevel": 9},
        lineterminator="\n",
    )


def _rules(prop: str) -> dict[str, Any]:
    """The parameters of a property's curation, recorded in the report."""
    common = {
        "elements": "only the 80 supported elements (others dropped and counted)",
        "dedupe": f"reduced composition, atomic fractions rounded to {KEY_DECIMALS} decimals",
    }
    if prop == "formation_energy":
        return {
            **common,
            "duplicates": "lowest formation energy",
            "single_element": "dropped",
            "outliers": f"mean +- {SIGMA_CUT:g} sigma after dedupe and single-element removal",
        }
    if prop in ("bulk_modulus", "shear_modulus"):
        return {
            **common,
            "units": "ln(GPa) = 2.302585093 * log10(GPa)",
            "duplicates": "the lowest-energy polymorph: rows whose cell formula has the lowest formation "
            "energy in mp_e_form.csv.gz (mean of ln values among them; mean of all rows without a match)",
            "single_element": "kept",
        }
    if prop == "calcination_temperature":
        step_rule = {"calcination_step": f"HeatingOperation whose token contains {CALCINATION_STEM!r} "
                     "(pre- and re-calcinations included); last one with a temperature"}
    else:
        step_rule = {"sintering_step": f"HeatingOperation whose token contains {SINTERING_STEM!r} and does "
                     f"not start with {NOT_SINTERING_PREFIXES}; last one with a temperature"}
    return {
        **common,
        **step_rule,
        "step_temperature": "highest value of the step (values and max_value), K -> C",
        "melt_quench_recipes": "dropped",
        "range_C": [T_MIN_C, T_MAX_C],
        "variables": "each listed value of amounts_vars; product over variables "
        f"(at most {MAX_VARIABLE_COMBINATIONS}); del_O = 0",
        "skipped_targets": "elements_vars, unspecified oxygen index",
        "aggregation": "mean within article (DOI), then median over articles",
        "max_standard_error_C": MAX_REPORT_SEM_C,
    }


def curate(
    datasets: Path | str = DEFAULT_DATASETS,
    out: Path | str | None = DEFAULT_OUT,
    properties: Sequence[str] = PROPERTIES,
    *,
    progress: bool = True,
    verbose: bool = True,
) -> dict[str, Any]:
    """Build the curated tables of ``properties`` and write them (gzip CSV) into ``out``.

    Returns the report: per property, the raw file, its sha256, the step table and the
    final count (also written to ``out/curation_report.json``, merged with the entries of
    properties not rebuilt this time). ``out=None`` writes nothing.
    """
    datasets = Path(datasets)
    unknown = [p for p in properties if p not in PROPERTIES]
    if unknown:
        raise ValueError(f"unknown property {unknown}; choose from {list(PROPERTIES)}")
    report: dict[str, Any] = {}
    for prop in properties:
        raw = datasets / RAW_FILES[prop]
        if not raw.is_file():
            raise FileNotFoundError(
                f"{raw} not found; pass --datasets DIR holding {RAW_FILES[prop]}"
            )
        digest = sha256_of(raw)
        expected = EXPECTED_SHA256.get(raw.name)
        if expected and digest != expected and verbose:
            print(f"warning: {raw.name} sha256 {digest} differs from the documented {expected}")
        if prop == "formation_energy":
            df, log = curate_formation_energy(raw)
            fmt = "%.6f"
        elif prop in ("bulk_modulus", "shear_modulus"):
            energies = datasets / RAW_FILES["formation_energy"]
            if not energies.is_file():
                raise FileNotFoundError(f"{energies} not found; the moduli's ground-state rule needs "
                                        f"{RAW_FILES['formation_energy']} in --datasets DIR")
            df, log = curate_modulus(raw, prop, energies)
            fmt = "%.6f"
        elif prop == "calcination_temperature":
            df, log = curate_calcination_temperature(raw, progress=progress)
            fmt = "%.2f"
        else:
            df, log = curate_sintering_temperature(raw, progress=progress)
            fmt = "%.2f"
        entry = {
            "raw_file": raw.name,
            "rules": _rules(prop),
            "sha256": digest,
            "output": f"{prop}.csv.gz",
            "rows_out": len(df),
            "paper_count": PAPER_COUNTS[prop],
            "target_mean": round(float(df["target"].mean()), 4),
            "target_std": round(float(df["target"].std(ddof=0)), 4),
            **log.to_dict(),
        }
        report[prop] = entry
        if verbose:
            print(log.format_table())
            paper = PAPER_COUNTS[prop]
            print(f"-> {len(df):,} rows (paper: {'-' if paper is None else f'{paper:,}'})\n")
        if out is not None:
            _write_table(df, Path(out) / f"{prop}.csv.gz", fmt)
    if out is not None:
        report_path = Path(out) / "curation_report.json"
        merged: dict[str, Any] = {}
        if report_path.is_file():
            try:
                merged = json.loads(report_path.read_text())
            except (OSError, json.JSONDecodeError):
                merged = {}
        merged.update(report)
        merged = {k: merged[k] for k in PROPERTIES if k in merged}
        report_path.write_text(json.dumps(merged, indent=2, ensure_ascii=False) + "\n")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m predictors.curation",
        description="Build the curated predictor training tables (formation energy, bulk and "
        "shear modulus, sintering and calcination temperature) from the raw datasets and write them as "
        "gzip CSV plus curation_report.json. Rules: predictors/DATA.md.",
    )
    parser.add_argument(
        "--datasets",
        type=Path,
        default=DEFAULT_DATASETS,
        help=f"directory with the raw files (default: {DEFAULT_DATASETS})",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--property",
        dest="properties",
        nargs="+",
        choices=PROPERTIES,
        default=None,
        metavar="NAME",
        help=f"properties to build (default: all): {', '.join(PROPERTIES)}",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    curate(
        args.datasets,
        args.out,
        args.properties or PROPERTIES,
        progress=not args.no_progress,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
