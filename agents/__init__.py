"""Reinforcement-learning agents for ``OxideComposition-v0``.

Example:
    >>> import gymnasium as gym, oxide_env
    >>> from agents import ConstrainedDQN
    >>> model = ConstrainedDQN(env=gym.make("OxideComposition-v0", task="bulk_modulus"), seed=0)
    >>> len(model.generate(5, seed=0))
    5
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["ConstrainedDQN", "ConstrainedDQNPolicy", "ConstrainedMlpPolicy", "PairNet", "PaperQNetwork",
           "top_n_sample"]
_HOMES = {"ConstrainedDQN": "agents.dqn", "ConstrainedDQNPolicy": "agents.policies",
          "ConstrainedMlpPolicy": "agents.policies", "PairNet": "agents.policies",
          "PaperQNetwork": "agents.policies", "top_n_sample": "agents.sampling"}

if TYPE_CHECKING:  # pragma: no cover
    from agents.dqn import ConstrainedDQN
    from agents.policies import ConstrainedDQNPolicy, ConstrainedMlpPolicy, PairNet, PaperQNetwork
    from agents.sampling import top_n_sample


def __getattr__(name: str) -> Any:
    """Import torch and SB3 only when an agent is used: ``oxide-rl --help`` and the benchmark helpers
    stay quick (PEP 562)."""
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'agents' has no attribute {name!r}")
