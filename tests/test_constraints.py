"""Terminal design constraints (oxide rule, predicted properties, applicability domain) in the env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import oxide_env
from oxide_env.chemistry.composition import formulas_to_counts
from predictors.envs import make_env, reward_model
from oxide_env.tasks import RewardModel, make_task

E = oxide_env.ELEMENTS
PLAUSIBLE = {"oxide_rule": True, "formation_energy": ("<=", -0.5), "in_domain": True}


def _play(env, actions):
    env.reset(seed=0)
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
    assert terminated
    return reward, info


def test_constraints_set_flags_and_reward() -> None:
    env = gym.make("OxideComposition-v0", task="bulk_modulus", constraints=PLAUSIBLE)
    free = gym.make("OxideComposition-v0", task="bulk_modulus")
    spinel = [10 * E.index("Mg") + 1, 10 * E.index("Al") + 2, 0, 0, 10 * E.index("O") + 4]
    suboxide = [10 * E.index("Os") + 8, 10 * E.index("Re") + 9, 0, 0, 10 * E.index("O") + 4]
    reward, info = _play(env, spinel)
    assert info["formula"] == "MgAl2O4"
    assert info["oxide_rule"] and info["formation_energy_le_-0.5"] and info["in_domain"]
    assert info["constraints_satisfied"]
    assert reward == pytest.approx(_play(free, spinel)[0])  # a design that meets them keeps its reward
    reward, info = _play(env, suboxide)
    assert not info["oxide_rule"] and not info["constraints_satisfied"]
    assert reward == pytest.approx(env.unwrapped.reward_model.worst_reward())
    assert reward < _play(free, suboxide)[0]
    assert "constraints_satisfied" not in _play(free, spinel)[1]


def test_constraint_checks_pass_gymnasium_checker() -> None:
    from gymnasium.utils.env_checker import check_env

    check_env(make_env(task="formation_energy", constraints=PLAUSIBLE))


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"nope": True}, "Unknown constraint 'nope'"),
        ({"oxide_rule": "yes"}, r"constraints\['oxide_rule'\]"),
        ({"formation_energy": ("<", -0.5)}, r"expected \('<=', bound\)"),
        ({"in_domain": ["bulk"]}, "list of predictor names"),
        ([("oxide_rule", True)], "expected a dict"),
    ],
)
def test_bad_constraints(spec, match) -> None:
    with pytest.raises(ValueError, match=match):
        make_env(task="bulk_modulus", constraints=spec)


def test_constraint_flags_survive_the_cache_round_trip() -> None:
    model = reward_model("shear_modulus", constraints=PLAUSIBLE)
    counts = formulas_to_counts(["MgAl2O4", "Re9Os8O4", "ZrO2"])
    first = model.evaluate(counts)
    state = model.cache_state()
    assert state["flags"].shape == (len(state["counts"]), 4)
    model.clear_cache()
    model.restore_cache(state)
    again = model.evaluate(counts)
    assert again.rewards.tolist() == first.rewards.tolist()
    assert {k: v.tolist() for k, v in again.flags.items()} == {k: v.tolist() for k, v in first.flags.items()}
    assert {k: v.tolist() for k, v in again.properties.items()} == {k: v.tolist() for k, v in first.properties.items()}
    assert first.flags["constraints_satisfied"].tolist() == [True, False, True]
    assert np.isfinite(first.rewards).all()
    other = reward_model("shear_modulus")
    with pytest.raises(ValueError, match="flags"):
        other.restore_cache(state)


def test_novel_constraint_rejects_known_compounds() -> None:
    model = reward_model("bulk_modulus", constraints={"novel": True})
    rows = model.evaluate(formulas_to_counts(["MgAl2O4", "Li13Cr3Ti5O11"]))
    assert rows.flags["novel"].tolist() == [False, True]
    assert rows.rewards[0] == pytest.approx(model.worst_reward())
    with pytest.raises(ValueError, match="known_compositions"):
        RewardModel(make_task("bulk_modulus"), model.predictors, constraints={"novel": True})


def test_merged_noops_keep_one_count_zero_action() -> None:
    import torch

    from agents.sampling import merge_noop_actions

    q = torch.randn(3, 800, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 800, dtype=torch.bool)
    mask[1, ::10] = False  # no count-0 action allowed: nothing to merge
    merged = merge_noop_actions(q, mask)
    assert merged[:, ::10].sum(dim=1).tolist() == [1, 0, 1]
    assert torch.equal(merged[:, 1::10], mask[:, 1::10])  # real additions untouched
    assert int(merged[0, ::10].nonzero()) == int(q[0, ::10].argmax())


@pytest.mark.parametrize("script", ["domain.py", "plausibility_tradeoff.py", "table1_checks.py"])
def test_plausibility_benchmarks_have_help(script) -> None:
    import subprocess
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / script
    out = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "usage:" in out.stdout
