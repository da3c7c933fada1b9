"""Train / generate helpers behind ``oxide-rl train`` and ``oxide-rl generate``.

A run directory holds ``model.zip`` (SB3 format), ``config.json``, ``checkpoints/`` (every
``checkpoint_every`` iterations; an interrupted run resumes from the newest) and ``tb/``
(TensorBoard logs).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

PAPER_ITERATIONS = 500
EPISODES_PER_ITERATION = 100
STEPS_PER_EPISODE = 5


@dataclass(frozen=True)
class AgentRun:
    """One agent training run (all paper defaults; every field can be changed)."""

    task: str = "bulk_modulus"
    lam: float | None = None
    seed: int = 0
    iterations: int = PAPER_ITERATIONS
    n_envs: int = 100
    exact_masks: str | None = None
    constraints: tuple[str, ...] = ("charge_neutral", "electronegativity_balanced")
    top_n_pct: float = 20.0
    gradient_steps: int = 1
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def total_timesteps(self) -> int:
        # one warm-up iteration of uniformly random allowed actions, then `iterations`
        return (self.iterations + 1) * EPISODES_PER_ITERATION * STEPS_PER_EPISODE


class ProgressAndCheckpoint(BaseCallback):
    """tqdm progress over iterations, and a checkpoint every ``every`` iterations."""

    def __init__(self, total_timesteps: int, directory: Path | None, every: int, progress: bool) -> None:
        super().__init__()
        self.total, self.directory, self.every, self.progress = total_timesteps, directory, every, progress
        self.bar = None
        self.last_saved = -1

    def _on_training_start(self) -> None:
        if self.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=self.model.num_timesteps, unit="step", desc="train")

    def _on_step(self) -> bool:
        if self.bar is not None:
            self.bar.n = self.model.num_timesteps
            self.bar.set_postfix(iteration=self.model.iteration, eps=f"{self.model.exploration_rate:.3f}",
                                 refresh=False)
            self.bar.update(0)
        it = self.model.iteration
        if self.directory is not None and it and it % self.every == 0 and it != self.last_saved:
            self.last_saved = it
            ckpt = self.directory / "checkpoints"
            ckpt.mkdir(parents=True, exist_ok=True)
            self.model.save(ckpt / f"iteration_{it:05d}.zip")
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()


def build_model(run: AgentRun, tensorboard_log: str | None = None):
    from agents.dqn import ConstrainedDQN
    from agents.vec_env import make_oxide_vec_env

    env = make_oxide_vec_env(run.n_envs, seed=run.seed, task=run.task, lam=run.lam, exact_masks=run.exact_masks)
    return ConstrainedDQN(env=env, seed=run.seed, constraints=run.constraints, top_n_pct=run.top_n_pct,
                          gradient_steps=run.gradient_steps, tensorboard_log=tensorboard_log, device="auto",
                          **run.model_kwargs)


def train_agent(run: AgentRun, out: str | Path | None = None, *, progress: bool = True,
                checkpoint_every: int = 50, resume: bool = True):
    """Train a :class:`~agents.dqn.ConstrainedDQN` for ``run``; returns ``(model, seconds)``.

    With ``out``, writes ``model.zip``, ``config.json``, checkpoints and TensorBoard logs there,
    and resumes from the newest checkpoint if one exists (``resume=True``).
    """
    from agents.dqn import ConstrainedDQN

    directory = Path(out) if out is not None else None
    tb = None
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(json.dumps(asdict(run), indent=2) + "\n")
        try:
            import tensorboard  # noqa: F401

            tb = str(directory / "tb")
        except ImportError:
            tb = None
    model = build_model(run, tensorboard_log=tb)
    if directory is not None and resume:
        checkpoints = sorted((directory / "checkpoints").glob("iteration_*.zip"))
        if checkpoints:
            model = ConstrainedDQN.load(checkpoints[-1], env=model.get_env(), tensorboard_log=tb)
    remaining = run.total_timesteps - model.num_timesteps
    t0 = time.perf_counter()
    if remaining > 0:
        callback = ProgressAndCheckpoint(run.total_timesteps, directory, checkpoint_every, progress)
        model.learn(total_timesteps=remaining, callback=callback, reset_num_timesteps=False,
                    tb_log_name="ConstrainedDQN")
    seconds = time.perf_counter() - t0
    if directory is not None:
        model.save(directory / "model.zip")
    return model, seconds


def load_agent(directory: str | Path, **kwargs: Any):
    """Load ``model.zip`` of a run directory (the env is rebuilt from ``config.json``)."""
    from agents.dqn import ConstrainedDQN
    from agents.vec_env import make_oxide_vec_env

    directory = Path(directory)
    path = directory / "model.zip" if directory.is_dir() else directory
    if not path.is_file():
        raise ValueError(f"Invalid model {str(directory)!r}: no model.zip there; train one with `oxide-rl train`.")
    config_path = path.parent / "config.json"
    env = None
    if config_path.is_file():
        cfg = json.loads(config_path.read_text())
        env = make_oxide_vec_env(1, seed=cfg["seed"], task=cfg["task"], lam=cfg["lam"],
                                 exact_masks=cfg["exact_masks"])
    return ConstrainedDQN.load(path, env=env, **kwargs)
