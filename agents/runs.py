"""One run of the Table 1 benchmark: its task, its method, its settings, and running it.

A run trains one method on one task with one seed, generates ``n`` materials and evaluates them
with the shipped predictors; :func:`run_one` caches the result in ``<directory>/result.json``,
keyed by every setting that produced it (:func:`run_settings`). The Table 1 harness
(:mod:`agents.benchmark`), the sweeps (:mod:`agents.sweep`) and the backends that execute runs
(:mod:`agents.backends`) all build on this module, which imports none of them.

Example:
    >>> METHODS["paper_dqn"].kind, TASKS_BY_KEY["bulk_modulus"].properties
    ('dqn', ('bulk_modulus',))
"""

from __future__ import annotations

import functools
import io
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oxide_env.chemistry.validity import tables_fingerprint
from oxide_env.files import read_json_dict
from oxide_env.tasks import STABLE_PLAUSIBLE_DESIGN

PROPERTIES = ("formation_energy", "bulk_modulus", "shear_modulus", "sintering_temperature")


@dataclass(frozen=True)
class BenchTask:
    """One row group of Table 1: a task and the properties it reports (+1 maximise, -1 minimise)."""

    key: str
    label: str
    task: str
    lam: float | None
    properties: tuple[str, ...]
    directions: tuple[int, ...]


TASKS: tuple[BenchTask, ...] = (
    BenchTask("formation_energy", "Form (↓)", "formation_energy", None, ("formation_energy",), (-1,)),
    BenchTask("bulk_modulus", "Bulk (↑)", "bulk_modulus", None, ("bulk_modulus",), (1,)),
    BenchTask("shear_modulus", "Shear (↑)", "shear_modulus", None, ("shear_modulus",), (1,)),
    BenchTask("sintering_temperature", "Sinter (↓)", "sintering_temperature", None, ("sintering_temperature",),
              (-1,)),
    *(BenchTask(f"sintering_bulk_{lam:g}", f"Sinter+Bulk (λ = {lam:g})", "sintering_bulk", lam,
                ("sintering_temperature", "bulk_modulus"), (-1, 1)) for lam in (62.5, 125.0, 250.0)),
)
TASKS_BY_KEY = {t.key: t for t in TASKS}

@dataclass(frozen=True)
class Method:
    """A way to generate materials; ``kind`` is ``dqn``, ``maskable_ppo`` or ``random``."""

    key: str
    label: str
    kind: str
    exact_masks: str | None = None
    constraints: tuple[str, ...] = ()
    top_n_pct: float = 20.0
    gradient_steps: int = 1
    distinct: bool = False
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    design_constraints: dict[str, Any] | None = None
    constraint_lookahead: bool = False


ORACLES = ("charge_neutral", "electronegativity_balanced")
METHODS: dict[str, Method] = {m.key: m for m in (
    Method("constrained_dqn", "ConstrainedDQN, exact oxide-rule masks + plausibility and stability (E_hull <= 0.1) "
           "constraints, last-step lookahead, plausibility oracle (ours)", "dqn",
           exact_masks="oxide_rule", constraints=("constraints_satisfied",), gradient_steps=10, top_n_pct=20.0,
           model_kwargs={"merge_noops": True}, design_constraints=dict(STABLE_PLAUSIBLE_DESIGN),
           constraint_lookahead=True),
    Method("constrained_dqn_graded", "ours + graded constraint penalty (shaping 0.1) + relative oracle fallback "
           "(0.5)", "dqn", exact_masks="oxide_rule", constraints=("constraints_satisfied",), gradient_steps=10,
           top_n_pct=20.0, model_kwargs={"merge_noops": True, "oracle_relative": 0.5},
           design_constraints={**STABLE_PLAUSIBLE_DESIGN, "shaping": 0.1}, constraint_lookahead=True),
    Method("paper_dqn", "ConstrainedDQN, paper settings", "dqn", constraints=ORACLES),
    Method("dqn_no_oracles", "DQN without oracles (ablation)", "dqn"),
    Method("maskable_ppo", "MaskablePPO (sb3-contrib)", "maskable_ppo", exact_masks="electronegativity_balanced"),
    Method("maskable_ppo_plausible", "MaskablePPO, exact oxide-rule masks + plausibility and stability "
           "constraints, last-step lookahead", "maskable_ppo", exact_masks="oxide_rule",
           design_constraints=dict(STABLE_PLAUSIBLE_DESIGN), constraint_lookahead=True),
    Method("random", "Random baseline", "random"),
)}


