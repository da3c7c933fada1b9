"""Model files never unpickle; atomic writes; the output-folder lock; settings-keyed reuse; CLI errors."""

from __future__ import annotations

import base64
import io
import json
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from agents.dqn import ConstrainedDQN
from agents.vec_env import make_oxide_vec_env
from oxide_env import files
from agents.cli import main

torch.set_num_threads(1)


class Payload:
    """Unpickling this object creates ``path`` (a stand-in for running any code)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def tiny_model() -> ConstrainedDQN:
    env = make_oxide_vec_env(2, seed=0, task="bulk_modulus")
    return ConstrainedDQN(env=env, seed=0, device="cpu", episodes_per_iteration=4, learning_starts=20,
                          buffer_size=200)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("model")
    model = tiny_model()
    model.learn(40)
    model.save(folder / "model.zip")
    return folder / "model.zip", model.generate(10, seed=1), model.exploration_rate


def rewrite_zip(source: Path, target: Path, *, data: dict | None = None, drop: tuple[str, ...] = (),
                replace: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for name in zin.namelist():
            if name in drop:
                continue
            content = zin.read(name)
            if name == "data" and data is not None:
                content = json.dumps(data).encode()
            if replace and name in replace:
                content = replace[name]
            zout.writestr(name, content)
    return target


def with_payload(source: Path, target: Path, marker: Path, *, keep_settings: bool) -> Path:
    data = json.loads(zipfile.ZipFile(source).read("data"))
    data["exploration_schedule"] = {":type:": "<class 'function'>",
                                    ":serialized:": base64.b64encode(pickle.dumps(Payload(marker))).decode()}
    return rewrite_zip(source, target, data=data, drop=() if keep_settings else ("oxide_rl.json",))


def test_the_payload_is_real(tmp_path):
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()  # so the tests below would see it if anything unpickled the blob


def test_saved_model_loads_without_unpickling(saved, monkeypatch):
    import stable_baselines3.common.save_util as save_util

    def refuse(*args, **kwargs):
        raise AssertionError("cloudpickle.loads was called")

    monkeypatch.setattr(save_util.cloudpickle, "loads", refuse)
    path, generated, rate = saved
    assert ConstrainedDQN.load(path, device="cpu").generate(10, seed=1) == generated
    env = make_oxide_vec_env(2, seed=0, task="bulk_modulus")
    loaded = ConstrainedDQN.load(path, env=env, device="cpu")
    assert loaded.generate(10, seed=1) == generated and loaded.num_timesteps == 40
    assert loaded.exploration_rate == rate  # the next action uses the saved epsilon


def test_payload_in_a_file_without_our_settings_is_refused(saved, tmp_path):
    marker = tmp_path / "ran"
    crafted = with_payload(saved[0], tmp_path / "crafted.zip", marker, keep_settings=False)
    with pytest.raises(ValueError, match="Refusing to load .*policy_class.*stored as pickled.*allow_pickle=True"):
        ConstrainedDQN.load(crafted, device="cpu")
    assert not marker.exists()


def test_payload_beside_our_settings_is_ignored(saved, tmp_path):
    marker = tmp_path / "ran"
    crafted = with_payload(saved[0], tmp_path / "crafted.zip", marker, keep_settings=True)
    assert ConstrainedDQN.load(crafted, device="cpu").generate(10, seed=1) == saved[1]
    assert not marker.exists()


def test_allow_pickle_is_an_explicit_opt_in_that_warns(saved, tmp_path):
    marker = tmp_path / "ran"
    crafted = with_payload(saved[0], tmp_path / "crafted.zip", marker, keep_settings=False)
    with pytest.warns(UserWarning, match="allow_pickle=True: unpickling runs any code"):
        ConstrainedDQN.load(crafted, device="cpu", allow_pickle=True)
    assert marker.exists()


def test_pickled_weights_are_refused(saved, tmp_path):
    marker = tmp_path / "ran"
    blob = io.BytesIO()
    torch.save({"q_net.weight": Payload(marker)}, blob)
    crafted = rewrite_zip(saved[0], tmp_path / "crafted.zip", replace={"policy.pth": blob.getvalue()})
    with pytest.raises(ValueError, match="weights are not plain tensors"):
        ConstrainedDQN.load(crafted, device="cpu")
    assert not marker.exists()


def test_cli_generate_refuses_a_crafted_model(saved, tmp_path, capsys):
    marker = tmp_path / "ran"
    run = tmp_path / "run"
    run.mkdir()
    with_payload(saved[0], run / "model.zip", marker, keep_settings=False)
    assert main(["generate", "--model", str(run), "-n", "5", "--out", str(tmp_path / "g.csv")]) == 2
    err = capsys.readouterr().err
    assert "error: Refusing to load" in err and "--allow-pickle" in err and len(err.splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "g.csv").exists()


def test_not_a_zip_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.zip"
    bad.write_bytes(b"truncated")
    with pytest.raises(ValueError, match="not a readable SB3 zip"):
        ConstrainedDQN.load(bad)


# ------------------------------------------------------------------------------ crash-safe files
class Killed(BaseException):
    pass


def test_atomic_write_killed_midway_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    files.atomic_write_json(target, {"n": 1})

    def kill(stage, path):
        if stage == "write":
            raise Killed

    monkeypatch.setattr(files, "_FAULT_HOOK", kill)
    with pytest.raises(Killed):
        files.atomic_write_json(target, {"n": 2})
    assert json.loads(target.read_text()) == {"n": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary left behind


def test_atomic_directory_is_all_or_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_FAULT_HOOK", lambda stage, path: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed), files.atomic_directory(tmp_path / "ckpt") as tmp:
        (tmp / "a").write_text("a")
    assert list(tmp_path.iterdir()) == []


def test_lock_refuses_a_second_writer(tmp_path):
    with files.DirectoryLock(tmp_path):
        with pytest.raises(ValueError, match="Another oxide-rl process .* is writing"):
            files.DirectoryLock(tmp_path).acquire()
    with files.DirectoryLock(tmp_path):  # released
        pass


def test_benchmark_refuses_a_locked_out(tmp_path):
    from agents.benchmark import run_table1

    with files.DirectoryLock(tmp_path), pytest.raises(ValueError, match="Another oxide-rl process"):
        run_table1(seeds=[0], n=10, iterations=1, tasks=["bulk_modulus"], methods=["random"], out=tmp_path,
                   progress=False)


def test_benchmark_results_are_keyed_by_their_settings(tmp_path, monkeypatch):
    from agents import benchmark

    kwargs = dict(seeds=[0], iterations=1, tasks=["bulk_modulus"], methods=["random"], out=tmp_path, progress=False)
    benchmark.run_table1(n=10, **kwargs)
    result_path = tmp_path / "table1_runs/all/random/seed0/result.json"
    first = json.loads(result_path.read_text())
    assert first["settings"]["n"] == 10
    with pytest.raises(ValueError, match=r"has n=10, not 20.*--force"):
        benchmark.run_table1(n=20, **kwargs)
    assert json.loads(result_path.read_text()) == first  # nothing was touched
    benchmark.run_table1(n=20, force=True, **kwargs)
    assert json.loads(result_path.read_text())["metrics"]["n"] == 20
    # a result without recorded settings (an older version's) is not reused
    legacy = json.loads(result_path.read_text())
    del legacy["settings"]
    legacy["metrics"]["n"] = 999
    result_path.write_text(json.dumps(legacy))
    benchmark.run_table1(n=20, **kwargs)
    assert json.loads(result_path.read_text())["metrics"]["n"] == 20
    # metrics computed under other validity tables are re-assessed from the stored designs
    stale = json.loads(result_path.read_text())
    stale["metric_rules"] = "0" * 64
    stale["metrics"]["pct_oxide_rule"] = -1.0
    result_path.write_text(json.dumps(stale))
    benchmark.run_table1(n=20, **kwargs)
    fresh = json.loads(result_path.read_text())
    assert fresh["metric_rules"] != "0" * 64 and fresh["metrics"]["pct_oxide_rule"] >= 0


def test_table1_status_lists_finished_and_pending_runs(tmp_path, capsys):
    from agents import benchmark

    kwargs = dict(seeds=[0], iterations=1, tasks=["bulk_modulus"], methods=["random"], out=tmp_path)
    assert "| all | random | 0 | pending |" in benchmark.table1_status(n=10, **kwargs)
    benchmark.run_table1(n=10, progress=False, **kwargs)
    text = benchmark.table1_status(n=10, **kwargs)
    assert "1 of 1 runs finished" in text and "| all | random | 0 | finished |" in text
    assert "pending (other settings)" in benchmark.table1_status(n=20, **kwargs)
    assert main(["benchmark", "table1", "--status", "--out", str(tmp_path), "--seeds", "0", "--n", "10",
                 "--tasks", "bulk_modulus", "--methods", "random"]) == 0
    assert "| all | random | 0 | finished |" in capsys.readouterr().out


def test_runs_are_keyed_by_the_rules_their_masks_use(monkeypatch):
    """A method masked by the oxide rule stores the rule's fingerprint: a run made under other
    oxidation-state tables is not reused; a method that uses no rule stores none."""
    from agents import train
    from agents.runs import METHODS, TASKS_BY_KEY, run_settings

    task = TASKS_BY_KEY["bulk_modulus"]
    ours = run_settings(task, METHODS["constrained_dqn"], 0, n=10, iterations=1, predictors={})
    assert set(ours["rules"]) == {"oxide_rule"}
    assert "rules" not in run_settings(task, METHODS["dqn_no_oracles"], 0, n=10, iterations=1, predictors={})
    assert set(run_settings(task, METHODS["paper_dqn"], 0, n=10, iterations=1, predictors={})["rules"]) == {
        "charge_neutral", "electronegativity_balanced"}
    monkeypatch.setattr("oxide_env.chemistry.completion.rule_fingerprint", lambda name: "other")
    assert run_settings(task, METHODS["constrained_dqn"], 0, n=10, iterations=1, predictors={}) != ours
    assert train.AgentRun(exact_masks="oxide_rule", constraints=()).settings()["rules"] == {"oxide_rule": "other"}


# ------------------------------------------------------------------------------------ CLI train
@pytest.mark.parametrize("args, message", [
    (["--iterations", "-5"], "Invalid iterations=-5"),
    (["--gradient-steps", "-1"], "Invalid gradient_steps=-1"),
    (["--n-envs", "0"], "Invalid n_envs=0"),
    (["--n-envs", "7"], "Invalid n_envs=7"),
    (["--task", "nope"], "Unknown task 'nope'"),
    (["--lam", "100"], "only applies to task='sintering_bulk'"),
    (["--task", "sintering_bulk", "--lam", "-1"], "Invalid lam=-1"),
    (["--top-n-pct", "0"], "Invalid top_n_pct=0"),
    (["--checkpoint-every", "0"], "Invalid checkpoint_every=0"),
])
def test_cli_train_rejects_bad_numbers_before_creating_anything(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_train_out_onto_a_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["train", "--out", str(target), "--iterations", "1"]) == 2
    err = capsys.readouterr().err
    assert "it is a file" in err and len(err.strip().splitlines()) == 1


def test_cli_train_documents_the_lam_default():
    from agents.cli import build_parser

    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "default 125" in text and "--restart" in text and "--checkpoint-every" in text


def test_cli_train_refuses_a_run_of_other_settings_in_out(tmp_path, capsys):
    from agents.train import AgentRun

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(AgentRun(iterations=5).settings()))
    assert main(["train", "--out", str(out), "--iterations", "3"]) == 2
    err = capsys.readouterr().err
    assert "iterations=5, not 3" in err and "--restart" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir() if p.name != files.LOCK_NAME) == ["config.json"]


def test_a_metric_added_later_is_recomputed_from_the_stored_designs(tmp_path):
    from agents import benchmark

    kwargs = dict(seeds=[0], iterations=1, tasks=["bulk_modulus"], methods=["random"], out=tmp_path, progress=False)
    benchmark.run_table1(n=30, **kwargs)
    run = tmp_path / "table1_runs/all/random/seed0"
    first = json.loads((run / "result.json").read_text())
    for key in ("pct_plausible_near_hull", "pct_new_plausible"):
        assert key in first["metrics"] and f"{key}@bulk_modulus" in first["metrics"]
    older = dict(first, metrics={k: v for k, v in first["metrics"].items() if "near_hull" not in k and "new" not in k})
    (run / "result.json").write_text(json.dumps(older))  # as a run made before the metric existed
    designs = (run / "formulas.csv").read_bytes()
    benchmark.run_table1(n=30, **kwargs)  # same settings: not rerun, only re-assessed
    again = json.loads((run / "result.json").read_text())
    assert again["metrics"] == pytest.approx(first["metrics"], nan_ok=True)
    assert again["settings"] == first["settings"] and (run / "formulas.csv").read_bytes() == designs
