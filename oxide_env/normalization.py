"""Fixed feature statistics for the environment's ``normalize_observations=True`` option.

The 145 Magpie features span very different scales (fractions near 1, melting points in
the thousands of kelvin, up to ~3,800), which hurts algorithms that feed raw observations to
an MLP (SB3's PPO, DQN, MaskablePPO). With ``normalize_observations=True`` the environment
standardises every feature with a *fixed* mean and standard deviation shipped in
``oxide_env/data/feature_stats.json``, so observations are the same function of the state
for every run, seed and saved model (unlike a running normaliser such as ``VecNormalize``).

The statistics are those of every non-empty composition visited by random episodes: at each
step an action is drawn uniformly among the hard-rule-allowed ones (the states an agent sees
early in training); the step one-hot is left as it is. Regenerate them with
``python -m oxide_env.normalization`` (deterministic for a seed).

Example:
    >>> from oxide_env.normalization import feature_statistics, normalize_features
    >>> mean, std = feature_statistics()
    >>> mean.shape, bool((std > 0).all())
    ((145,), True)
    >>> import oxide_env
    >>> z = normalize_features(oxide_env.featurize(["BaTiO3", "MgO"]))
    >>> z.shape, bool(abs(z).max() < 50)
    ((2, 145), True)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from oxide_env.chemistry.checks import check_number
from oxide_env.chemistry.episode import random_episodes
from oxide_env.chemistry.features import FEATURE_LABELS, N_FEATURES, featurize

__all__ = ["compute_feature_statistics", "feature_statistics", "normalize_features"]


MIN_STD = 1e-6
"""A feature whose spread is below this is only centred (divided by 1)."""


def stats_path() -> Path:
    """Where the shipped statistics live: ``oxide_env/data/feature_stats.json``."""
    return Path(str(resources.files("oxide_env").joinpath("data", "feature_stats.json")))


def _random_episode_states(n_episodes: int, seed: int) -> np.ndarray:
    """Count vectors of every non-empty state of ``n_episodes`` uniformly random allowed episodes."""
    states = random_episodes(n_episodes, np.random.default_rng(seed))
    return np.concatenate([s[s.any(axis=1)] for s in states])


def compute_feature_statistics(n_episodes: int = 20_000, seed: int = 0) -> dict:
    """Mean and standard deviation of the 145 features over random episodes' non-empty states.

    Args:
        n_episodes: random episodes to play (every non-empty state of each counts).
        seed: seed of the action sampling.

    Returns:
        ``{"mean": [...], "std": [...], "labels": [...], "n_states": int, ...}`` (JSON-ready).

    Example:
        >>> stats = compute_feature_statistics(200, seed=0)
        >>> len(stats["mean"]), stats["n_states"] > 200
        (145, True)
    """
    n_episodes = check_number(n_episodes, "n_episodes", integer=True, minimum=2)
    features = featurize(_random_episode_states(int(n_episodes), seed))
    return {
        "description": "mean and std of the 145 Magpie features over every non-empty state of random "
        "episodes (actions uniform among the hard-rule-allowed ones); used by "
        "OxideComposition-v0's normalize_observations=True",
        "command": f"python -m oxide_env.normalization --episodes {int(n_episodes)} --seed {seed}",
        "n_episodes": int(n_episodes),
        "seed": seed,
        "n_states": int(len(features)),
        "labels": list(FEATURE_LABELS),
        "mean": features.mean(axis=0).tolist(),
        "std": features.std(axis=0).tolist(),
    }


@lru_cache(maxsize=1)
def _load(path: str) -> tuple[np.ndarray, np.ndarray]:
    data = json.loads(Path(path).read_text())
    mean = np.asarray(data["mean"], dtype=np.float64)
    std = np.asarray(data["std"], dtype=np.float64)
    if mean.shape != (N_FEATURES,) or std.shape != (N_FEATURES,) or list(data["labels"]) != list(FEATURE_LABELS):
        raise ValueError(f"Invalid feature statistics in {path}: they do not match the 145 features; "
                         "regenerate them with `python -m oxide_env.normalization`.")
    std = np.where(std > MIN_STD, std, 1.0)
    mean.flags.writeable = std.flags.writeable = False
    return mean, std


def feature_statistics() -> tuple[np.ndarray, np.ndarray]:
    """The shipped ``(mean, std)`` of the 145 features, each ``(145,)`` (read-only; std > 0)."""
    return _load(str(stats_path()))


def normalize_features(features: np.ndarray) -> np.ndarray:
    """Standardise Magpie features ``(..., 145)`` with the shipped statistics, in float32.

    The arithmetic is float32 and monotone in each feature, so applying it to the bounds of
    the raw observation space gives valid bounds of the normalised one.
    """
    mean, std = feature_statistics()
    features = np.asarray(features, dtype=np.float32)
    if features.shape[-1:] != (N_FEATURES,):
        raise ValueError(f"Invalid features of shape {features.shape}: expected (..., {N_FEATURES}).")
    return (features - mean.astype(np.float32)) / std.astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate oxide_env/data/feature_stats.json.")
    parser.add_argument("--episodes", type=int, default=20_000, help="random episodes (default 20000)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--out", default=None, help="file to write (default: the package's data/feature_stats.json)")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else stats_path()
    text = json.dumps(compute_feature_statistics(args.episodes, args.seed), indent=1) + "\n"
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
