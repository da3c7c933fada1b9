"""Kill a training run at chosen points, rerun it, and compare with the uninterrupted run.

A resumed run must end with the same parameters and generate the same materials as the run
that was never interrupted; a finished run is never retrained; a damaged checkpoint is
skipped; a kill while a file is being written never breaks the rerun.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback

from agents import train as train_module
from agents.train import AgentRun, train_agent
from oxide_env import files

torch.set_num_threads(1)
# tiny: 20 envs (each step takes 20 random decisions), iterations of 20 episodes (100 steps),
# a replay buffer small enough to wrap around
RUN = AgentRun(task="bulk_modulus", seed=3, iterations=2, n_envs=20, episodes_per_iteration=20,
               model_kwargs={"buffer_size": 200, "batch_size": 32})
STEPS_PER_ITERATION = 100


class Killed(BaseException):
    """Raised by a test hook: the process 'dies' here (BaseException, so nothing catches it)."""


class KillAtStep(BaseCallback):
    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def _on_step(self) -> bool:
        if self.model.num_timesteps >= self.step:
            raise Killed
        return True


def train(directory: Path, **kwargs):
    return train_agent(RUN, directory, progress=False, checkpoint_every=1, **kwargs)


def fingerprint(model) -> tuple[dict[str, torch.Tensor], list[str], int]:
    state = {k: v.detach().clone() for k, v in model.policy.state_dict().items()}
    return state, model.generate(30, seed=0), model.num_timesteps


def assert_same(model, reference) -> None:
    state, generated, steps = fingerprint(model)
    ref_state, ref_generated, ref_steps = reference
    assert steps == ref_steps
    assert state.keys() == ref_state.keys()
    for key in state:
        assert torch.equal(state[key], ref_state[key]), key
    assert generated == ref_generated


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    directory = tmp_path_factory.mktemp("uninterrupted")
    model, _ = train(directory)
    return fingerprint(model)


def test_kill_mid_iteration_resumes_exactly_and_does_not_resave(tmp_path, reference, monkeypatch):
    with pytest.raises(Killed):
        train(tmp_path, callback=KillAtStep(2 * STEPS_PER_ITERATION + 12))  # inside iteration 2
    saved = []
    original = train_module.save_checkpoint
    monkeypatch.setattr(train_module, "save_checkpoint",
                        lambda model, path, *a, **k: (saved.append(path.name), original(model, path, *a, **k)))
    log: list[str] = []
    model, _ = train(tmp_path, log=log.append)
    assert any("resuming" in line and "iteration_00002" in line for line in log), log
    assert saved == []  # the checkpoint it resumed from (the last one) is not written again
    assert_same(model, reference)


def _kill_at(stage: str, match) -> object:
    state = {"fired": False}

    def hook(s: str, path: Path) -> None:
        if not state["fired"] and s == stage and match(path):
            state["fired"] = True
            raise Killed

    hook.state = state  # type: ignore[attr-defined]
    return hook


WRITE_POINTS = {
    # a checkpoint folder about to be renamed into place (a checkpoint boundary)
    "checkpoint_rename": ("replace", lambda p: p.name == "iteration_00002"),  # resumes from iteration 1
    # half of a checkpoint's model.zip written
    "checkpoint_model_half_written": ("write", lambda p: p.name == "model.zip" and p.parent.name.startswith(".iteration")),
    # half of the final model.zip written
    "final_model_half_written": ("write", lambda p: p.name == "model.zip" and p.parent.name != "checkpoints"
                                 and not p.parent.name.startswith(".")),
    # the finished marker about to be renamed into place
    "training_json_rename": ("replace", lambda p: p.name == "training.json"),
    "config_half_written": ("write", lambda p: p.name == "config.json"),
}
FAST_POINTS = ("checkpoint_rename", "final_model_half_written")


@pytest.mark.parametrize("point", [p if p in FAST_POINTS else pytest.param(p, marks=pytest.mark.slow)
                                   for p in WRITE_POINTS])
def test_kill_at_a_write_point_then_rerun_matches(tmp_path, reference, monkeypatch, point):
    hook = _kill_at(*WRITE_POINTS[point])
    monkeypatch.setattr(files, "_FAULT_HOOK", hook)
    with pytest.raises(Killed):
        train(tmp_path)
    assert hook.state["fired"]
    monkeypatch.setattr(files, "_FAULT_HOOK", None)
    model, _ = train(tmp_path)
    assert_same(model, reference)
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.slow  # a fresh interpreter: ~15 s
def test_sigkill_during_a_checkpoint_then_rerun_matches(tmp_path, reference):
    """A real SIGKILL (a subprocess) while the iteration-2 checkpoint folder is being renamed."""
    script = textwrap.dedent(f"""
        import os, signal, sys, torch
        torch.set_num_threads({torch.get_num_threads()})
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from oxide_env import files
        from tests.test_resume import train
        from pathlib import Path

        def hook(stage, path):
            if stage == "replace" and path.name == "iteration_00002":
                os.kill(os.getpid(), signal.SIGKILL)

        files._FAULT_HOOK = hook
        train(Path({str(tmp_path)!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not (tmp_path / "checkpoints" / "iteration_00002").exists()
    assert (tmp_path / "checkpoints" / "iteration_00001").is_dir()
    log: list[str] = []
    model, _ = train(tmp_path, log=log.append)
    assert any("iteration_00001" in line for line in log), log
    assert_same(model, reference)


def test_damaged_checkpoint_is_skipped_for_the_previous_one(tmp_path, reference):
    with pytest.raises(Killed):
        train(tmp_path, callback=KillAtStep(2 * STEPS_PER_ITERATION + 5))
    newest = tmp_path / "checkpoints" / "iteration_00002"
    data = (newest / "arrays.npz").read_bytes()
    (newest / "arrays.npz").write_bytes(data[: len(data) // 2])  # e.g. a disk error
    log: list[str] = []
    model, _ = train(tmp_path, log=log.append)
    assert any("skipping checkpoint iteration_00002" in line and "damaged" in line for line in log), log
    assert any("resuming" in line and "iteration_00001" in line for line in log), log
    assert_same(model, reference)


def test_finished_run_is_reused_not_retrained(tmp_path, reference, monkeypatch):
    model, seconds = train(tmp_path)
    done = json.loads((tmp_path / "training.json").read_text())
    assert done["finished"] and done["settings"] == RUN.settings()
    assert not any((c / "arrays.npz").exists() for c in (tmp_path / "checkpoints").iterdir())

    def fail(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr("agents.dqn.ConstrainedDQN.learn", fail)
    log: list[str] = []
    again, seconds_again = train(tmp_path, log=log.append)
    assert any("finished earlier" in line for line in log)
    assert seconds_again == pytest.approx(seconds)
    assert_same(again, reference)


def test_other_settings_are_refused_with_the_setting_named(tmp_path, reference):
    with pytest.raises(Killed):
        train(tmp_path, callback=KillAtStep(STEPS_PER_ITERATION + 1))
    other = AgentRun(**{**RUN.__dict__, "iterations": 5})  # stored: 2
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    with pytest.raises(ValueError, match=r"iterations=2, not 5.*--restart"):
        train_agent(other, tmp_path, progress=False)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before


def test_benchmark_killed_while_writing_its_result_reruns_to_the_same_materials(tmp_path, monkeypatch):
    from agents.benchmark import run_table1

    kwargs = dict(seeds=[0], n=20, iterations=1, tasks=["bulk_modulus"], methods=["constrained_dqn", "random"],
                  out=tmp_path, progress=False)
    run_dir = tmp_path / "table1_runs/bulk_modulus/constrained_dqn/seed0"
    monkeypatch.setattr(files, "_FAULT_HOOK", _kill_at("replace", lambda p: p == run_dir / "result.json"))
    with pytest.raises(Killed):
        run_table1(**kwargs)
    formulas = (run_dir / "formulas.csv").read_text()
    assert not (run_dir / "result.json").exists()
    monkeypatch.setattr(files, "_FAULT_HOOK", None)
    monkeypatch.setattr("agents.dqn.ConstrainedDQN.learn",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    run_table1(**kwargs)  # the finished training is reused, the materials generated again
    assert (run_dir / "formulas.csv").read_text() == formulas
    assert json.loads((run_dir / "result.json").read_text())["metrics"]["n"] == 20


def test_checkpoint_from_another_machine_resumes_with_a_warning(tmp_path, reference):
    """A checkpoint records the CPU and libraries it was written with; resuming it elsewhere warns
    (the designs would repeat neither machine's uninterrupted run) and still resumes exactly."""
    from agents.persistence import platform_info

    with pytest.raises(Killed):
        train(tmp_path, callback=KillAtStep(2 * STEPS_PER_ITERATION + 5))
    state = tmp_path / "checkpoints" / "iteration_00002" / "state.json"
    meta = json.loads(state.read_text())
    assert meta["platform"] == platform_info()
    log: list[str] = []
    meta["platform"] = {**meta["platform"], "cpu": "Another CPU", "vector_isa": "AVX2"}
    state.write_text(json.dumps(meta) + "\n")
    model, _ = train(tmp_path, log=log.append)
    assert any("warning: iteration_00002 was written on 'Another CPU' (AVX2" in line for line in log), log
    assert_same(model, reference)  # here, the same machine in fact: the resumed run is still exact