# ------------------------------------------------------------------------------------------ runs
RESULT_FORMAT = 3  # bump when the meaning of a stored setting changes (3: plausibility metrics)


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def predictor_ids(models: Sequence[Any]) -> dict[str, str]:
    """``name -> sha256[:16]`` of each predictor's shipped weights and domain files (part of a run's settings)."""
    import hashlib

    import predictors

    ids = {}
    for m in models:
        digest = hashlib.sha256()
        for suffix in (".safetensors", ".domain.safetensors", ".domain.json"):  # model and its domain
            path = Path(predictors.weights_dir()) / f"{m.name}{suffix}"
            digest.update(path.read_bytes() if path.is_file() else b"unknown")
        ids[m.name] = digest.hexdigest()[:16]
    return ids


def run_settings(task: BenchTask, method: Method, seed: int, *, n: int, iterations: int,
                 predictors: dict[str, str]) -> dict[str, Any]:
    """Every setting that determines one run's result (stored in its ``result.json``).

    The random baseline depends on neither the task nor the training budget.
    """
    from agents.train import rule_fingerprints, without_new_defaults

    settings: dict[str, Any] = {"format": RESULT_FORMAT,
                                "method": without_new_defaults({k: v for k, v in asdict(method).items()
                                                                if k != "label"}),
                                "seed": seed, "n": n, "predictors": predictors}
    if method.kind != "random":
        settings.update(task={k: v for k, v in asdict(task).items() if k != "label"}, iterations=iterations)
    if method.kind == "maskable_ppo":
        settings["ppo"] = dict(PPO_SETTINGS, n_envs=PPO_ENVS)
    rules = rule_fingerprints(method.exact_masks, method.constraints, method.design_constraints)
    if rules:
        settings["rules"] = rules
    return _plain(settings)


def _agent_run(task: BenchTask, method: Method, seed: int, iterations: int):
    from agents.train import AgentRun

    return AgentRun(task=task.task, lam=task.lam, seed=seed, iterations=iterations, exact_masks=method.exact_masks,
                    constraints=method.constraints, top_n_pct=method.top_n_pct,
                    gradient_steps=method.gradient_steps, model_kwargs=dict(method.model_kwargs),
                    design_constraints=method.design_constraints, constraint_lookahead=method.constraint_lookahead)


def _train_dqn(task: BenchTask, method: Method, seed: int, iterations: int, directory: Path, *,
               resume: bool = True, log: Any = None):
    """Train one DQN-based run, checkpointed once, halfway (see :func:`checkpoint_every`)."""
    from agents.train import train_agent

    return train_agent(_agent_run(task, method, seed, iterations), directory, progress=False,
                       checkpoint_every=checkpoint_every(iterations), resume=resume, log=log)


def checkpoint_every(iterations: int) -> int:
    """Iterations between the checkpoints of a Table 1 run: one checkpoint, halfway.

    A run takes about a minute, so an interruption loses at most half of one. Every checkpoint
    writes the whole replay buffer and reward memo (~0.35 s at the end of a paper-length run):
    the ten of ``train_agent``'s default (every 50 iterations) cost ~3.5 s, 6 % of a run.

    Example:
        >>> checkpoint_every(500), checkpoint_every(1)
        (251, 1)
    """
    return iterations // 2 + 1


@contextmanager
def _unchecked_distributions() -> Iterator[None]:
    """torch distributions without argument checks, inside the block only.

    sb3-contrib's masked ``Categorical`` is built three times per batch, and each build checks
    its logits (``validate_args``): 12 % of a MaskablePPO run. The checks only read, so the
    trained weights are identical (tested); NaN logits still fail, in ``torch.multinomial``.
    """
    from torch.distributions import Distribution

    before = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(before)


PPO_SETTINGS = dict(n_steps=20, batch_size=250, n_epochs=4, learning_rate=3e-4, gamma=0.9, ent_coef=0.01)
PPO_ENVS = 50


