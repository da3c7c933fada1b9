"""Define your own objective without subclassing: a task is data (predictor -> weight) or a callable.

    python examples/custom_task.py
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import oxide_env  # noqa: F401

# "oxides with a high bulk modulus that sinter at low temperature", in the paper's units:
env = gym.make("OxideComposition-v0", task={"bulk_modulus": 250.0, "sintering_temperature": -1.0},
               exact_masks="electronegativity_balanced")
obs, info = env.reset(seed=0)
rng = np.random.default_rng(0)
done = False
while not done:
    action = rng.choice(np.flatnonzero(info["action_mask"]))  # a random *allowed* action
    obs, reward, done, _, info = env.step(action)
print(info["formula"], "reward", round(reward, 1), "properties", info["properties"])
print("charge neutral:", info["charge_neutral"], "EN balanced:", info["electronegativity_balanced"])

# a callable task: reward light oxides (fewer atoms), any function of the counts works
env = gym.make("OxideComposition-v0", task=lambda counts: -counts.sum(axis=1).astype(float))
