from __future__ import annotations

import json

import pytest

from agents.cli import PREDICTOR_NAMES, main, read_formulas


def test_help_for_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    commands = ["evaluate", "baseline", "predict", "train-predictors", "train", "generate", "benchmark",
                "benchmark table1"]
    for cmd in commands:
        with pytest.raises(SystemExit) as exc:
            main([*cmd.split(), "--help"])
        assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_evaluate_text_and_csv(tmp_path, capsys):
    txt = tmp_path / "gen.txt"
    txt.write_text("MgO\nAl2O3\n\nTi2O4\n")
    out = tmp_path / "m.json"
    assert main(["evaluate", str(txt), "--json", str(out)]) == 0
    assert "% charge neutral" in capsys.readouterr().out
    metrics = json.loads(out.read_text())
    assert metrics["n"] == 3 and metrics["pct_charge_neutral"] == 100.0

    csv = tmp_path / "gen.csv"
    csv.write_text("formula,score\nMgO,1\nTiO2,2\n")
    assert read_formulas(csv) == ["MgO", "TiO2"]
    bad = tmp_path / "bad.csv"
    bad.write_text("name,score\nMgO,1\n")
    assert main(["evaluate", str(bad)]) == 2
    assert "'formula' column" in capsys.readouterr().err


def test_evaluate_reports_bad_formula(tmp_path, capsys):
    f = tmp_path / "gen.txt"
    f.write_text("MgO\nXeO3\n")
    assert main(["evaluate", str(f)]) == 2
    assert "'XeO3'" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing.txt")]) == 2


def test_baseline(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["baseline", "--n", "200", "--seed", "0", "1", "--json", str(out), "--out", str(tmp_path)]) == 0
    rows = json.loads(out.read_text())
    assert set(rows) == {"random seed 0", "random seed 1", "mean"}
    assert (tmp_path / "random_seed1.txt").read_text().count("\n") == 200
    assert "| mean |" in capsys.readouterr().out