def _ppo_env(task: BenchTask, method: Method, n_envs: int, seed: int):
    from agents.train import build_env

    # the same training env as the DQN runs' (one home for its settings), with PPO's number of copies
    return build_env(_agent_run(task, method, seed, 1), n_envs)


@functools.lru_cache(maxsize=1)
def lean_maskable_policy() -> type:
    """sb3-contrib's ``MaskableActorCriticPolicy`` without one of its three softmax normalizations per batch.

    ``MaskableCategorical(logits)`` normalizes the logits, then normalizes them again through
    ``apply_masking(None)``; the policy then calls ``apply_masking(masks)``, which starts again
    from the first result, so the second is thrown away. This policy skips it: with action
    masks (MaskablePPO always passes them here) the actions, log-probabilities, entropies and
    gradients are the same bits (tested), for ~1/3 less of the distribution's work.
    """
    from sb3_contrib.common.maskable.distributions import MaskableCategorical, MaskableCategoricalDistribution
    from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
    from torch.distributions import Categorical

    class OnceNormalizedCategorical(MaskableCategorical):
        def __init__(self, probs=None, logits=None, validate_args=None, masks=None):
            self.masks = None
            Categorical.__init__(self, probs, logits, validate_args)
            self._original_logits = self.logits
            if masks is not None:
                self.apply_masking(masks)

    class LeanCategoricalDistribution(MaskableCategoricalDistribution):
        def proba_distribution(self, action_logits):
            self.distribution = OnceNormalizedCategorical(logits=action_logits.view(-1, self.action_dim))
            return self

    class LeanMaskableActorCriticPolicy(MaskableActorCriticPolicy):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.action_dist = LeanCategoricalDistribution(int(self.action_space.n))

    return LeanMaskableActorCriticPolicy


def _train_maskable_ppo(task: BenchTask, method: Method, seed: int, iterations: int, directory: Path, *,
                        settings: dict[str, Any] | None = None, resume: bool = True, log: Any = None):
    """Train MaskablePPO, or reuse the finished model of the same settings (weights only, no pickle).

    PPO is not checkpointed: an interrupted PPO run trains again from the start (same seed,
    same result).
    """
    from sb3_contrib import MaskablePPO

    from agents.persistence import clear_reward_caches
    from oxide_env.files import atomic_write_bytes, atomic_write_json

    path, done_path = directory / "model.zip", directory / "training.json"
    env = _ppo_env(task, method, PPO_ENVS, seed)
    model = MaskablePPO(lean_maskable_policy(), env, seed=seed, device="cpu", verbose=0, **PPO_SETTINGS)
    done = read_json_dict(done_path) if resume else None
    if done is not None and done.get("finished") and done.get("settings") == settings and path.is_file():
        try:
            model.set_parameters(str(path), exact_match=True, device="cpu")  # torch weights_only, never pickle
        except Exception as exc:  # a damaged model.zip: train again
            if log is not None:
                log(f"warning: {str(path)!r} cannot be loaded ({exc}); training again")
        else:
            return model, float(done.get("train_seconds", 0.0))
    done_path.unlink(missing_ok=True)
    clear_reward_caches(env)  # the run must not depend on rewards cached by earlier runs
    t0 = time.perf_counter()
    with _unchecked_distributions():
        model.learn(total_timesteps=(iterations + 1) * 500)
    seconds = time.perf_counter() - t0
    buffer = io.BytesIO()
    model.save(buffer)
    atomic_write_bytes(path, buffer.getvalue())
    atomic_write_json(done_path, {"settings": settings, "finished": True, "train_seconds": seconds})
    return model, seconds


def _generate_with_env(model: Any, task: BenchTask, method: Method, n: int, seed: int) -> list[str]:
    """``n`` materials of a masked SB3 policy (``predict(obs, action_masks=...)``), on the episode core.

    The policy samples with torch's global generator, seeded with ``seed``: a reloaded model
    generates the same materials as the freshly trained one.
    """
    from agents.generation import generate

    reward_model = model.get_env().get_attr("reward_model")[0] if method.constraint_lookahead else None
    return generate(model, n, seed=seed, batch_size=1000, exact_masks=method.exact_masks,
                    constraint_lookahead=method.constraint_lookahead, reward_model=reward_model)


