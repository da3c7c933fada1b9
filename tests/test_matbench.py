"""The Matbench protocol script: the matbench package's folds and one tiny fold end to end."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "matbench.py"
DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def _module():
    spec = importlib.util.spec_from_file_location("matbench_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_folds_are_the_matbench_packages() -> None:
    from sklearn.model_selection import KFold

    folds = _module().fold_indices(103)
    tests = np.concatenate([test for _, test in folds])
    assert sorted(tests.tolist()) == list(range(103))  # a partition
    for (train, test), (ref_train, ref_test) in zip(folds, KFold(5, shuffle=True, random_state=18012019).split(
            np.arange(103))):
        assert set(test) == set(ref_test) and set(train) == set(ref_train)


def test_help() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--tasks" in out.stdout and "18012019" not in out.stderr


@pytest.mark.skipif(not (DATASETS / "mp_log10_K_VRH.csv.gz").is_file(), reason="raw Matbench tables not present")
def test_one_fold_tiny_and_reused(tmp_path) -> None:
    argv = ["--tasks", "matbench_log_kvrh", "--epochs", "1", "--folds", "0", "--threads", "1", "--out", str(tmp_path)]
    assert _module().main(argv) == 0
    text = (tmp_path / "matbench.csv").read_text().splitlines()
    assert text[0] == "task,mae_mean,mae_std,unit" and text[1].startswith("matbench_log_kvrh,")
    mae = float(text[1].split(",")[1])
    assert 0.05 < mae < 0.25  # log10 GPa: one epoch already beats predicting the median (MAE 0.287)
    stored = (tmp_path / "matbench_folds/matbench_log_kvrh/fold0.json").read_text()
    assert _module().main(argv) == 0  # the finished fold is reused, not retrained
    assert (tmp_path / "matbench_folds/matbench_log_kvrh/fold0.json").read_text() == stored


@pytest.mark.skipif(not (DATASETS / "mp_log10_K_VRH.csv.gz").is_file(), reason="raw Matbench tables not present")
def test_overrides_change_the_settings_key(tmp_path) -> None:
    import json

    base = ["--tasks", "matbench_log_kvrh", "--epochs", "1", "--folds", "0", "--threads", "1", "--out", str(tmp_path)]
    assert _module().main(base + ["--set", "hidden=16", "n_members=2"]) == 0
    path = tmp_path / "matbench_folds/matbench_log_kvrh/fold0.json"
    first = json.loads(path.read_text())
    assert first["settings"]["config"]["hidden"] == 16 and "device" not in first["settings"]
    assert _module().main(base + ["--set", "hidden=24", "n_members=2"]) == 0  # other settings: retrained
    assert json.loads(path.read_text())["settings"]["config"]["hidden"] == 24
    assert "--set hidden=24 n_members=2" in (tmp_path / "matbench.md").read_text()


def test_bad_override_and_device_are_named() -> None:
    from predictors.training import TrainConfig, train

    with pytest.raises(ValueError, match="lr=fast"):
        _module().parse_overrides(["lr=fast"])
    with pytest.raises(ValueError, match="device='nonsense'"):
        train("bulk_modulus", TrainConfig(epochs=1, n_members=1, hidden=8), device="nonsense")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            train("bulk_modulus", TrainConfig(epochs=1, n_members=1, hidden=8), device="cuda")


def test_matminer_features_equal_ours_where_both_apply() -> None:
    from oxide_env.chemistry.features import featurize

    formulas = ["MgAl2O4", "BaTiO3", "Li0.5CoO2", "NaN", "Fe2O3"]
    np.testing.assert_allclose(_module().matminer_features(formulas), featurize(formulas), atol=1e-9)
    x = _module().matminer_features(["XeF2", "TcO2"])  # elements outside our 80
    assert x.shape == (2, 145) and np.isfinite(x).all()


@pytest.mark.skipif(not (DATASETS / "mp_log10_K_VRH.csv.gz").is_file(), reason="raw Matbench tables not present")
def test_unsupported_rows_can_be_trained_on(tmp_path) -> None:
    import json

    argv = ["--tasks", "matbench_log_kvrh", "--epochs", "1", "--folds", "0", "--threads", "1", "--out", str(tmp_path),
            "--set", "hidden=16", "n_members=2", "--unsupported", "matminer"]
    assert _module().main(argv) == 0
    stored = json.loads((tmp_path / "matbench_folds/matbench_log_kvrh/fold0.json").read_text())
    record = stored["record"]
    assert stored["settings"]["unsupported"] == "matminer"
    assert record["n_test_unsupported"] > 0 and record["n_train"] > 8482  # those rows are trained on too
    assert "featurized with matminer" in (tmp_path / "matbench.md").read_text()
