"""``OxideComposition-v0`` with the shipped predictors: the factories behind ``gym.make``.

The environment (:mod:`oxide_env`) never imports this package: its terminal rewards come from
an injected :class:`~oxide_env.tasks.RewardModel`. This module builds that model from the
shipped predictors (and, for the design constraints, the shipped applicability-domain models
and the training compositions) and is what the registration points at:
``gym.make("OxideComposition-v0", ...)`` calls :func:`make_env` and
``gym.make_vec("OxideComposition-v0", num_envs=N, ...)`` calls :func:`make_vector_env`.

Example:
    >>> import gymnasium as gym, oxide_env
    >>> env = gym.make("OxideComposition-v0", task="bulk_modulus")
    >>> type(env.unwrapped.reward_model).__name__
    'RewardModel'
    >>> envs = gym.make_vec("OxideComposition-v0", num_envs=4, task="shear_modulus")
    >>> envs.reset(seed=0)[0].shape
    (4, 150)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from oxide_env.tasks import PREDICTOR_NAMES, RewardModel, Task, make_constraints, make_task

__all__ = ["make_env", "make_vector_env", "reward_model"]

REWARD_ARGUMENTS = ("task", "lam", "predictors", "constraints", "domain_models", "hull", "invalid_penalty",
                    "uncertainty_penalty", "report")
"""The environment arguments that define the reward (the rest are the env's own)."""


def reward_model(task: str | Mapping[str, float] | Task | Callable[[np.ndarray], np.ndarray] = "bulk_modulus", *,
                 lam: float | None = None, predictors: Mapping[str, Any] | None = None,
                 constraints: Mapping[str, Any] | None = None, domain_models: Mapping[str, Any] | None = None,
                 hull: Any = None, invalid_penalty: float = 0.0, uncertainty_penalty: float = 0.0,
                 cache_size: int = 200_000, report: str = "all") -> RewardModel:
    """A :class:`~oxide_env.tasks.RewardModel` for ``task`` with the shipped models as defaults.

    Args:
        task, lam: see :func:`oxide_env.tasks.make_task`.
        predictors: ``{name: predictor or callable}`` replacing the shipped models (default: all five).
        constraints: terminal design constraints (:func:`oxide_env.tasks.make_constraints`).
        domain_models: replaces the shipped applicability-domain models of ``in_domain``.
        hull: replaces the known compounds' hull of ``e_above_hull`` (default
            :func:`predictors.data.known_hull`: the formation-energy training data, elements at 0).
        invalid_penalty, uncertainty_penalty, cache_size: see :class:`~oxide_env.tasks.RewardModel`.
        report: which properties every finished episode predicts and reports (``info["properties"]``):
            ``"all"`` (default) every predictor given (the five shipped ones); ``"reward"`` only those the
            reward and the constraints use. The rewards are the same; training, which reads no other
            property, runs faster (the paper's protocol spent ~20 % of its time predicting four
            properties nobody read).

    Example:
        >>> from oxide_env.chemistry.composition import formulas_to_counts
        >>> model = reward_model("bulk_modulus")
        >>> bool(model.evaluate(formulas_to_counts(["MgO"])).rewards[0] > 4)  # ln K of MgO, ~150 GPa
        True
        >>> sorted(reward_model("bulk_modulus", report="reward").evaluate(formulas_to_counts(["MgO"])).properties)
        ['bulk_modulus']
    """
    import predictors as _predictors

    if report not in ("all", "reward"):
        raise ValueError(f"Invalid report={report!r}: choose 'all' (every predictor) or 'reward' (only those the "
                         "reward and the constraints use).")
    spec = make_task(task, lam=lam)
    design = make_constraints(constraints, spec)
    names = PREDICTOR_NAMES if predictors is None else tuple(predictors)
    if report == "reward":
        used = {*spec.property_names, *design.predictor_names}
        names = tuple(name for name in names if name in used)
    if predictors is None:
        predictors = {name: _predictors.load(name) for name in names}
    else:
        predictors = {name: predictors[name] for name in names}
    if design.domain and domain_models is None:
        from predictors.domain import load_domain

        domain_models = {name: load_domain(name) for name in design.domain}
    known = None
    if design.novel:
        from predictors.data import training_keys

        known = training_keys()
    if design.e_above_hull is not None and hull is None:
        from predictors.data import known_hull

        hull = known_hull()
    return RewardModel(spec, predictors, invalid_penalty=invalid_penalty, uncertainty_penalty=uncertainty_penalty,
                       cache_size=cache_size, constraints=design, domain_models=domain_models,
                       known_compositions=known, hull=hull)


def _split(kwargs: dict[str, Any]) -> tuple[RewardModel, dict[str, Any]]:
    given = kwargs.pop("reward_model", None)
    reward_kwargs = {k: kwargs.pop(k) for k in REWARD_ARGUMENTS if k in kwargs}
    if given is not None:
        if reward_kwargs:
            raise ValueError(f"Give either reward_model= or the reward's arguments ({', '.join(reward_kwargs)}), "
                             "not both.")
        return given, kwargs
    return reward_model(**reward_kwargs), kwargs


def make_env(**kwargs: Any):
    """An :class:`~oxide_env.env.OxideCompositionEnv` whose rewards come from the shipped predictors.

    Takes the reward's arguments (``task``, ``lam``, ``predictors``, ``constraints``,
    ``domain_models``, ``invalid_penalty``, ``uncertainty_penalty``, ``report``; or a ready ``reward_model``)
    and the environment's own (``exact_masks``, ``constraint_oracles``, ``oracle_threshold``,
    ``invalid_action_reward``, ``normalize_observations``, ``render_mode``).
    """
    from oxide_env.env import OxideCompositionEnv

    model, env_kwargs = _split(dict(kwargs))
    return OxideCompositionEnv(model, **env_kwargs)


def make_vector_env(num_envs: int = 1, **kwargs: Any):
    """An :class:`~oxide_env.vector.OxideCompositionVectorEnv` of ``num_envs`` copies (same arguments as
    :func:`make_env`, plus ``autoreset_mode``); all copies share one reward model and its memo."""
    from oxide_env.vector import OxideCompositionVectorEnv

    model, env_kwargs = _split(dict(kwargs))
    return OxideCompositionVectorEnv(num_envs, model, **env_kwargs)