def settings_conflict(task: BenchTask, method: Method, seed: int, *, directory: Path, settings: dict[str, Any],
              iterations: int) -> str | None:
    """Why ``directory`` holds work of *other recorded* settings (``None``: reusable, absent or legacy)."""
    from agents.train import first_difference

    cached = read_json_dict(directory / "result.json")
    if cached is not None and "settings" in cached:
        diff = first_difference(cached["settings"], settings)
        if diff is not None:
            return f"{str(directory / 'result.json')!r} has {diff[0]}={diff[1]!r}, not {diff[2]!r}"
    elif cached is None and method.kind == "dqn":
        cfg = read_json_dict(directory / "config.json")
        if cfg is not None and "format" in cfg:
            diff = first_difference(cfg, _agent_run(task, method, seed, iterations).settings())
            if diff is not None:
                return f"{str(directory / 'config.json')!r} has {diff[0]}={diff[1]!r}, not {diff[2]!r}"
    return None


def run_one(task: BenchTask, method: Method, seed: int, *, n: int, iterations: int, directory: Path,
            models: Sequence[Any], reference: Any, force: bool = False, log: Any = None) -> dict[str, Any]:
    """Train (if needed), generate ``n`` materials and evaluate them; cached in ``directory/result.json``.

    The result is reused only when every setting that produced it (:func:`run_settings`) matches.
    A result or partial run of other recorded settings raises ``ValueError`` naming the setting
    (``force=True`` reruns it); one without recorded settings (older versions) is rerun. An
    interrupted DQN run resumes exactly from its last checkpoint. Files are written atomically.
    """
    from agents.generation import write_materials_csv
    from agents.persistence import platform_info
    from oxide_env.chemistry.baseline import random_oxides
    from oxide_env.chemistry.metrics import pct_unique
    from oxide_env.files import atomic_write_json, remove_stale_temporaries

    say = log or (lambda message: None)
    settings = run_settings(task, method, seed, n=n, iterations=iterations, predictors=predictor_ids(models))
    result_path = directory / "result.json"
    cached = read_json_dict(result_path)
    if cached is not None and cached.get("settings") == settings:
        return _with_current_metrics(cached, task, method, directory, reference)
    conflict = settings_conflict(task, method, seed, directory=directory, settings=settings, iterations=iterations)
    if conflict is not None and not force:
        raise ValueError(f"{conflict}: rerun with the same settings, use another --out, or --force to redo it.")
    cfg = read_json_dict(directory / "config.json") if method.kind == "dqn" else None
    resume = conflict is None and cached is None and (cfg is None or "format" in cfg)
    if result_path.exists() or not resume:
        say(f"{str(directory)!r}: made with {'other' if conflict else 'unrecorded'} settings; running it again")
        result_path.unlink(missing_ok=True)
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(directory)
    train_seconds = 0.0
    t0 = time.perf_counter()
    if method.kind == "random":
        formulas = random_oxides(n, seed=seed)
    elif method.kind == "dqn":
        model, train_seconds = _train_dqn(task, method, seed, iterations, directory, resume=resume, log=say)
        t0 = time.perf_counter()
        plain = None
        if method.distinct:  # the plain samples: how distinct the policy is by itself (not timed)
            plain = model.generate(n, seed=seed)
            policy_unique = pct_unique(plain)
            t0 = time.perf_counter()
        try:
            formulas = model.generate(n, seed=seed, distinct=method.distinct)
        except ValueError:  # the policy collapsed onto fewer than n distinct materials: report it as is
            formulas = plain
    elif method.kind == "maskable_ppo":
        model, train_seconds = _train_maskable_ppo(task, method, seed, iterations, directory, settings=settings,
                                                   resume=resume, log=say)
        t0 = time.perf_counter()
        formulas = _generate_with_env(model, task, method, n, seed)
    else:
        raise ValueError(f"Invalid method kind {method.kind!r}: expected 'dqn', 'maskable_ppo' or 'random'.")
    generate_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics, checks = assess_run(formulas, task, method, reference)
    evaluate_seconds = time.perf_counter() - t0
    if method.distinct and method.kind == "dqn":
        metrics["pct_unique_policy"] = policy_unique
    # formula (reduced), generated (as generated), bare property names, then every check per material:
    # the same columns as `oxide-rl generate`
    columns = {m.name: checks[m.name] for m in models}
    columns.update((k, v) for k, v in checks.items() if k not in columns)
    write_materials_csv(directory / "formulas.csv", formulas, columns)
    result = dict(task=task.key, method=method.key, seed=seed, n=n, iterations=iterations,
                  train_seconds=train_seconds, generate_seconds=generate_seconds,
                  evaluate_seconds=evaluate_seconds, metrics=metrics, settings=settings,
                  metric_rules=tables_fingerprint(), platform=platform_info())  # provenance, not a setting
    atomic_write_json(result_path, result)  # a run counts as finished only once its result is complete
    return result


