"""Sweeps (agents/sweep.py) and the serial backend's fault handling (agents/backends.py); no Ray needed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from agents import runs as run_module
from agents.backends import ERROR_FILE, RunsFailed, RunSpec, SerialBackend, execute_runs, make_backend
from agents.runs import METHODS, TASKS_BY_KEY, Method, run_settings
from agents.sweep import SWEEP_SETTINGS, SweepConfig, derived_method, load_config, plan, run_sweep

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sweep.toml"


@pytest.mark.parametrize("data, match", [
    ({"grid": {"top_n_pct": [5]}, "taks": ["bulk_modulus"]}, r"Unknown key 'taks'.*allowed: tasks, methods"),
    ({"grid": {"top_n": [5]}}, r"Unknown grid setting 'top_n'; allowed: top_n_pct, gradient_steps, lam"),
    ({"grid": {}}, r"Invalid grid.*at least one setting.*allowed settings: top_n_pct"),
    ({"grid": {"top_n_pct": 5}}, r"Invalid grid.top_n_pct=5: expected a non-empty list, e.g. grid.top_n_pct = \["),
    ({"grid": {"top_n_pct": [0, 10]}}, r"Invalid grid value top_n_pct=0: expected numbers in \(0, 100\]"),
    ({"grid": {"gradient_steps": [1.5]}}, r"Invalid grid value gradient_steps=1.5: expected integers >= 1"),
    ({"grid": {"merge_noops": [1]}}, r"Invalid grid value merge_noops=1: expected true or false"),
    ({"grid": {"gamma": [0.9, 0.9]}}, r"a value is repeated"),
    ({"grid": {"lam": [62.5]}}, r"Invalid grid setting 'lam' for task 'bulk_modulus'.*sintering_bulk"),
    ({"grid": {"top_n_pct": [5]}, "methods": ["maskable_ppo"]},
     r"Invalid grid setting 'top_n_pct' for method 'maskable_ppo'.*constrained_dqn, constrained_dqn_graded, paper_dqn, dqn_no_oracles"),
    ({"grid": {"oracle_threshold": [0.3]}, "methods": ["dqn_no_oracles"]},
     r"'oracle_threshold' for method 'dqn_no_oracles'.*no learned oracles"),
    ({"grid": {"top_n_pct": [5]}, "tasks": ["bulk"]}, r"Invalid tasks value 'bulk'; allowed: formation_energy"),
    ({"grid": {"top_n_pct": [5]}, "metrics": ["plausible"]}, r"Invalid metrics value 'plausible'; allowed: pct_"),
    ({"grid": {"top_n_pct": [5]}, "seeds": [0, -1]}, r"Invalid seed=-1: expected an integer >= 0"),
    ({"grid": {"top_n_pct": [5]}, "n": 1}, r"Invalid n=1: expected an integer >= 2"),
])
def test_bad_configs_name_the_key_or_value_and_the_allowed_ones(data, match):
    with pytest.raises(ValueError, match=match):
        SweepConfig.from_dict(data)


def test_config_files(tmp_path):
    config = load_config(EXAMPLE)  # the shipped example is valid
    assert config.grid == (("top_n_pct", (5.0, 10.0)), ("gradient_steps", (1, 10)))
    assert load_config(_write(tmp_path / "again.toml", config.as_toml())) == config  # as_toml round-trips
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(_write(tmp_path / "bad.toml", "grid = [top_n_pct = 5"))
    with pytest.raises(ValueError, match="no such file"):
        load_config(tmp_path / "missing.toml")


def test_every_combination_is_keyed_by_its_own_settings():
    """A changed setting changes the run's stored settings and folder: it can never be served an old result."""
    config = SweepConfig.from_dict({"tasks": ["sintering_bulk"], "methods": ["paper_dqn"], "seeds": [0],
                                    "grid": {"lam": [62.5, 100.0], "top_n_pct": [5, 10],
                                             "learning_rate": [0.01, 0.001]}})
    specs = [s for s in plan(config, "/tmp/x") if s.method.kind != "random"]
    assert len(specs) == 8 and len({s.directory for s in specs}) == 8
    settings = [json.dumps(run_settings(s.task, s.method, s.seed, n=10, iterations=1, predictors={}), sort_keys=True)
                for s in specs]
    assert len(set(settings)) == 8
    assert {s.task.lam for s in specs} == {62.5, 100.0} and {s.method.top_n_pct for s in specs} == {5.0, 10.0}
    assert {s.method.model_kwargs["learning_rate"] for s in specs} == {0.01, 0.001}
    # a derived method keeps the base method's other settings
    ours = derived_method(METHODS["constrained_dqn"], {"gradient_steps": 3})
    assert ours.model_kwargs == METHODS["constrained_dqn"].model_kwargs and ours.gradient_steps == 3
    assert ours.design_constraints == METHODS["constrained_dqn"].design_constraints
    assert set(SWEEP_SETTINGS) >= {"top_n_pct", "lam", "gradient_steps"}


