"""Benchmark scripts that need no GPU and no training: their reports from stored records."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

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
