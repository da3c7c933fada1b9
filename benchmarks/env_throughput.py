"""Throughput of OxideComposition-v0 (single env, random allowed actions) and the random
baseline played through the environment.

Measures steps/s with hard-rule masks (predictors replaced by a constant, i.e. excluding
the terminal predictor call), with the shipped predictors (terminal rewards computed, cache
cleared so every composition is predicted afresh), and with exact constraint masks; plus
the time to compute the mask of all 800 actions.

Usage:
    python benchmarks/env_throughput.py [--episodes 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def play(env, episodes: int, seed: int) -> tuple[float, list[dict]]:
    rng = np.random.default_rng(seed)
    finals = []
    n_steps = 0
    t0 = time.perf_counter()
    obs, info = env.reset(seed=seed)
    for _ in range(episodes):
        done = False
        while not done:
            action = rng.choice(np.flatnonzero(info["action_mask"]))
            obs, reward, done, _, info = env.step(action)
            n_steps += 1
        finals.append(info)
        obs, info = env.reset()
    return n_steps / (time.perf_counter() - t0), finals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "env_throughput.md"))
    args = parser.parse_args(argv)

    import oxide_env
    import predictors
    from oxide_env import env as env_module
    from oxide_env.chemistry import completion
    from oxide_env.env import OxideCompositionEnv
    from oxide_env.tasks import PREDICTOR_NAMES

    constant = {name: (lambda c: np.zeros(len(c))) for name in PREDICTOR_NAMES}
    rows = []

    def fresh():
        env_module._STATES.store.clear()
        completion.clear_cache()

    fresh()
    sps, _ = play(OxideCompositionEnv(predictors=constant), args.episodes, args.seed)
    rows.append(("hard-rule masks, excluding predictors (cold state cache)", sps, ">= 10,000"))
    sps, _ = play(OxideCompositionEnv(predictors=constant), args.episodes, args.seed)
    rows.append(("hard-rule masks, excluding predictors (warm state cache)", sps, ">= 10,000"))
    fresh()
    env = OxideCompositionEnv(task="bulk_modulus")
    env.rewarder._cache.clear()
    sps, finals = play(env, args.episodes, args.seed)
    rows.append(("hard-rule masks, shipped predictors (all four, cold)", sps, ">= 3,000"))
    for constraint in ("charge_neutral", "electronegativity_balanced"):
        fresh()
        sps, _ = play(OxideCompositionEnv(predictors=constant, exact_masks=constraint), args.episodes, args.seed)
        rows.append((f"exact {constraint} masks, excluding predictors", sps, "-"))

    # time of one exact mask of all 800 actions, per step, cold
    rng = np.random.default_rng(args.seed)
    timing = []
    for constraint in ("charge_neutral", "electronegativity_balanced"):
        per_step = []
        for step in range(5):
            states = []
            for _ in range(200):
                counts = np.zeros(80, dtype=np.int64)
                for s in range(step):
                    mask = completion.hard_rule_mask(counts, s)
                    a = rng.choice(np.flatnonzero(mask))
                    counts[a // 10] += a % 10
                states.append(counts)
            completion.clear_cache()
            t0 = time.perf_counter()
            for counts in states:
                completion.completable_actions(counts, step, constraint)
            per_step.append((time.perf_counter() - t0) / len(states) * 1e3)
        timing.append((constraint, per_step))

    # the random baseline through the environment: uniformly random allowed actions
    formulas = [f["formula"] for f in finals]
    models = [predictors.load(n) for n in PREDICTOR_NAMES]
    from predictors.data import training_keys

    metrics = oxide_env.evaluate(formulas, reference=training_keys(), predictors=models)

    lines = ["# OxideComposition-v0 throughput (single env, random allowed actions)", "",
             "| setting | steps/s | target |", "|---|---|---|"]
    lines += [f"| {name} | {sps:,.0f} | {target} |" for name, sps, target in rows]
    lines += ["", "Exact mask of all 800 actions, ms per state (cold cache, 200 random states per step):", "",
              "| constraint | step 1 | step 2 | step 3 | step 4 | step 5 | mean |", "|---|---|---|---|---|---|---|"]
    for constraint, per_step in timing:
        lines.append(f"| {constraint} | " + " | ".join(f"{x:.3f}" for x in per_step) + f" | {np.mean(per_step):.3f} |")
    lines += ["", f"Random allowed actions through the env ({len(formulas)} episodes, seed {args.seed}):", "",
              "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()]
    lines += ["", f"Command: `python benchmarks/env_throughput.py --episodes {args.episodes} --seed {args.seed}`"]
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
