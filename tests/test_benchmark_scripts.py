"""Benchmark scripts that need no GPU and no training: their reports from stored records."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_script", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_report_is_built_from_its_records(tmp_path) -> None:
    out = tmp_path / "gpu"
    shutil.copytree(BENCHMARKS / "results" / "gpu_check", out)
    (out / "gpu_check.md").unlink(missing_ok=True)
    module = _module("gpu_check")
    assert module.main(["--report-only", "--out", str(out)]) == 0
    text = (out / "gpu_check.md").read_text()
    record = json.loads((out / "table1_method.json").read_text())
    assert f"{record['pct_plausible']:.1f}" in text and f"{record['train_seconds']:.0f} s" in text
    # a failed check is reported with its error, not dropped
    (out / "table1_method.json").write_text(json.dumps({"error": "Traceback: CUDA out of memory"}))
    module.write_report(out)
    assert "table1_method failed" in (out / "gpu_check.md").read_text()


def test_pymatgen_assignable_matches_the_oxide_rule_examples() -> None:
    module = _module("oxide_rule_states")
    assert module.pymatgen_assignable("ZnO") and module.pymatgen_assignable("Fe3O4")  # mixed valence
    assert not module.pymatgen_assignable("Zn2O3")  # Zn+3 is not a common state


def test_rare_states_are_judged_by_icsd_statistics() -> None:
    module = _module("oxide_rule_states")
    assert module.rare_state("La2O3") is None and module.rare_state("BaTiO3") is None
    assert module.rare_state("LaO") == "La+2"  # La+2: ~2 % of La's charged ICSD sites
    assert module.rare_state("Fe3O4") is None  # mixed valence is not judged rare


def test_in_domain_random_reports_both_yardsticks(tmp_path) -> None:
    table = tmp_path / "table1.csv"
    table.write_text("task,method,sintering_temperature_mean,bulk_modulus_mean\n"
                     "sintering_bulk_250,ours,1000,5.0\nsintering_bulk_250,random,1035,4.3\n")
    module = _module("in_domain_random")
    out = tmp_path / "yardstick.md"
    assert module.main(["--n", "3000", "--seed", "0", "--table1", str(table), "--out", str(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert {(r["task"], r["property"]) for r in record["rows"]} == {
        ("sintering_bulk_250", "sintering_temperature"), ("sintering_bulk_250", "bulk_modulus")}
    pop = record["populations"]["bulk_modulus"]
    assert pop["all"][2] == 3000 and 0 < pop["plausible"][2] < 3000  # a subset of the draw
    row = next(r for r in record["rows"] if r["property"] == "bulk_modulus")
    assert row["shift_all"] == pytest.approx((5.0 - pop["all"][0]) / pop["all"][1])
    assert "shift vs random plausible" in out.read_text()


def test_generation_tradeoff_needs_finished_runs(tmp_path, capsys) -> None:
    module = _module("generation_tradeoff")
    with pytest.raises(SystemExit):
        module.main(["--runs", str(tmp_path), "--tasks", "bulk_modulus", "--seeds", "0"])
    assert "no finished constrained_dqn_graded runs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        module.main(["--runs", str(tmp_path), "--method", "maskable_ppo"])
    assert "choose a DQN method" in capsys.readouterr().err


def test_hull_speed_agrees_with_the_linear_programme_and_pymatgen(tmp_path) -> None:
    module = _module("hull_speed")
    out = tmp_path / "hull_speed.md"
    assert module.main(["--states", "30", "--reference-states", "10", "--out", str(out)]) == 0
    with out.with_suffix(".csv").open() as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"simplex, compiled pass", "simplex, systems gathered in Python", "linear programme",
                         "pymatgen PhaseDiagram"}
    assert float(rows["simplex, systems gathered in Python"]["max_abs_diff_vs_compiled_pass"]) == 0.0
    assert all(float(r["max_abs_diff_vs_compiled_pass"]) < 1e-9 for r in rows.values())
    assert "270 compositions" in out.read_text()


def test_table1_timing_compares_run_times_and_designs(tmp_path) -> None:
    module = _module("table1_timing")
    reference = BENCHMARKS / "results"
    runs = tmp_path / "rerun"
    for method in ("constrained_dqn", "paper_dqn"):
        rel = Path("table1_runs") / "bulk_modulus" / method / "seed0"
        shutil.copytree(reference / rel, runs / rel, ignore=shutil.ignore_patterns("checkpoints", "tb", "*.zip"))
    changed = runs / "table1_runs" / "bulk_modulus" / "paper_dqn" / "seed0" / "formulas.csv"
    changed.write_text(changed.read_text().replace("\n", "\r\n", 1))
    (runs / "table1.md").write_text("Sum over all 2 runs: this invocation took 1.5 min (finished runs are reused).")
    out = tmp_path / "timing.md"
    assert module.main(["--runs", str(runs), "--reference", str(reference), "--out", str(out)]) == 0
    text = out.read_text()
    assert "2 runs present in both" in text and "1.5 min" in text and "1.0x" in text
    with out.with_suffix(".csv").open() as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert rows["constrained_dqn"]["identical_designs"] == "1" and rows["paper_dqn"]["identical_designs"] == "0"
    with pytest.raises(SystemExit, match="No run of"):
        module.main(["--runs", str(tmp_path / "empty"), "--reference", str(reference), "--out", str(out)])
    with pytest.raises(SystemExit):  # argparse's error: a report path without .md
        module.main(["--runs", str(runs), "--reference", str(reference), "--out", str(tmp_path / "bare")])
    assert not (tmp_path / "bare").exists() and not (tmp_path / "bare.csv").exists()
