"""MaskablePPO with raw and with normalised observations: same task, budget and seeds.

Trains sb3-contrib's ``MaskablePPO`` (``MlpPolicy``, hard-rule masks) on
``OxideComposition-v0`` twice per seed, once with the raw Magpie features (values up to
~3,800) and once with ``normalize_observations=True``, then generates ``--n`` materials with
each policy (sampling, masked) and reports the mean training reward of the last 100 episodes,
the mean predicted property of the generated materials and their % unique reduced formulas.

Usage:
    python benchmarks/normalization.py [--task bulk_modulus] [--timesteps 10000 40000] [--seeds 0 1 2] [--n 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
PPO_SETTINGS = dict(n_steps=20, batch_size=250, n_epochs=4, learning_rate=3e-4, gamma=0.9, ent_coef=0.01)
N_ENVS = 50


def run(task: str, normalize: bool, seed: int, timesteps: int, n: int) -> dict[str, float]:
    """Train one MaskablePPO and generate ``n`` materials with it."""
    from sb3_contrib import MaskablePPO

    from agents.vec_env import make_oxide_vec_env
    from oxide_env.chemistry.metrics import pct_unique
    from oxide_env.tasks import make_task

    env = make_oxide_vec_env(N_ENVS, seed=seed, task=task, normalize_observations=normalize)
    model = MaskablePPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **PPO_SETTINGS)
    t0 = time.perf_counter()
    model.learn(total_timesteps=timesteps)
    seconds = time.perf_counter() - t0
    last_rewards = [info["r"] for info in model.ep_info_buffer]  # the last 100 training episodes

    # generation: n episodes of the trained policy (sampled, masked), in a fresh env
    venv = make_oxide_vec_env(100, seed=seed + 10_000, task=task, normalize_observations=normalize)
    obs = venv.reset()
    formulas, rewards, values = [], [], []
    prop = make_task(task).property_names[0]
    while len(formulas) < n:
        for _ in range(5):
            masks = np.stack(venv.env_method("action_masks"))
            actions, _ = model.predict(obs, action_masks=masks, deterministic=False)
            obs, reward, dones, infos = venv.step(actions)
        for info, r, done in zip(infos, reward, dones):
            if done and len(formulas) < n:
                formulas.append(info["formula"])
                rewards.append(float(r))
                values.append(info["properties"][prop])
    return {"train_reward_last100": float(np.mean(last_rewards)), "generated_reward": float(np.mean(rewards)),
            "property_mean": float(np.mean(values)), "pct_unique": pct_unique(formulas),
            "train_seconds": seconds, "examples": ", ".join(formulas[:5])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="bulk_modulus")
    parser.add_argument("--timesteps", type=int, nargs="+", default=[10_000, 40_000],
                        help="training budgets, environment steps per run (default 10000 40000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=1000, help="materials generated per run (default 1000)")
    parser.add_argument("--out", default=str(RESULTS / "normalization.md"))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # small MLPs: one thread is fastest, and the same on every machine
    rows = {}
    for steps in args.timesteps:
        for normalize in (False, True):
            for seed in args.seeds:
                rows[(steps, normalize, seed)] = r = run(args.task, normalize, seed, steps, args.n)
                print(f"steps={steps} normalize={normalize} seed={seed}: train reward "
                      f"{r['train_reward_last100']:.3f}, property {r['property_mean']:.3f}, "
                      f"unique {r['pct_unique']:.1f} %, {r['train_seconds']:.0f} s", flush=True)

    def summary(steps: int, normalize: bool, key: str) -> str:
        v = np.array([rows[(steps, normalize, s)][key] for s in args.seeds])
        return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"

    from oxide_env.tasks import make_task

    prop = make_task(args.task).property_names[0]
    command = "python benchmarks/normalization.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        "# MaskablePPO: raw vs normalised observations", "",
        f"Task `{args.task}`, `MaskablePPO('MlpPolicy', n_steps=20, batch_size=250, n_epochs=4, lr=3e-4, "
        f"gamma=0.9, ent_coef=0.01)` on {N_ENVS} environments with hard-rule masks, "
        f"{' or '.join(f'{t:,}' for t in args.timesteps)} environment steps per run, seeds "
        f"{', '.join(map(str, args.seeds))}; then {args.n:,} materials "
        "generated per run (masked sampling). *raw*: the default observations (Magpie features up to "
        "~3,800); *normalised*: `normalize_observations=True` (fixed shipped statistics). "
        "Mean ± std over seeds.", "",
        f"| steps | observations | training reward, last 100 episodes | generated: mean {prop} "
        "| generated: % unique | training time per run (s) |",
        "|---|---|---|---|---|---|",
    ]
    for steps in args.timesteps:
        for normalize in (False, True):
            lines.append(f"| {steps:,} | {'normalised' if normalize else 'raw'} | "
                         f"{summary(steps, normalize, 'train_reward_last100')} | "
                         f"{summary(steps, normalize, 'property_mean')} | {summary(steps, normalize, 'pct_unique')} | "
                         f"{summary(steps, normalize, 'train_seconds')} |")
    lines += ["", "Per run:", "",
              "| steps | observations | seed | training reward | mean property | % unique | examples |",
              "|---|---|---|---|---|---|---|"]
    for (steps, normalize, seed), r in rows.items():
        lines.append(f"| {steps:,} | {'normalised' if normalize else 'raw'} | {seed} | "
                     f"{r['train_reward_last100']:.3f} | {r['property_mean']:.3f} | {r['pct_unique']:.1f} | "
                     f"{r['examples']} |")
    lines += ["", f"Command: `{command.strip()}` (one torch thread, 2 CPU cores).", ""]
    text = "\n".join(lines)
    from oxide_env.files import atomic_write_text

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, text)
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