REQUIRED_METRICS = ("pct_plausible_near_hull", "pct_new_plausible")
"""Metrics added after runs of unchanged settings were made: recomputed from their stored designs."""


def metrics_current(result: dict[str, Any]) -> bool:
    """Whether a stored result has every metric of :data:`REQUIRED_METRICS`, computed under today's
    validity tables (:func:`~oxide_env.chemistry.validity.tables_fingerprint`)."""
    return (all(k in result.get("metrics", {}) for k in REQUIRED_METRICS)
            and result.get("metric_rules") == tables_fingerprint())


def _with_current_metrics(cached: dict[str, Any], task: BenchTask, method: Method, directory: Path,
                          reference: Any) -> dict[str, Any]:
    """A finished run whose metrics are not :func:`metrics_current`, re-assessed from its
    ``formulas.csv`` (the designs as generated; same settings, same predictors: no retraining)."""
    if not (directory / "formulas.csv").is_file() or metrics_current(cached):
        return cached
    from agents.generation import read_materials_csv
    from oxide_env.files import atomic_write_json

    _, generated, _ = read_materials_csv(directory / "formulas.csv")
    metrics, _ = assess_run(generated, task, method, reference)
    kept = {k: v for k, v in cached["metrics"].items() if k == "pct_unique_policy"}  # measured at generation
    updated = dict(cached, metrics={**metrics, **kept}, metric_rules=tables_fingerprint())
    atomic_write_json(directory / "result.json", updated)
    return updated


def assess_run(formulas: Sequence[str], task: BenchTask, method: Method, reference: Any
                ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Metrics and per-material checks of one run (:func:`predictors.assess.assess`).

    A plausible design must be inside the applicability domain of ``formation_energy`` and of the
    task's properties. The random baseline serves every task, so it is checked against every
    domains, and its ``pct_in_domain@<task>`` / ``pct_plausible@<task>`` /
    ``pct_plausible_near_hull@<task>`` / ``pct_new_plausible@<task>`` are stored for each task.
    """
    from oxide_env.chemistry.metrics import NEAR_HULL, PLAUSIBLE_FORMATION_ENERGY, pct_new, pct_novel
    from predictors.assess import assess, domain_names

    random = method.kind == "random"
    metrics, checks = assess(formulas, domain_properties=None if random else task.properties, novelty=False)
    metrics["pct_novel"] = pct_novel(formulas, reference)
    metrics["pct_new_plausible"] = pct_new(formulas, checks["plausible"], reference)
    if random:
        base = checks["oxide_rule"] & (checks["formation_energy"] <= PLAUSIBLE_FORMATION_ENERGY)
        near = np.nan_to_num(checks["e_above_hull"], nan=np.inf) <= NEAR_HULL
        for t in TASKS:
            inside = np.logical_and.reduce([checks[f"in_domain_{d}"] for d in domain_names(t.properties)])
            metrics[f"pct_in_domain@{t.key}"] = 100.0 * float(inside.mean())
            metrics[f"pct_plausible@{t.key}"] = 100.0 * float((base & inside).mean())
            metrics[f"pct_plausible_near_hull@{t.key}"] = 100.0 * float((base & inside & near).mean())
            metrics[f"pct_new_plausible@{t.key}"] = pct_new(formulas, base & inside, reference)
    return metrics, checks
