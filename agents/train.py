"""Train / generate helpers behind ``oxide-rl train`` and ``oxide-rl generate``.

A run directory holds:

* ``config.json`` — the run's settings (:meth:`AgentRun.settings`); a rerun into the same
  folder continues the run only when every setting matches, otherwise it is refused (name a
  fresh folder, or discard the old run with ``resume=False`` / ``--restart``).
* ``checkpoints/iteration_NNNNN/`` — every ``checkpoint_every`` iterations, at an iteration
  boundary: ``model.zip``, ``state.json`` (counters, random generators, file checksums) and
  ``arrays.npz`` (replay buffer, reward cache, generator states). The newest
  ``keep_checkpoints`` are kept. An interrupted run resumes from the newest good one and ends
  exactly as the uninterrupted run would (same parameters, same generated materials); a
  damaged checkpoint is skipped with a warning. Once training is finished the resume-only
  ``arrays.npz`` files are deleted.
* ``model.zip`` then ``training.json`` (``finished: true``) when training is done: a finished
  run is loaded, never retrained.
* ``tb/`` — TensorBoard logs.

Every file is written atomically (temporary file, then rename) and the folder is locked while
a process trains in it, so a kill at any moment loses at most the work since the last
checkpoint and two processes never write one folder. No file is ever unpickled.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from oxide_env.chemistry.checks import check_number
from oxide_env.chemistry.episode import N_STEPS
from oxide_env.chemistry.completion import CONSTRAINTS as EXACT_MASKS
from oxide_env.files import read_json_dict, sha256_file

PAPER_ITERATIONS = 500
EPISODES_PER_ITERATION = 100
STEPS_PER_EPISODE = N_STEPS
SETTINGS_FORMAT = 2  # bump when the meaning of a stored setting changes
CHECKPOINT_FORMAT = 1


def _check_int(name: str, value: Any, minimum: int) -> None:
    check_number(value, name, integer=True, minimum=minimum)


@dataclass(frozen=True)
class AgentRun:
    """One agent training run (all paper defaults; every field can be changed).

    Args:
        task: a task preset name (see :mod:`oxide_env.tasks`).
        lam: bulk weight of ``sintering_bulk`` (``None``: 125, the paper's middle value);
            only for that task.
        seed: the run's seed (>= 0).
        iterations: training iterations after one warm-up iteration of random allowed actions.
        n_envs: environments stepped together; must divide ``5 * episodes_per_iteration``.
        exact_masks: also apply the env's exact constraint masks.
        constraints: the learned oracles (empty: none).
        top_n_pct: sample among the top n % allowed actions, in (0, 100].
        gradient_steps: Q-network updates per iteration (>= 1).
        episodes_per_iteration: episodes per iteration (paper: 100).
        model_kwargs: other :class:`~agents.dqn.ConstrainedDQN` arguments (plain JSON values).

    Raises:
        ValueError: any invalid value, named, before anything is created.

    Example:
        >>> AgentRun(iterations=-5)
        Traceback (most recent call last):
        ...
        ValueError: Invalid iterations=-5: expected an integer >= 1.
    """

    task: str = "bulk_modulus"
    lam: float | None = None
    seed: int = 0
    iterations: int = PAPER_ITERATIONS
    n_envs: int = 100
    exact_masks: str | None = None
    constraints: tuple[str, ...] = ("charge_neutral", "electronegativity_balanced")
    top_n_pct: float = 20.0
    gradient_steps: int = 1
    episodes_per_iteration: int = EPISODES_PER_ITERATION
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    design_constraints: dict[str, Any] | None = None
    """The env's terminal ``constraints`` (``oxide_env.tasks.make_constraints``), as plain JSON."""
    constraint_lookahead: bool = False
    """The env's last-step lookahead on ``design_constraints`` (needs them)."""

    def __post_init__(self) -> None:
        from oxide_env.tasks import make_task

        if not isinstance(self.task, str):
            raise ValueError(f"Invalid task={self.task!r}: expected a task preset name.")
        make_task(self.task, lam=self.lam)  # unknown task, bad lam
        if self.lam is not None and self.lam < 0:
            raise ValueError(f"Invalid lam={self.lam!r}: expected a number >= 0 (paper: 62.5, 125, 250).")
        _check_int("seed", self.seed, 0)
        _check_int("iterations", self.iterations, 1)
        _check_int("n_envs", self.n_envs, 1)
        _check_int("gradient_steps", self.gradient_steps, 1)
        _check_int("episodes_per_iteration", self.episodes_per_iteration, 1)
        if (self.episodes_per_iteration * STEPS_PER_EPISODE) % self.n_envs:
            raise ValueError(f"Invalid n_envs={self.n_envs!r}: it must divide the {self.episodes_per_iteration} "
                             f"x {STEPS_PER_EPISODE} steps of an iteration (e.g. 1, 4, 10, 20, 50, 100).")
        check_number(self.top_n_pct, "top_n_pct", minimum=0, maximum=100, exclusive_minimum=True)
        if self.exact_masks not in (None, *EXACT_MASKS):
            raise ValueError(f"Invalid exact_masks={self.exact_masks!r}; choose None or one of "
                             f"{', '.join(map(repr, EXACT_MASKS))}.")
        object.__setattr__(self, "constraints", tuple(self.constraints))
        if not isinstance(self.constraint_lookahead, bool):
            raise ValueError(f"Invalid constraint_lookahead={self.constraint_lookahead!r}: expected True or False.")
        if self.constraint_lookahead and self.design_constraints is None:
            raise ValueError("constraint_lookahead=True needs design_constraints (e.g. "
                             "oxide_env.tasks.PLAUSIBLE_DESIGN): it masks the last step by them.")
        if self.design_constraints is not None:
            from oxide_env.tasks import make_constraints

            plain_constraints = json.loads(json.dumps(self.design_constraints))  # tuples -> lists, as stored
            make_constraints(plain_constraints, make_task(self.task, lam=self.lam))  # bad keys or values raise
            object.__setattr__(self, "design_constraints", plain_constraints)
        try:
            plain = json.loads(json.dumps(self.model_kwargs))
        except (TypeError, ValueError):
            plain = None
        if plain != self.model_kwargs:
            raise ValueError(f"Invalid model_kwargs={str(self.model_kwargs)[:200]!r}: expected plain JSON values "
                             "(numbers, strings, lists, dicts), so the run's settings can be stored and compared.")

    @property
    def total_timesteps(self) -> int:
        # one warm-up iteration of uniformly random allowed actions, then `iterations`
        return (self.iterations + 1) * self.episodes_per_iteration * STEPS_PER_EPISODE

    def settings(self) -> dict[str, Any]:
        """Every setting that determines the run's result, as plain JSON (with the fingerprints of
        the validity rules its masks, oracles and constraints use: :func:`rule_fingerprints`)."""
        settings = {"format": SETTINGS_FORMAT, **without_new_defaults(json.loads(json.dumps(asdict(self))))}
        rules = rule_fingerprints(self.exact_masks, self.constraints, self.design_constraints)
        return {**settings, "rules": rules} if rules else settings


def rule_fingerprints(exact_masks: str | None, constraints: Sequence[str] = (),
                      design_constraints: dict[str, Any] | None = None) -> dict[str, str]:
    """The fingerprint (oxidation-state tables, electronegativities) of every validity rule that
    masks, oracle labels or design constraints use, by rule name: a stored result or checkpoint
    is reused only while these rules are the same (e.g. not after the oxide rule's states changed).

    Example:
        >>> sorted(rule_fingerprints("oxide_rule", ("charge_neutral",)))
        ['charge_neutral', 'oxide_rule']
        >>> rule_fingerprints(None)
        {}
    """
    from oxide_env.chemistry.completion import CONSTRAINTS, rule_fingerprint

    names = {exact_masks} if exact_masks else set()
    names |= {c for c in constraints if c in CONSTRAINTS}
    if design_constraints and design_constraints.get("oxide_rule"):
        names.add("oxide_rule")
    return {name: rule_fingerprint(name) for name in sorted(names)}


NEW_DEFAULTS: dict[str, Any] = {"constraint_lookahead": False}
"""Settings added after results were first stored, with the value that reproduces the old behaviour."""


def without_new_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` without the :data:`NEW_DEFAULTS` entries that hold their default.

    A setting added later is stored only when it differs from the behaviour before it existed, so
    results and checkpoints stored before it stay reusable exactly when nothing changed.

    Example:
        >>> without_new_defaults({"seed": 0, "constraint_lookahead": False})
        {'seed': 0}
    """
    return {k: v for k, v in settings.items() if not (k in NEW_DEFAULTS and v == NEW_DEFAULTS[k])}


def first_difference(stored: dict[str, Any], wanted: dict[str, Any]) -> tuple[str, Any, Any] | None:
    """The first setting that differs: ``(name, stored value, wanted value)``, or ``None``.

    Example:
        >>> first_difference({"n": 1000, "seed": 0}, {"n": 100, "seed": 0})
        ('n', 1000, 100)
    """
    for key in [*wanted, *(k for k in stored if k not in wanted)]:
        if stored.get(key, "<missing>") != wanted.get(key, "<missing>"):
            return key, stored.get(key, "<missing>"), wanted.get(key, "<missing>")
    return None


def save_checkpoint(model: Any, path: Path, settings: dict[str, Any], train_seconds: float) -> None:
    """Write one checkpoint folder atomically (see the module docstring)."""
    from agents.persistence import platform_info, training_state, write_arrays
    from oxide_env.files import atomic_directory

    state, arrays = training_state(model)
    if path.exists():  # a damaged checkpoint of the same iteration, skipped when resuming
        shutil.rmtree(path)
    with atomic_directory(path) as tmp:
        model.save(tmp / "model.zip")
        write_arrays(tmp / "arrays.npz", arrays)
        files = {name: sha256_file(tmp / name) for name in ("model.zip", "arrays.npz")}
        meta = {"format": CHECKPOINT_FORMAT, "settings": settings, "iteration": model.iteration,
                "num_timesteps": model.num_timesteps, "train_seconds": train_seconds, "files": files,
                "training": state, "platform": platform_info()}
        (tmp / "state.json").write_text(json.dumps(meta) + "\n")


def load_checkpoint(path: Path, env: Any, settings: dict[str, Any], **load_kwargs: Any):
    """``(model, meta)`` of a checkpoint folder, its files verified; ``ValueError`` if unusable."""
    from agents.dqn import ConstrainedDQN
    from agents.persistence import read_arrays, restore_training_state

    meta = read_json_dict(path / "state.json")
    if meta is None or meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError("no readable state.json")
    if meta.get("settings") != settings:
        raise ValueError("it was written with other settings")
    for name, digest in meta["files"].items():
        if not (path / name).is_file():
            raise ValueError(f"{name} is missing (a finished run's checkpoints keep only their model)")
        if sha256_file(path / name) != digest:
            raise ValueError(f"{name} is damaged (checksum mismatch)")
    model = ConstrainedDQN.load(path / "model.zip", env=env, **load_kwargs)
    restore_training_state(model, meta["training"], read_arrays(path / "arrays.npz"))
    return model, meta


class ProgressAndCheckpoint(BaseCallback):
    """tqdm progress over iterations, and a checkpoint every ``every`` iterations.

    Checkpoints are taken between two rollouts (after an iteration's training, before the next
    iteration's first step), when every env copy has just started an episode, so a resumed run
    continues exactly. ``resumed_from`` (the checkpoint's iteration) is not written again.
    """

    def __init__(self, total_timesteps: int, directory: Path | None, every: int, progress: bool, *,
                 settings: dict[str, Any] | None = None, keep: int = 2, resumed_from: int = -1,
                 seconds_before: float = 0.0, log: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.total, self.directory, self.every, self.progress = total_timesteps, directory, every, progress
        self.settings, self.keep, self.log = settings or {}, keep, log
        self.bar = None
        self.last_saved = resumed_from
        self.seconds_before = seconds_before
        self.t0 = time.perf_counter()
        self._warned = False

    def train_seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.t0

    def _on_training_start(self) -> None:
        self.t0 = time.perf_counter()
        if self.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=self.model.num_timesteps, unit="step", desc="train")

    def _on_rollout_start(self) -> None:
        from agents.persistence import at_episode_boundary

        it = self.model.iteration
        if self.directory is None or it == 0 or it % self.every or it == self.last_saved:
            return
        self.last_saved = it
        if not at_episode_boundary(self.model):
            if not self._warned and self.log is not None:
                self.log(f"warning: iteration {it} ends mid-episode (n_envs does not divide the episodes of an "
                         "iteration evenly), so no exact checkpoint can be written there")
            self._warned = True
            return
        folder = self.directory / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        save_checkpoint(self.model, folder / f"iteration_{it:05d}", self.settings, self.train_seconds())
        for old in _checkpoints(self.directory)[: -self.keep] if self.keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)

    def _on_step(self) -> bool:
        if self.bar is not None:
            self.bar.n = self.model.num_timesteps
            self.bar.set_postfix(iteration=self.model.iteration, eps=f"{self.model.exploration_rate:.3f}",
                                 refresh=False)
            self.bar.update(0)
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _checkpoints(directory: Path) -> list[Path]:
    folder = directory / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("iteration_*") if p.is_dir() and not p.name.endswith(".tmp"))


def build_model(run: AgentRun, tensorboard_log: str | None = None):
    from agents.dqn import ConstrainedDQN

    kwargs = dict(run.model_kwargs)
    kwargs.setdefault("episodes_per_iteration", run.episodes_per_iteration)
    kwargs.setdefault("learning_starts", run.episodes_per_iteration * STEPS_PER_EPISODE)
    kwargs.setdefault("device", "auto")  # SB3's choice (cuda when present) unless model_kwargs names one
    return ConstrainedDQN(env=build_env(run), seed=run.seed, constraints=run.constraints,
                          top_n_pct=run.top_n_pct, gradient_steps=run.gradient_steps,
                          tensorboard_log=tensorboard_log, **kwargs)


def build_env(run: AgentRun, n_envs: int | None = None):
    from agents.vec_env import make_oxide_vec_env

    # training reads no property but the reward's: the other predictors are not run (same rewards, ~20 %
    # faster); the generated designs are evaluated on all five afterwards
    return make_oxide_vec_env(run.n_envs if n_envs is None else n_envs, seed=run.seed, task=run.task, lam=run.lam,
                              exact_masks=run.exact_masks, constraints=run.design_constraints,
                              constraint_lookahead=run.constraint_lookahead, report="reward")


def _discard(directory: Path) -> None:
    for name in ("training.json", "model.zip"):
        (directory / name).unlink(missing_ok=True)
    shutil.rmtree(directory / "checkpoints", ignore_errors=True)


def _finish(directory: Path) -> None:
    """Delete the resume-only arrays of a finished run's checkpoints (their models stay)."""
    for ckpt in _checkpoints(directory):
        (ckpt / "arrays.npz").unlink(missing_ok=True)


def train_agent(run: AgentRun, out: str | Path | None = None, *, progress: bool = True,
                checkpoint_every: int = 50, resume: bool = True, keep_checkpoints: int = 2,
                log: Callable[[str], None] | None = None, callback: BaseCallback | None = None):
    """Train a :class:`~agents.dqn.ConstrainedDQN` for ``run``; returns ``(model, train_seconds)``.

    With ``out`` (a run directory, see the module docstring), the folder is locked, the run's
    settings are stored, checkpoints are written, and a rerun with the same settings continues
    where the last one stopped: a finished run is loaded (not retrained), an interrupted one
    resumes exactly from its newest good checkpoint.

    Args:
        run: the settings.
        out: the run directory (``None``: nothing is written).
        progress: a progress bar.
        checkpoint_every: iterations between checkpoints (>= 1).
        resume: continue the run stored in ``out``; ``False`` discards it and starts afresh.
        keep_checkpoints: how many of the newest checkpoints to keep (>= 1).
        log: called with one-line messages (what is resumed or reused, skipped checkpoints).
        callback: an extra SB3 callback for ``learn``.

    Returns:
        The trained model and the training time in seconds (summed over the sessions that
        trained it; work lost to a kill is not counted).

    Raises:
        ValueError: invalid arguments, ``out`` is a file, ``out`` holds a run with other
            settings (the message names the first differing one), or another process is
            training in ``out``.
    """
    from agents.dqn import ConstrainedDQN
    from agents.persistence import clear_reward_caches, platform_info
    from oxide_env.files import (
        DirectoryLock,
        atomic_write_json,
        check_output_folder,
        remove_stale_temporaries,
    )

    _check_int("checkpoint_every", checkpoint_every, 1)
    _check_int("keep_checkpoints", keep_checkpoints, 1)
    say = log or (lambda message: None)
    if out is None:
        model = build_model(run)
        clear_reward_caches(model)
        callback_ = ProgressAndCheckpoint(run.total_timesteps, None, checkpoint_every, progress)
        model.learn(total_timesteps=run.total_timesteps, callback=_callbacks(callback_, callback),
                    reset_num_timesteps=False, tb_log_name="ConstrainedDQN")
        return model, callback_.train_seconds()

    directory = check_output_folder(out)
    settings = run.settings()
    with DirectoryLock(directory):
        remove_stale_temporaries(directory)
        remove_stale_temporaries(directory / "checkpoints")
        stored = read_json_dict(directory / "config.json")
        if resume and stored is not None:
            diff = first_difference(stored, settings)
            if diff is not None and "format" not in stored:
                raise ValueError(f"{str(directory)!r} holds a run of an older version (its settings were not "
                                 "recorded, its checkpoints cannot resume exactly): use another --out, or "
                                 "--restart (resume=False) to train afresh there.")
            if diff is not None:
                name, theirs, ours = diff
                raise ValueError(
                    f"{str(directory)!r} holds a run with {name}={theirs!r}, not {ours!r}: rerun with the same "
                    "settings to continue it, use another --out, or discard it with --restart (resume=False).")
        if not resume:
            _discard(directory)
        atomic_write_json(directory / "config.json", settings)
        try:
            import tensorboard  # noqa: F401

            tb: str | None = str(directory / "tb")
        except ImportError:
            tb = None

        done = read_json_dict(directory / "training.json") if resume else None
        if done is not None and done.get("finished") and done.get("settings") == settings:
            try:
                model = ConstrainedDQN.load(directory / "model.zip", env=build_env(run), tensorboard_log=tb)
            except ValueError as exc:
                say(f"warning: the finished run's model.zip cannot be loaded ({exc}); resuming from checkpoints")
            else:
                say(f"training of {str(directory)!r} finished earlier with these settings: model.zip reused "
                    "(--restart trains again)")
                return model, float(done.get("train_seconds", 0.0))

        model = build_model(run, tensorboard_log=tb)
        clear_reward_caches(model)  # the run must not depend on rewards cached by earlier runs
        resumed_from, seconds_before = -1, 0.0
        if resume:
            legacy = sorted((directory / "checkpoints").glob("iteration_*.zip"))
            if legacy:
                say(f"note: {len(legacy)} checkpoint(s) of an older format in {str(directory / 'checkpoints')!r} "
                    "cannot resume exactly and are ignored")
            for ckpt in reversed(_checkpoints(directory)):
                try:
                    model, meta = load_checkpoint(ckpt, model.get_env(), settings, tensorboard_log=tb)
                except Exception as exc:  # a damaged checkpoint: warn and fall back to the previous one
                    say(f"warning: skipping checkpoint {ckpt.name}: {exc}")
                    continue
                resumed_from, seconds_before = int(meta["iteration"]), float(meta["train_seconds"])
                say(f"resuming {str(directory)!r} from {ckpt.name} (iteration {resumed_from} of "
                    f"{run.iterations + 1} incl. warm-up; settings match)")
                here = platform_info()
                if meta.get("platform", here) != here:
                    made = meta["platform"]
                    say(f"warning: {ckpt.name} was written on {made.get('cpu')!r} ({made.get('vector_isa')}, torch "
                        f"{made.get('torch')}), this machine is {here['cpu']!r} ({here['vector_isa']}, torch "
                        f"{here['torch']}): the run resumes with the same settings, but its designs will repeat "
                        "neither machine's uninterrupted run (see README, 'Reproducible on the same kind of CPU')")
                break
        remaining = run.total_timesteps - model.num_timesteps
        callback_ = ProgressAndCheckpoint(run.total_timesteps, directory, checkpoint_every, progress,
                                          settings=settings, keep=keep_checkpoints, resumed_from=resumed_from,
                                          seconds_before=seconds_before, log=say)
        if remaining > 0:
            model.learn(total_timesteps=remaining, callback=_callbacks(callback_, callback),
                        reset_num_timesteps=False, tb_log_name="ConstrainedDQN")
        seconds = callback_.train_seconds() if remaining > 0 else seconds_before
        model.save(directory / "model.zip")
        atomic_write_json(directory / "training.json",
                          {"settings": settings, "finished": True, "iteration": model.iteration,
                           "num_timesteps": model.num_timesteps, "train_seconds": seconds})
        _finish(directory)
    return model, seconds


def _callbacks(main: BaseCallback, extra: BaseCallback | None) -> BaseCallback:
    return main if extra is None else CallbackList([main, extra])


def load_agent(directory: str | Path, *, allow_pickle: bool = False, **kwargs: Any):
    """Load ``model.zip`` of a run directory (the env is rebuilt from ``config.json``).

    Never unpickles: a model file that would need it is refused with a ``ValueError`` unless
    ``allow_pickle=True`` (only for files you trust; it warns).
    """
    from agents.dqn import ConstrainedDQN
    from agents.vec_env import make_oxide_vec_env

    directory = Path(directory)
    path = directory / "model.zip" if directory.is_dir() else directory
    if not path.is_file():
        raise ValueError(f"Invalid model {str(directory)[:200]!r}: no model.zip there; train one with `oxide-rl train`.")
    cfg = read_json_dict(path.parent / "config.json")
    env = None
    if cfg is not None and isinstance(cfg.get("task"), str):
        env = make_oxide_vec_env(1, seed=cfg.get("seed"), task=cfg["task"], lam=cfg.get("lam"),
                                 exact_masks=cfg.get("exact_masks"), constraints=cfg.get("design_constraints"),
                                 constraint_lookahead=bool(cfg.get("constraint_lookahead", False)))
    return ConstrainedDQN.load(path, env=env, allow_pickle=allow_pickle, **kwargs)
