"""Plain Stable-Baselines3 PPO and DQN on OxideComposition-v0 (no masks: they may pick
actions the hard rules forbid, which end the episode with the task's worst reward).

    python examples/ppo_and_dqn.py --algo ppo --task shear_modulus --timesteps 20000
"""

from __future__ import annotations

import argparse

import gymnasium as gym
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.env_util import make_vec_env

import oxide_env  # noqa: F401  (registers OxideComposition-v0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=["ppo", "dqn"], default="ppo")
    parser.add_argument("--task", default="bulk_modulus")
    parser.add_argument("--timesteps", type=int, default=20_000)
    parser.add_argument("--episodes", type=int, default=200, help="evaluation episodes (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    env = make_vec_env("OxideComposition-v0", n_envs=8, seed=args.seed, env_kwargs={"task": args.task})
    if args.algo == "ppo":
        model = PPO("MlpPolicy", env, n_steps=64, batch_size=128, seed=args.seed)
    else:
        model = DQN("MlpPolicy", env, learning_starts=1000, seed=args.seed)
    model.learn(total_timesteps=args.timesteps)

    single = gym.make("OxideComposition-v0", task=args.task)
    obs, info = single.reset(seed=args.seed)
    rewards, invalid = [], 0
    for _ in range(args.episodes):
        done = False
        while not done:
            action, _ = model.predict(obs, deterministic=False)
            obs, reward, done, _, info = single.step(int(action))
        rewards.append(reward)
        invalid += info["invalid_action"]
        obs, info = single.reset()
    print(f"{args.algo}: mean terminal reward {sum(rewards) / len(rewards):.3f}, "
          f"{invalid} of {args.episodes} episodes ended by a forbidden action")


if __name__ == "__main__":
    main()
