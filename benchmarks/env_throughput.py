"""Throughput of OxideComposition-v0: the batched vector envs against the per-copy path they replace.

Random allowed actions (uniform among each copy's mask, drawn outside the timed region); only
the environments' ``step`` calls are timed, and "steps/s" counts transitions: a Gymnasium
vector env's next-step autoreset rows (a copy's reset, on the call after its episode ended)
are not counted. "Excluding predictors" replaces the four predictors
by constants (the terminal validity checks still run); "shipped predictors" uses the real
models with an empty reward memo. Every timed row starts from empty validity / mask memos
(cold: nearly every state of random play is new). The old path, in the same run: Gymnasium's
``SyncVectorEnv`` and SB3's ``DummyVecEnv`` of single environments (one ``EpisodeBatch`` of
one episode each, sharing one reward model).

Usage:
    python benchmarks/env_throughput.py [--envs 100] [--steps 1000] [--seed 0] [--threads 2]

Writes ``benchmarks/results/env_throughput.md`` and ``.csv``.
"""

from __future__ import annotations

import argparse
import os
import csv
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def random_actions(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uniformly random allowed action per row of ``masks``."""
    counts = masks.sum(axis=1)
    picks = (rng.random(len(masks)) * counts).astype(np.int64)
    cumulative = np.cumsum(masks, axis=1)
    return np.argmax(cumulative > picks[:, None], axis=1)


def cold() -> None:
    from oxide_env.chemistry import completion, validity

    completion.clear_cache()
    validity.clear_cache()


def time_gym(envs, steps: int, seed: int) -> float:
    """Transitions/s of a Gymnasium vector env (info["action_mask"] gives the masks).

    Gymnasium 1.x resets a finished copy on the *next* ``step`` call (next-step autoreset, the
    default of our vector env and of ``SyncVectorEnv``), ignoring its action: a sixth of a 5-step
    episode's calls. Those reset rows are not transitions and are not counted, so the figure is
    comparable with an SB3 VecEnv's, which resets within the step.
    """
    rng = np.random.default_rng(seed)
    _, info = envs.reset(seed=seed)
    resetting = np.zeros(envs.num_envs, dtype=bool)
    transitions = 0
    elapsed = 0.0
    for _ in range(steps):
        actions = random_actions(info["action_mask"], rng)
        t0 = time.perf_counter()
        _, _, terminated, truncated, info = envs.step(actions)
        elapsed += time.perf_counter() - t0
        transitions += int((~resetting).sum())
        resetting = np.asarray(terminated) | np.asarray(truncated)
    return transitions / elapsed


def time_sb3(venv, steps: int, seed: int) -> float:
    """Transitions/s of an SB3 VecEnv (masks from env_method("action_masks"), as sb3-contrib does)."""
    rng = np.random.default_rng(seed)
    venv.reset()
    elapsed = 0.0
    for _ in range(steps):
        t0 = time.perf_counter()
        masks = np.stack(venv.env_method("action_masks"))
        elapsed += time.perf_counter() - t0
        actions = random_actions(masks, rng)
        t0 = time.perf_counter()
        venv.step(actions)
        elapsed += time.perf_counter() - t0
    return steps * venv.num_envs / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=int, default=100, help="copies per vector env (default 100)")
    parser.add_argument("--steps", type=int, default=1000, help="vector steps per measurement (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads (default 2, this machine's cores; the predictors use them)")
    parser.add_argument("--out", default=str(RESULTS / "env_throughput.md"))
    args = parser.parse_args(argv)

    import gymnasium as gym
    import torch
    from gymnasium.vector import SyncVectorEnv
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    import oxide_env  # noqa: F401  (registers the env)
    from agents.vec_env import make_oxide_vec_env
    from oxide_env.env import OxideCompositionEnv
    from oxide_env.tasks import PREDICTOR_NAMES
    from oxide_env.vector import OxideCompositionVectorEnv
    from predictors.envs import reward_model

    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]  # another job on the cores slows every row: say so in the report
    constant = {name: (lambda c: np.zeros(len(c))) for name in PREDICTOR_NAMES}
    n, steps = args.envs, args.steps
    rows: list[dict] = []

    def measure(setting: str, target: str, new, old=None) -> None:
        cold()
        new_sps = new()
        old_sps = None
        if old is not None:
            cold()
            old_sps = old()
        rows.append({"setting": setting, "steps_per_s": new_sps, "old_path_steps_per_s": old_sps,
                     "ratio": None if old_sps is None else new_sps / old_sps, "target": target})
        print(rows[-1], flush=True)

    def shipped(report: str = "all"):
        model = reward_model("bulk_modulus", report=report)
        model.clear_cache()
        return model

    def fake():
        return reward_model("bulk_modulus", predictors=constant)

    measure("single env, hard masks, excluding predictors", "-",
            lambda: time_gym(SyncVectorEnv([lambda: OxideCompositionEnv(fake())]), steps * 5, args.seed))
    measure(f"Gymnasium vector env ({n} copies), hard masks, excluding predictors", ">= 100,000",
            lambda: time_gym(OxideCompositionVectorEnv(n, fake()), steps, args.seed),
            lambda: (lambda m: time_gym(SyncVectorEnv([lambda: OxideCompositionEnv(m) for _ in range(n)]),
                                        steps // 5, args.seed))(fake()))
    shared = fake()
    measure(f"SB3 VecEnv ({n} copies), hard masks, excluding predictors", ">= 100,000",
            lambda: time_sb3(make_oxide_vec_env(n, seed=args.seed, reward_model=fake()), steps, args.seed),
            lambda: time_sb3(DummyVecEnv([lambda: Monitor(OxideCompositionEnv(shared)) for _ in range(n)]),
                             steps // 5, args.seed))
    measure(f"Gymnasium vector env ({n} copies), shipped predictors", ">= 30,000",
            lambda: time_gym(OxideCompositionVectorEnv(n, shipped()), steps, args.seed),
            lambda: (lambda m: time_gym(SyncVectorEnv([lambda: OxideCompositionEnv(m) for _ in range(n)]),
                                        steps // 5, args.seed))(shipped()))
    measure(f"SB3 VecEnv ({n} copies), shipped predictors", ">= 30,000",
            lambda: time_sb3(make_oxide_vec_env(n, seed=args.seed, reward_model=shipped()), steps, args.seed))
    measure(f"Gymnasium vector env ({n} copies), shipped predictors, report='reward' (training's setting)", "-",
            lambda: time_gym(OxideCompositionVectorEnv(n, shipped("reward")), steps, args.seed))
    measure(f"SB3 VecEnv ({n} copies), shipped predictors, report='reward' (training's setting)", "-",
            lambda: time_sb3(make_oxide_vec_env(n, seed=args.seed, reward_model=shipped("reward")), steps, args.seed))
    for constraint in ("charge_neutral", "electronegativity_balanced"):
        measure(f"Gymnasium vector env ({n} copies), exact {constraint} masks, excluding predictors", "-",
                lambda c=constraint: time_gym(OxideCompositionVectorEnv(n, fake(), exact_masks=c), steps // 2,
                                              args.seed))
    # the random baseline through the vector env, as a check that the env plays the paper's MDP
    envs = gym.make_vec("OxideComposition-v0", num_envs=n, task="bulk_modulus")
    rng = np.random.default_rng(args.seed)
    _, info = envs.reset(seed=args.seed)
    formulas: list[str] = []
    while len(formulas) < 2000:
        _, _, terminated, _, info = envs.step(random_actions(info["action_mask"], rng))
        formulas += [f for f, done in zip(info.get("formula", []), terminated) if done]

    import oxide_env as oe
    import predictors
    from predictors.data import training_keys

    metrics = oe.evaluate(formulas[:2000], reference=training_keys(),
                          predictors=[predictors.load(name) for name in PREDICTOR_NAMES])

    def fmt(x):
        return "-" if x is None else f"{x:,.0f}"

    command = (f"python benchmarks/env_throughput.py --envs {n} --steps {steps} --seed {args.seed} "
               f"--threads {args.threads}")
    lines = ["# OxideComposition-v0 throughput (random allowed actions, cold memos)", "",
             f"{n} copies per vector env; {steps} vector steps per row (the old path: a fifth of them); only the "
             "env's step (and mask) calls are timed; torch threads: " + str(args.threads) + f"; {os.cpu_count()} "
             f"CPU cores, 1-minute load average {load:.2f} when it started (above ~0.5, another job shared the "
             "cores and every figure is lower than on an idle machine).", "",
             "\"Steps/s\" counts transitions: a Gymnasium vector env's next-step autoreset calls (a finished "
             "copy's reset, one call in six of a 5-step episode) are left out, as an SB3 VecEnv resets within the "
             "step. \"Shipped predictors\": all five, as every terminal info reports them by default "
             "(report='all', ~13 MFLOP a design); report='reward' runs only the reward's predictor.", "",
             "| setting | steps/s | old path steps/s | ratio | target |", "|---|---|---|---|---|"]
    lines += [f"| {r['setting']} | {fmt(r['steps_per_s'])} | {fmt(r['old_path_steps_per_s'])} | "
              + ("-" if r["ratio"] is None else f"{r['ratio']:.1f}x") + f" | {r['target']} |" for r in rows]
    lines += ["", "Old path: Gymnasium `SyncVectorEnv` / SB3 `DummyVecEnv` of single environments sharing one "
              "reward model (each steps its own one-episode core; rewards predicted one composition at a time).",
              "", f"Random allowed actions through the vector env ({len(formulas[:2000])} episodes):", "",
              "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()]
    lines += ["", f"Command: `{command}`"]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    with open(out.with_suffix(".csv"), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