def test_tiny_sweep_report_resume_and_changed_settings(tmp_path, monkeypatch):
    data = {"tasks": ["bulk_modulus"], "methods": ["dqn_no_oracles"], "seeds": [0], "n": 20, "iterations": 1,
            "metrics": ["pct_unique", "bulk_modulus_shift"], "grid": {"top_n_pct": [10, 20]}}
    text = run_sweep(SweepConfig.from_dict(data), tmp_path, progress=False)
    for name in ("sweep.md", "sweep.csv", "sweep.png"):
        assert (tmp_path / name).stat().st_size > 0
    with open(tmp_path / "sweep.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["method"], r["top_n_pct"]) for r in rows] == [("dqn_no_oracles", "10.0"), ("dqn_no_oracles", "20.0"),
                                                              ("random", "")]
    assert "| bulk_modulus | dqn_no_oracles | 10 | 1 |" in text and "bulk_modulus_shift" in text
    runs = tmp_path / "sweep_runs" / "bulk_modulus" / "dqn_no_oracles"
    stamp = (runs / "top_n_pct=10" / "seed0" / "result.json").stat().st_mtime_ns

    # top_n_pct = 20 -> 30: the 10 run is reused as it is, the 30 run is trained (not served the 20 result)
    trained = []
    real = run_module._train_dqn
    monkeypatch.setattr(run_module, "_train_dqn", lambda task, method, *a, **k: trained.append(method.top_n_pct)
                        or real(task, method, *a, **k))
    run_sweep(SweepConfig.from_dict(dict(data, grid={"top_n_pct": [10, 30]})), tmp_path, progress=False)
    assert trained == [30.0]
    assert (runs / "top_n_pct=10" / "seed0" / "result.json").stat().st_mtime_ns == stamp
    stored = json.loads((runs / "top_n_pct=30" / "seed0" / "result.json").read_text())
    assert stored["settings"]["method"]["top_n_pct"] == 30.0
    # another budget in the same folders is refused before any work, naming the setting
    with pytest.raises(ValueError, match="iterations=1, not 2"):
        run_sweep(SweepConfig.from_dict(dict(data, iterations=2)), tmp_path, progress=False)


def test_a_failing_run_is_reported_and_does_not_stop_the_others(tmp_path):
    broken = Method("broken", "a method that raises", "no_such_kind")
    specs = [RunSpec(TASKS_BY_KEY["bulk_modulus"], broken, 0, n=20, iterations=1, directory=str(tmp_path / "a")),
             RunSpec(TASKS_BY_KEY["bulk_modulus"], METHODS["random"], 0, n=20, iterations=1,
                     directory=str(tmp_path / "b"))]
    with pytest.raises(RunsFailed, match=r"(?s)1 run\(s\) failed \(1 finished.*bulk_modulus / broken / seed 0: "
                                         r"ValueError: Invalid method kind 'no_such_kind'") as info:
        execute_runs(specs, SerialBackend(), progress=False)
    assert len(info.value.failures) == 1
    assert (tmp_path / "b" / "result.json").is_file()  # the other run finished after the failure
    assert "Traceback" in (tmp_path / "a" / ERROR_FILE).read_text()
    assert execute_runs(specs[1:], progress=False)[0]["method"] == "random"  # finished: reused


def test_backend_options_are_checked():
    with pytest.raises(ValueError, match="Invalid backend 'dask'; choose 'serial' or 'ray'"):
        make_backend("dask")
    with pytest.raises(ValueError, match="--address is a Ray option"):
        make_backend("serial", address="auto")
    with pytest.raises(ValueError, match="Invalid torch_threads=0"):
        SerialBackend(torch_threads=0)


def test_cli_sweep(tmp_path, capsys):
    from agents.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--help"])
    assert exc.value.code == 0 and "--backend" in capsys.readouterr().out
    assert main(["sweep", str(_write(tmp_path / "c.toml", "[grid]\ntop_n_pct = [101]\n"))]) == 2
    assert "Invalid grid value top_n_pct=101: expected numbers in (0, 100]" in capsys.readouterr().err


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_speedup_script_has_help():
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "ray_speedup.py"
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--iterations" in out.stdout and "--workers" in out.stdout
