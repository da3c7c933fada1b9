"""Reinforcement-learning agents for ``OxideComposition-v0``.

Example:
    >>> import gymnasium as gym, oxide_env
    >>> from agents import ConstrainedDQN
    >>> model = ConstrainedDQN(env=gym.make("OxideComposition-v0", task="bulk_modulus"), seed=0)
    >>> len(model.generate(5, seed=0))
    5
"""

from __future__ import annotations

from agents.dqn import ConstrainedDQN
from agents.policies import ConstrainedDQNPolicy, PairNet, PaperQNetwork
from agents.sampling import top_n_sample

__all__ = ["ConstrainedDQN", "ConstrainedDQNPolicy", "PairNet", "PaperQNetwork", "top_n_sample"]
