"""Train sb3-contrib's MaskablePPO on OxideComposition-v0 and evaluate 1,000 generated oxides.

    python examples/maskable_ppo.py --task bulk_modulus --timesteps 20000 --seed 0

MaskablePPO reads ``env.action_masks()`` (hard rules, plus exact constraint masks with
``--exact-masks``) and never takes a masked action.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
from sb3_contrib import MaskablePPO
from sb3_contrib.common.wrappers import ActionMasker

import oxide_env
import predictors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="bulk_modulus")
    parser.add_argument("--timesteps", type=int, default=20_000)
    parser.add_argument("--exact-masks", choices=["charge_neutral", "electronegativity_balanced"])
    parser.add_argument("--n", type=int, default=1000, help="materials to generate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    env = gym.make("OxideComposition-v0", task=args.task, exact_masks=args.exact_masks)
    env = ActionMasker(env, lambda e: e.unwrapped.action_masks())
    model = MaskablePPO("MlpPolicy", env, n_steps=500, batch_size=100, seed=args.seed, verbose=0)
    model.learn(total_timesteps=args.timesteps)

    formulas = []
    obs, info = env.reset(seed=args.seed)
    while len(formulas) < args.n:
        action, _ = model.predict(obs, action_masks=info["action_mask"], deterministic=False)
        obs, reward, terminated, truncated, info = env.step(int(action))
        if terminated or truncated:
            formulas.append(info["formula"])
            obs, info = env.reset()
    models = [predictors.load(name) for name in predictors.PREDICTOR_NAMES]
    metrics = oxide_env.evaluate(formulas, predictors=models)
    for key, value in metrics.items():
        print(f"{key:40s} {value:10.3f}" if isinstance(value, float) else f"{key:40s} {value}")
    print("examples:", ", ".join(np.random.default_rng(args.seed).choice(formulas, 10)))


if __name__ == "__main__":
    main()