def test_predict(capsys, tmp_path):
    out = tmp_path / "p.json"
    assert main(["predict", "BaTiO3", "MgO", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sintering_temperature (degC)" in text and "±" in text
    data = json.loads(out.read_text())
    assert set(data["MgO"]) == set(PREDICTOR_NAMES) and "calcination_temperature" in data["MgO"]
    assert main(["predict", "XeO3"]) == 2


def test_train_and_generate_tiny(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--task", "shear_modulus", "--iterations", "2", "--n-envs", "50", "--out", str(run)]) == 0
    assert (run / "model.zip").is_file() and (run / "config.json").is_file()
    csv_path = tmp_path / "gen.csv"
    assert main(["generate", "--model", str(run), "-n", "50", "--seed", "1", "--out", str(csv_path)]) == 0
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("formula,generated,formation_energy,bulk_modulus,shear_modulus,sintering_temperature,")
    assert {"oxide_rule", "charge_neutral_paper_rule", "e_above_hull", "in_domain", "plausible"} <= set(
        lines[0].split(",")
    )
    assert len(lines) == 51
    from oxide_env import reduced_formula

    rows = [line.split(",") for line in lines[1:]]
    assert all(r[0] == reduced_formula(r[1]) for r in rows)  # formula: reduced; generated: as generated
    assert main(["evaluate", str(csv_path)]) == 0  # reads the generated amounts back
    again = tmp_path / "gen2.csv"
    main(["generate", "--model", str(run), "-n", "50", "--seed", "1", "--out", str(again)])
    assert again.read_text() == csv_path.read_text()
    assert main(["generate", "--model", str(tmp_path / "nothing"), "-n", "5", "--out", str(again)]) == 2
    assert main(["generate", "--model", str(run), "-n", "30", "--distinct", "--out", str(again)]) == 0
    assert len(set(again.read_text().splitlines()[1:])) == 30


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"oxide-rl {version('oxide-rl')}"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["predict", "CClIBrSSeTeNPMnGeAsSnSbOFeCoNiCuZnGaY"], "MAX_ELEMENTS=20"),  # 21 elements
        (["predict", "O1e400"], "amounts must be finite"),
        (["predict", "Cr2A0"], "'A' is not one of the 80"),
        (["predict", "Fe0O"], "must be > 0"),
        (["predict", "Fe" * 600], "MAX_FORMULA_LENGTH=1000"),
        (["baseline", "--n", "1000000000000"], "--n=1000000000000"),
        (["baseline", "--n", "0"], "--n=0"),
    ],
)
def test_user_mistakes_end_in_one_error_line(argv, needle, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("oxide-rl: error: ") and "\n" not in err and needle in err
    assert "Traceback" not in captured.err and len(err) < 600  # the value is truncated


def test_argparse_refuses_unknown_properties_and_bad_epochs(capsys):
    for argv in (["train-predictors", "--property", "nope"], ["predict", "MgO", "--property", "nope"],
                 ["train-predictors", "--epochs", "0"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_outputs_into_missing_folders_are_created(tmp_path, capsys):
    txt = tmp_path / "gen.txt"
    txt.write_text("MgO\nCaO\n")
    out = tmp_path / "new" / "deeper" / "m.json"
    assert main(["evaluate", str(txt), "--json", str(out), "--markdown", str(tmp_path / "md" / "m.md")]) == 0
    assert json.loads(out.read_text())["n"] == 2 and (tmp_path / "md" / "m.md").is_file()
    assert main(["evaluate", str(txt), "--json", str(tmp_path)]) == 2  # a folder, not a file
    assert "it is a folder" in capsys.readouterr().err
    assert main(["evaluate", str(txt), "--json", str(txt / "x.json")]) == 2  # parent is a file
    assert "is a file, not a folder" in capsys.readouterr().err


def test_genuine_bugs_keep_their_traceback(monkeypatch):
    import oxide_env.chemistry.metrics as metrics

    def broken(*args, **kwargs):
        return None + 1  # a TypeError that is not about user input

    monkeypatch.setattr(metrics, "evaluate", broken)
    with pytest.raises(TypeError, match="unsupported operand"):
        main(["baseline", "--n", "5"])


def test_cli_predictor_names_match_the_package():
    import predictors
    from agents import cli

    assert cli.PREDICTOR_NAMES == predictors.PREDICTOR_NAMES


def test_train_hull_bound_needs_plausible(tmp_path) -> None:
    with pytest.raises(SystemExit, match="--max-e-above-hull needs --plausible"):
        main(["train", "--max-e-above-hull", "0.1", "--iterations", "1", "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def _run_of_train(monkeypatch, argv: list[str]):
    """The AgentRun ``oxide-rl train argv`` would train (training itself is skipped)."""
    import agents.train

    captured = {}

    class Stop(Exception):
        pass

    def fake_train(run, *args, **kwargs):
        captured["run"] = run
        raise Stop

    monkeypatch.setattr(agents.train, "train_agent", fake_train)
    with pytest.raises(Stop):
        main(argv)
    return captured["run"]


def test_train_shaping_needs_plausible_and_reaches_the_run(monkeypatch, tmp_path) -> None:
    with pytest.raises(SystemExit, match="--shaping needs --plausible"):
        main(["train", "--shaping", "0.1", "--iterations", "1", "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()
    run = _run_of_train(monkeypatch, ["train", "--plausible", "--shaping", "0.1", "--out", str(tmp_path / "run")])
    assert run.design_constraints["shaping"] == 0.1
    assert run.settings()["design_constraints"]["shaping"] == 0.1  # part of the run's key
    with pytest.raises(SystemExit, match="--strict-novel needs --shaping"):
        main(["train", "--plausible", "--strict-novel", "--iterations", "1", "--out", str(tmp_path / "other")])
    run = _run_of_train(monkeypatch, ["train", "--plausible", "--shaping", "0.1", "--strict-novel",
                                      "--out", str(tmp_path / "strict")])
    assert run.settings()["design_constraints"]["novel"] == "strict"


def test_readme_command_of_our_method_equals_the_table1_method(monkeypatch, tmp_path) -> None:
    from agents.runs import METHODS, TASKS_BY_KEY, _agent_run

    argv = ("train --task bulk_modulus --exact-masks oxide_rule --plausible --max-e-above-hull 0.1 --lookahead "
            "--oracles constraints_satisfied --merge-noops --top-n-pct 20 --gradient-steps 10 --out").split()
    run = _run_of_train(monkeypatch, [*argv, str(tmp_path / "run")])
    want = _agent_run(TASKS_BY_KEY["bulk_modulus"], METHODS["constrained_dqn"], 0, run.iterations)
    assert run.settings() == want.settings()
