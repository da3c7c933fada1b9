"""Train the paper's agent (ConstrainedDQN) and generate 1,000 oxides with high bulk modulus.

    python examples/constrained_dqn.py --task bulk_modulus --iterations 500 --seed 0

The full paper protocol (500 iterations of 100 episodes) takes about 2 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse

import oxide_env
import predictors
from agents import ConstrainedDQN
from agents.vec_env import make_oxide_vec_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="bulk_modulus")
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--exact-masks", choices=["charge_neutral", "electronegativity_balanced"])
    parser.add_argument("--n", type=int, default=1000, help="materials to generate (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    env = make_oxide_vec_env(n_envs=100, seed=args.seed, task=args.task, exact_masks=args.exact_masks)
    model = ConstrainedDQN(env=env, seed=args.seed)
    model.learn(total_timesteps=(args.iterations + 1) * 500, progress_bar=False)
    formulas = model.generate(args.n, seed=args.seed)
    models = [predictors.load(name) for name in predictors.PREDICTOR_NAMES]
    agent = oxide_env.evaluate(formulas, predictors=models)
    random = oxide_env.evaluate(oxide_env.random_oxides(args.n, seed=args.seed), predictors=models)
    print(f"{'metric':36s} {'agent':>10s} {'random':>10s}")
    for key in agent:
        print(f"{key:36s} {agent[key]:10.3f} {random[key]:10.3f}")
    print("a few generated oxides:", ", ".join(formulas[:8]))


if __name__ == "__main__":
    main()
